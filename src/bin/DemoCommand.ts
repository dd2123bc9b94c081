/**
 * `agora demo`: Agora surviving a leader crash, narrated (DESIGN §7).
 *
 * Starts a 3-server group on loopback as real processes (each with its own
 * data dir), runs one auction with three scripted clients in this process,
 * kills the leader with SIGKILL in the middle of a round, and narrates the
 * election, the takeover and the result. Exits 0 only if the auction
 * completed with the winner and totals the bids call for.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createSocket } from "node:dgram"
import { mkdtempSync, openSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Command } from "@effect/cli"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { Notice } from "../domain/auction/Notifications.js"
import type { AuctionId, ClientId, SessionId } from "../domain/Ids.js"
import { makeUdp } from "../layers/TransportUdp.js"
import { type ClientShape, make as makeClient } from "../services/Client.js"
import { Transport } from "../services/Transport.js"
import { withLogging } from "./Logging.js"
import { collectStatus } from "./StatusCommand.js"
import { UsageError } from "./UsageError.js"

const loopback = "127.0.0.1"
const broadcast = "127.255.255.255"
const serverIds = ["s1", "s2", "s3"] as const

/** The bids of the script, per round: bob wins 75 to carol's 65. */
const script = [
  { bob: 20, carol: 15 },
  { bob: 25, carol: 40 },
  { bob: 30, carol: 10 }
] as const
const expectedTotals = { bob: 75, carol: 65 }

/** A free UDP port on this host for the demo's discovery port (so it never meets another group). */
const freeUdpPort = Effect.async<number>((resume) => {
  const socket = createSocket("udp4")
  socket.bind(0, "0.0.0.0", () => {
    const { port } = socket.address()
    socket.close(() => resume(Effect.succeed(port)))
  })
})

const say = (line: string) => Console.log(line)

interface Participant {
  readonly name: string
  readonly client: ClientShape
  readonly session: SessionId
  /** Every notice delivered, in order. */
  readonly notices: Array<Notice>
}

