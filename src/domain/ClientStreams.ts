/**
 * ClientStreams: the client's side of "Notifications and order" (DESIGN §5,
 * promise 2), as a pure (state, input) → { state, outputs } module (STYLE.md).
 *
 * Each (auction, participant) stream is numbered 1, 2, 3, … by the leader. The
 * network loses, duplicates and reorders `Notify` datagrams; this module turns
 * what arrives into what the user sees: each auction's notices in order, with
 * no gap and no repeat.
 *
 * - `delivered` is the highest number handed to the user; everything at or
 *   below it is a duplicate (dropped, and acknowledged again: the leader
 *   resends what it thinks is unacknowledged, so a lost ack must be repaired).
 * - A notice above `delivered + 1` waits in a bounded buffer (`windowMax`
 *   numbers past `delivered` per auction, `pendingMax` over all auctions);
 *   outside it, it is dropped unacknowledged and will come again (resend or
 *   our own `Subscribe`).
 * - A gap (the buffer holds notices but not `delivered + 1`) is asked for with
 *   `Subscribe { fromSeq: delivered + 1 }`, at most once per `gapRetryMs` per
 *   auction, so a burst of out-of-order notices costs one request, and a lost
 *   request is asked again by `tick`.
 * - Acks are cumulative: `Ack { seq: delivered }` after every `Notify`.
 * - After a leader change every open auction is resubscribed, and asked again
 *   every `gapRetryMs` until the new leader answers `Subscribed`: a lost
 *   `Subscribe` looks exactly like a quiet stream, and an auction that ended
 *   while this client was cut off sends nothing more by itself.
 * - `room` is how many notices the user's queue can still take. Delivery
 *   stops there; the rest stays buffered (still unacknowledged, so nothing is
 *   lost) and `tick` delivers it once the user has taken some. A slow user
 *   thus slows the leader's stream instead of losing notices or growing memory.
 *
 * Auctions tracked are bounded (`auctionsMax`). A full table makes room by
 * forgetting the finished auction (final notice delivered) with the lowest
 * id; with none finished, a notice of a new auction is dropped. A forgotten
 * auction's late duplicate would look new again: with a table of a thousand
 * auctions that needs a datagram delayed past a thousand auctions' lifetimes.
 */
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import type { Notice } from "./auction/Notifications.js"
import type { AuctionId } from "./Ids.js"

/** One notice as the user gets it: the auction, its number in this client's stream, and the notice. */
export interface DeliveredNotice {
  readonly auction: AuctionId
  readonly seq: number
  readonly notice: Notice
}

export interface StreamLimits {
  /** Numbers past `delivered` that may wait in one auction's buffer. */
  readonly windowMax: number
  /** Notices buffered over all auctions. */
  readonly pendingMax: number
  /** Auctions tracked at once. */
  readonly auctionsMax: number
  /** Least time between two `Subscribe`s for the same auction's gap. */
  readonly gapRetryMs: number
}

export const streamLimitsDefault: StreamLimits = {
  windowMax: 64,
  pendingMax: 4096,
  auctionsMax: 1024,
  gapRetryMs: 1000
}

export interface AuctionStream {
  /** The highest number handed to the user (0: none yet). */
  readonly delivered: number
  /** Notices above `delivered`, waiting for the numbers before them (or for room). */
  readonly pending: ReadonlyMap<number, Notice>
  /** The round of the last `RoundStartedNotice` delivered: what a bid without a round is for. */
  readonly round: number | null
  /** The final notice (won, lost, closed, cancelled) was delivered: nothing more will come. */
  readonly finished: boolean
  /** When the current gap was last asked for (null: not asked since the last progress). */
  readonly gapAskedMs: number | null
}

export interface ClientStreams {
  readonly auctions: HashMap.HashMap<AuctionId, AuctionStream>
  /** Notices buffered over all auctions (the sum of every `pending.size`). */
  readonly pendingCount: number
  /** Resubscriptions the leader has not answered yet, with when each was last sent. */
  readonly unconfirmed: HashMap.HashMap<AuctionId, number>
}

export type StreamOutput =
  /** Hand to the user, in this order. */
  | { readonly _tag: "Deliver"; readonly delivered: DeliveredNotice }
  /** Tell the leader every notice up to `seq` arrived. */
  | { readonly _tag: "Ack"; readonly auction: AuctionId; readonly seq: number }
  /** Ask the leader for the notices from `fromSeq` on. */
  | { readonly _tag: "Subscribe"; readonly auction: AuctionId; readonly fromSeq: number }

/** Why an arriving notice was neither delivered nor buffered (it will come again). */
export type StreamDrop = "duplicate" | "window" | "buffer-full" | "auctions-full"

export interface StreamStep {
  readonly streams: ClientStreams
  readonly outputs: ReadonlyArray<StreamOutput>
  readonly dropped: StreamDrop | null
}

export const emptyStreams: ClientStreams = {
  auctions: HashMap.empty(),
  pendingCount: 0,
  unconfirmed: HashMap.empty()
}

