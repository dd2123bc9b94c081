/**
 * What can be asked of the auctions: client requests (create, join, start,
 * cancel, bid) and the system's own commands (deadlines that passed, a
 * session that expired, a retention period that ended). The leader decides
 * them (`decide`); only the resulting events are replicated.
 *
 * Numbers a client chooses are plain numbers here: the rules check them and
 * answer `InvalidRequest` with the field and its range, which a client can
 * show, instead of a datagram silently dropped by the decoder.
 */
import * as Schema from "effect/Schema"
import { AuctionId, SessionId } from "../Ids.js"

/** A client (the auctioneer) opens an auction. */
export const CreateAuction = Schema.TaggedStruct("CreateAuction", {
  auctioneer: SessionId,
  item: Schema.String,
  minBid: Schema.Number,
  minRounds: Schema.Number,
  minBidders: Schema.Number,
  roundTimeoutMs: Schema.Number,
  startTimeoutMs: Schema.Number
})
export type CreateAuction = typeof CreateAuction.Type

/** A client joins a waiting auction as a bidder. */
export const JoinAuction = Schema.TaggedStruct("JoinAuction", {
  auction: AuctionId,
  bidder: SessionId
})
export type JoinAuction = typeof JoinAuction.Type

/** The auctioneer confirms the ready check: the auction starts. */
export const StartAuction = Schema.TaggedStruct("StartAuction", {
  auction: AuctionId,
  by: SessionId
})
export type StartAuction = typeof StartAuction.Type

/** The auctioneer cancels a waiting auction. */
export const CancelAuction = Schema.TaggedStruct("CancelAuction", {
  auction: AuctionId,
  by: SessionId
})
export type CancelAuction = typeof CancelAuction.Type

/** A bidder's sealed bid for one named round. */
export const PlaceBid = Schema.TaggedStruct("PlaceBid", {
  auction: AuctionId,
  bidder: SessionId,
  round: Schema.Number,
  amount: Schema.Number
})
export type PlaceBid = typeof PlaceBid.Type

/** The deadline of a round passed (proposed by the leader's round timer). */
export const RoundDeadline = Schema.TaggedStruct("RoundDeadline", {
  auction: AuctionId,
  round: Schema.Number
})
export type RoundDeadline = typeof RoundDeadline.Type

/** The start timeout after the ready check passed (proposed by the leader's start timer). */
export const StartDeadline = Schema.TaggedStruct("StartDeadline", {
  auction: AuctionId
})
export type StartDeadline = typeof StartDeadline.Type

/** A client session expired: it leaves every waiting auction it is part of. */
export const SessionEnded = Schema.TaggedStruct("SessionEnded", {
  session: SessionId
})
export type SessionEnded = typeof SessionEnded.Type

/** A closed or cancelled auction's retention period ended: it leaves the history. */
export const PurgeAuction = Schema.TaggedStruct("PurgeAuction", {
  auction: AuctionId
})
export type PurgeAuction = typeof PurgeAuction.Type

export const AuctionCommand = Schema.Union(
  CreateAuction,
  JoinAuction,
  StartAuction,
  CancelAuction,
  PlaceBid,
  RoundDeadline,
  StartDeadline,
  SessionEnded,
  PurgeAuction
)
export type AuctionCommand = typeof AuctionCommand.Type
