/**
 * Reads of the state: the `list` request (open auctions) and the status of
 * one auction (open or history). Nothing here reveals a sealed bid: a
 * running auction's totals include the current round, so only an ended
 * auction shows totals.
 */
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { AuctionId, SessionId } from "../Ids.js"
import * as Money from "../Money.js"
import { BidderAmounts } from "./Events.js"
import { CancelReason, Phase } from "./Phase.js"
import { BidderCount, Index, Item, MinBidders, Rounds } from "./Rules.js"
import type { Auction, AuctionsState } from "./State.js"
import { bidderCount, findAuction } from "./State.js"

/** One row of the auction list (DESIGN §7 `auctions`). */
export const AuctionSummary = Schema.Struct({
  auction: AuctionId,
  item: Item,
  minBid: Money.Money,
  minRounds: Rounds,
  minBidders: MinBidders,
  /** Bidders joined so far (or at the end). */
  bidders: BidderCount,
  status: Phase,
  auctioneer: SessionId
})
export type AuctionSummary = typeof AuctionSummary.Type

/** One auction in full, as far as it is public. */
export const AuctionDetails = Schema.Struct({
  ...AuctionSummary.fields,
  /** The current round; 0 while waiting; the last round once closed; 0 if cancelled. */
  round: Index,
  /** The winner, its total and every total: only once closed. */
  result: Schema.NullOr(Schema.Struct({ winner: SessionId, amount: Money.Money, totals: BidderAmounts })),
  /** Why it was cancelled: only once cancelled. */
  reason: Schema.NullOr(CancelReason)
})
export type AuctionDetails = typeof AuctionDetails.Type

export const summaryOf = (auction: Auction): AuctionSummary => ({
  auction: auction.auction,
  item: auction.item,
  minBid: auction.minBid,
  minRounds: auction.minRounds,
  minBidders: auction.minBidders,
  bidders: bidderCount(auction),
  status: auction.phase,
  auctioneer: auction.auctioneer
})

export const detailsOf = (auction: Auction): AuctionDetails => ({
  ...summaryOf(auction),
  round: auction.phase === "running" ? auction.round : auction.phase === "closed" ? auction.minRounds : 0,
  result:
    auction.phase === "closed"
      ? { winner: auction.winner, amount: auction.amount, totals: auction.totals }
      : null,
  reason: auction.phase === "cancelled" ? auction.reason : null
})

/**
 * The open auctions (waiting and running) in ascending id order; with
 * `after`, only those with a higher id (paging within the datagram limit).
 */
export const listOpen = (
  state: AuctionsState,
  options: { readonly after?: AuctionId; readonly limit?: number } = {}
): ReadonlyArray<AuctionSummary> => {
  const after = options.after ?? 0
  const rows: Array<AuctionSummary> = []
  for (const auction of HashMap.values(state.open)) {
    if (auction.auction > after) rows.push(summaryOf(auction))
  }
  rows.sort((a, b) => a.auction - b.auction)
  return options.limit === undefined ? rows : rows.slice(0, Math.max(0, options.limit))
}

/** One auction's public details, open or in the history. */
export const lookup = (state: AuctionsState, auction: AuctionId): Option.Option<AuctionDetails> =>
  Option.map(findAuction(state, auction), detailsOf)
