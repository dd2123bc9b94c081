/**
 * The pure ordering buffer of the client (DESIGN §5 "Notifications and order",
 * promise 2): exact outputs for each input, and its bounds.
 */
import { describe, expect, it } from "@effect/vitest"
import { Option } from "effect"
import type { Notice } from "../../src/domain/auction/Notifications.js"
import {
  type ClientStreams,
  currentRound,
  emptyStreams,
  receive,
  resubscribeAll,
  type StreamLimits,
  type StreamOutput,
  subscribed,
  tick,
  track
} from "../../src/domain/ClientStreams.js"
import { AuctionId, SessionId } from "../../src/domain/Ids.js"
import * as Money from "../../src/domain/Money.js"

const limits: StreamLimits = { windowMax: 4, pendingMax: 5, auctionsMax: 2, gapRetryMs: 1000 }
const a1 = AuctionId.make(1)
const a2 = AuctionId.make(2)
const a3 = AuctionId.make(3)

const bid = (auction: AuctionId, bidder: number): Notice => ({
  _tag: "BidReceivedNotice",
  auction,
  round: 1,
  bidder: SessionId.make(bidder)
})
const roundStarted = (auction: AuctionId, round: number): Notice => ({
  _tag: "RoundStartedNotice",
  auction,
  round,
  minBid: Money.unsafeMake(1),
  deadlineMs: 0
})
const cancelled = (auction: AuctionId): Notice => ({
  _tag: "AuctionCancelledNotice",
  auction,
  reason: "cancelled-by-auctioneer"
})

/** Feeds notices (seq, notice) of an auction at `nowMs` with unlimited room; returns the state and outputs in short form. */
const feed = (
  streams: ClientStreams,
  auction: AuctionId,
  seqs: ReadonlyArray<number>,
  nowMs = 0,
  room = 100,
  notice: (seq: number) => Notice = (seq) => bid(auction, seq)
) => {
  let state = streams
  const out: Array<string> = []
  const drops: Array<string | null> = []
  for (const seq of seqs) {
    const step = receive(state, { auction, seq, notice: notice(seq) }, nowMs, room, limits)
    state = step.streams
    out.push(...step.outputs.map(short))
    drops.push(step.dropped)
  }
  return { state, out, drops }
}

const short = (output: StreamOutput): string => {
  switch (output._tag) {
    case "Deliver":
      return `deliver ${output.delivered.auction}/${output.delivered.seq}`
    case "Ack":
      return `ack ${output.auction}/${output.seq}`
    case "Subscribe":
      return `subscribe ${output.auction}/${output.fromSeq}`
  }
}

describe("ClientStreams (DESIGN §5 Notifications and order)", () => {
  it("delivers in order, buffers out of order, drops duplicates, acks cumulatively, asks for a gap once", () => {
    const { out, drops, state } = feed(emptyStreams, a1, [1, 3, 4, 3, 1, 2])
    expect(out).toEqual([
      "deliver 1/1",
      "ack 1/1",
      "subscribe 1/2",
      "ack 1/1",
      // The gap was asked for just now: not again.
      "ack 1/1",
      "ack 1/1",
      "ack 1/1",
      "deliver 1/2",
      "deliver 1/3",
      "deliver 1/4",
      "ack 1/4"
    ])
    expect(drops).toEqual([null, null, null, "duplicate", "duplicate", null])
    expect(state.pendingCount).toBe(0)
  })

  it("beyond the window a notice is dropped unacknowledged, and the gap before it is asked for", () => {
    const { out, drops, state } = feed(emptyStreams, a1, [6])
    expect(out).toEqual(["subscribe 1/1"])
    expect(drops).toEqual(["window"])
    expect(state.pendingCount).toBe(0)
  })

  it("a gap is asked for again only after gapRetryMs, by tick", () => {
    const first = feed(emptyStreams, a1, [2], 0)
    expect(first.out).toEqual(["subscribe 1/1"])
    expect(tick(first.state, 999, 100, limits).outputs.map(short)).toEqual([])
    expect(tick(first.state, 1000, 100, limits).outputs.map(short)).toEqual(["subscribe 1/1"])
  })

  it("without room, notices wait (unacknowledged) and tick delivers them once there is room", () => {
    const held = feed(emptyStreams, a1, [1, 2], 0, 0)
    expect(held.out).toEqual([])
    expect(held.state.pendingCount).toBe(2)
    const one = tick(held.state, 10, 1, limits)
    expect(one.outputs.map(short)).toEqual(["deliver 1/1", "ack 1/1"])
    const rest = tick(one.streams, 20, 5, limits)
    expect(rest.outputs.map(short)).toEqual(["deliver 1/2", "ack 1/2"])
    expect(rest.streams.pendingCount).toBe(0)
  })

  it("the buffer over all auctions is bounded by pendingMax", () => {
    const a = feed(emptyStreams, a1, [2, 3, 4])
    const b = feed(a.state, a2, [2, 3, 4])
    expect(b.drops).toEqual([null, null, "buffer-full"])
    expect(b.state.pendingCount).toBe(5)
    // The next expected notice still passes when the user can take it.
    const c = feed(b.state, a2, [1])
    expect(c.out).toEqual(["deliver 2/1", "deliver 2/2", "deliver 2/3", "ack 2/3"])
    expect(c.state.pendingCount).toBe(3)
  })

  it("the auction table is bounded: a finished auction makes room, an open one never does", () => {
    const finished = feed(emptyStreams, a1, [1], 0, 100, () => cancelled(a1))
    const open = feed(finished.state, a2, [1])
    const third = feed(open.state, a3, [1])
    expect(third.out).toEqual(["deliver 3/1", "ack 3/1"])
    const fourth = feed(third.state, AuctionId.make(4), [1])
    expect(fourth.drops).toEqual(["auctions-full"])
    expect(fourth.out).toEqual([])
  })

  it("tracks the current round; resubscribes open auctions from their first undelivered number", () => {
    const rounds = feed(emptyStreams, a1, [1, 2], 0, 100, (seq) => roundStarted(a1, seq))
    expect(currentRound(rounds.state, a1)).toEqual(Option.some(2))
    expect(currentRound(rounds.state, a2)).toEqual(Option.none())
    const tracked = track(rounds.state, a2, limits)
    expect(resubscribeAll(tracked, 5).outputs.map(short)).toEqual(["subscribe 1/3", "subscribe 2/1"])
  })

  it("a resubscription is asked again every gapRetryMs until the leader answers Subscribed, even with nothing buffered", () => {
    const quiet = feed(emptyStreams, a1, [1, 2])
    const asked = resubscribeAll(quiet.state, 100).streams
    expect(tick(asked, 1099, 100, limits).outputs.map(short)).toEqual([])
    const again = tick(asked, 1100, 100, limits)
    expect(again.outputs.map(short)).toEqual(["subscribe 1/3"])
    expect(tick(again.streams, 2099, 100, limits).outputs.map(short)).toEqual([])
    expect(tick(again.streams, 2100, 100, limits).outputs.map(short)).toEqual(["subscribe 1/3"])
    const answered = subscribed(again.streams, a1)
    expect(tick(answered, 9_000, 100, limits).outputs).toEqual([])
    // A final notice delivered ends the asking too: nothing more will come.
    const ended = feed(asked, a1, [3], 200, 100, () => cancelled(a1))
    expect(tick(ended.state, 5_000, 100, limits).outputs).toEqual([])
  })
})
