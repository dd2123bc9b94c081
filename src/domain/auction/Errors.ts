/**
 * Why a command was refused. Each error carries what a client needs to
 * understand it and a readable `message`; its `_tag` is the error code of the
 * client protocol (DESIGN §7). A refused command changes nothing.
 */
import * as Schema from "effect/Schema"
import { AuctionId, SessionId } from "../Ids.js"
import * as Money from "../Money.js"
import { Phase } from "./Phase.js"
import { BidderCount } from "./Rules.js"

/** A field out of range; the message names the field and the range it allows. */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  message: Schema.String
}) {}

export class AuctionNotFound extends Schema.TaggedError<AuctionNotFound>()("AuctionNotFound", {
  auction: AuctionId
}) {
  override get message(): string {
    return `auction ${this.auction} does not exist`
  }
}

export class NotAuctioneer extends Schema.TaggedError<NotAuctioneer>()("NotAuctioneer", {
  auction: AuctionId,
  session: SessionId
}) {
  override get message(): string {
    return `only the auctioneer of auction ${this.auction} may do this, and session ${this.session} is not it`
  }
}

export class NotInAuction extends Schema.TaggedError<NotInAuction>()("NotInAuction", {
  auction: AuctionId,
  session: SessionId
}) {
  override get message(): string {
    return `session ${this.session} is not a bidder of auction ${this.auction}`
  }
}

export class AlreadyJoined extends Schema.TaggedError<AlreadyJoined>()("AlreadyJoined", {
  auction: AuctionId,
  bidder: SessionId
}) {
  override get message(): string {
    return `session ${this.bidder} has already joined auction ${this.auction}`
  }
}

/** The auctioneer is not a bidder: it may neither join its own auction nor bid in it. */
export class AuctioneerCannotBid extends Schema.TaggedError<AuctioneerCannotBid>()("AuctioneerCannotBid", {
  auction: AuctionId,
  session: SessionId
}) {
  override get message(): string {
    return `session ${this.session} is the auctioneer of auction ${this.auction} and cannot join or bid in it`
  }
}

export class AuctionFull extends Schema.TaggedError<AuctionFull>()("AuctionFull", {
  auction: AuctionId,
  biddersMax: BidderCount
}) {
  override get message(): string {
    return `auction ${this.auction} is full: it takes at most ${this.biddersMax} bidders`
  }
}

export class NotEnoughBidders extends Schema.TaggedError<NotEnoughBidders>()("NotEnoughBidders", {
  auction: AuctionId,
  bidders: BidderCount,
  minBidders: BidderCount
}) {
  override get message(): string {
    return `auction ${this.auction} has ${this.bidders} bidders and needs at least ${this.minBidders} to start`
  }
}

export class WrongPhase extends Schema.TaggedError<WrongPhase>()("WrongPhase", {
  auction: AuctionId,
  phase: Phase
}) {
  override get message(): string {
    return `auction ${this.auction} is ${this.phase}, which does not allow this request`
  }
}

export class WrongRound extends Schema.TaggedError<WrongRound>()("WrongRound", {
  auction: AuctionId,
  round: Schema.Int,
  currentRound: Schema.Int
}) {
  override get message(): string {
    return `auction ${this.auction} is in round ${this.currentRound}, not round ${this.round}`
  }
}

export class BidTooLow extends Schema.TaggedError<BidTooLow>()("BidTooLow", {
  auction: AuctionId,
  minBid: Money.Money,
  /** A whole number, possibly beyond the safe integers. */
  amount: Schema.Finite
}) {
  override get message(): string {
    return `the bid ${this.amount} is below the minimum bid ${this.minBid} of auction ${this.auction}`
  }
}

/** The bidder's total would no longer be a safe integer: money must stay exact. */
export class BidTooHigh extends Schema.TaggedError<BidTooHigh>()("BidTooHigh", {
  auction: AuctionId,
  /** A whole number, possibly beyond the safe integers. */
  amount: Schema.Finite,
  /** The largest bid this bidder can still place (its total's headroom). */
  amountMax: Money.Money
}) {
  override get message(): string {
    return `the bid ${this.amount} would take the total above ${Money.maxValue}; at most ${this.amountMax} can be bid`
  }
}

export class AlreadyBid extends Schema.TaggedError<AlreadyBid>()("AlreadyBid", {
  auction: AuctionId,
  round: Schema.Int
}) {
  override get message(): string {
    return `a bid for round ${this.round} of auction ${this.auction} was already placed`
  }
}

export const AuctionError = Schema.Union(
  InvalidRequest,
  AuctionNotFound,
  NotAuctioneer,
  NotInAuction,
  AlreadyJoined,
  AuctioneerCannotBid,
  AuctionFull,
  NotEnoughBidders,
  WrongPhase,
  WrongRound,
  BidTooLow,
  BidTooHigh,
  AlreadyBid
)
export type AuctionError = typeof AuctionError.Type
