/**
 * What each participant of an auction is told, derived from the auction's
 * events alone, so every leader tells the same (DESIGN §5, §7).
 *
 * Each (auction, participant) stream is numbered contiguously from 1: the
 * k-th event of that auction addressed to that participant. The stream is
 * a pure function of the auction's event list, so after a failover a new
 * leader resends any range with the same numbers.
 *
 * Sealed bids (DESIGN §1.6): a `BidPlaced` becomes `BidReceivedNotice`,
 * which says who bid in which round and never the amount; amounts are told
 * only by `RoundCompletedNotice` and the final notices.
 *
 * Who is told what:
 * - `ReadyCheck` → the auctioneer only.
 * - `AuctionStarted`, `RoundStarted`, `BidPlaced`, `RoundCompleted`,
 *   `AuctionCancelled` → the auctioneer and every bidder (at that moment).
 * - `AuctionClosed` → the winner `AuctionWonNotice`, the other bidders
 *   `AuctionLostNotice`, the auctioneer `AuctionClosedNotice`.
 * - `AuctionCreated`, `BidderJoined`, `BidderLeft`, `AuctionPurged` → nobody.
 */
import * as Chunk from "effect/Chunk"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { AuctionId, SessionId } from "../Ids.js"
import * as Money from "../Money.js"
import type { AuctionEvent } from "./Events.js"
import { BidderAmounts } from "./Events.js"
import { CancelReason } from "./Phase.js"
import { BidderCount, biddersMax, Round, Rounds, TimeMs } from "./Rules.js"
import type { Auction } from "./State.js"
import { isBidder, waitingBidders } from "./State.js"

/** `ready-check`: enough bidders joined; the auctioneer may start. */
export const ReadyCheckNotice = Schema.TaggedStruct("ReadyCheckNotice", {
  auction: AuctionId,
  bidders: BidderCount
})

/** `auction-started`: the bidders (join order) and the number of rounds. */
export const AuctionStartedNotice = Schema.TaggedStruct("AuctionStartedNotice", {
  auction: AuctionId,
  bidders: Schema.Array(SessionId).pipe(Schema.maxItems(biddersMax)),
  rounds: Rounds
})

/** `round-started`: the round, its minimum bid and its deadline. */
export const RoundStartedNotice = Schema.TaggedStruct("RoundStartedNotice", {
  auction: AuctionId,
  round: Round,
  minBid: Money.Money,
  deadlineMs: TimeMs
})

/** `bid-received`: a bidder has bid in a round; the amount stays sealed. */
export const BidReceivedNotice = Schema.TaggedStruct("BidReceivedNotice", {
  auction: AuctionId,
  round: Round,
  bidder: SessionId
})

/** `round-completed`: every bid of the round, 0 for a bidder who did not bid. */
export const RoundCompletedNotice = Schema.TaggedStruct("RoundCompletedNotice", {
  auction: AuctionId,
  round: Round,
  bids: BidderAmounts
})

/** `auction-cancelled`: why. */
export const AuctionCancelledNotice = Schema.TaggedStruct("AuctionCancelledNotice", {
  auction: AuctionId,
  reason: CancelReason
})

const result = {
  auction: AuctionId,
  winner: SessionId,
  /** The winner's total. */
  amount: Money.Money,
  /** Every bidder's total, in join order. */
  totals: BidderAmounts
}

/** `auction-won`: to the winner. */
export const AuctionWonNotice = Schema.TaggedStruct("AuctionWonNotice", result)
/** `auction-lost`: to every other bidder. */
export const AuctionLostNotice = Schema.TaggedStruct("AuctionLostNotice", result)
/** `auction-closed`: to the auctioneer. */
export const AuctionClosedNotice = Schema.TaggedStruct("AuctionClosedNotice", result)

export const Notice = Schema.Union(
  ReadyCheckNotice,
  AuctionStartedNotice,
  RoundStartedNotice,
  BidReceivedNotice,
  RoundCompletedNotice,
  AuctionCancelledNotice,
  AuctionWonNotice,
  AuctionLostNotice,
  AuctionClosedNotice
)
export type Notice = typeof Notice.Type

/** A notice with its number in the participant's stream of that auction (1, 2, 3, …). */
export const NumberedNotice = Schema.Struct({
  seq: Schema.Int.pipe(Schema.greaterThanOrEqualTo(1)),
  notice: Notice
})
export type NumberedNotice = typeof NumberedNotice.Type

/** Whether an event is addressed to a participant. `auction` may be the state just before or after it. */
export const isRecipient = (auction: Auction, event: AuctionEvent, session: SessionId): boolean => {
  switch (event._tag) {
    case "AuctionCreated":
    case "BidderJoined":
    case "BidderLeft":
    case "AuctionPurged":
      return false
    case "ReadyCheck":
      return session === auction.auctioneer
    default:
      return session === auction.auctioneer || isBidder(auction, session)
  }
}

/**
 * Who is told of an event: the auctioneer first, then bidders in join order.
 * `auction` may be the state just before the event or just after it (the
 * bidders of a waiting auction are the same either side of its cancellation).
 */
