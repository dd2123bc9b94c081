/**
 * `agora client --json` against a real 3-server group on loopback (DESIGN
 * §7, the scripting protocol): a whole auction with exact replies, events,
 * winner and totals; bad input lines; end of input.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest"
import { Harness, type JsonClient, type JsonObject } from "./harness.js"

let harness: Harness

beforeAll(async () => {
  harness = await Harness.make()
  // A failure timeout above the default (300 ms) keeps a loaded test machine from
  // electing leaders all the time: these tests are about the client, not failover.
  await harness.startServers(3, [
    "--round-timeout",
    "20",
    "--start-timeout",
    "30",
    "--heartbeat-interval",
    "100",
    "--failure-timeout",
    "1000"
  ])
}, 50_000)

afterEach(async () => {
  await harness.killClients()
})

afterAll(async () => {
  await harness?.cleanup()
}, 20_000)

/** A client connected to the group, with its `ready` line. */
const connect = async (name: string): Promise<{ client: JsonClient; session: number; ready: JsonObject }> => {
  const client = harness.jsonClient(name)
  const ready = await client.waitType("ready")
  expect(ready).toMatchObject({ type: "ready", client: name })
  expect(typeof ready.leader).toBe("string")
  expect(typeof ready.session).toBe("number")
  return { client, session: ready.session as number, ready }
}

/** The event lines of one auction, without the fields that vary (deadlines). */
const shape = (events: ReadonlyArray<JsonObject>) =>
  events.map((event) => {
    const { deadlineMs, ...rest } = event
    if (event.type === "round-started") expect(typeof deadlineMs).toBe("number")
    return rest
  })