export const demoCommand = Command.make("demo", {}, () =>
  Effect.gen(function* () {
    const dir = mkdtempSync(join(tmpdir(), "agora-demo-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
    const discoveryPort = yield* freeUdpPort
    const network = ["--bind", loopback, "--broadcast", broadcast, "--discovery-port", String(discoveryPort)]

    // --- three servers, as real processes
    yield* say(`▶ Starting 3 servers on ${loopback} (discovery port ${discoveryPort}, data in ${dir})`)
    const servers = new Map<string, ChildProcess>()
    const startServer = (id: string) =>
      Effect.sync(() => {
        const log = openSync(join(dir, `${id}.log`), "a")
        const child = spawn(
          process.execPath,
          [
            ...process.execArgv,
            process.argv[1] ?? "agora",
            "server",
            "--id",
            id,
            "--data-dir",
            join(dir, id),
            "--expect",
            "3",
            "--log-format",
            "json",
            ...network
          ],
          { stdio: ["ignore", log, log] }
        )
        servers.set(id, child)
        return child
      })
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const child of servers.values()) child.kill("SIGTERM")
      })
    )
    for (const id of serverIds) {
      const child = yield* startServer(id)
      yield* say(`  ${id}: pid ${child.pid}`)
    }

    const status = collectStatus({ bind: loopback, discoveryPort, broadcast, maxDatagram: 1400, waitMs: 300 })
    const awaitLeader = (not: string | null, timeoutMs: number) =>
      Effect.gen(function* () {
        const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
        while ((yield* Clock.currentTimeMillis) < deadline) {
          const seen = yield* status
          const leader = seen.find((s) => s.reply.role === "leader" && s.reply.id !== not)
          if (leader !== undefined && seen.filter((s) => s.reply.leader === leader.reply.id).length >= 2) {
            return leader.reply
          }
        }
        return yield* new UsageError({ message: `no leader within ${timeoutMs} ms (server logs in ${dir})` })
      })
    const leader = yield* awaitLeader(null, 20_000)
    yield* say(
      `▶ The servers found each other and formed one group: leader ${leader.id}, epoch ${leader.epoch}`
    )

    // --- three clients in this process
    const participant = (name: string) =>
      Effect.gen(function* () {
        const transport = yield* makeUdp({
          identity: { role: "client", id: `demo-${name}` as ClientId },
          boot: 0,
          bindAddress: loopback,
          port: 0,
          discoveryPort,
          broadcastAddress: broadcast,
          listenDiscovery: false
        })
        const client = yield* makeClient({ id: `demo-${name}` as ClientId }).pipe(
          Effect.provideService(Transport, transport)
        )
        const connected = yield* client.connect
        const notices: Array<Notice> = []
        yield* Effect.forkScoped(
          Stream.runForEach(client.notices, ({ notice }) => Effect.sync(() => notices.push(notice)))
        )
        return { name, client, session: connected.session, notices } satisfies Participant
      })
    const alice = yield* participant("alice")
    const bob = yield* participant("bob")
    const carol = yield* participant("carol")
    const nameOf = (session: SessionId) =>
      [alice, bob, carol].find((p) => p.session === session)?.name ?? `session ${session}`
    yield* say(`▶ Clients connected: alice (auctioneer), bob and carol (bidders)`)

    const awaitNotice = (who: Participant, match: (notice: Notice) => boolean, timeoutMs: number) =>
      Effect.gen(function* () {
        const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
        while ((yield* Clock.currentTimeMillis) < deadline) {
          const found = who.notices.find(match)
          if (found !== undefined) return found
          yield* Effect.sleep(20)
        }
        return yield* new UsageError({
          message: `${who.name} did not get the expected notice in ${timeoutMs} ms`
        })
      })

    const auction: AuctionId = yield* alice.client.create({
      item: "Vase",
      minBid: 10,
      minRounds: 3,
      minBidders: 2
    })
    yield* say(`▶ alice creates auction ${auction}: "Vase", minimum bid 10, 3 rounds, at least 2 bidders`)
    yield* bob.client.join(auction)
    yield* carol.client.join(auction)
    yield* say(`  bob and carol join`)
    yield* awaitNotice(alice, (n) => n._tag === "ReadyCheckNotice", 10_000)
    yield* alice.client.start(auction)
    yield* say(`  ready check → alice starts the auction`)

    let killedLeader: string | null = null
    for (const [index, bids] of script.entries()) {
      const round = index + 1
      yield* awaitNotice(bob, (n) => n._tag === "RoundStartedNotice" && n.round === round, 10_000)
      yield* say(`▶ Round ${round}`)
      yield* bob.client.bid(auction, bids.bob, round)
      yield* say(`  bob bids ${bids.bob} (sealed) ✓ committed on a majority`)
      if (round === 2) {
        const current = yield* awaitLeader(null, 10_000)
        const victim = servers.get(current.id)
        yield* say(`✖ kill -9 the leader ${current.id} (pid ${victim?.pid}) in the middle of round ${round}`)
        victim?.kill("SIGKILL")
        killedLeader = current.id
        const killedAt = yield* Clock.currentTimeMillis
        yield* say(`  carol bids ${bids.carol} now: her client retries until a new leader answers…`)
        yield* carol.client.bid(auction, bids.carol, round)
        const acceptedAfter = (yield* Clock.currentTimeMillis) - killedAt
        const next = yield* awaitLeader(current.id, 10_000)
        yield* say(
          `▶ ${next.id} won the election (epoch ${next.epoch}); carol's bid was accepted ${acceptedAfter} ms after the kill`
        )
        yield* say(`  no acknowledged bid was lost: bob's ${bids.bob} is still in round ${round}`)
      } else {
        yield* carol.client.bid(auction, bids.carol, round)
        yield* say(`  carol bids ${bids.carol} (sealed) ✓`)
      }
      const completed = yield* awaitNotice(
        alice,
        (n) => n._tag === "RoundCompletedNotice" && n.round === round,
        15_000
      )
      if (completed._tag === "RoundCompletedNotice") {
        yield* say(
          `  round ${round} complete: ${completed.bids.map((b) => `${nameOf(b.bidder)} ${b.amount}`).join(", ")}`
        )
      }
    }

    const closed = yield* awaitNotice(alice, (n) => n._tag === "AuctionClosedNotice", 15_000)
    if (closed._tag !== "AuctionClosedNotice") return yield* new UsageError({ message: "no result" })
    const totals = Object.fromEntries(closed.totals.map((t) => [nameOf(t.bidder), t.amount]))
    const winner = nameOf(closed.winner)
    yield* say(`★ ${winner} wins the Vase with ${closed.amount} (totals: ${JSON.stringify(totals)})`)
    const bobHeard = yield* awaitNotice(
      bob,
      (n) => n._tag === "AuctionWonNotice" || n._tag === "AuctionLostNotice",
      5_000
    )
    yield* say(
      `  bob is told: ${bobHeard._tag === "AuctionWonNotice" ? "CONGRATULATIONS! YOU WON!" : "you lost"}`
    )
    const correct =
      winner === "bob" && totals.bob === expectedTotals.bob && totals.carol === expectedTotals.carol
    if (!correct) {
      return yield* new UsageError({
        message: `wrong result: expected bob to win with ${JSON.stringify(expectedTotals)}, got ${winner} with ${JSON.stringify(totals)}`
      })
    }
    yield* say(
      `✔ The auction completed correctly although its leader (${killedLeader}) was killed mid-round. ` +
        `(Server logs: ${dir}, removed on exit.)`
    )
    return Option.none()
  }).pipe(
    Effect.catchTags({
      Timeout: (error) => new UsageError({ message: `a request timed out: ${error.message}` }),
      NotConnected: (error) => new UsageError({ message: `a client could not connect: ${error.message}` }),
      Refused: (error) =>
        new UsageError({ message: `a request was refused (${error.code}): ${error.message}` }),
      ClientBusy: () => new UsageError({ message: "a client was busy" })
    }),
    Effect.scoped,
    withLogging("pretty", LogLevel.Warning)
  )
).pipe(
  Command.withDescription(
    "Start a 3-server group on loopback, run one auction with scripted bidders, kill the leader mid-round " +
      "and narrate the failover. Exits 0 only if the auction completed with the right winner.\nExample: agora demo"
  )
)