const freshStream: AuctionStream = {
  delivered: 0,
  pending: new Map(),
  round: null,
  finished: false,
  gapAskedMs: null
}

const isFinal = (notice: Notice): boolean => {
  switch (notice._tag) {
    case "AuctionWonNotice":
    case "AuctionLostNotice":
    case "AuctionClosedNotice":
    case "AuctionCancelledNotice":
      return true
    default:
      return false
  }
}

/** The round a bid without one is for: the last round this client was told had started. */
export const currentRound = (streams: ClientStreams, auction: AuctionId): Option.Option<number> =>
  Option.flatMap(HashMap.get(streams.auctions, auction), (stream) => Option.fromNullable(stream.round))

/** The auction's table entry, making room for it if it is new; none when the table is full of open auctions. */
const entryFor = (
  streams: ClientStreams,
  auction: AuctionId,
  limits: StreamLimits
): Option.Option<{ readonly streams: ClientStreams; readonly stream: AuctionStream }> => {
  const existing = HashMap.get(streams.auctions, auction)
  if (Option.isSome(existing)) return Option.some({ streams, stream: existing.value })
  if (HashMap.size(streams.auctions) < limits.auctionsMax)
    return Option.some({ streams, stream: freshStream })
  let victim: AuctionId | undefined
  for (const [id, stream] of streams.auctions) {
    if (stream.finished && (victim === undefined || id < victim)) victim = id
  }
  if (victim === undefined) return Option.none()
  // A finished stream's buffer is empty: nothing follows a final notice, and delivery drains it.
  const pendingOfVictim = Option.match(HashMap.get(streams.auctions, victim), {
    onNone: () => 0,
    onSome: (stream) => stream.pending.size
  })
  return Option.some({
    streams: {
      auctions: HashMap.remove(streams.auctions, victim),
      pendingCount: streams.pendingCount - pendingOfVictim,
      unconfirmed: HashMap.remove(streams.unconfirmed, victim)
    },
    stream: freshStream
  })
}

/** Starts following an auction this client created or joined (so a failover resubscribes it). */
export const track = (streams: ClientStreams, auction: AuctionId, limits: StreamLimits): ClientStreams =>
  Option.match(entryFor(streams, auction, limits), {
    onNone: () => streams,
    onSome: (entry) => ({
      ...entry.streams,
      auctions: HashMap.set(entry.streams.auctions, auction, entry.stream)
    })
  })

interface Advanced {
  readonly stream: AuctionStream
  readonly outputs: Array<StreamOutput>
  readonly deliveredCount: number
}

/**
 * Delivers what is contiguous after `delivered`, up to `room`, then asks for a
 * gap if there is one and it was not asked within `gapRetryMs`.
 */
const advance = (
  auction: AuctionId,
  stream: AuctionStream,
  nowMs: number,
  room: number,
  limits: StreamLimits
): Advanced => {
  const outputs: Array<StreamOutput> = []
  let { delivered, round, finished, gapAskedMs } = stream
  // Copied on the first delivery only: the input state is never changed.
  let pending: Map<number, Notice> | undefined
  let count = 0
  while (count < room) {
    const next = (pending ?? stream.pending).get(delivered + 1)
    if (next === undefined) break
    pending ??= new Map(stream.pending)
    pending.delete(delivered + 1)
    delivered += 1
    count += 1
    if (next._tag === "RoundStartedNotice") round = next.round
    if (isFinal(next)) finished = true
    outputs.push({ _tag: "Deliver", delivered: { auction, seq: delivered, notice: next } })
  }
  // Progress answers the previous ask; a gap further on is a new one.
  if (count > 0) gapAskedMs = null
  const left: ReadonlyMap<number, Notice> = pending ?? stream.pending
  const gap = left.size > 0 && !left.has(delivered + 1)
  if (gap && (gapAskedMs === null || nowMs - gapAskedMs >= limits.gapRetryMs)) {
    outputs.push({ _tag: "Subscribe", auction, fromSeq: delivered + 1 })
    gapAskedMs = nowMs
  }
  return { stream: { delivered, pending: left, round, finished, gapAskedMs }, outputs, deliveredCount: count }
}

const ackOf = (auction: AuctionId, stream: AuctionStream): ReadonlyArray<StreamOutput> =>
  stream.delivered > 0 ? [{ _tag: "Ack", auction, seq: stream.delivered }] : []

/**
 * A `Notify { auction, seq, notice }` arrived. `room`: how many notices the
 * user's queue can take now.
 */
