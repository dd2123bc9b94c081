/**
 * `evolve(state, event)`: the one way the state changes. Every server (the
 * leader too) builds its committed state by folding this over committed
 * events, and nothing else — passive replication.
 *
 * It trusts its events (decide produced them), but it checks the invariants
 * it relies on and throws on an event that cannot apply: a state that would
 * otherwise go silently wrong becomes a defect the caller (and the simulator)
 * sees. Each event costs O(log n): persistent maps, a chunk append.
 */
import * as Chunk from "effect/Chunk"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import type { AuctionId, SessionId } from "../Ids.js"
import * as Money from "../Money.js"
import type { AuctionEvent } from "./Events.js"
import type {
  Auction,
  AuctionsState,
  CancelledAuction,
  ClosedAuction,
  OpenAuction,
  RunningAuction,
  WaitingAuction
} from "./State.js"
import { waitingBidders } from "./State.js"

/** A broken invariant: the event log and the state disagree. */
export class EvolveDefect extends Error {
  override readonly name = "EvolveDefect"
}

const defect = (message: string): never => {
  throw new EvolveDefect(message)
}

const wrongPhase = (auction: Auction, event: AuctionEvent): never =>
  defect(`${event._tag} cannot apply to auction ${auction.auction}, which is ${auction.phase}`)

/** The fields an auction keeps in every phase, with the event appended. */
const carry = (auction: Auction, event: AuctionEvent): Carried => ({
  auction: auction.auction,
  auctioneer: auction.auctioneer,
  item: auction.item,
  minBid: auction.minBid,
  minRounds: auction.minRounds,
  minBidders: auction.minBidders,
  roundTimeoutMs: auction.roundTimeoutMs,
  startTimeoutMs: auction.startTimeoutMs,
  createdAtMs: auction.createdAtMs,
  events: Chunk.append(auction.events, event),
  readyCheckIndex: auction.readyCheckIndex
})

type Carried = Pick<
  Auction,
  | "auction"
  | "auctioneer"
  | "item"
  | "minBid"
  | "minRounds"
  | "minBidders"
  | "roundTimeoutMs"
  | "startTimeoutMs"
  | "createdAtMs"
  | "events"
  | "readyCheckIndex"
>

/**
 * An auction entering a phase: what it carries (`carry`), then the phase's own fields. Assigned,
 * not spread: in V8 (Node 20) an object spread followed by new fields gives every object a hidden
 * class of its own (10,049 ended auctions had 10,049 maps in a server's heap snapshot), which
 * costs memory and makes every property access on them megamorphic.
 */
const enter = <A extends Auction>(auction: Auction, event: AuctionEvent, fields: Omit<A, keyof Carried>): A =>
  Object.assign(carry(auction, event), fields) as unknown as A

const evolveWaiting = (auction: WaitingAuction, event: AuctionEvent): Auction => {
  const events = Chunk.append(auction.events, event)
  switch (event._tag) {
    case "BidderJoined":
      if (HashMap.has(auction.bidders, event.bidder)) defect(`bidder ${event.bidder} joined twice`)
      return {
        ...auction,
        events,
        bidders: HashMap.set(auction.bidders, event.bidder, auction.joinCount),
        joinCount: auction.joinCount + 1
      }
    case "BidderLeft":
      if (!HashMap.has(auction.bidders, event.bidder)) defect(`bidder ${event.bidder} left without joining`)
      return { ...auction, events, bidders: HashMap.remove(auction.bidders, event.bidder) }
    case "ReadyCheck":
      if (Option.isSome(auction.readyCheckIndex)) {
        defect(`a second ready check for auction ${auction.auction}`)
      }
      return { ...auction, events, readyCheckIndex: Option.some(auction.events.length) }
    case "AuctionStarted": {
      return enter<RunningAuction>(auction, event, {
        phase: "running",
        bidders: event.bidders,
        startIndex: auction.events.length,
        round: 0,
        roundDeadlineMs: 0,
        roundBids: HashMap.empty(),
        totals: HashMap.fromIterable(event.bidders.map((bidder) => [bidder, Money.zero] as const)),
        firstBidOrder: HashMap.empty()
      })
    }
    case "AuctionCancelled": {
      return enter<CancelledAuction>(auction, event, {
        phase: "cancelled",
        bidders: waitingBidders(auction),
        reason: event.reason
      })
    }
    default:
      return wrongPhase(auction, event)
  }
}

