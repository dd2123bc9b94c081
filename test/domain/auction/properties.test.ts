/**
 * DESIGN §8 `test/domain`: properties of the auction state machine over
 * random, plausible command sequences (see generators.ts).
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck, HashMap, Option, Schema } from "effect"
import {
  type Auction,
  type AuctionEvent,
  AuctionEvents,
  type AuctionsState,
  decodeState,
  EndedAuction,
  encodeState,
  evolveAll,
  initialState,
  isBidder,
  type Notice,
  noticeFor,
  notificationsFor,
  recipientsOf,
  waitingBidders
} from "../../../src/domain/auction/index.js"
import type { AuctionId, SessionId } from "../../../src/domain/Ids.js"
import { plans, run } from "./generators.js"
import { sid, stateJson } from "./helpers.js"

const numRuns = 80
const options = { fastCheck: { numRuns } }

const allAuctions = (state: AuctionsState): ReadonlyArray<Auction> => [
  ...HashMap.values(state.open),
  ...HashMap.values(state.history)
]

/** Everyone who could have a stream: the generator's sessions, the auctioneer and every bidder. */
const participants = (auction: Auction): ReadonlyArray<SessionId> => {
  const bidders = auction.phase === "waiting" ? waitingBidders(auction) : auction.bidders
  return [...new Set([auction.auctioneer, ...bidders, ...[1, 2, 3, 4, 5, 6].map(sid)])]
}

/**
 * The winner recomputed from the log alone, by sorting (not the rules' scan):
 * total descending, then the position of the round-1 bid in the log (none =
 * last), then join order.
 */
const expectedResult = (log: ReadonlyArray<AuctionEvent>, auction: AuctionId) => {
  const started = log.find((e) => e._tag === "AuctionStarted" && e.auction === auction)
  if (started?._tag !== "AuctionStarted") throw new Error(`auction ${auction} closed without starting`)
  const totals = new Map<number, number>(started.bidders.map((b) => [b, 0]))
  const firstBid = new Map<number, number>()
  log.forEach((e, position) => {
    if (e._tag !== "BidPlaced" || e.auction !== auction) return
    totals.set(e.bidder, (totals.get(e.bidder) ?? 0) + e.amount)
    if (e.round === 1) firstBid.set(e.bidder, position)
  })
  const ranked = started.bidders
    .map((bidder, joinOrder) => ({
      bidder,
      total: totals.get(bidder) ?? 0,
      first: firstBid.get(bidder) ?? Number.POSITIVE_INFINITY,
      joinOrder
    }))
    .sort((a, b) => b.total - a.total || a.first - b.first || a.joinOrder - b.joinOrder)
  const best = ranked[0]
  if (best === undefined) throw new Error(`auction ${auction} has no bidders`)
  return {
    winner: best.bidder,
    amount: best.total,
    totals: started.bidders.map((bidder) => ({ bidder, amount: totals.get(bidder) ?? 0 }))
  }
}

/** Every number anywhere in a JSON value. */
const numbersIn = (value: unknown, out: Array<number> = []): Array<number> => {
  if (typeof value === "number") out.push(value)
  else if (Array.isArray(value)) for (const item of value) numbersIn(item, out)
  else if (value !== null && typeof value === "object")
    for (const item of Object.values(value)) numbersIn(item, out)
  return out
}

const revealsAmounts = (notice: Notice): boolean => /"(amount|bids|totals)"/.test(JSON.stringify(notice))

