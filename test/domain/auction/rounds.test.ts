/** DESIGN §3 "Rounds": sealed bids, one per bidder and round, exactly minRounds rounds, deadlines. */
import { describe, expect, it } from "@effect/vitest"
import { HashMap } from "effect"
import {
  AlreadyBid,
  AuctioneerCannotBid,
  AuctionNotFound,
  BidTooHigh,
  BidTooLow,
  decide,
  InvalidRequest,
  NotInAuction,
  WrongPhase,
  WrongRound
} from "../../../src/domain/auction/index.js"
import {
  accepted,
  aid,
  auctioneer,
  bid,
  bidder,
  expectRefused,
  money,
  runningWith,
  sid,
  step,
  steps,
  T0,
  waitingWith
} from "./helpers.js"

const MAX = Number.MAX_SAFE_INTEGER
const roundDeadline = (round: number, auction = 1) => ({
  _tag: "RoundDeadline" as const,
  auction: aid(auction),
  round
})

describe("bids: one sealed bid per bidder and round, at least minBid", () => {
  it("a bid emits BidPlaced with its amount (the log must hold it for passive replication)", () => {
    expect(accepted(decide(runningWith(2).state, bid(1, 1, 25), T0))).toStrictEqual([
      { _tag: "BidPlaced", auction: aid(1), round: 1, bidder: bidder(1), amount: 25 }
    ])
  })

  it("a bid of exactly minBid is accepted; one below is refused with BidTooLow, negative ones too", () => {
    accepted(decide(runningWith(2).state, bid(1, 1, 10), T0))
    expectRefused(
      decide(runningWith(2).state, bid(1, 1, 9), T0),
      new BidTooLow({ auction: aid(1), minBid: money(10), amount: 9 })
    )
    expectRefused(
      decide(runningWith(2).state, bid(1, 1, -50), T0),
      new BidTooLow({ auction: aid(1), minBid: money(10), amount: -50 })
    )
  })

  it("an amount that is not a whole number (1.5, NaN, Infinity) is refused with InvalidRequest", () => {
    for (const [amount, shown] of [
      [10.5, "10.5"],
      [Number.NaN, "NaN"],
      [Number.POSITIVE_INFINITY, "Infinity"]
    ] as const) {
      expectRefused(
        decide(runningWith(2).state, bid(1, 1, amount), T0),
        new InvalidRequest({ message: `amount must be a whole number of minor units, got ${shown}` })
      )
    }
  })

  it("a bid naming another round is refused with WrongRound: a late retry never lands in the next round", () => {
    const round2 = steps(runningWith(2), [bid(1, 1, 10), bid(2, 1, 10)])
    expectRefused(
      decide(round2.state, bid(1, 1, 10), T0),
      new WrongRound({ auction: aid(1), round: 1, currentRound: 2 })
    )
    expectRefused(
      decide(round2.state, bid(1, 3, 10), T0),
      new WrongRound({ auction: aid(1), round: 3, currentRound: 2 })
    )
  })

  it("a round that is not a whole number is refused with InvalidRequest", () => {
    expectRefused(
      decide(runningWith(2).state, bid(1, 1.5, 10), T0),
      new InvalidRequest({ message: "round must be a whole number from 1 to 100, got 1.5" })
    )
  })

  it("a second bid in the same round is refused with AlreadyBid, whatever its amount", () => {
    const world = step(runningWith(3), bid(1, 1, 10))
    expectRefused(decide(world.state, bid(1, 1, 99), T0), new AlreadyBid({ auction: aid(1), round: 1 }))
    expectRefused(decide(world.state, bid(1, 1, 10), T0), new AlreadyBid({ auction: aid(1), round: 1 }))
  })

  it("a bid that would take the bidder's total past MAX_SAFE_INTEGER is refused with BidTooHigh", () => {
    const world = steps(runningWith(2, { minBid: 1 }), [bid(1, 1, MAX - 5), bid(2, 1, 1)])
    expectRefused(
      decide(world.state, bid(1, 2, 6), T0),
      new BidTooHigh({ auction: aid(1), amount: 6, amountMax: money(5) })
    )
    expectRefused(
      decide(world.state, bid(1, 2, 1e300), T0),
      new BidTooHigh({ auction: aid(1), amount: 1e300, amountMax: money(5) })
    )
    expectRefused(
      decide(runningWith(2, { minBid: 1 }).state, bid(1, 1, MAX + 1), T0),
      new BidTooHigh({ auction: aid(1), amount: MAX + 1, amountMax: money(MAX) })
    )
    const events = accepted(decide(world.state, bid(1, 2, 5), T0))
    expect(events[0]).toStrictEqual({
      _tag: "BidPlaced",
      auction: aid(1),
      round: 2,
      bidder: bidder(1),
      amount: 5
    })
  })

  it("a session that did not join cannot bid (NotInAuction)", () => {
    expectRefused(
      decide(runningWith(2).state, bid(7, 1, 10), T0),
      new NotInAuction({ auction: aid(1), session: bidder(7) })
    )
  })

  it("the auctioneer cannot bid (AuctioneerCannotBid)", () => {
    expectRefused(
      decide(
        runningWith(2).state,
        { _tag: "PlaceBid", auction: aid(1), bidder: auctioneer, round: 1, amount: 10 },
        T0
      ),
      new AuctioneerCannotBid({ auction: aid(1), session: auctioneer })
    )
  })

  it("a bid on an unknown auction is refused with AuctionNotFound", () => {
    expectRefused(
      decide(runningWith(2).state, bid(1, 1, 10, 4), T0),
      new AuctionNotFound({ auction: aid(4) })
    )
  })

  it("a joined bidder cannot bid before the start (WrongPhase waiting) or after the close (WrongPhase closed)", () => {
    expectRefused(
      decide(waitingWith(2).state, bid(1, 1, 10), T0),
      new WrongPhase({ auction: aid(1), phase: "waiting" })
    )
    const closed = steps(runningWith(2, { minRounds: 1 }), [bid(1, 1, 10), bid(2, 1, 10)])
    expectRefused(
      decide(closed.state, bid(1, 1, 10), T0),
      new WrongPhase({ auction: aid(1), phase: "closed" })
    )
  })

  it("a bidder who left a waiting auction (session ended) is no longer in it (NotInAuction)", () => {
    const world = steps(waitingWith(3), [
      { _tag: "SessionEnded", session: bidder(3) },
      { _tag: "StartAuction", auction: aid(1), by: auctioneer }
    ])
    expectRefused(
      decide(world.state, bid(3, 1, 10), T0),
      new NotInAuction({ auction: aid(1), session: bidder(3) })
    )
  })
})

