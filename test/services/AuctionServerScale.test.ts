/**
 * The auction service at scale (DESIGN §3 "not carried in every heartbeat or
 * replication message", §4 datagram limit, §5 "sent in parts"): history does
 * not enlarge the cluster's periodic messages, and an auction with a thousand
 * bidders completes under the default 1,400-byte datagram limit.
 *
 * To go fast, most requests are proposed straight to the leader's cluster in
 * a session's name — exactly the proposal the server makes of a client's
 * `Request` — while a few real clients on the simulated network take part
 * through the wire and check what they are told.
 *
 * Each run takes tens of seconds of CPU: it is driven in slices
 * (`runScenarioInSlices`, the same run as `runScenario`) so the vitest worker
 * keeps answering its main process.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, HashMap, Option } from "effect"
import { type AgoraCommand, commandOf } from "../../src/domain/agora/Agora.js"
import { defaultClusterConfig } from "../../src/domain/cluster/Config.js"
import type { Body } from "../../src/domain/Envelope.js"
import { DatagramBytesDefault } from "../../src/domain/Envelope.js"
import type { AuctionId, ClientId, RequestId, SessionId, SessionToken } from "../../src/domain/Ids.js"
import type { ClientOp, ReplyResult } from "../../src/domain/Messages.js"
import type { AgoraCluster } from "../../src/services/AuctionServer.js"
import { makeRawClient } from "../simulation/RawClient.js"
import { committedPrefixViolations } from "../simulation/SimCluster.js"
import { auctionEventsOf, startAgoraCluster } from "../support/AgoraCluster.js"
import { runScenarioInSlices } from "../support/SimInSlices.js"

const timeouts = { roundTimeoutMs: 60_000, startTimeoutMs: 60_000 }

/** A session requests go through: its id, token and next request id (rising, one request at a time). */
interface Seat {
  readonly session: SessionId
  readonly token: SessionToken
  nextRequest: number
}

/** Proposes `op` in `seat`'s session to `server` and returns its committed answer. */
const ask = (server: AgoraCluster, seat: Seat, op: Exclude<ClientOp, { readonly _tag: "List" }>) =>
  Effect.gen(function* () {
    const requestId = seat.nextRequest++ as RequestId
    const command: AgoraCommand = {
      _tag: "ClientRequest",
      session: seat.session,
      token: seat.token,
      requestId,
      command: commandOf(op, seat.session, timeouts)
    }
    const committed = yield* Effect.orDie(server.propose(command))
    const entry = Option.getOrUndefined(HashMap.get(committed.state.sessions, seat.session))
    if (entry?.lastRequest !== requestId || entry.answer === null) {
      return yield* Effect.dieMessage(`no answer to ${seat.session}/${requestId}`)
    }
    return entry.answer
  })

/** The answer, if it is a `tag` (else the scenario dies: a refused step is a broken premise). */
const expectAnswer = <T extends ReplyResult["_tag"]>(answer: ReplyResult, tag: T) =>
  answer._tag === tag
    ? Effect.succeed(answer as Extract<ReplyResult, { readonly _tag: T }>)
    : Effect.dieMessage(`expected ${tag}, got ${JSON.stringify(answer)}`)

/** A session opened by a committed registration, for a client at `address` (nobody listens there). */
const seatAt = (server: AgoraCluster, name: string, port: number) =>
  Effect.gen(function* () {
    const token = `token-${name}` as SessionToken
    const committed = yield* Effect.orDie(
      server.propose({
        _tag: "RegisterClient",
        client: name as ClientId,
        nonce: 1,
        address: { host: "10.9.0.1", port },
        token
      })
    )
    // The state right after this registration: its session is the last one handed out.
    return { session: (committed.state.nextSession - 1) as SessionId, token, nextRequest: 1 } satisfies Seat
  })

/** One tiny auction from creation to closure (1 round, 2 bidders), all through proposals. */
const tinyAuction = (server: AgoraCluster, seats: readonly [Seat, Seat, Seat], n: number) =>
  Effect.gen(function* () {
    const [auctioneer, first, second] = seats
    const created = yield* ask(server, auctioneer, {
      _tag: "Create",
      item: "x",
      minBid: 1,
      minRounds: 1,
      minBidders: 2
    })
    const auction = (yield* expectAnswer(created, "Created")).auction
    yield* expectAnswer(yield* ask(server, first, { _tag: "Join", auction }), "Joined")
    yield* expectAnswer(yield* ask(server, second, { _tag: "Join", auction }), "Joined")
    yield* expectAnswer(yield* ask(server, auctioneer, { _tag: "Start", auction }), "Started")
    yield* expectAnswer(
      yield* ask(server, first, { _tag: "Bid", auction, round: 1, amount: 1 + (n % 7) }),
      "BidAccepted"
    )
    yield* expectAnswer(
      yield* ask(server, second, { _tag: "Bid", auction, round: 1, amount: 1 + (n % 5) }),
      "BidAccepted"
    )
  })

