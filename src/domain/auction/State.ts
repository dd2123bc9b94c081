/**
 * The replicated state of the auctions: what `evolve` builds from events and
 * what checkpoints and snapshots store (DESIGN §5).
 *
 * - `open`: waiting and running auctions, each with its terms, its progress
 *   and its own list of events (so any leader can resend any range of
 *   notifications).
 * - `history`: closed and cancelled auctions, a summary (bidders, winner,
 *   totals or reason) plus their events, kept until `AuctionPurged` at the
 *   end of the retention period — the final notifications (won, lost,
 *   cancelled) may still have to be resent after a failover.
 *
 * Every collection is persistent (`HashMap`, `Chunk`), so one event costs
 * O(log n), never a copy of all auctions or of an event list. The schema
 * `AuctionsState` encodes all of it to plain JSON.
 */
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { AuctionId, SessionId } from "../Ids.js"
import * as Money from "../Money.js"
import { ChunkOfPlain, EncodedOnce, HashMapByNumber } from "./Codecs.js"
import { AuctionEvent, BidderAmounts } from "./Events.js"
import { CancelReason } from "./Phase.js"
import { Index, Item, MinBidders, Rounds, TimeMs, TimeoutMs } from "./Rules.js"

/** What every auction keeps from creation to purge. */
const common = {
  auction: AuctionId,
  auctioneer: SessionId,
  item: Item,
  minBid: Money.Money,
  minRounds: Rounds,
  minBidders: MinBidders,
  roundTimeoutMs: TimeoutMs,
  startTimeoutMs: TimeoutMs,
  createdAtMs: TimeMs,
  /** Every event of this auction, in log order (the source of its notification streams). */
  events: ChunkOfPlain(AuctionEvent),
  /** Where the `ReadyCheck` is in `events`, once sent (at most once). */
  readyCheckIndex: Schema.OptionFromNullOr(Index)
}

export const WaitingAuction = Schema.Struct({
  phase: Schema.Literal("waiting"),
  ...common,
  /** Each bidder that joined and has not left, with its join order (a rising counter). */
  bidders: HashMapByNumber(SessionId, Index),
  /** The join order the next bidder gets. */
  joinCount: Index
})
export type WaitingAuction = typeof WaitingAuction.Type

export const RunningAuction = Schema.Struct({
  phase: Schema.Literal("running"),
  ...common,
  /** The bidders in join order, fixed at start. */
  bidders: Schema.Array(SessionId),
  /** Where `AuctionStarted` is in `events`: every later event is addressed to everyone. */
  startIndex: Index,
  /** The current round (0 only between `AuctionStarted` and the first `RoundStarted` of one decision). */
  round: Index,
  roundDeadlineMs: TimeMs,
  /** The bids of the current round (sealed). */
  roundBids: HashMapByNumber(SessionId, Money.Money),
  /** Every bidder's total so far (0 before its first bid); holds exactly the bidders. */
  totals: HashMapByNumber(SessionId, Money.Money),
  /** The order in which round-1 bids were committed (the first tie rule). */
  firstBidOrder: HashMapByNumber(SessionId, Index)
})
export type RunningAuction = typeof RunningAuction.Type

export const ClosedAuction = Schema.Struct({
  phase: Schema.Literal("closed"),
  ...common,
  bidders: Schema.Array(SessionId),
  startIndex: Index,
  winner: SessionId,
  amount: Money.Money,
  totals: BidderAmounts
})
export type ClosedAuction = typeof ClosedAuction.Type

export const CancelledAuction = Schema.Struct({
  phase: Schema.Literal("cancelled"),
  ...common,
  /** The bidders at cancellation, in join order: they were told why. */
  bidders: Schema.Array(SessionId),
  reason: CancelReason
})
export type CancelledAuction = typeof CancelledAuction.Type

export const OpenAuction = Schema.Union(WaitingAuction, RunningAuction)
export type OpenAuction = typeof OpenAuction.Type

export const EndedAuction = Schema.Union(ClosedAuction, CancelledAuction)
export type EndedAuction = typeof EndedAuction.Type

/** An auction in any phase. */
export type Auction = OpenAuction | EndedAuction

/** An ended auction never changes until its purge: checkpoints and snapshots reuse its encoding. */
const StoredEndedAuction = EncodedOnce(EndedAuction)
const encodeEndedAuction = StoredEndedAuction.encode