const evolveRunning = (auction: RunningAuction, event: AuctionEvent): Auction => {
  switch (event._tag) {
    case "RoundStarted":
      if (event.round !== auction.round + 1) defect(`round ${event.round} follows round ${auction.round}`)
      return {
        ...auction,
        events: Chunk.append(auction.events, event),
        round: event.round,
        roundDeadlineMs: event.deadlineMs,
        roundBids: HashMap.empty()
      }
    case "BidPlaced": {
      if (event.round !== auction.round) defect(`a bid for round ${event.round} in round ${auction.round}`)
      if (HashMap.has(auction.roundBids, event.bidder)) defect(`bidder ${event.bidder} bid twice`)
      const total = Option.getOrElse(HashMap.get(auction.totals, event.bidder), () =>
        defect(`bidder ${event.bidder} is not in auction ${auction.auction}`)
      )
      const newTotal = Money.add(total, event.amount)
      if (newTotal._tag === "Left") return defect(newTotal.left.message)
      return {
        ...auction,
        events: Chunk.append(auction.events, event),
        roundBids: HashMap.set(auction.roundBids, event.bidder, event.amount),
        totals: HashMap.set(auction.totals, event.bidder, newTotal.right),
        firstBidOrder:
          event.round === 1
            ? HashMap.set(auction.firstBidOrder, event.bidder, HashMap.size(auction.firstBidOrder))
            : auction.firstBidOrder
      }
    }
    case "RoundCompleted":
      if (event.round !== auction.round) defect(`round ${event.round} completed in round ${auction.round}`)
      return { ...auction, events: Chunk.append(auction.events, event) }
    case "AuctionClosed": {
      return enter<ClosedAuction>(auction, event, {
        phase: "closed",
        bidders: auction.bidders,
        startIndex: auction.startIndex,
        winner: event.winner,
        amount: event.amount,
        totals: event.totals
      })
    }
    default:
      return wrongPhase(auction, event)
  }
}

/** One open auction after one of its events (the auction's own part of `evolve`). */
export const evolveAuction = (auction: OpenAuction, event: AuctionEvent): Auction => {
  if (event.auction !== auction.auction) defect(`an event of auction ${event.auction} for ${auction.auction}`)
  return auction.phase === "waiting" ? evolveWaiting(auction, event) : evolveRunning(auction, event)
}

const created = (state: AuctionsState, event: Extract<AuctionEvent, { _tag: "AuctionCreated" }>) => {
  if (HashMap.has(state.open, event.auction) || HashMap.has(state.history, event.auction)) {
    defect(`auction ${event.auction} created twice`)
  }
  const auction: WaitingAuction = {
    phase: "waiting",
    auction: event.auction,
    auctioneer: event.auctioneer,
    item: event.item,
    minBid: event.minBid,
    minRounds: event.minRounds,
    minBidders: event.minBidders,
    roundTimeoutMs: event.roundTimeoutMs,
    startTimeoutMs: event.startTimeoutMs,
    createdAtMs: event.createdAtMs,
    events: Chunk.of<AuctionEvent>(event),
    readyCheckIndex: Option.none(),
    bidders: HashMap.empty<SessionId, number>(),
    joinCount: 0
  }
  return {
    nextAuctionId: (event.auction >= state.nextAuctionId
      ? event.auction + 1
      : state.nextAuctionId) as AuctionId,
    open: HashMap.set(state.open, event.auction, auction),
    history: state.history
  }
}

/** The state after one event. */
export const evolve = (state: AuctionsState, event: AuctionEvent): AuctionsState => {
  switch (event._tag) {
    case "AuctionCreated":
      return created(state, event)
    case "AuctionPurged":
      if (!HashMap.has(state.history, event.auction)) defect(`auction ${event.auction} purged but not ended`)
      return { ...state, history: HashMap.remove(state.history, event.auction) }
    default: {
      const auction = Option.getOrElse(HashMap.get(state.open, event.auction), () =>
        defect(`${event._tag} for auction ${event.auction}, which is not open`)
      )
      const next = evolveAuction(auction, event)
      return next.phase === "waiting" || next.phase === "running"
        ? { ...state, open: HashMap.set(state.open, next.auction, next) }
        : {
            ...state,
            open: HashMap.remove(state.open, next.auction),
            history: HashMap.set(state.history, next.auction, next)
          }
    }
  }
}

/** The state after a sequence of events (replay, a decision's events). */
export const evolveAll = (state: AuctionsState, events: Iterable<AuctionEvent>): AuctionsState => {
  let next = state
  for (const event of events) next = evolve(next, event)
  return next
}