export const recipientsOf = (auction: Auction, event: AuctionEvent): ReadonlyArray<SessionId> => {
  switch (event._tag) {
    case "AuctionCreated":
    case "BidderJoined":
    case "BidderLeft":
    case "AuctionPurged":
      return []
    case "ReadyCheck":
      return [auction.auctioneer]
    case "AuctionStarted":
      return [auction.auctioneer, ...event.bidders]
    default:
      return [
        auction.auctioneer,
        ...(auction.phase === "waiting" ? waitingBidders(auction) : auction.bidders)
      ]
  }
}

/** The notice an addressed participant gets for an event (none for events told to nobody). */
const noticeOf = (auction: Auction, event: AuctionEvent, session: SessionId): Option.Option<Notice> => {
  switch (event._tag) {
    case "ReadyCheck":
      return Option.some({ _tag: "ReadyCheckNotice", auction: event.auction, bidders: event.bidders })
    case "AuctionStarted":
      return Option.some({
        _tag: "AuctionStartedNotice",
        auction: event.auction,
        bidders: event.bidders,
        rounds: event.rounds
      })
    case "RoundStarted":
      return Option.some({
        _tag: "RoundStartedNotice",
        auction: event.auction,
        round: event.round,
        minBid: event.minBid,
        deadlineMs: event.deadlineMs
      })
    case "BidPlaced":
      // Sealed: the amount is deliberately left out.
      return Option.some({
        _tag: "BidReceivedNotice",
        auction: event.auction,
        round: event.round,
        bidder: event.bidder
      })
    case "RoundCompleted":
      return Option.some({
        _tag: "RoundCompletedNotice",
        auction: event.auction,
        round: event.round,
        bids: event.bids
      })
    case "AuctionCancelled":
      return Option.some({ _tag: "AuctionCancelledNotice", auction: event.auction, reason: event.reason })
    case "AuctionClosed": {
      const tag =
        session === auction.auctioneer
          ? "AuctionClosedNotice"
          : session === event.winner
            ? "AuctionWonNotice"
            : "AuctionLostNotice"
      return Option.some({
        _tag: tag,
        auction: event.auction,
        winner: event.winner,
        amount: event.amount,
        totals: event.totals
      })
    }
    default:
      return Option.none()
  }
}

/** What a participant is told of an event, if anything. */
export const noticeFor = (
  auction: Auction,
  event: AuctionEvent,
  session: SessionId
): Option.Option<Notice> =>
  isRecipient(auction, event, session) ? noticeOf(auction, event, session) : Option.none()

/**
 * Where a participant's stream lies in the auction's events, as half-open
 * index ranges in order. Before the start only the ready check (auctioneer)
 * and a cancellation (everyone) are addressed to anyone; from
 * `AuctionStarted` on, every event is addressed to everyone.
 */
const streamRanges = (auction: Auction, session: SessionId): ReadonlyArray<readonly [number, number]> => {
  const isAuctioneer = session === auction.auctioneer
  if (!isAuctioneer && !isBidder(auction, session)) return []
  const ranges: Array<readonly [number, number]> = []
  if (isAuctioneer && Option.isSome(auction.readyCheckIndex)) {
    ranges.push([auction.readyCheckIndex.value, auction.readyCheckIndex.value + 1])
  }
  const length = auction.events.length
  switch (auction.phase) {
    case "waiting":
      break
    case "running":
    case "closed":
      ranges.push([auction.startIndex, length])
      break
    case "cancelled":
      ranges.push([length - 1, length])
      break
  }
  return ranges
}

/** How many notices a participant's stream of this auction holds. */
export const streamLength = (auction: Auction, session: SessionId): number =>
  streamRanges(auction, session).reduce((sum, [from, to]) => sum + to - from, 0)

export interface Notifications {
  /** The notices numbered `fromSeq` … (at most `max` of them). */
  readonly notifications: ReadonlyArray<NumberedNotice>
  /** The stream's length: the number of the last notice so far. */
  readonly length: number
}

/**
 * A participant's notices of an auction from number `fromSeq` (≥ 1) on, at
 * most `max`, and the stream's length. Costs O(returned · log events).
 */
export const notificationsFor = (
  auction: Auction,
  session: SessionId,
  fromSeq: number,
  max = Number.POSITIVE_INFINITY
): Notifications => {
  const ranges = streamRanges(auction, session)
  const first = Number.isNaN(fromSeq) ? 1 : Math.max(1, Math.ceil(fromSeq))
  const notifications: Array<NumberedNotice> = []
  let seq = 1
  for (const [from, to] of ranges) {
    // Skip what lies before `first` without touching those events.
    const start = Math.max(from, from + (first - seq))
    for (let index = start; index < to && notifications.length < max; index++) {
      const event = Chunk.unsafeGet(auction.events, index)
      // The ranges hold only events addressed to this participant, so no per-event membership test.
      const notice = noticeOf(auction, event, session)
      if (Option.isNone(notice)) {
        throw new Error(`event ${index} of auction ${auction.auction} is not addressed`)
      }
      notifications.push({ seq: seq + index - from, notice: notice.value })
    }
    seq += to - from
  }
  return { notifications, length: seq - 1 }
}
