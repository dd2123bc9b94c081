import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, HashMap } from "effect"
import { agoraMachine } from "../../src/domain/agora/Agora.js"
import { DatagramBytesDefault, jsonBytes } from "../../src/domain/Envelope.js"
import type { AuctionId } from "../../src/domain/Ids.js"
import type { ReplyResult } from "../../src/domain/Messages.js"
import { defaultAuctionServerConfig, makeAuctionServer } from "../../src/services/AuctionServer.js"
import { makeRawClient } from "../simulation/RawClient.js"
import { runScenario } from "../simulation/run.js"
import { makeSimCluster } from "../simulation/SimCluster.js"

const ids = ["s1", "s2", "s3"]
const auction = 1 as AuctionId

/** Three auction servers started together, their leader elected. */
const auctionCluster = (server: Partial<typeof defaultAuctionServerConfig> = {}) =>
  Effect.gen(function* () {
    const cluster = yield* makeSimCluster({
      ids,
      machine: agoraMachine,
      config: { expect: 3 },
      makeServer: (context) =>
        makeAuctionServer({
          ...context,
          cluster: context.config,
          server: { ...defaultAuctionServerConfig, roundTimeoutMs: 5_000, startTimeoutMs: 5_000, ...server }
        })
    })
    yield* Effect.forEach(ids, (id) => cluster.start(id), { discard: true })
    yield* cluster.awaitLeader(10_000)
    return cluster
  })

/** An auctioneer and two bidders, connected, with auction 1 created (2 rounds, min bid 10) and joined. */
const auctionWithBidders = Effect.gen(function* () {
  const auctioneer = yield* makeRawClient("alice")
  const bob = yield* makeRawClient("bob")
  const carol = yield* makeRawClient("carol")
  for (const client of [auctioneer, bob, carol]) yield* client.connect
  const created = yield* auctioneer.request({
    _tag: "Create",
    item: "Vase",
    minBid: 10,
    minRounds: 2,
    minBidders: 2
  })
  const joins = [
    yield* bob.request({ _tag: "Join", auction }),
    yield* carol.request({ _tag: "Join", auction })
  ]
  return { auctioneer, bob, carol, created, joins }
})

const tagsOf = (notices: ReadonlyArray<{ readonly _tag: string }>) => notices.map((n) => n._tag)

