/**
 * What happened to the auctions: the only thing that is replicated and
 * stored. Every server builds its state by `evolve` over these alone
 * (passive replication), so each event carries everything evolve needs —
 * a bid's amount included — and all of it encodes to JSON.
 *
 * Lists of bidders are in join order; per-bidder amounts are lists of
 * `{ bidder, amount }` (not records: JSON object keys would be strings).
 */
import * as Schema from "effect/Schema"
import { AuctionId, SessionId } from "../Ids.js"
import * as Money from "../Money.js"
import { CancelReason } from "./Phase.js"
import { BidderCount, biddersMax, Item, MinBidders, Round, Rounds, TimeMs, TimeoutMs } from "./Rules.js"

/** One bidder's amount: a bid of a round, or a total. */
export const BidderAmount = Schema.Struct({ bidder: SessionId, amount: Money.Money })
export type BidderAmount = typeof BidderAmount.Type

/** Every bidder's amount, in join order. */
export const BidderAmounts = Schema.Array(BidderAmount).pipe(Schema.maxItems(biddersMax))

export const AuctionCreated = Schema.TaggedStruct("AuctionCreated", {
  auction: AuctionId,
  auctioneer: SessionId,
  item: Item,
  minBid: Money.Money,
  minRounds: Rounds,
  minBidders: MinBidders,
  roundTimeoutMs: TimeoutMs,
  startTimeoutMs: TimeoutMs,
  createdAtMs: TimeMs
})
export type AuctionCreated = typeof AuctionCreated.Type

export const BidderJoined = Schema.TaggedStruct("BidderJoined", {
  auction: AuctionId,
  bidder: SessionId
})
export type BidderJoined = typeof BidderJoined.Type

/**
 * Enough bidders joined: the auctioneer is asked to start. Emitted once per
 * auction, with the join that first reaches `minBidders`; the start timeout
 * runs from it.
 */
export const ReadyCheck = Schema.TaggedStruct("ReadyCheck", {
  auction: AuctionId,
  /** How many bidders had joined. */
  bidders: BidderCount
})
export type ReadyCheck = typeof ReadyCheck.Type

export const AuctionStarted = Schema.TaggedStruct("AuctionStarted", {
  auction: AuctionId,
  /** The bidders, in join order: fixed for the rest of the auction. */
  bidders: Schema.Array(SessionId).pipe(Schema.maxItems(biddersMax)),
  rounds: Rounds
})
export type AuctionStarted = typeof AuctionStarted.Type

export const RoundStarted = Schema.TaggedStruct("RoundStarted", {
  auction: AuctionId,
  round: Round,
  minBid: Money.Money,
  /** The decision time plus the round timeout, by the deciding leader's clock. */
  deadlineMs: TimeMs
})
export type RoundStarted = typeof RoundStarted.Type

/** A sealed bid: the amount is in the log (and state) but is sent to no client before the round completes. */
export const BidPlaced = Schema.TaggedStruct("BidPlaced", {
  auction: AuctionId,
  round: Round,
  bidder: SessionId,
  amount: Money.Money
})
export type BidPlaced = typeof BidPlaced.Type

export const RoundCompleted = Schema.TaggedStruct("RoundCompleted", {
  auction: AuctionId,
  round: Round,
  /** Every bidder's bid of the round, in join order; 0 for a bidder who did not bid. */
  bids: BidderAmounts
})
export type RoundCompleted = typeof RoundCompleted.Type

export const AuctionClosed = Schema.TaggedStruct("AuctionClosed", {
  auction: AuctionId,
  winner: SessionId,
  /** The winner's total over all rounds. */
  amount: Money.Money,
  /** Every bidder's total, in join order. */
  totals: BidderAmounts
})
export type AuctionClosed = typeof AuctionClosed.Type

export const AuctionCancelled = Schema.TaggedStruct("AuctionCancelled", {
  auction: AuctionId,
  reason: CancelReason
})
export type AuctionCancelled = typeof AuctionCancelled.Type

/** A bidder's session ended while the auction was waiting. */
export const BidderLeft = Schema.TaggedStruct("BidderLeft", {
  auction: AuctionId,
  bidder: SessionId
})
export type BidderLeft = typeof BidderLeft.Type

/** A closed or cancelled auction left the history. */
export const AuctionPurged = Schema.TaggedStruct("AuctionPurged", {
  auction: AuctionId
})
export type AuctionPurged = typeof AuctionPurged.Type

export const AuctionEvent = Schema.Union(
  AuctionCreated,
  BidderJoined,
  ReadyCheck,
  AuctionStarted,
  RoundStarted,
  BidPlaced,
  RoundCompleted,
  AuctionClosed,
  AuctionCancelled,
  BidderLeft,
  AuctionPurged
)
export type AuctionEvent = typeof AuctionEvent.Type

/** The events of one decision, as the log stores them (JSON-safe). */
export const AuctionEvents = Schema.Array(AuctionEvent)
