/** DESIGN §3 "Join" and "Start": joining, the ready check, start, cancel, start timeout, expired sessions. */
import { describe, expect, it } from "@effect/vitest"
import { HashMap, Option } from "effect"
import {
  AlreadyJoined,
  AuctioneerCannotBid,
  AuctionFull,
  AuctionNotFound,
  bidderCount,
  decide,
  NotAuctioneer,
  NotEnoughBidders,
  WrongPhase
} from "../../../src/domain/auction/index.js"
import {
  accepted,
  aid,
  auctioneer,
  bidder,
  createCommand,
  emptyWorld,
  expectRefused,
  runningWith,
  sid,
  step,
  steps,
  T0,
  waitingWith
} from "./helpers.js"

const join = (k: number, auction = 1) => ({
  _tag: "JoinAuction" as const,
  auction: aid(auction),
  bidder: bidder(k)
})
const start = (auction = 1, by = auctioneer) => ({ _tag: "StartAuction" as const, auction: aid(auction), by })
const cancel = (auction = 1, by = auctioneer) => ({
  _tag: "CancelAuction" as const,
  auction: aid(auction),
  by
})
const startDeadline = (auction = 1) => ({ _tag: "StartDeadline" as const, auction: aid(auction) })
const sessionEnded = (session: number) => ({ _tag: "SessionEnded" as const, session: sid(session) })

describe("join: only while waiting; the auctioneer is not a bidder", () => {
  it("join emits BidderJoined", () => {
    const { state } = waitingWith(0)
    expect(accepted(decide(state, join(1), T0))).toStrictEqual([
      { _tag: "BidderJoined", auction: aid(1), bidder: bidder(1) }
    ])
  })

  it("join of an unknown auction is refused with AuctionNotFound", () => {
    expectRefused(decide(waitingWith(0).state, join(1, 7), T0), new AuctionNotFound({ auction: aid(7) }))
  })

  it("the auctioneer may not join its own auction (AuctioneerCannotBid)", () => {
    expectRefused(
      decide(waitingWith(0).state, { _tag: "JoinAuction", auction: aid(1), bidder: auctioneer }, T0),
      new AuctioneerCannotBid({ auction: aid(1), session: auctioneer })
    )
  })

  it("joining twice is refused with AlreadyJoined, also once the auction runs", () => {
    expectRefused(
      decide(waitingWith(1).state, join(1), T0),
      new AlreadyJoined({ auction: aid(1), bidder: bidder(1) })
    )
    expectRefused(
      decide(runningWith(2).state, join(1), T0),
      new AlreadyJoined({ auction: aid(1), bidder: bidder(1) })
    )
  })

  it("a newcomer cannot join a running, closed or cancelled auction (WrongPhase)", () => {
    expectRefused(
      decide(runningWith(2).state, join(5), T0),
      new WrongPhase({ auction: aid(1), phase: "running" })
    )
    const cancelled = step(waitingWith(1), cancel())
    expectRefused(
      decide(cancelled.state, join(5), T0),
      new WrongPhase({ auction: aid(1), phase: "cancelled" })
    )
    const closed = steps(runningWith(2, { minRounds: 1 }), [
      { _tag: "RoundDeadline", auction: aid(1), round: 1 }
    ])
    expectRefused(decide(closed.state, join(5), T0), new WrongPhase({ auction: aid(1), phase: "closed" }))
  })

  it("an auction takes at most 1000 bidders: the 1001st join is refused with AuctionFull", () => {
    const full = waitingWith(1000, { minBidders: 1000 })
    expectRefused(decide(full.state, join(1001), T0), new AuctionFull({ auction: aid(1), biddersMax: 1000 }))
  })

  it("a client may take part in several auctions at once, as bidder in one and auctioneer of another", () => {
    const world = steps(emptyWorld, [
      createCommand(),
      createCommand({ auctioneer: bidder(1) }),
      join(1, 1),
      { _tag: "JoinAuction", auction: aid(2), bidder: auctioneer },
      join(2, 2)
    ])
    expect(world.log.filter((e) => e._tag === "BidderJoined")).toHaveLength(3)
  })
})

describe("ready check: sent once, with the join that reaches minBidders", () => {
  it("the ready check is emitted in the same decision as the join that reaches minBidders, never before or after", () => {
    const w0 = waitingWith(0, { minBidders: 3 })
    const w1 = step(w0, join(1))
    const w2 = step(w1, join(2))
    const w3 = step(w2, join(3))
    const w4 = step(w3, join(4))
    expect(w1.events.map((e) => e._tag)).toStrictEqual(["BidderJoined"])
    expect(w2.events.map((e) => e._tag)).toStrictEqual(["BidderJoined"])
    expect(w3.events).toStrictEqual([
      { _tag: "BidderJoined", auction: aid(1), bidder: bidder(3) },
      { _tag: "ReadyCheck", auction: aid(1), bidders: 3 }
    ])
    expect(w4.events).toStrictEqual([{ _tag: "BidderJoined", auction: aid(1), bidder: bidder(4) }])
  })

  it("the ready check is sent only once: a bidder leaving and another joining does not send a second", () => {
    const world = steps(waitingWith(2), [sessionEnded(10 + 2), join(3)])
    expect(world.log.filter((e) => e._tag === "ReadyCheck")).toHaveLength(1)
  })
})

