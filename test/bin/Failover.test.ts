/**
 * Real `agora server` processes on loopback (DESIGN §8, test/e2e): three
 * servers started at the same instant form one group; kill -9 of the leader
 * in the middle of a round loses no acknowledged bid and the auction
 * completes; the killed server restarts from its data dir and catches up;
 * garbage datagrams at every port change nothing.
 */
import { createSocket } from "node:dgram"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Harness, type JsonClient, type JsonObject } from "./harness.js"

let harness: Harness
// Timings above the defaults keep a loaded test machine from electing spuriously; the
// failover itself is what is tested, its speed is measured by the benchmark.
const timings = ["--heartbeat-interval", "100", "--failure-timeout", "1000", "--round-timeout", "30"]

beforeAll(async () => {
  harness = await Harness.make()
}, 10_000)

afterAll(async () => {
  await harness?.cleanup()
}, 20_000)

const connect = async (name: string): Promise<{ client: JsonClient; session: number }> => {
  const client = harness.jsonClient(name, ["--request-timeout", "30"])
  const ready = await client.waitType("ready", undefined, 30_000)
  return { client, session: ready.session as number }
}

const servers = (status: JsonObject) => (status.servers ?? []) as ReadonlyArray<JsonObject>

/** Sends raw datagrams from a socket of our own. */
const sendRaw = (port: number, payloads: ReadonlyArray<Uint8Array>) =>
  new Promise<void>((done) => {
    const socket = createSocket("udp4")
    let left = payloads.length
    for (const payload of payloads) {
      socket.send(payload, port, "127.0.0.1", () => {
        left -= 1
        if (left === 0) socket.close(() => done())
      })
    }
  })

describe("agora server processes on loopback", () => {
  it("three servers started at the same instant with --expect 3 form one group", async () => {
    const status = await harness.startServers(3, timings, 30_000)
    const groups = new Set(servers(status).map((s) => s.group))
    expect(groups.size).toBe(1)
    expect(
      servers(status)
        .map((s) => s.id)
        .sort()
    ).toEqual(["s1", "s2", "s3"])
  }, 60_000)

  it("kill -9 of the leader mid-round: the auction completes and every accepted bid is in a completed round", async () => {
    const alice = await connect("alice")
    const bob = await connect("bob")
    const carol = await connect("carol")
    const created = await alice.client.request({
      op: "create",
      item: "Lamp",
      minBid: 5,
      minRounds: 2,
      minBidders: 2
    })
    const auction = created.auction as number
    expect(created.type).toBe("created")
    expect((await bob.client.request({ op: "join", auction })).type).toBe("joined")
    expect((await carol.client.request({ op: "join", auction })).type).toBe("joined")
    await alice.client.waitType("ready-check")
    expect((await alice.client.request({ op: "start", auction })).type).toBe("started")
    await bob.client.waitFor((l) => l.type === "round-started" && l.round === 1, "round 1")

    const accepted: Array<JsonObject> = []
    accepted.push(await bob.client.request({ op: "bid", auction, amount: 20 }))
    const leader = (await harness.status()).leader as string
    await harness.crashServer(leader)
    accepted.push(await carol.client.request({ op: "bid", auction, amount: 15 }, 40_000))
    await bob.client.waitFor((l) => l.type === "round-started" && l.round === 2, "round 2", 40_000)
    accepted.push(await bob.client.request({ op: "bid", auction, amount: 10 }, 40_000))
    accepted.push(await carol.client.request({ op: "bid", auction, amount: 30 }, 40_000))
    expect(accepted.map((a) => a.type)).toEqual([
      "bid-accepted",
      "bid-accepted",
      "bid-accepted",
      "bid-accepted"
    ])

    const won = await carol.client.waitType("auction-won", undefined, 40_000)
    expect(won).toMatchObject({ winner: carol.session, amount: 45 })
    expect(won.totals).toEqual({ [bob.session]: 30, [carol.session]: 45 })
    await bob.client.waitType("auction-lost", undefined, 40_000)
    // Every acknowledged bid is in the round it named, with its amount.
    const rounds = bob.client.events(auction).filter((e) => e.type === "round-completed")
    const bidders = [bob.session, bob.session, carol.session, carol.session]
    for (const [i, bid] of [accepted[0], accepted[2], accepted[1], accepted[3]].entries()) {
      const round = rounds.find((r) => r.round === bid?.round)
      const bids = (round?.bids ?? {}) as Record<string, number>
      expect(bids[String(bidders[i])]).toBe(bid?.amount)
    }

    // The killed server restarts from its data dir and catches up.
    harness.restartServer(leader, timings)
    const deadline = Date.now() + 30_000
    let caughtUp = false
    while (!caughtUp && Date.now() < deadline) {
      const list = servers(await harness.status().catch(() => ({}) as JsonObject))
      const back = list.find((s) => s.id === leader)
      const top = Math.max(...list.map((s) => s.commitSeq as number))
      caughtUp = back !== undefined && back.role === "follower" && back.commitSeq === top
      if (!caughtUp) await new Promise((done) => setTimeout(done, 300))
    }
    expect(caughtUp).toBe(true)
  }, 180_000)

  it("garbage datagrams at every port change nothing", async () => {
    const before = await harness.waitForLeader(3)
    const ports = servers(before).map((s) => Number(String(s.address).split(":").at(-1)))
    const garbage = [
      new Uint8Array([0, 1, 2, 3, 255]),
      new TextEncoder().encode("not json at all"),
      new TextEncoder().encode(
        '{"v":1,"from":{"role":"server","id":"s1","port":1},"body":{"_tag":"Heartbeat"}}'
      ),
      new TextEncoder().encode(`{"v":1,"body":{"_tag":"Replicate","entries":"${"x".repeat(1500)}"}}`),
      new TextEncoder().encode(
        JSON.stringify({
          v: 1,
          from: { role: "client", id: "x", port: 1 },
          body: { _tag: "Request", session: -1 }
        })
      ),
      new Uint8Array(2000).fill(123)
    ]
    for (const port of [...ports, harness.discoveryPort]) await sendRaw(port, garbage)
    await new Promise((done) => setTimeout(done, 1_000))
    const after = await harness.waitForLeader(3)
    expect(after.leader).toBe(before.leader)
    expect(after.epoch).toBe(before.epoch)
    // Nothing was committed by the garbage.
    const commits = (status: JsonObject) => servers(status).map((s) => [s.id, s.commitSeq])
    expect(commits(after)).toEqual(commits(before))
    const { client } = await connect("after-garbage")
    expect((await client.request({ op: "list" })).type).toBe("auctions")
  }, 60_000)
})
