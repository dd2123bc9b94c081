/**
 * The life of an auction: `waiting` (bidders join; the ready check goes out
 * once enough have joined), `running` (rounds of sealed bids), and one of two
 * ends, `closed` (a winner) or `cancelled` (a reason).
 */
import * as Schema from "effect/Schema"

export const Phase = Schema.Literal("waiting", "running", "closed", "cancelled")
export type Phase = typeof Phase.Type

/** Open auctions are in the replicated state with their events; ended ones are history. */
export const OpenPhase = Schema.Literal("waiting", "running")
export type OpenPhase = typeof OpenPhase.Type

export const EndedPhase = Schema.Literal("closed", "cancelled")
export type EndedPhase = typeof EndedPhase.Type

/** Why an auction was cancelled (it can only be cancelled while waiting). */
export const CancelReason = Schema.Literal("start-timeout", "cancelled-by-auctioneer", "auctioneer-left")
export type CancelReason = typeof CancelReason.Type