describe("agora client --json", () => {
  it("runs a whole auction: exact replies, events in order, winner and totals (DESIGN §7)", async () => {
    const [a, b1, b2] = await Promise.all([connect("auctioneer"), connect("bidder-1"), connect("bidder-2")])
    const auctioneer = a.client

    const created = await auctioneer.request({
      op: "create",
      item: "Vase",
      minBid: 10,
      minRounds: 2,
      minBidders: 2
    })
    expect(created).toMatchObject({ type: "created" })
    const auction = created.auction as number
    expect(Number.isSafeInteger(auction)).toBe(true)

    const list = await b1.client.request({ op: "list" })
    expect(list.type).toBe("auctions")
    expect(list.auctions).toContainEqual({
      auction,
      item: "Vase",
      minBid: 10,
      minRounds: 2,
      minBidders: 2,
      bidders: 0,
      status: "waiting",
      auctioneer: a.session
    })

    expect(await b1.client.request({ op: "join", auction })).toMatchObject({ type: "joined", auction })
    expect(await b2.client.request({ op: "join", auction })).toMatchObject({ type: "joined", auction })
    expect(await auctioneer.waitType("ready-check")).toEqual({
      type: "ready-check",
      auction,
      seq: 1,
      bidders: 2
    })
    expect(await auctioneer.request({ op: "start", auction })).toMatchObject({ type: "started", auction })

    // Round 1: b1 lets the client fill in the round, b2 names it.
    await b1.client.waitType("round-started")
    await b2.client.waitType("round-started")
    expect(await b1.client.request({ op: "bid", auction, amount: 30 })).toMatchObject({
      type: "bid-accepted",
      auction,
      round: 1,
      amount: 30
    })
    // Sealed: b2 learns that b1 bid, not how much.
    expect(await b2.client.waitType("bid-received")).toEqual({
      type: "bid-received",
      auction,
      seq: 3,
      round: 1,
      bidder: b1.session
    })
    // A second, different bid in the same round is refused.
    expect(await b1.client.request({ op: "bid", auction, round: 1, amount: 31 })).toMatchObject({
      type: "error",
      code: "AlreadyBid"
    })
    expect(await b2.client.request({ op: "bid", auction, round: 1, amount: 20 })).toMatchObject({
      type: "bid-accepted",
      round: 1,
      amount: 20
    })

    // Round 2.
    await b1.client.waitFor((line) => line.type === "round-started" && line.round === 2, "round 2")
    await b2.client.waitFor((line) => line.type === "round-started" && line.round === 2, "round 2")
    expect(await b1.client.request({ op: "bid", auction, round: 1, amount: 50 })).toMatchObject({
      type: "error",
      code: "WrongRound"
    })
    expect(await b1.client.request({ op: "bid", auction, amount: 5 })).toMatchObject({
      type: "error",
      code: "BidTooLow"
    })
    expect(await b1.client.request({ op: "bid", auction, amount: 10 })).toMatchObject({
      type: "bid-accepted",
      round: 2,
      amount: 10
    })
    expect(await b2.client.request({ op: "bid", auction, amount: 25 })).toMatchObject({
      type: "bid-accepted",
      round: 2,
      amount: 25
    })

    // b1: 30 + 10 = 40; b2: 20 + 25 = 45 → b2 wins with 45.
    const totals = { [String(b1.session)]: 40, [String(b2.session)]: 45 }
    const result = { auction, winner: b2.session, amount: 45, totals }
    await b2.client.waitType("auction-won")
    await b1.client.waitType("auction-lost")
    await auctioneer.waitType("auction-closed")

    const bidderEvents = (own: "auction-won" | "auction-lost") => [
      { type: "auction-started", auction, seq: 1, bidders: [b1.session, b2.session], rounds: 2 },
      { type: "round-started", auction, seq: 2, round: 1, minBid: 10 },
      { type: "bid-received", auction, seq: 3, round: 1, bidder: b1.session },
      { type: "bid-received", auction, seq: 4, round: 1, bidder: b2.session },
      {
        type: "round-completed",
        auction,
        seq: 5,
        round: 1,
        bids: { [String(b1.session)]: 30, [String(b2.session)]: 20 }
      },
      { type: "round-started", auction, seq: 6, round: 2, minBid: 10 },
      { type: "bid-received", auction, seq: 7, round: 2, bidder: b1.session },
      { type: "bid-received", auction, seq: 8, round: 2, bidder: b2.session },
      {
        type: "round-completed",
        auction,
        seq: 9,
        round: 2,
        bids: { [String(b1.session)]: 10, [String(b2.session)]: 25 }
      },
      { type: own, seq: 10, ...result }
    ]
    expect(shape(b2.client.events(auction))).toEqual(bidderEvents("auction-won"))
    expect(shape(b1.client.events(auction))).toEqual(bidderEvents("auction-lost"))
    expect(shape(auctioneer.events(auction))).toEqual([
      { type: "ready-check", auction, seq: 1, bidders: 2 },
      ...bidderEvents("auction-lost")
        .slice(0, -1)
        .map((event) => ({ ...event, seq: event.seq + 1 })),
      { type: "auction-closed", seq: 11, ...result }
    ])
    // `winner` compares with what `ready` said about the client itself.
    expect(b2.client.events(auction).at(-1)?.winner).toBe(b2.ready.session)

    // A closed auction is no longer open: no longer listed; joining it is refused.
    const after = await b1.client.request({ op: "list" })
    expect((after.auctions as ReadonlyArray<JsonObject>).some((row) => row.auction === auction)).toBe(false)
    const late = await b1.client.request({ op: "join", auction })
    expect(late.type).toBe("error")
  }, 45_000)

  it("answers a bad line with InvalidRequest naming the field, and sends nothing", async () => {
    const { client, session } = await connect("scripter")
    const bad: ReadonlyArray<readonly [string, RegExp, unknown?]> = [
      ["not json at all", /not JSON/],
      ["[1,2]", /JSON object/],
      ['{"ref":1}', /"op" is missing/, 1],
      ['{"op":"sell","ref":"x"}', /"op" must be one of/, "x"],
      ['{"op":"create","minBid":10,"ref":2}', /"item"/, 2],
      ['{"op":"create","item":"   ","minBid":10}', /"item"/],
      [`{"op":"create","item":"${"x".repeat(201)}","minBid":10}`, /"item".*200/],
      ['{"op":"create","item":"Vase","minBid":"10"}', /"minBid"/],
      ['{"op":"create","item":"Vase","minBid":0}', /"minBid"/],
      ['{"op":"create","item":"Vase","minBid":1.5}', /"minBid"/],
      ['{"op":"create","item":"Vase","minBid":1e400}', /"minBid"/],
      ['{"op":"create","item":"Vase","minBid":9007199254740993}', /"minBid"/],
      ['{"op":"create","item":"Vase","minBid":10,"minRounds":0}', /"minRounds"/],
      ['{"op":"create","item":"Vase","minBid":10,"minBidders":1}', /"minBidders"/],
      ['{"op":"join"}', /"auction" is missing/],
      ['{"op":"join","auction":-3}', /"auction"/],
      ['{"op":"start","auction":"NaN"}', /"auction"/],
      ['{"op":"bid","auction":1,"amount":-1}', /"amount"/],
      ['{"op":"bid","auction":1}', /"amount" is missing/],
      ['{"op":"bid","auction":1,"amount":10,"round":0}', /"round"/],
      [`{"op":"list","pad":"${"y".repeat(70_000)}"}`, /longer than/]
    ]
    for (const [line, message, ref] of bad) {
      client.send(line)
      const reply = await client.waitType("error")
      expect(reply.code, line).toBe("InvalidRequest")
      expect(reply.message as string, line).toMatch(message)
      if (ref === undefined) expect("ref" in reply, line).toBe(false)
      else expect(reply.ref, line).toBe(ref)
    }
    // Blank lines are skipped; the client still answers, and nothing was created.
    client.send("")
    const status = await client.request({ op: "status" })
    expect(status).toMatchObject({ type: "status", client: "scripter", session })
    const list = await client.request({ op: "list" })
    expect((list.auctions as ReadonlyArray<JsonObject>).filter((row) => row.auctioneer === session)).toEqual(
      []
    )
    expect(client.lines.filter((line) => line.type === "error")).toHaveLength(bad.length)
  }, 30_000)

  it("answers what was asked, then exits 0 at end of input; quit stops it too", async () => {
    const { client } = await connect("leaver")
    client.send({ op: "create", item: "Lamp", minBid: 5, ref: "c" })
    client.send({ op: "status", ref: "s" })
    client.end()
    expect(await client.process.exited).toBe(0)
    const lines = client.lines
    expect(lines.map((line) => line.type)).toEqual(["ready", "created", "status"])
    expect(lines[1]).toMatchObject({ type: "created", ref: "c" })
    expect(lines[2]).toMatchObject({ type: "status", ref: "s" })

    const quitter = (await connect("quitter")).client
    quitter.send({ op: "quit" })
    quitter.send({ op: "list", ref: "after-quit" })
    // stdin stays open: quit alone ends the process.
    expect(await quitter.process.exited).toBe(0)
    expect(quitter.lines.map((line) => line.type)).toEqual(["ready"])
  }, 30_000)
})