describe("properties of decide and evolve", () => {
  it.prop(
    "replaying every event from the initial state reproduces the state reached step by step",
    [plans],
    ([ps]) => {
      const trace = run(ps)
      expect(stateJson(evolveAll(initialState, trace.log))).toBe(stateJson(trace.state))
    },
    options
  )

  it.prop(
    "deciding never changes the state: a refused command leaves it exactly as before (compared as JSON)",
    [plans],
    ([ps]) => {
      const trace = run(ps, { checkUnchanged: true })
      expect(trace.problems).toStrictEqual([])
    },
    { fastCheck: { numRuns: 40 } }
  )

  it.prop(
    "the winner of every closed auction is the arg-max of the totals with the tie rules, recomputed from the log",
    [plans],
    ([ps]) => {
      const { log } = run(ps)
      for (const event of log) {
        if (event._tag !== "AuctionClosed") continue
        expect({ winner: event.winner, amount: event.amount, totals: event.totals }).toStrictEqual(
          expectedResult(log, event.auction)
        )
      }
    },
    options
  )

  it.prop(
    "every round reveals every bidder's bid of that round, 0 for a missing one, and an auction plays exactly minRounds rounds",
    [plans],
    ([ps]) => {
      const { log, state } = run(ps)
      for (const event of log) {
        if (event._tag !== "RoundCompleted") continue
        const started = log.find((e) => e._tag === "AuctionStarted" && e.auction === event.auction)
        if (started?._tag !== "AuctionStarted") throw new Error("a round completed before the start")
        const bids = new Map(
          log
            .filter((e) => e._tag === "BidPlaced" && e.auction === event.auction && e.round === event.round)
            .map((e) => (e._tag === "BidPlaced" ? [e.bidder, e.amount] : [0, 0]))
        )
        expect(event.bids).toStrictEqual(
          started.bidders.map((bidder) => ({ bidder, amount: bids.get(bidder) ?? 0 }))
        )
      }
      for (const auction of allAuctions(state)) {
        const tags = Array.from(auction.events, (e) => e._tag)
        const rounds = tags.filter((t) => t === "RoundCompleted").length
        expect(tags.filter((t) => t === "ReadyCheck").length).toBeLessThanOrEqual(1)
        if (auction.phase === "closed") expect(rounds).toBe(auction.minRounds)
        if (auction.phase === "running") {
          expect(auction.round).toBeGreaterThanOrEqual(1)
          expect(auction.round).toBeLessThanOrEqual(auction.minRounds)
          expect(rounds).toBe(auction.round - 1)
          // A round in which everyone has bid has completed in the same decision.
          expect(HashMap.size(auction.roundBids)).toBeLessThan(auction.bidders.length)
        }
      }
    },
    options
  )

  it.prop(
    "sealed bids: no notification tells an amount of a round before that round's RoundCompleted",
    [plans],
    ([ps]) => {
      const { state } = run(ps)
      for (const auction of allAuctions(state)) {
        for (const session of participants(auction)) {
          let completed = 0
          for (const { notice } of notificationsFor(auction, session, 1).notifications) {
            switch (notice._tag) {
              case "BidReceivedNotice":
                expect(Object.keys(notice).sort()).toStrictEqual(["_tag", "auction", "bidder", "round"])
                expect(notice.round).toBe(completed + 1)
                break
              case "RoundCompletedNotice":
                // It reveals its own round only, and rounds complete in order.
                expect(notice.round).toBe(completed + 1)
                completed = notice.round
                break
              case "AuctionWonNotice":
              case "AuctionLostNotice":
              case "AuctionClosedNotice":
                expect(completed).toBe(auction.minRounds)
                break
              default:
                expect(revealsAmounts(notice)).toBe(false)
            }
          }
        }
      }
    },
    options
  )

  it.prop(
    "each participant's stream is exactly the auction's events addressed to it, numbered 1, 2, 3 … from any fromSeq",
    [plans, FastCheck.integer({ min: 1, max: 40 })],
    ([ps, fromSeq]) => {
      const { state } = run(ps)
      for (const auction of allAuctions(state)) {
        for (const session of participants(auction)) {
          const addressed = Array.from(auction.events).filter((e) =>
            recipientsOf(auction, e).includes(session)
          )
          const expected = addressed.map((event, k) => ({
            seq: k + 1,
            notice: Option.getOrThrow(noticeFor(auction, event, session))
          }))
          const stream = notificationsFor(auction, session, fromSeq)
          expect(stream.length).toBe(expected.length)
          expect(stream.notifications).toStrictEqual(expected.slice(fromSeq - 1))
          const isParticipant = session === auction.auctioneer || isBidder(auction, session)
          if (!isParticipant) expect(stream.length).toBe(0)
        }
      }
    },
    options
  )

  it.prop(
    "every Money value (and every number) in the state and the events is a non-negative safe integer",
    [plans],
    ([ps]) => {
      const { log, state } = run(ps)
      const json = JSON.parse(JSON.stringify({ state: encodeState(state), log }))
      for (const n of numbersIn(json)) {
        expect(Number.isSafeInteger(n) && n >= 0, `${n} is not a non-negative safe integer`).toBe(true)
      }
      // The schemas (Money is a branded non-negative safe integer) accept every event.
      expect(Either.isRight(Schema.decodeUnknownEither(AuctionEvents)(json.log))).toBe(true)
    },
    options
  )

  it.prop(
    "the state round-trips through JSON, and encoding an event returns it unchanged",
    [plans],
    ([ps]) => {
      const { log, state } = run(ps)
      const text = JSON.stringify(encodeState(state))
      const decoded = decodeState(JSON.parse(text))
      if (Either.isLeft(decoded)) expect.fail(String(decoded.left))
      expect(stateJson(decoded.right)).toBe(text)
      // The state's codec hands events out as they are (ChunkOfPlain): valid only while events need no transformation.
      expect(Schema.encodeSync(AuctionEvents)(log)).toStrictEqual(log)
    },
    options
  )
  it.prop(
    "an ended auction is encoded once: later encodings reuse it and equal the schema's own",
    [plans],
    ([ps]) => {
      const { state } = run(ps)
      const first = encodeState(state)
      const again = encodeState(state)
      expect(JSON.stringify(again)).toBe(JSON.stringify(first))
      const ended = [...HashMap.values(state.history)].sort((a, b) => a.auction - b.auction)
      expect(first.history.map(([, encoded]) => encoded)).toStrictEqual(
        ended.map((auction) => Schema.encodeSync(EndedAuction)(auction))
      )
      for (const [i, [, encoded]] of first.history.entries()) expect(again.history[i]?.[1]).toBe(encoded)
    },
    options
  )
})

describe("the generator reaches every rule", () => {
  it("over a fixed sample, every event and every refusal but AuctionFull occurs, and auctions close", () => {
    const events = new Set<string>()
    const refusals = new Set<string>()
    let closed = 0
    for (const ps of FastCheck.sample(plans, { numRuns: 100, seed: 42 })) {
      const trace = run(ps)
      for (const e of trace.log) events.add(e._tag)
      for (const e of trace.refusals) refusals.add(e._tag)
      closed += trace.log.filter((e) => e._tag === "AuctionClosed").length
    }
    expect([...events].sort()).toStrictEqual(
      [
        "AuctionCancelled",
        "AuctionClosed",
        "AuctionCreated",
        "AuctionPurged",
        "AuctionStarted",
        "BidPlaced",
        "BidderJoined",
        "BidderLeft",
        "ReadyCheck",
        "RoundCompleted",
        "RoundStarted"
      ].sort()
    )
    expect([...refusals].sort()).toStrictEqual(
      [
        "AlreadyBid",
        "AlreadyJoined",
        "AuctionNotFound",
        "AuctioneerCannotBid",
        "BidTooHigh",
        "BidTooLow",
        "InvalidRequest",
        "NotAuctioneer",
        "NotEnoughBidders",
        "NotInAuction",
        "WrongPhase",
        "WrongRound"
      ].sort()
    )
    expect(closed).toBeGreaterThan(20)
  })
})
