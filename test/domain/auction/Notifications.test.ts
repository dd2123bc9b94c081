/** DESIGN §5 "Notifications and order" and §7 events: who is told what, numbered per (auction, participant). */
import { describe, expect, it } from "@effect/vitest"
import { HashMap, Option } from "effect"
import {
  type Auction,
  type AuctionsState,
  findAuction,
  noticeFor,
  notificationsFor,
  recipientsOf,
  streamLength
} from "../../../src/domain/auction/index.js"
import type { SessionId } from "../../../src/domain/Ids.js"
import { aid, auctioneer, bid, bidder, runningWith, sid, steps, T0, waitingWith } from "./helpers.js"

const auctionOf = (state: AuctionsState, id = 1): Auction => Option.getOrThrow(findAuction(state, aid(id)))
const tagsFor = (auction: Auction, session: SessionId) =>
  notificationsFor(auction, session, 1).notifications.map((n) => n.notice._tag)

/** Auction 1: bidders 11 and 12, one round; bidder 12 bids first, 11 wins. */
const finished = () => steps(runningWith(2, { minRounds: 1 }), [bid(2, 1, 10), bid(1, 1, 25)])

describe("who is told what", () => {
  it("the ready check goes to the auctioneer only", () => {
    const auction = auctionOf(waitingWith(2).state)
    expect(tagsFor(auction, auctioneer)).toStrictEqual(["ReadyCheckNotice"])
    expect(tagsFor(auction, bidder(1))).toStrictEqual([])
    expect(notificationsFor(auction, auctioneer, 1).notifications).toStrictEqual([
      { seq: 1, notice: { _tag: "ReadyCheckNotice", auction: aid(1), bidders: 2 } }
    ])
  })

  it("AuctionCreated, BidderJoined and BidderLeft are told to nobody", () => {
    const world = steps(waitingWith(1, { minBidders: 3 }), [{ _tag: "SessionEnded", session: bidder(1) }])
    const auction = auctionOf(world.state)
    for (const event of world.log) expect(recipientsOf(auction, event)).toStrictEqual([])
    expect(streamLength(auction, auctioneer)).toBe(0)
  })

  it("start, rounds, bids and results go to the auctioneer and every bidder; a bid is received without its amount", () => {
    const auction = auctionOf(finished().state)
    expect(tagsFor(auction, auctioneer)).toStrictEqual([
      "ReadyCheckNotice",
      "AuctionStartedNotice",
      "RoundStartedNotice",
      "BidReceivedNotice",
      "BidReceivedNotice",
      "RoundCompletedNotice",
      "AuctionClosedNotice"
    ])
    const forLoser = notificationsFor(auction, bidder(2), 1).notifications
    expect(forLoser).toStrictEqual([
      {
        seq: 1,
        notice: { _tag: "AuctionStartedNotice", auction: aid(1), bidders: [bidder(1), bidder(2)], rounds: 1 }
      },
      {
        seq: 2,
        notice: { _tag: "RoundStartedNotice", auction: aid(1), round: 1, minBid: 10, deadlineMs: T0 + 60_000 }
      },
      { seq: 3, notice: { _tag: "BidReceivedNotice", auction: aid(1), round: 1, bidder: bidder(2) } },
      { seq: 4, notice: { _tag: "BidReceivedNotice", auction: aid(1), round: 1, bidder: bidder(1) } },
      {
        seq: 5,
        notice: {
          _tag: "RoundCompletedNotice",
          auction: aid(1),
          round: 1,
          bids: [
            { bidder: bidder(1), amount: 25 },
            { bidder: bidder(2), amount: 10 }
          ]
        }
      },
      {
        seq: 6,
        notice: {
          _tag: "AuctionLostNotice",
          auction: aid(1),
          winner: bidder(1),
          amount: 25,
          totals: [
            { bidder: bidder(1), amount: 25 },
            { bidder: bidder(2), amount: 10 }
          ]
        }
      }
    ])
  })

  it("after the close the winner is told auction-won, the others auction-lost, the auctioneer auction-closed, all with every total", () => {
    const auction = auctionOf(finished().state)
    const last = (session: SessionId) => notificationsFor(auction, session, 1).notifications.at(-1)?.notice
    const result = {
      auction: aid(1),
      winner: bidder(1),
      amount: 25,
      totals: [
        { bidder: bidder(1), amount: 25 },
        { bidder: bidder(2), amount: 10 }
      ]
    }
    expect(last(bidder(1))).toStrictEqual({ _tag: "AuctionWonNotice", ...result })
    expect(last(bidder(2))).toStrictEqual({ _tag: "AuctionLostNotice", ...result })
    expect(last(auctioneer)).toStrictEqual({ _tag: "AuctionClosedNotice", ...result })
  })

  it("a cancelled auction tells the auctioneer and the bidders still in it, not one who left", () => {
    const world = steps(waitingWith(3), [
      { _tag: "SessionEnded", session: bidder(2) },
      { _tag: "CancelAuction", auction: aid(1), by: auctioneer }
    ])
    const auction = auctionOf(world.state)
    const cancelled = { _tag: "AuctionCancelledNotice", auction: aid(1), reason: "cancelled-by-auctioneer" }
    const cancelEvent = world.log.at(-1)
    if (cancelEvent === undefined) throw new Error("no event")
    expect(recipientsOf(auction, cancelEvent)).toStrictEqual([auctioneer, bidder(1), bidder(3)])
    expect(notificationsFor(auction, bidder(1), 1).notifications).toStrictEqual([
      { seq: 1, notice: cancelled }
    ])
    expect(notificationsFor(auction, bidder(2), 1)).toStrictEqual({ notifications: [], length: 0 })
    expect(notificationsFor(auction, auctioneer, 1).notifications.map((n) => n.notice)).toStrictEqual([
      { _tag: "ReadyCheckNotice", auction: aid(1), bidders: 2 },
      cancelled
    ])
  })

  it("recipientsOf lists the auctioneer first, then the bidders in join order, before and after the event alike", () => {
    const before = runningWith(2)
    const after = steps(before, [bid(2, 1, 10)])
    const placed = after.log.at(-1)
    if (placed === undefined) throw new Error("no event")
    expect(recipientsOf(auctionOf(before.state), placed)).toStrictEqual([auctioneer, bidder(1), bidder(2)])
    expect(recipientsOf(auctionOf(after.state), placed)).toStrictEqual([auctioneer, bidder(1), bidder(2)])
    expect(noticeFor(auctionOf(after.state), placed, sid(99))).toStrictEqual(Option.none())
  })
})