describe("round completion: when every bidder has bid, or at the deadline with missing bids as 0", () => {
  it("the last bid of a round completes it in the same decision: BidPlaced, RoundCompleted (join order), RoundStarted(next)", () => {
    const world = steps(runningWith(3, { roundTimeoutMs: 30_000 }), [bid(3, 1, 30), bid(1, 1, 10)])
    expect(accepted(decide(world.state, bid(2, 1, 20), T0 + 7))).toStrictEqual([
      { _tag: "BidPlaced", auction: aid(1), round: 1, bidder: bidder(2), amount: 20 },
      {
        _tag: "RoundCompleted",
        auction: aid(1),
        round: 1,
        bids: [
          { bidder: bidder(1), amount: 10 },
          { bidder: bidder(2), amount: 20 },
          { bidder: bidder(3), amount: 30 }
        ]
      },
      { _tag: "RoundStarted", auction: aid(1), round: 2, minBid: 10, deadlineMs: T0 + 7 + 30_000 }
    ])
  })

  it("at the round deadline missing bids count 0: RoundCompleted with 0, then the next round", () => {
    const world = step(runningWith(3), bid(2, 1, 15))
    expect(accepted(decide(world.state, roundDeadline(1), T0 + 60_000))).toStrictEqual([
      {
        _tag: "RoundCompleted",
        auction: aid(1),
        round: 1,
        bids: [
          { bidder: bidder(1), amount: 0 },
          { bidder: bidder(2), amount: 15 },
          { bidder: bidder(3), amount: 0 }
        ]
      },
      { _tag: "RoundStarted", auction: aid(1), round: 2, minBid: 10, deadlineMs: T0 + 120_000 }
    ])
  })

  it("a round deadline for a past or future round is refused with WrongRound (a late timer is harmless)", () => {
    const round2 = step(runningWith(2), roundDeadline(1))
    expectRefused(
      decide(round2.state, roundDeadline(1), T0),
      new WrongRound({ auction: aid(1), round: 1, currentRound: 2 })
    )
    expectRefused(
      decide(round2.state, roundDeadline(3), T0),
      new WrongRound({ auction: aid(1), round: 3, currentRound: 2 })
    )
  })

  it("a round deadline of a waiting or closed auction is refused with WrongPhase; an unknown one with AuctionNotFound", () => {
    expectRefused(
      decide(waitingWith(2).state, roundDeadline(1), T0),
      new WrongPhase({ auction: aid(1), phase: "waiting" })
    )
    const closed = step(runningWith(2, { minRounds: 1 }), roundDeadline(1))
    expectRefused(
      decide(closed.state, roundDeadline(1), T0),
      new WrongPhase({ auction: aid(1), phase: "closed" })
    )
    expectRefused(decide(closed.state, roundDeadline(1, 5), T0), new AuctionNotFound({ auction: aid(5) }))
  })
})