describe("start: only by the auctioneer, only waiting, only with minBidders", () => {
  it("start emits AuctionStarted (bidders in join order, rounds) and RoundStarted(1) with deadline now + round timeout", () => {
    const world = steps(emptyWorld, [
      createCommand({ minRounds: 3, roundTimeoutMs: 5_000 }),
      join(3),
      join(1),
      join(2)
    ])
    expect(accepted(decide(world.state, start(), T0 + 42))).toStrictEqual([
      { _tag: "AuctionStarted", auction: aid(1), bidders: [bidder(3), bidder(1), bidder(2)], rounds: 3 },
      { _tag: "RoundStarted", auction: aid(1), round: 1, minBid: 10, deadlineMs: T0 + 42 + 5_000 }
    ])
  })

  it("start by anyone but the auctioneer is refused with NotAuctioneer", () => {
    expectRefused(
      decide(waitingWith(2).state, start(1, bidder(1)), T0),
      new NotAuctioneer({ auction: aid(1), session: bidder(1) })
    )
  })

  it("start before minBidders joined is refused with NotEnoughBidders", () => {
    expectRefused(
      decide(waitingWith(1, { minBidders: 2 }).state, start(), T0),
      new NotEnoughBidders({ auction: aid(1), bidders: 1, minBidders: 2 })
    )
  })

  it("start after a bidder left below minBidders is refused; a new join makes it possible again", () => {
    const left = step(waitingWith(2), sessionEnded(12))
    expectRefused(
      decide(left.state, start(), T0),
      new NotEnoughBidders({ auction: aid(1), bidders: 1, minBidders: 2 })
    )
    const rejoined = step(left, join(3))
    expect(accepted(decide(rejoined.state, start(), T0))[0]).toStrictEqual({
      _tag: "AuctionStarted",
      auction: aid(1),
      bidders: [bidder(1), bidder(3)],
      rounds: 2
    })
  })

  it("start of a running auction (a second confirm) is refused with WrongPhase", () => {
    expectRefused(
      decide(runningWith(2).state, start(), T0),
      new WrongPhase({ auction: aid(1), phase: "running" })
    )
  })

  it("start of an unknown auction is refused with AuctionNotFound", () => {
    expectRefused(decide(waitingWith(2).state, start(9), T0), new AuctionNotFound({ auction: aid(9) }))
  })
})

describe("cancel: only by the auctioneer, only waiting", () => {
  it("the auctioneer cancels a waiting auction: AuctionCancelled cancelled-by-auctioneer, and it moves to the history", () => {
    const world = step(waitingWith(1), cancel())
    expect(world.events).toStrictEqual([
      { _tag: "AuctionCancelled", auction: aid(1), reason: "cancelled-by-auctioneer" }
    ])
    expect(HashMap.has(world.state.open, aid(1))).toBe(false)
    const ended = HashMap.unsafeGet(world.state.history, aid(1))
    expect(ended.phase).toBe("cancelled")
    expect(ended.bidders).toStrictEqual([bidder(1)])
  })

  it("cancel by anyone but the auctioneer is refused with NotAuctioneer", () => {
    expectRefused(
      decide(waitingWith(1).state, cancel(1, bidder(1)), T0),
      new NotAuctioneer({ auction: aid(1), session: bidder(1) })
    )
  })

  it("a running or cancelled auction cannot be cancelled (WrongPhase)", () => {
    expectRefused(
      decide(runningWith(2).state, cancel(), T0),
      new WrongPhase({ auction: aid(1), phase: "running" })
    )
    expectRefused(
      decide(step(waitingWith(0), cancel()).state, cancel(), T0),
      new WrongPhase({ auction: aid(1), phase: "cancelled" })
    )
  })
})

describe("start timeout: a ready check not confirmed in time cancels the auction", () => {
  it("StartDeadline after the ready check emits AuctionCancelled start-timeout", () => {
    const world = step(waitingWith(2), startDeadline())
    expect(world.events).toStrictEqual([
      { _tag: "AuctionCancelled", auction: aid(1), reason: "start-timeout" }
    ])
    expect(HashMap.unsafeGet(world.state.history, aid(1)).phase).toBe("cancelled")
  })

  it("StartDeadline before any ready check is refused (WrongPhase waiting): the timeout runs from the ready check", () => {
    expectRefused(
      decide(waitingWith(1).state, startDeadline(), T0),
      new WrongPhase({ auction: aid(1), phase: "waiting" })
    )
  })

  it("StartDeadline after the start is refused harmlessly (WrongPhase running)", () => {
    expectRefused(
      decide(runningWith(2).state, startDeadline(), T0),
      new WrongPhase({ auction: aid(1), phase: "running" })
    )
  })

  it("StartDeadline of an unknown auction is refused with AuctionNotFound", () => {
    expectRefused(
      decide(waitingWith(2).state, startDeadline(3), T0),
      new AuctionNotFound({ auction: aid(3) })
    )
  })

  it("after a bidder left below minBidders, the start timeout still cancels the auction", () => {
    const world = steps(waitingWith(2), [sessionEnded(12), startDeadline()])
    expect(world.log.at(-1)).toStrictEqual({
      _tag: "AuctionCancelled",
      auction: aid(1),
      reason: "start-timeout"
    })
  })
})

