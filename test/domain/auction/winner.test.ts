/** DESIGN §3 "Winner": highest total; tie → first committed round-1 bid; then earliest join. */
import { describe, expect, it } from "@effect/vitest"
import type { AuctionEvent } from "../../../src/domain/auction/index.js"
import { aid, bid, bidder, runningWith, steps } from "./helpers.js"

const roundDeadline = (round: number) => ({ _tag: "RoundDeadline" as const, auction: aid(1), round })
const closedEvent = (log: ReadonlyArray<AuctionEvent>) => {
  const last = log.at(-1)
  if (last?._tag !== "AuctionClosed") throw new Error(`the auction did not close: ${JSON.stringify(last)}`)
  return last
}

describe("winner: the highest cumulative total over all rounds", () => {
  it("the highest total wins, even when another bidder won more rounds", () => {
    const { log } = steps(runningWith(3, { minRounds: 3 }), [
      bid(1, 1, 20),
      bid(2, 1, 10),
      bid(3, 1, 11),
      bid(1, 2, 20),
      bid(2, 2, 90),
      bid(3, 2, 11),
      bid(1, 3, 20),
      bid(2, 3, 10),
      bid(3, 3, 11)
    ])
    expect(closedEvent(log)).toStrictEqual({
      _tag: "AuctionClosed",
      auction: aid(1),
      winner: bidder(2),
      amount: 110,
      totals: [
        { bidder: bidder(1), amount: 60 },
        { bidder: bidder(2), amount: 110 },
        { bidder: bidder(3), amount: 33 }
      ]
    })
  })
})

describe("winner: ties", () => {
  it("equal totals: the bidder whose round-1 bid was committed first wins, not the earliest joiner", () => {
    const { log } = steps(runningWith(2, { minRounds: 2 }), [
      bid(2, 1, 30), // committed first
      bid(1, 1, 10),
      bid(1, 2, 30),
      bid(2, 2, 10)
    ])
    expect(closedEvent(log)).toMatchObject({ winner: bidder(2), amount: 40 })
  })

  it("equal totals: a bidder without a round-1 bid comes after every bidder who has one", () => {
    const { log } = steps(runningWith(3, { minRounds: 2 }), [
      bid(3, 1, 10), // bidders 1 and 2 miss round 1
      roundDeadline(1),
      bid(1, 2, 50),
      bid(2, 2, 50),
      bid(3, 2, 40)
    ])
    const closed = closedEvent(log)
    expect(closed.totals.map((t) => t.amount)).toStrictEqual([50, 50, 50])
    expect(closed.winner).toBe(bidder(3))
  })

  it("equal totals and no round-1 bid to tell them apart: the earliest join wins", () => {
    const { log } = steps(runningWith(3, { minRounds: 2 }), [
      roundDeadline(1), // nobody bid in round 1
      bid(3, 2, 20),
      bid(2, 2, 20),
      bid(1, 2, 10)
    ])
    expect(closedEvent(log)).toMatchObject({ winner: bidder(2), amount: 20 })
  })

  it("the round-1 order counts, not the order of later rounds", () => {
    const { log } = steps(runningWith(2, { minRounds: 2 }), [
      bid(1, 1, 10), // bidder 1 first in round 1
      bid(2, 1, 10),
      bid(2, 2, 10), // bidder 2 first in round 2
      bid(1, 2, 10)
    ])
    expect(closedEvent(log)).toMatchObject({ winner: bidder(1), amount: 20 })
  })

  it("nobody bid at all: every total is 0 and the earliest joiner is the winner at 0 (the rule as written)", () => {
    const { log } = steps(runningWith(2, { minRounds: 1 }), [roundDeadline(1)])
    expect(closedEvent(log)).toStrictEqual({
      _tag: "AuctionClosed",
      auction: aid(1),
      winner: bidder(1),
      amount: 0,
      totals: [
        { bidder: bidder(1), amount: 0 },
        { bidder: bidder(2), amount: 0 }
      ]
    })
  })
})