describe("exactly minRounds rounds", () => {
  it.each([1, 2, 5])(
    "an auction of minRounds %i plays exactly that many rounds, then closes",
    (minRounds) => {
      let world = runningWith(2, { minRounds })
      for (let round = 1; round <= minRounds; round++) {
        world = steps(world, [bid(1, round, 10 + round), bid(2, round, 10)])
      }
      const tags = world.log.map((e) => e._tag)
      expect(tags.filter((t) => t === "RoundStarted")).toHaveLength(minRounds)
      expect(tags.filter((t) => t === "RoundCompleted")).toHaveLength(minRounds)
      expect(tags.at(-1)).toBe("AuctionClosed")
      expect(HashMap.unsafeGet(world.state.history, aid(1)).phase).toBe("closed")
      expectRefused(
        decide(world.state, bid(1, minRounds + 1, 10), T0),
        new WrongPhase({ auction: aid(1), phase: "closed" })
      )
    }
  )

  it("the last round's completion emits RoundCompleted then AuctionClosed, no further RoundStarted", () => {
    const world = steps(runningWith(2, { minRounds: 2 }), [bid(1, 1, 10), bid(2, 1, 40), bid(1, 2, 50)])
    expect(accepted(decide(world.state, bid(2, 2, 10), T0))).toStrictEqual([
      { _tag: "BidPlaced", auction: aid(1), round: 2, bidder: bidder(2), amount: 10 },
      {
        _tag: "RoundCompleted",
        auction: aid(1),
        round: 2,
        bids: [
          { bidder: bidder(1), amount: 50 },
          { bidder: bidder(2), amount: 10 }
        ]
      },
      {
        _tag: "AuctionClosed",
        auction: aid(1),
        winner: bidder(1),
        amount: 60,
        totals: [
          { bidder: bidder(1), amount: 60 },
          { bidder: bidder(2), amount: 50 }
        ]
      }
    ])
  })

  it("several auctions run side by side without interfering", () => {
    const world = steps(runningWith(2), [
      {
        _tag: "CreateAuction",
        auctioneer: sid(2),
        item: "Lamp",
        minBid: 5,
        minRounds: 1,
        minBidders: 2,
        roundTimeoutMs: 1000,
        startTimeoutMs: 1000
      },
      { _tag: "JoinAuction", auction: aid(2), bidder: bidder(1) },
      { _tag: "JoinAuction", auction: aid(2), bidder: bidder(2) },
      { _tag: "StartAuction", auction: aid(2), by: sid(2) },
      bid(1, 1, 10, 1),
      bid(1, 1, 7, 2),
      bid(2, 1, 6, 2)
    ])
    expect(HashMap.unsafeGet(world.state.history, aid(2)).phase).toBe("closed")
    const first = HashMap.unsafeGet(world.state.open, aid(1))
    expect(first.phase === "running" && HashMap.size(first.roundBids)).toBe(1)
  })
})