/** The tags whose every message a server sends periodically or per entry. */
const periodicTags = ["Heartbeat", "HeartbeatAck", "Replicate", "ReplicateAck"] as const
type PeriodicTag = (typeof periodicTags)[number]

/** Largest body (JSON bytes, as SimCluster's `recordSends` measures it) and count per tag, since `reset`. */
const makeSizeMeter = () => {
  let largest = new Map<string, number>()
  let counts = new Map<string, number>()
  const largestEver = new Map<string, number>()
  return {
    onSend: (_id: string, body: Body) => {
      if (!(periodicTags as ReadonlyArray<string>).includes(body._tag)) return
      const bytes = JSON.stringify(body).length
      largest.set(body._tag, Math.max(largest.get(body._tag) ?? 0, bytes))
      largestEver.set(body._tag, Math.max(largestEver.get(body._tag) ?? 0, bytes))
      counts.set(body._tag, (counts.get(body._tag) ?? 0) + 1)
    },
    /** The window's figures, then a new window. */
    take: () => {
      const window = Object.fromEntries(
        periodicTags.map((tag) => [tag, { largest: largest.get(tag) ?? 0, count: counts.get(tag) ?? 0 }])
      ) as Record<PeriodicTag, { largest: number; count: number }>
      largest = new Map()
      counts = new Map()
      return window
    },
    largestEver: () => Object.fromEntries(periodicTags.map((tag) => [tag, largestEver.get(tag) ?? 0]))
  }
}