describe("numbering: each (auction, participant) stream is numbered contiguously from 1", () => {
  it("fromSeq returns the tail of the stream with its numbers, and the stream's length", () => {
    const auction = auctionOf(finished().state)
    const all = notificationsFor(auction, auctioneer, 1)
    expect(all.length).toBe(7)
    expect(all.notifications.map((n) => n.seq)).toStrictEqual([1, 2, 3, 4, 5, 6, 7])
    const tail = notificationsFor(auction, auctioneer, 4)
    expect(tail.length).toBe(7)
    expect(tail.notifications).toStrictEqual(all.notifications.slice(3))
    expect(notificationsFor(auction, auctioneer, 8)).toStrictEqual({ notifications: [], length: 7 })
    expect(notificationsFor(auction, auctioneer, 0).notifications).toStrictEqual(all.notifications)
  })

  it("max bounds how many notices one answer carries (pages within the datagram limit)", () => {
    const auction = auctionOf(finished().state)
    const page = notificationsFor(auction, bidder(1), 2, 3)
    expect(page.notifications.map((n) => n.seq)).toStrictEqual([2, 3, 4])
    expect(page.length).toBe(6)
  })

  it("a session that is not in the auction has an empty stream", () => {
    expect(notificationsFor(auctionOf(finished().state), sid(77), 1)).toStrictEqual({
      notifications: [],
      length: 0
    })
  })

  it("numbers never change: the stream while the auction runs is a prefix of the stream after it closed", () => {
    const running = steps(runningWith(2, { minRounds: 1 }), [bid(2, 1, 10)])
    const closed = steps(running, [bid(1, 1, 25)])
    for (const session of [auctioneer, bidder(1), bidder(2)]) {
      const before = notificationsFor(auctionOf(running.state), session, 1).notifications
      const after = notificationsFor(auctionOf(closed.state), session, 1).notifications
      expect(after.slice(0, before.length)).toStrictEqual(before)
      expect(after.length).toBeGreaterThan(before.length)
    }
  })

  it("an ended auction keeps its events in the history, so its final notices can be resent until it is purged", () => {
    const { state } = finished()
    expect(HashMap.has(state.open, aid(1))).toBe(false)
    expect(streamLength(auctionOf(state), bidder(1))).toBe(6)
  })
})