export const receive = (
  streams: ClientStreams,
  notify: { readonly auction: AuctionId; readonly seq: number; readonly notice: Notice },
  nowMs: number,
  room: number,
  limits: StreamLimits
): StreamStep => {
  const { auction, seq, notice } = notify
  const entry = entryFor(streams, auction, limits)
  if (Option.isNone(entry)) return { streams, outputs: [], dropped: "auctions-full" }
  const base = entry.value.streams
  const stream = entry.value.stream
  const store = (next: AuctionStream, pendingCount: number): ClientStreams => ({
    ...base,
    auctions: HashMap.set(base.auctions, auction, next),
    pendingCount
  })
  if (seq <= stream.delivered || stream.pending.has(seq)) {
    return {
      streams: store(stream, base.pendingCount),
      outputs: ackOf(auction, stream),
      dropped: "duplicate"
    }
  }
  // Only a notice the user can take right now may pass a full buffer: `pendingCount` never exceeds `pendingMax`.
  const deliverableNow = seq === stream.delivered + 1 && room > 0
  const refusal: StreamDrop | null =
    seq > stream.delivered + limits.windowMax
      ? "window"
      : !deliverableNow && base.pendingCount >= limits.pendingMax
        ? "buffer-full"
        : null
  const pending = refusal === null ? new Map(stream.pending).set(seq, notice) : stream.pending
  const advanced = advance(auction, { ...stream, pending }, nowMs, room, limits)
  let next = advanced.stream
  const outputs = [...advanced.outputs]
  // A dropped notice beyond `delivered + 1` shows a gap even when nothing else is buffered.
  const asked = outputs.some((output) => output._tag === "Subscribe")
  if (
    refusal !== null &&
    !asked &&
    seq > next.delivered + 1 &&
    (next.gapAskedMs === null || nowMs - next.gapAskedMs >= limits.gapRetryMs)
  ) {
    outputs.push({ _tag: "Subscribe", auction, fromSeq: next.delivered + 1 })
    next = { ...next, gapAskedMs: nowMs }
  }
  outputs.push(...ackOf(auction, next))
  return {
    streams: store(next, base.pendingCount + (refusal === null ? 1 : 0) - advanced.deliveredCount),
    outputs,
    dropped: refusal
  }
}

/**
 * Timer: delivers what waited for room, asks again for gaps whose last ask is
 * `gapRetryMs` old (the `Subscribe` or its answer may have been lost), and
 * resends resubscriptions the leader has not answered within `gapRetryMs`.
 */
export const tick = (
  streams: ClientStreams,
  nowMs: number,
  room: number,
  limits: StreamLimits
): { readonly streams: ClientStreams; readonly outputs: ReadonlyArray<StreamOutput> } => {
  if (streams.pendingCount === 0 && HashMap.isEmpty(streams.unconfirmed)) return { streams, outputs: [] }
  let auctions = streams.auctions
  let pendingCount = streams.pendingCount
  let roomLeft = room
  const outputs: Array<StreamOutput> = []
  for (const [auction, stream] of streams.auctions) {
    if (stream.pending.size === 0) continue
    const advanced = advance(auction, stream, nowMs, roomLeft, limits)
    if (advanced.outputs.length === 0) continue
    roomLeft -= advanced.deliveredCount
    pendingCount -= advanced.deliveredCount
    auctions = HashMap.set(auctions, auction, advanced.stream)
    outputs.push(...advanced.outputs)
    if (advanced.deliveredCount > 0) outputs.push(...ackOf(auction, advanced.stream))
  }
  let unconfirmed = streams.unconfirmed
  for (const [auction, askedMs] of streams.unconfirmed) {
    const stream = Option.getOrUndefined(HashMap.get(auctions, auction))
    if (stream === undefined || stream.finished) {
      unconfirmed = HashMap.remove(unconfirmed, auction)
    } else if (nowMs - askedMs >= limits.gapRetryMs) {
      outputs.push({ _tag: "Subscribe", auction, fromSeq: stream.delivered + 1 })
      unconfirmed = HashMap.set(unconfirmed, auction, nowMs)
    }
  }
  return { streams: { auctions, pendingCount, unconfirmed }, outputs }
}

/** The leader answered a resubscription: stop asking (its notices follow, resent until acknowledged). */
export const subscribed = (streams: ClientStreams, auction: AuctionId): ClientStreams =>
  HashMap.has(streams.unconfirmed, auction)
    ? { ...streams, unconfirmed: HashMap.remove(streams.unconfirmed, auction) }
    : streams

/**
 * After a leader change: ask the new leader for every open auction's notices
 * from the first one not yet delivered (DESIGN §5: "after a failover the
 * client resubscribes from the last number it has"), until it answers (`tick`, `subscribed`).
 */
export const resubscribeAll = (
  streams: ClientStreams,
  nowMs: number
): { readonly streams: ClientStreams; readonly outputs: ReadonlyArray<StreamOutput> } => {
  let auctions = streams.auctions
  let unconfirmed = streams.unconfirmed
  const outputs: Array<StreamOutput> = []
  for (const [auction, stream] of streams.auctions) {
    if (stream.finished) continue
    outputs.push({ _tag: "Subscribe", auction, fromSeq: stream.delivered + 1 })
    auctions = HashMap.set(auctions, auction, { ...stream, gapAskedMs: nowMs })
    unconfirmed = HashMap.set(unconfirmed, auction, nowMs)
  }
  return { streams: { ...streams, auctions, unconfirmed }, outputs }
}