const StateFields = Schema.Struct({
  /** The id the next `CreateAuction` gets: every replica assigns the same. */
  nextAuctionId: AuctionId,
  open: HashMapByNumber(AuctionId, OpenAuction),
  history: HashMapByNumber(AuctionId, StoredEndedAuction.schema)
})

const consistent = (state: typeof StateFields.Type): string | true => {
  for (const map of [state.open, state.history]) {
    for (const [id, auction] of map) {
      if (id !== auction.auction) return `auction ${auction.auction} is stored under id ${id}`
      if (id >= state.nextAuctionId) return `auction ${id} is not below nextAuctionId ${state.nextAuctionId}`
      if (map === state.open && HashMap.has(state.history, id)) return `auction ${id} is both open and ended`
    }
  }
  return true
}

/** The whole state; its encoded form is plain JSON (checkpoints, snapshots). */
export const AuctionsState = StateFields.pipe(
  Schema.filter(consistent),
  Schema.annotations({ identifier: "AuctionsState" })
)
export type AuctionsState = typeof AuctionsState.Type

/** The state as a JSON string. */
export const AuctionsStateJson = Schema.parseJson(AuctionsState)

export const encodeState = Schema.encodeSync(AuctionsState)
export const decodeState = Schema.decodeUnknownEither(AuctionsState)

/**
 * Encodes an auction that just ended, so that the checkpoint that first holds it only looks its
 * encoding up: encoding every auction that ended since the last checkpoint at once stalled the
 * server 150–250 ms under load (1,800 auctions).
 */
export const encodeEndedNow = (auction: EndedAuction): void => {
  encodeEndedAuction(auction)
}

/**
 * The state without its history, and the history as one JSON part per ended auction keyed by
 * its id: what a checkpoint writes once per auction (DESIGN §5, Checkpoints).
 */
export const splitHistory = (
  state: AuctionsState
): { readonly rest: AuctionsState; readonly parts: ReadonlyMap<string, unknown> } => {
  const parts = new Map<string, unknown>()
  for (const [id, auction] of state.history) parts.set(String(id), encodeEndedAuction(auction))
  return { rest: { ...state, history: HashMap.empty() }, parts }
}

/**
 * Undoes `splitHistory` on an encoded state: its history (empty, but a checkpoint written
 * before parts existed holds the whole of it) followed by the parts. A key that is not an id
 * as `splitHistory` writes it stays a string, so decoding the result fails.
 */
export const joinHistory = (encoded: unknown, parts: ReadonlyMap<string, unknown>): unknown => {
  if (parts.size === 0 || typeof encoded !== "object" || encoded === null) return encoded
  const history: unknown = (encoded as { readonly history?: unknown }).history
  if (!Array.isArray(history)) return encoded
  const joined: Array<unknown> = [...history]
  for (const [key, value] of parts) {
    const id = Number(key)
    joined.push([String(id) === key ? id : key, value])
  }
  return { ...encoded, history: joined }
}

/** No auctions yet; the first gets id 1. */
export const initialState: AuctionsState = {
  nextAuctionId: AuctionId.make(1),
  open: HashMap.empty(),
  history: HashMap.empty()
}

/** An auction by id, open or ended. */
export const findAuction = (state: AuctionsState, auction: AuctionId): Option.Option<Auction> => {
  const open = HashMap.get(state.open, auction)
  return Option.isSome(open) ? open : HashMap.get(state.history, auction)
}

/** Whether a session is a bidder of the auction (now, or at its end). */
export const isBidder = (auction: Auction, session: SessionId): boolean => {
  switch (auction.phase) {
    case "waiting":
      return HashMap.has(auction.bidders, session)
    case "running":
      return HashMap.has(auction.totals, session)
    case "closed":
    case "cancelled":
      return auction.bidders.includes(session)
  }
}

/** The bidders of a waiting auction in join order. */
export const waitingBidders = (auction: WaitingAuction): ReadonlyArray<SessionId> =>
  Array.from(auction.bidders)
    .sort(([, a], [, b]) => a - b)
    .map(([bidder]) => bidder)

/** How many bidders an auction has (now, or had at its end). */
export const bidderCount = (auction: Auction): number =>
  auction.phase === "waiting" ? HashMap.size(auction.bidders) : auction.bidders.length