describe("SessionEnded: an expired session leaves waiting auctions; running ones are unaffected", () => {
  it("a bidder's session ending removes it from every waiting auction it joined (BidderLeft), in auction order", () => {
    const world = steps(emptyWorld, [createCommand(), createCommand(), join(1, 2), join(1, 1)])
    const ended = step(world, sessionEnded(11))
    expect(ended.events).toStrictEqual([
      { _tag: "BidderLeft", auction: aid(1), bidder: bidder(1) },
      { _tag: "BidderLeft", auction: aid(2), bidder: bidder(1) }
    ])
    expect(bidderCount(HashMap.unsafeGet(ended.state.open, aid(1)))).toBe(0)
  })

  it("an auctioneer's session ending cancels its waiting auctions with auctioneer-left; it also leaves those it joined", () => {
    const world = steps(emptyWorld, [
      createCommand(), // 1, by session 1
      createCommand({ auctioneer: sid(2) }), // 2
      { _tag: "JoinAuction", auction: aid(2), bidder: auctioneer },
      createCommand({ auctioneer: sid(3) }), // 3: session 1 will be a bidder of a running auction
      { _tag: "JoinAuction", auction: aid(3), bidder: auctioneer },
      { _tag: "JoinAuction", auction: aid(3), bidder: bidder(1) },
      start(3, sid(3))
    ])
    const ended = step(world, sessionEnded(1))
    expect(ended.events).toStrictEqual([
      { _tag: "AuctionCancelled", auction: aid(1), reason: "auctioneer-left" },
      { _tag: "BidderLeft", auction: aid(2), bidder: auctioneer }
    ])
    expect(HashMap.unsafeGet(ended.state.open, aid(3)).phase).toBe("running")
  })

  it("a running auction is not affected: the expired bidder's missing bids count 0", () => {
    const world = step(runningWith(2), sessionEnded(12))
    expect(world.events).toStrictEqual([])
    const afterBid = step(world, {
      _tag: "PlaceBid",
      auction: aid(1),
      bidder: bidder(1),
      round: 1,
      amount: 30
    })
    const deadline = step(afterBid, { _tag: "RoundDeadline", auction: aid(1), round: 1 })
    expect(deadline.events[0]).toStrictEqual({
      _tag: "RoundCompleted",
      auction: aid(1),
      round: 1,
      bids: [
        { bidder: bidder(1), amount: 30 },
        { bidder: bidder(2), amount: 0 }
      ]
    })
  })

  it("a session that takes part in nothing waiting produces no events (accepted, not refused)", () => {
    expect(accepted(decide(waitingWith(1).state, sessionEnded(99), T0))).toStrictEqual([])
  })
})

describe("history and purge: ended auctions stay queryable until purged", () => {
  const closed = () =>
    steps(runningWith(2, { minRounds: 1 }), [{ _tag: "RoundDeadline", auction: aid(1), round: 1 }])

  it("a closed auction leaves the open set and stays in the history with its result and events", () => {
    const { state } = closed()
    expect(HashMap.has(state.open, aid(1))).toBe(false)
    const ended = HashMap.unsafeGet(state.history, aid(1))
    expect(ended.phase).toBe("closed")
    expect(ended.events.length).toBeGreaterThan(0)
    expect(Option.isSome(ended.readyCheckIndex)).toBe(true)
  })

  it("purge removes an ended auction: AuctionPurged, then the auction is not found", () => {
    const purged = step(closed(), { _tag: "PurgeAuction", auction: aid(1) })
    expect(purged.events).toStrictEqual([{ _tag: "AuctionPurged", auction: aid(1) }])
    expect(HashMap.size(purged.state.history)).toBe(0)
    expectRefused(
      decide(purged.state, { _tag: "PurgeAuction", auction: aid(1) }, T0),
      new AuctionNotFound({ auction: aid(1) })
    )
  })

  it("a cancelled auction can be purged too", () => {
    const purged = steps(waitingWith(0), [cancel(), { _tag: "PurgeAuction", auction: aid(1) }])
    expect(HashMap.size(purged.state.history)).toBe(0)
  })

  it("an open auction cannot be purged (WrongPhase)", () => {
    expectRefused(
      decide(waitingWith(0).state, { _tag: "PurgeAuction", auction: aid(1) }, T0),
      new WrongPhase({ auction: aid(1), phase: "waiting" })
    )
    expectRefused(
      decide(runningWith(2).state, { _tag: "PurgeAuction", auction: aid(1) }, T0),
      new WrongPhase({ auction: aid(1), phase: "running" })
    )
  })

  it("a purged auction's id is never handed out again", () => {
    const purged = step(closed(), { _tag: "PurgeAuction", auction: aid(1) })
    expect(step(purged, createCommand()).events[0]?.auction).toBe(2)
  })
})
