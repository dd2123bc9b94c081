/**
 * What the interactive client prints (the original's screens, DESIGN §7):
 * banner, menu, auction list, round tables, standings and the winner banner.
 * Pure functions from data to text, so they are tested without a terminal.
 *
 * Amounts are the integers the server stores (minor units), shown as `$N`.
 */
import type { AuctionSummary } from "../../domain/Messages.js"
import { table } from "../StatusCommand.js"

export const banner = (): string =>
  [
    "==================================================",
    "   AGORA  -  fault-tolerant sealed-bid auctions",
    "=================================================="
  ].join("\n")

export const menu = (): string =>
  ["", "  1) Create an auction", "  2) List auctions", "  3) Join an auction", "  4) Exit"].join("\n")

export const money = (amount: number): string => `$${amount}`

/** A participant by session number; `me` is this client's session. */
export const who = (session: number, me: number): string =>
  session === me ? `bidder ${session} (you)` : `bidder ${session}`

/** The list of auctions, numbered 1… for picking (`#`), with the auction ids. */
export const auctionsTable = (rows: ReadonlyArray<AuctionSummary>, me: number): string =>
  rows.length === 0
    ? "No open auctions."
    : table(
        ["#", "Auction", "Item", "Min Bid", "Rounds", "Bidders", "Status"],
        rows.map((row, index) => [
          String(index + 1),
          String(row.auction),
          row.auctioneer === me ? `${row.item} (yours)` : row.item,
          money(row.minBid),
          String(row.minRounds),
          `${row.bidders}/${row.minBidders}`,
          row.status
        ])
      )

export interface BidderAmount {
  readonly bidder: number
  readonly amount: number
}

/** The bids of a completed round, with each bidder's total so far. */
export const roundTable = (
  round: number,
  bids: ReadonlyArray<BidderAmount>,
  totals: ReadonlyMap<number, number>,
  me: number
): string =>
  [
    `Round ${round} results:`,
    table(
      ["Bidder", "Bid", "Total"],
      bids.map(({ bidder, amount }) => [who(bidder, me), money(amount), money(totals.get(bidder) ?? amount)])
    )
  ].join("\n")

/** Every bidder's total, highest first, the winner marked. */
export const standings = (totals: ReadonlyArray<BidderAmount>, winner: number, me: number): string =>
  [
    "Final standings:",
    table(
      ["Place", "Bidder", "Total"],
      [...totals]
        // Stable sort: equal totals keep the server's (join) order.
        .sort((a, b) => b.amount - a.amount)
        .map(({ bidder, amount }, index) => [
          String(index + 1),
          who(bidder, me) + (bidder === winner ? "  <- winner" : ""),
          money(amount)
        ])
    )
  ].join("\n")

export const wonBanner = (item: string, amount: number): string =>
  [
    "",
    "**************************************************",
    "*                                                *",
    "*           CONGRATULATIONS! YOU WON!            *",
    "*                                                *",
    "**************************************************",
    `You won "${item}" with a total of ${money(amount)}.`
  ].join("\n")

export const cancelReason = (reason: string): string => {
  switch (reason) {
    case "start-timeout":
      return "the auctioneer did not start it in time"
    case "cancelled-by-auctioneer":
      return "the auctioneer cancelled it"
    case "auctioneer-left":
      return "the auctioneer left"
    default:
      return reason
  }
}

/** "45 s" for a countdown; never negative. */
export const seconds = (ms: number): string => `${Math.max(0, Math.ceil(ms / 1000))} s`

/**
 * The next point of a countdown, as remaining ms: every whole 10 s, then 5 s,
 * then 0 (time is up). `remainingMs` is what is left now.
 */
export const nextCountdownMark = (remainingMs: number): number => {
  if (remainingMs > 10_000) return Math.floor((remainingMs - 1) / 10_000) * 10_000
  if (remainingMs > 5_000) return 5_000
  return 0
}
