/**
 * Who wins (DESIGN §3): the highest total over all rounds; on a tie, the
 * bidder whose round-1 bid was committed first (a bidder without a round-1
 * bid comes after all who have one); then the earliest join.
 */
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import type { SessionId } from "../Ids.js"
import * as Money from "../Money.js"
import type { BidderAmount } from "./Events.js"
import type { RunningAuction } from "./State.js"

export interface Outcome {
  readonly winner: SessionId
  readonly amount: Money.Money
  /** Every bidder's total, in join order. */
  readonly totals: ReadonlyArray<BidderAmount>
}

/** The outcome of a running auction as it stands (missing bids count 0). */
export const outcomeOf = (auction: RunningAuction): Outcome => {
  const totals: Array<BidderAmount> = []
  let best: { bidder: SessionId; amount: Money.Money; firstBid: number } | undefined
  // Join order is the list's order, so the first of equal candidates met is the earliest joiner.
  for (const bidder of auction.bidders) {
    const amount = Option.getOrElse(HashMap.get(auction.totals, bidder), () => Money.zero)
    const firstBid = Option.getOrElse(
      HashMap.get(auction.firstBidOrder, bidder),
      () => Number.POSITIVE_INFINITY
    )
    totals.push({ bidder, amount })
    if (best === undefined || amount > best.amount || (amount === best.amount && firstBid < best.firstBid)) {
      best = { bidder, amount, firstBid }
    }
  }
  if (best === undefined) throw new Error(`auction ${auction.auction} has no bidders`)
  return { winner: best.bidder, amount: best.amount, totals }
}