describe("Auction service at scale (DESIGN §3, §4, §5)", () => {
  it("10,000 closed auctions do not enlarge any heartbeat or replication message, nor the client table", async () => {
    const auctionsTotal = 10_000
    const windowAuctions = 100
    /** Independent sessions triples driving auctions side by side (each one request at a time). */
    const lanes = 50
    const meter = makeSizeMeter()
    const result = await runScenarioInSlices(
      Effect.gen(function* () {
        const { cluster, leader } = yield* startAgoraCluster({
          onSend: meter.onSend,
          // Nobody listens at the sessions' addresses: notifications are sent once and lost, not resent.
          server: { notifyResendMs: 3_600_000, sessionTimeoutMs: 3_600_000 }
        })
        const server = cluster.cluster(leader)
        if (server === undefined) return yield* Effect.dieMessage("no leader")
        const seats: Array<readonly [Seat, Seat, Seat]> = []
        for (let lane = 0; lane < lanes; lane++) {
          seats.push([
            yield* seatAt(server, `a${lane}`, 9_000 + 3 * lane),
            yield* seatAt(server, `b${lane}`, 9_001 + 3 * lane),
            yield* seatAt(server, `c${lane}`, 9_002 + 3 * lane)
          ])
        }
        let driven = 0
        /** Drives `count` more auctions to closure, spread over the lanes. */
        const drive = (count: number) =>
          Effect.forEach(
            seats,
            (lane, index) =>
              Effect.forEach(
                Array.from(
                  { length: Math.max(0, Math.ceil((count - index) / lanes)) },
                  (_, i) => driven + index + i * lanes
                ),
                (n) => tinyAuction(server, lane, n),
                { discard: true }
              ),
            { concurrency: "unbounded", discard: true }
          ).pipe(
            Effect.zipRight(
              Effect.sync(() => {
                driven += count
              })
            )
          )
        // Before: an idle second, then the first 100 auctions.
        meter.take()
        yield* Effect.sleep(1_000)
        yield* drive(windowAuctions)
        const before = meter.take()
        yield* drive(auctionsTotal - 2 * windowAuctions)
        meter.take()
        // After: the last 100 auctions (9,900 closed before them), then an idle second with 10,000 closed.
        yield* drive(windowAuctions)
        yield* Effect.sleep(1_000)
        const after = meter.take()
        const state = yield* Effect.orDie(server.read)
        return {
          driven,
          closed: Array.from(HashMap.values(state.auctions.history)).filter((a) => a.phase === "closed")
            .length,
          open: HashMap.size(state.auctions.open),
          sessions: HashMap.size(state.sessions),
          // One entry per session, holding only its last request id and answer (60,000 requests later).
          sessionBytesMax: Math.max(
            ...Array.from(HashMap.values(state.sessions), (session) => JSON.stringify(session).length)
          ),
          before,
          after,
          largestEver: meter.largestEver()
        }
      }),
      { maxTimeMs: 3_600_000 }
    )
    expect(result.driven).toBe(auctionsTotal)
    expect(result.closed).toBe(auctionsTotal)
    expect(result.open).toBe(0)
    expect(result.sessions).toBe(3 * lanes)
    expect(result.sessionBytesMax).toBeLessThan(300)
    for (const tag of periodicTags) {
      // Each window saw the message, so its figure means something.
      expect(result.before[tag].count, tag).toBeGreaterThan(0)
      expect(result.after[tag].count, tag).toBeGreaterThan(0)
      // Within one datagram all run long: never sent in fragments, whatever the history.
      expect(result.largestEver[tag], tag).toBeLessThan(DatagramBytesDefault)
    }
    // Heartbeats and acks carry a few numbers: only their digits may grow (seq 600 → 60,000).
    for (const tag of ["Heartbeat", "HeartbeatAck", "ReplicateAck"] as const) {
      expect(result.after[tag].largest, tag).toBeLessThanOrEqual(result.before[tag].largest + 8)
    }
    // A Replicate is cut at batchBytesMax of entries (plus its header) whatever the state holds;
    // its entries' numbers get a few digits longer (auction 100 → 10,000), nothing more.
    expect(result.largestEver.Replicate).toBeLessThanOrEqual(defaultClusterConfig.batchBytesMax + 100)
    expect(result.after.Replicate.largest).toBeLessThanOrEqual(
      Math.ceil(result.before.Replicate.largest * 1.05)
    )
  }, 300_000)

  it("an auction with 1,000 bidders completes under the default 1,400-byte datagram limit, its RoundCompleted sent in parts, with exact totals", async () => {
    const biddersTotal = 1_000
    const auction = 1 as AuctionId
    /** The largest body of each tag a server sent, and how many went over one datagram. */
    const largest = new Map<string, number>()
    const oversize = new Map<string, number>()
    const onSend = (_id: string, body: Body) => {
      // A thousand bids each tell 1,001 participants: skip measuring those million small notices.
      if (
        body._tag !== "Replicate" &&
        (body._tag !== "Notify" || body.notices.every((notice) => notice._tag === "BidReceivedNotice"))
      )
        return
      const bytes = JSON.stringify(body).length
      largest.set(body._tag, Math.max(largest.get(body._tag) ?? 0, bytes))
      if (bytes > DatagramBytesDefault) oversize.set(body._tag, (oversize.get(body._tag) ?? 0) + 1)
    }
    const result = await runScenarioInSlices(
      Effect.gen(function* () {
        const { cluster, leader } = yield* startAgoraCluster({
          onSend,
          // Nobody listens at the proposal-driven sessions' addresses: send their notifications once, not again.
          server: { notifyResendMs: 3_600_000, sessionTimeoutMs: 3_600_000, roundTimeoutMs: 60_000 }
        })
        const server = cluster.cluster(leader)
        if (server === undefined) return yield* Effect.dieMessage("no leader")
        const alice = yield* makeRawClient("alice")
        const bob = yield* makeRawClient("bob")
        const carol = yield* makeRawClient("carol")
        for (const client of [alice, bob, carol]) yield* client.connect
        const created = yield* alice.request({
          _tag: "Create",
          item: "Stadium",
          minBid: 10,
          minRounds: 1,
          minBidders: biddersTotal
        })
        // Bob and carol join on the wire; 998 more bidders through proposals.
        const joins = [
          yield* bob.request({ _tag: "Join", auction }),
          yield* carol.request({ _tag: "Join", auction })
        ]
        const seats = yield* Effect.forEach(
          Array.from({ length: biddersTotal - 2 }, (_, i) => i),
          (i) => seatAt(server, `bidder${i}`, 10_000 + i),
          { concurrency: 100 }
        )
        yield* Effect.forEach(
          seats,
          (seat) =>
            Effect.flatMap(ask(server, seat, { _tag: "Join", auction }), (a) => expectAnswer(a, "Joined")),
          { concurrency: 100, discard: true }
        )
        const started = yield* alice.request({ _tag: "Start", auction })
        // Every bidder bids once, a different amount each; bob outbids everyone.
        const amountOf = (i: number) => 10 + ((i * 37) % 1_000)
        const bobBid = yield* bob.request({ _tag: "Bid", auction, round: 1, amount: 5_000 })
        yield* Effect.forEach(
          seats,
          (seat, i) =>
            Effect.flatMap(ask(server, seat, { _tag: "Bid", auction, round: 1, amount: amountOf(i) }), (a) =>
              expectAnswer(a, "BidAccepted")
            ),
          { concurrency: 100, discard: true }
        )
        const carolBid = yield* carol.request({ _tag: "Bid", auction, round: 1, amount: 20 })
        yield* Effect.sleep(3_000)
        const expected = new Map<number, number>([
          [bob.session(), 5_000],
          [carol.session(), 20],
          ...seats.map((seat, i): [number, number] => [seat.session, amountOf(i)])
        ])
        const logs = yield* cluster.committedLogs
        const completedEverywhere = [...logs.values()].map(
          (log) => auctionEventsOf(log).filter(({ event }) => event._tag === "RoundCompleted").length
        )
        const events = auctionEventsOf(logs.get(leader) ?? [])
        const completed = events.find(({ event }) => event._tag === "RoundCompleted")?.event
        const closed = events.find(({ event }) => event._tag === "AuctionClosed")?.event
        const bobLast = bob.notices(auction).at(-1)
        const bobCompleted = bob.notices(auction).find((n) => n._tag === "RoundCompletedNotice")
        return {
          created,
          joins,
          started,
          bobBid,
          carolBid,
          bob: bob.session(),
          expected: [...expected.entries()].sort(([a], [b]) => a - b),
          roundBids:
            completed?._tag === "RoundCompleted" ? completed.bids.map((b) => [b.bidder, b.amount]) : [],
          totals: closed?._tag === "AuctionClosed" ? closed.totals.map((t) => [t.bidder, t.amount]) : [],
          winner: closed?._tag === "AuctionClosed" ? { winner: closed.winner, amount: closed.amount } : null,
          completedEverywhere,
          bobStream: bob.notices(auction).length,
          bobLast:
            bobLast?._tag === "AuctionWonNotice"
              ? {
                  winner: bobLast.winner,
                  amount: bobLast.amount,
                  totals: bobLast.totals.map((t) => [t.bidder, t.amount])
                }
              : bobLast?._tag,
          bobCompleted:
            bobCompleted?._tag === "RoundCompletedNotice"
              ? bobCompleted.bids.map((b) => [b.bidder, b.amount])
              : [],
          carolLast: carol.notices(auction).at(-1)?._tag,
          aliceLast: alice.notices(auction).at(-1)?._tag,
          prefixViolations: committedPrefixViolations(logs)
        }
      })
    )
    expect(result.created).toEqual({ _tag: "Created", auction: 1 })
    expect(result.joins).toEqual([
      { _tag: "Joined", auction: 1 },
      { _tag: "Joined", auction: 1 }
    ])
    expect(result.started).toEqual({ _tag: "Started", auction: 1 })
    expect(result.bobBid).toEqual({ _tag: "BidAccepted", auction: 1, round: 1, amount: 5_000 })
    expect(result.carolBid).toEqual({ _tag: "BidAccepted", auction: 1, round: 1, amount: 20 })
    // Exact: every one of the 1,000 bidders with its own amount, in the round and in the totals.
    expect(result.expected).toHaveLength(biddersTotal)
    expect([...result.roundBids].sort(([a], [b]) => (a ?? 0) - (b ?? 0))).toEqual(result.expected)
    expect([...result.totals].sort(([a], [b]) => (a ?? 0) - (b ?? 0))).toEqual(result.expected)
    expect(result.winner).toEqual({ winner: result.bob, amount: 5_000 })
    // Committed on all three servers: the entry crossed the network in parts.
    expect(result.completedEverywhere).toEqual([1, 1, 1])
    expect(result.prefixViolations).toEqual([])
    expect(oversize.get("Replicate") ?? 0).toBeGreaterThanOrEqual(2)
    expect(largest.get("Replicate") ?? 0).toBeGreaterThan(20 * DatagramBytesDefault)
    // And the notices that big reached the clients in parts too, in a gap-free stream:
    // started, round started, 1,000 bids received, round completed, won.
    expect(oversize.get("Notify") ?? 0).toBeGreaterThan(0)
    expect(result.bobStream).toBe(biddersTotal + 4)
    expect(result.bobCompleted).toEqual(result.roundBids)
    expect(result.bobLast).toEqual({ winner: result.bob, amount: 5_000, totals: result.totals })
    expect(result.carolLast).toBe("AuctionLostNotice")
    expect(result.aliceLast).toBe("AuctionClosedNotice")
  }, 300_000)
})