describe("Auction service on the cluster (DESIGN §3, §5)", () => {
  it("a full auction: exact replies, exact notifications per participant, the right winner", () => {
    const result = runScenario(
      Effect.gen(function* () {
        yield* auctionCluster()
        const { auctioneer, bob, carol, created, joins } = yield* auctionWithBidders
        const started = yield* auctioneer.request({ _tag: "Start", auction })
        const bids = [
          yield* bob.request({ _tag: "Bid", auction, round: 1, amount: 20 }),
          yield* carol.request({ _tag: "Bid", auction, round: 1, amount: 15 }),
          yield* bob.request({ _tag: "Bid", auction, round: 2, amount: 10 }),
          yield* carol.request({ _tag: "Bid", auction, round: 2, amount: 30 })
        ]
        yield* Effect.sleep(1_000)
        return {
          created,
          joins,
          started,
          bids,
          auctioneer: tagsOf(auctioneer.notices(auction)),
          bob: bob.notices(auction),
          carol: carol.notices(auction).at(-1),
          bobSession: bob.session(),
          carolSession: carol.session()
        }
      })
    )
    expect(result.created).toEqual({ _tag: "Created", auction: 1 })
    expect(result.joins).toEqual([
      { _tag: "Joined", auction: 1 },
      { _tag: "Joined", auction: 1 }
    ])
    expect(result.started).toEqual({ _tag: "Started", auction: 1 })
    expect(result.bids.map((b) => (typeof b === "string" ? b : b._tag))).toEqual([
      "BidAccepted",
      "BidAccepted",
      "BidAccepted",
      "BidAccepted"
    ])
    expect(result.auctioneer).toEqual([
      "ReadyCheckNotice",
      "AuctionStartedNotice",
      "RoundStartedNotice",
      "BidReceivedNotice",
      "BidReceivedNotice",
      "RoundCompletedNotice",
      "RoundStartedNotice",
      "BidReceivedNotice",
      "BidReceivedNotice",
      "RoundCompletedNotice",
      "AuctionClosedNotice"
    ])
    expect(tagsOf(result.bob).at(-1)).toBe("AuctionLostNotice")
    expect(result.carol).toMatchObject({
      _tag: "AuctionWonNotice",
      winner: result.carolSession,
      amount: 45,
      totals: [
        { bidder: result.bobSession, amount: 30 },
        { bidder: result.carolSession, amount: 45 }
      ]
    })
  })

  /** Auction 1 run to its close (carol wins with 60) on a cluster whose retention is 3 s. */
  const closedWithRetention = Effect.gen(function* () {
    const cluster = yield* auctionCluster({ retentionMs: 3_000 })
    const { auctioneer, bob, carol } = yield* auctionWithBidders
    yield* auctioneer.request({ _tag: "Start", auction })
    for (const round of [1, 2]) {
      yield* bob.request({ _tag: "Bid", auction, round, amount: 20 })
      yield* carol.request({ _tag: "Bid", auction, round, amount: 30 })
    }
    return { cluster, carol }
  })

  it("a finished auction is purged from the replicated state after its retention period, and every store keeps it for good", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const { cluster, carol } = yield* closedWithRetention
        yield* Effect.sleep(500)
        const listed = (yield* cluster.cluster((yield* cluster.leaders)[0]?.id ?? "")?.read ??
          Effect.die("no leader")).auctions
        const beforeRetention = HashMap.has(listed.history, auction)
        yield* Effect.sleep(5_000)
        const after = (yield* cluster.cluster((yield* cluster.leaders)[0]?.id ?? "")?.read ??
          Effect.die("no leader")).auctions
        return {
          beforeRetention,
          afterRetention: HashMap.has(after.history, auction),
          kept: ids.map((id) => cluster.store(id).ended.get(auction)),
          carol: carol.session()
        }
      })
    )
    expect(result.beforeRetention).toBe(true)
    expect(result.afterRetention).toBe(false)
    for (const record of result.kept) {
      expect(record).toMatchObject({
        auction: 1,
        item: "Vase",
        status: "closed",
        winner: result.carol,
        amount: 60
      })
    }
  })

  it("after a failover a finished auction's retention starts again in full under the new leader, then it is purged", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const { cluster } = yield* closedWithRetention
        const retained = Effect.gen(function* () {
          const leader = (yield* cluster.leaders)[0]?.id ?? ""
          const state = yield* cluster.cluster(leader)?.read ?? Effect.die("no leader")
          return HashMap.has(state.auctions.history, auction)
        })
        yield* Effect.sleep(1_000)
        yield* cluster.crash((yield* cluster.leaders)[0]?.id ?? "none")
        // Past the first leader's purge time (3 s after the close), within the new leader's.
        yield* Effect.sleep(2_500)
        const pastFirstRetention = yield* retained
        yield* Effect.sleep(3_000)
        return { pastFirstRetention, afterNewRetention: yield* retained }
      })
    )
    expect(result).toStrictEqual({ pastFirstRetention: true, afterNewRetention: false })
  })

  it("the leader killed mid-round: the round completes, no acknowledged bid is lost, the winner is right", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const cluster = yield* auctionCluster()
        const { auctioneer, bob, carol } = yield* auctionWithBidders
        yield* auctioneer.request({ _tag: "Start", auction })
        const bobBid = yield* bob.request({ _tag: "Bid", auction, round: 1, amount: 20 })
        const leader = (yield* cluster.leaders)[0]?.id ?? "none"
        yield* cluster.crash(leader)
        const carolBid = yield* carol.request({ _tag: "Bid", auction, round: 1, amount: 15 })
        yield* bob.request({ _tag: "Bid", auction, round: 2, amount: 10 })
        yield* carol.request({ _tag: "Bid", auction, round: 2, amount: 30 })
        yield* Effect.sleep(2_000)
        const roundOne = bob.notices(auction).find((n) => n._tag === "RoundCompletedNotice")
        return {
          bobBid,
          carolBid,
          roundOne,
          last: carol.notices(auction).at(-1)?._tag,
          bob: bob.session(),
          carol: carol.session()
        }
      })
    )
    expect(result.bobBid).toEqual({ _tag: "BidAccepted", auction: 1, round: 1, amount: 20 })
    expect(result.carolBid).toEqual({ _tag: "BidAccepted", auction: 1, round: 1, amount: 15 })
    expect(result.roundOne).toMatchObject({
      round: 1,
      bids: [
        { bidder: result.bob, amount: 20 },
        { bidder: result.carol, amount: 15 }
      ]
    })
    expect(result.last).toBe("AuctionWonNotice")
  })

  it("a bid received waits at most noticeLingerMs for company, and goes out with the round's end when that comes first", () => {
    /** When carol heard of bob's round-1 bid, after bob's answer; and whether it came with the round's end. */
    const lingered = (noticeLingerMs: number, carolBidsAfterMs: number | null) =>
      runScenario(
        Effect.gen(function* () {
          yield* auctionCluster({ noticeLingerMs })
          const { auctioneer, bob, carol } = yield* auctionWithBidders
          yield* auctioneer.request({ _tag: "Start", auction })
          yield* bob.request({ _tag: "Bid", auction, round: 1, amount: 20 })
          const answeredMs = yield* Clock.currentTimeMillis
          if (carolBidsAfterMs !== null) {
            yield* Effect.sleep(carolBidsAfterMs)
            yield* carol.request({ _tag: "Bid", auction, round: 1, amount: 15 })
          }
          yield* Effect.sleep(1_000)
          const arrivals = auctioneer.arrivals(auction)
          const heard = arrivals.find(
            (a) => a.notice._tag === "BidReceivedNotice" && a.notice.bidder === bob.session()
          )
          const roundEnd = arrivals.find((a) => a.notice._tag === "RoundCompletedNotice")
          return {
            afterAnswerMs: (heard?.atMs ?? Number.NaN) - answeredMs,
            withRoundEnd: heard !== undefined && roundEnd !== undefined && heard.atMs === roundEnd.atMs
          }
        })
      )
    // Nothing else happens: it waits the linger (the answer and the notice both cross one link).
    const alone = lingered(100, null)
    expect(alone.afterAnswerMs).toBeGreaterThanOrEqual(80)
    expect(alone.afterAnswerMs).toBeLessThanOrEqual(120)
    // The round ends first: the bid received goes with it, sooner than the linger.
    const company = lingered(100, 20)
    expect(company.withRoundEnd).toBe(true)
    expect(company.afterAnswerMs).toBeLessThan(80)
    // No linger: at once.
    const immediate = lingered(0, 20)
    expect(immediate.withRoundEnd).toBe(false)
    expect(immediate.afterAnswerMs).toBeLessThan(20)
  })

  it("a retried request (same session and request id) is applied once and gets the first answer", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const cluster = yield* auctionCluster()
        const { auctioneer, bob } = yield* auctionWithBidders
        yield* auctioneer.request({ _tag: "Start", auction })
        const first = yield* bob.request({ _tag: "Bid", auction, round: 1, amount: 20 })
        const id = bob.lastRequestId()
        const retry = yield* bob.request({ _tag: "Bid", auction, round: 1, amount: 99 }, id)
        const second = yield* bob.request({ _tag: "Bid", auction, round: 1, amount: 25 })
        const log = (yield* cluster.committedLogs).get((yield* cluster.leaders)[0]?.id ?? "") ?? []
        const bids = log.flatMap((entry) =>
          entry.body._tag === "App"
            ? (entry.body.data as Array<{ _tag: string; event?: { _tag: string } }>).filter(
                (e) => e.event?._tag === "BidPlaced"
              )
            : []
        )
        return { first, retry, second, bidsPlaced: bids.length }
      })
    )
    expect(result.retry).toEqual(result.first)
    expect(result.second).toMatchObject({ _tag: "Failed", code: "AlreadyBid" })
    expect(result.bidsPlaced).toBe(1)
  })

  it("a bidder silent at the round deadline bids 0 for that round", () => {
    const roundOne = runScenario(
      Effect.gen(function* () {
        yield* auctionCluster({ roundTimeoutMs: 3_000 })
        const { auctioneer, bob, carol } = yield* auctionWithBidders
        yield* auctioneer.request({ _tag: "Start", auction })
        yield* bob.request({ _tag: "Bid", auction, round: 1, amount: 20 })
        yield* Effect.sleep(4_000)
        return {
          notice: carol.notices(auction).find((n) => n._tag === "RoundCompletedNotice"),
          bob: bob.session(),
          carol: carol.session()
        }
      })
    )
    expect(roundOne.notice).toMatchObject({
      round: 1,
      bids: [
        { bidder: roundOne.bob, amount: 20 },
        { bidder: roundOne.carol, amount: 0 }
      ]
    })
  })

  it("a request with a forged token is refused (BadToken) and changes nothing", () => {
    const result = runScenario(
      Effect.gen(function* () {
        yield* auctionCluster()
        const alice = yield* makeRawClient("alice")
        const mallory = yield* makeRawClient("mallory")
        yield* alice.connect
        yield* mallory.connect
        const forged = yield* mallory.forge(
          { _tag: "Create", item: "Fake", minBid: 1, minRounds: 1, minBidders: 2 },
          alice.session(),
          "not-alices-token"
        )
        const list = yield* alice.request({ _tag: "List", page: 0 })
        return { forged, list }
      })
    )
    expect(result.forged).toMatchObject({ _tag: "Failed", code: "BadToken" })
    expect(result.list).toEqual({ _tag: "Auctions", auctions: [], nextPage: null })
  })

  it("the auction list comes in pages, each within the datagram limit in bytes (non-ASCII items too), together every open auction once (DESIGN §4)", () => {
    const result = runScenario(
      Effect.gen(function* () {
        yield* auctionCluster()
        const alice = yield* makeRawClient("alice")
        yield* alice.connect
        // 150 × "€" is 150 chars but 450 bytes: pages counted in chars would overflow the datagram.
        for (let i = 1; i <= 30; i++) {
          yield* alice.request({
            _tag: "Create",
            item: `${i} ${"€".repeat(150)}`,
            minBid: 1,
            minRounds: 1,
            minBidders: 2
          })
        }
        const pages: Array<{ readonly bytes: number; readonly auctions: ReadonlyArray<number> }> = []
        let page: number | null = 0
        while (page !== null && pages.length < 100) {
          const answer: ReplyResult | "timeout" = yield* alice.request({ _tag: "List", page })
          if (answer === "timeout" || answer._tag !== "Auctions") return { answer }
          pages.push({
            bytes: jsonBytes({ _tag: "Reply", requestId: 1_000_000, result: answer }),
            auctions: answer.auctions.map((row) => row.auction)
          })
          page = answer.nextPage
        }
        return { pages }
      })
    )
    if (!("pages" in result)) throw new Error(`list failed: ${JSON.stringify(result)}`)
    expect(result.pages.flatMap((p) => p.auctions)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
    expect(result.pages.length).toBeGreaterThan(1)
    // Each reply leaves room for the envelope and MAC around it (with ids like these, under 250 bytes).
    for (const { bytes } of result.pages) expect(bytes).toBeLessThanOrEqual(DatagramBytesDefault - 250)
  })
})
