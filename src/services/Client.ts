/**
 * Client: one client process's connection to an Agora cluster (DESIGN §5
 * "Discovery", "Client sessions", "Notifications and order"; promises 2 and 5).
 * It needs a `Transport` built as a client identity (role "client", id = the
 * client id) and gives the program, the CLI's `--json` protocol included:
 *
 * - Discovery: `DiscoveryRequest` is broadcast at start and every
 *   `discoveryIntervalMs` (jittered, so clients started together do not beat in
 *   step) until a `DiscoveryResponse` names a leader. When the responder is
 *   that leader its datagram's source is the address (DESIGN §4: reply to
 *   rinfo); otherwise the address the responder knows.
 * - Session: `Register { nonce }` until `Registered`. The nonce starts at the
 *   clock in ms × 1000 plus a random 0–999 and rises per registration attempt,
 *   so a retried Register gets the same session and a restarted process with
 *   a fixed `--id` never gets its previous life's session (whose request ids
 *   are ahead of ours: ours would be dropped as stale, unanswered).
 * - Requests: one in flight (TigerBeetle); the rest wait, in the order they
 *   came, up to `queueCapacity` of them, and a call that finds that many
 *   waiting fails at once with `ClientBusy` (nothing sent). A request runs in
 *   its caller's fiber: its reply wakes the caller directly. Request ids rise
 *   strictly over the whole process, so they rise within every session and a
 *   reply names its request unambiguously. A request is resent with the same
 *   id every `retryIntervalMs` (by the client's timer, on its next tick after
 *   that), and at once when the leader changes, until a reply with its id
 *   arrives (from any server: a deposed leader's late reply is a true answer)
 *   or `requestTimeoutMs` passes (counted from when it stops waiting for its
 *   turn; the wait for the turn is bounded by the queue's capacity instead).
 *   A caller interrupted while its request is in flight stops waiting for it
 *   and frees the turn: that request may or may not be applied.
 * - Leader changes: `NotLeader { leader }` from the server we target switches
 *   to `leader` (at an epoch no lower) and resends at once; `NotLeader { null }`
 *   rediscovers. `LeaderChanged` and discovery answers switch only to a higher
 *   epoch, so a late datagram of a deposed leader never pulls the client back.
 * - Liveness: `Ping` every `pingIntervalMs`; when the leader has been silent
 *   (no `Pong`, nor anything else) for `pingMissesMax` intervals, rediscover.
 * - Notifications: ordered, gap-free, duplicate-free per auction by the pure
 *   `ClientStreams` module; after a leader change every open auction is
 *   resubscribed from its first undelivered number.
 *
 * Error model (what a caller can rely on):
 * - `request(op)` returns the server's `ReplyResult`, `Failed { code, message }`
 *   included, so the code survives for `{"type":"error","code":…}`. An op the
 *   wire schema refuses is answered `Failed { InvalidRequest }` locally.
 * - `Timeout`: sent at least once and no answer within the request timeout, or
 *   answered `SessionExpired` (DESIGN §5): it MAY have been applied. It is never
 *   resent under another session; the client registers again for later requests.
 * - `NotConnected`: no leader or no session within the request timeout; the
 *   request was never sent, so it was NOT applied.
 * - `ClientBusy`: the queue was full; not sent, NOT applied.
 * - The helpers (`create`, `join`, `bid`, …) turn `Failed` into `Refused { code }`.
 * - When the client's scope closes, calls still waiting are interrupted.
 *
 * All time is `Clock`/`Effect.sleep`, all randomness `Random`: it runs
 * unchanged in the deterministic simulator.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import type { Scope } from "effect/Scope"
import * as Stream from "effect/Stream"
import * as SubscriptionRef from "effect/SubscriptionRef"
import {
  type ClientStreams,
  currentRound,
  type DeliveredNotice,
  emptyStreams,
  receive,
  resubscribeAll,
  type StreamLimits,
  type StreamOutput,
  streamLimitsDefault,
  subscribed,
  tick,
  track
} from "../domain/ClientStreams.js"
import type { Body, Envelope } from "../domain/Envelope.js"
import type {
  AuctionId,
  ClientId,
  Epoch,
  RequestId,
  ServerId,
  SessionId,
  SessionToken
} from "../domain/Ids.js"
import {
  type AuctionSummary,
  ClientOp,
  ErrorCode,
  type LeaderInfo,
  type ReplyResult
} from "../domain/Messages.js"
import type { Address } from "../domain/Schemas.js"
import { forEachBatch, type Incoming, Transport } from "./Transport.js"

export type { DeliveredNotice } from "../domain/ClientStreams.js"

// ---------------------------------------------------------------------------
// Errors

/** No answer within the request timeout, or the session expired: the request MAY have been applied. */
export class Timeout extends Schema.TaggedError<Timeout>()("Timeout", {
  requestId: Schema.Number,
  message: Schema.String
}) {}

/** No leader, or no session, within the request timeout: nothing was sent, nothing applied. */
export class NotConnected extends Schema.TaggedError<NotConnected>()("NotConnected", {
  message: Schema.String
}) {}

/** The request queue was full: nothing was sent, nothing applied. */
export class ClientBusy extends Schema.TaggedError<ClientBusy>()("ClientBusy", {
  capacity: Schema.Number
}) {}

/** The server (or the client's own check) refused the request with this code; used by the helpers. */
export class Refused extends Schema.TaggedError<Refused>()("Refused", {
  code: ErrorCode,
  message: Schema.String
}) {}

/** What `request` can fail with. */
export type RequestError = Timeout | NotConnected | ClientBusy

// ---------------------------------------------------------------------------
// Interface

/** The connection once registered: `{"type":"ready","client":ID,"leader":SERVER_ID}`. */
export interface Connected {
  readonly client: ClientId
  readonly session: SessionId
  readonly leader: LeaderInfo
}

/** `{"type":"leader-changed","leader":ID,"epoch":N}`. */
export interface LeaderChange {
  readonly leader: ServerId
  readonly epoch: Epoch
}

export interface NewAuction {
  readonly item: string
  readonly minBid: number
  /** Default 3 (DESIGN §3). */
  readonly minRounds?: number | undefined
  /** Default 2 (DESIGN §3). */
  readonly minBidders?: number | undefined
}

export interface AuctionsPage {
  readonly auctions: ReadonlyArray<AuctionSummary>
  /** The next page to ask for, or null on the last page. */
  readonly nextPage: number | null
}

export interface BidAccepted {
  readonly auction: AuctionId
  readonly round: number
  readonly amount: number
}

export interface ClientShape {
  readonly id: ClientId
  /** Waits (at most the request timeout) until a leader is known and a session is open. */
  readonly connect: Effect.Effect<Connected, NotConnected>
  /** The connection now, if there is one. */
  readonly connection: Effect.Effect<Option.Option<Connected>>
  /** Sends `op` (queued behind the request in flight) and returns the server's answer. */
  readonly request: (op: ClientOp) => Effect.Effect<ReplyResult, RequestError>
  readonly create: (auction: NewAuction) => Effect.Effect<AuctionId, RequestError | Refused>
  /** One page of the auction list (pages keep replies within a datagram). */
  readonly list: (page?: number) => Effect.Effect<AuctionsPage, RequestError | Refused>
  readonly join: (auction: AuctionId) => Effect.Effect<void, RequestError | Refused>
  readonly start: (auction: AuctionId) => Effect.Effect<void, RequestError | Refused>
  readonly cancel: (auction: AuctionId) => Effect.Effect<void, RequestError | Refused>
  /**
   * A bid for `round`, by default the auction's current round: the round of the last
   * `RoundStartedNotice` delivered for it. With none delivered yet it fails
   * `Refused { code: "WrongRound" }` without sending anything.
   */
  readonly bid: (
    auction: AuctionId,
    amount: number,
    round?: number | undefined
  ) => Effect.Effect<BidAccepted, RequestError | Refused>
  /** The round a bid without one would name. */
  readonly currentRound: (auction: AuctionId) => Effect.Effect<Option.Option<number>>
  /**
   * Every auction's notices in order, without gaps or repeats. One consumer: each
   * notice is taken once. Consume it: when `noticesCapacity` are waiting, further
   * notices are left unacknowledged (the leader resends them later), never dropped.
   * Empty when the client was made with `onNotice`.
   */
  readonly notices: Stream.Stream<DeliveredNotice>
  /** Each change of the leader after the first one found (the newest `leaderChangesCapacity` are kept). */
  readonly leaderChanges: Stream.Stream<LeaderChange>
}

export class Client extends Context.Tag("agora/Client")<Client, ClientShape>() {}

export interface ClientOptions {
  /** This client's id: the transport's identity. */
  readonly id: ClientId
  /** Default 10,000 (`--request-timeout`). */
  readonly requestTimeoutMs?: number | undefined
  /** Resend interval of a request and of `Register`. Default 500. */
  readonly retryIntervalMs?: number | undefined
  /** Broadcast interval while no leader is known (plus up to 25% jitter). Default 500. */
  readonly discoveryIntervalMs?: number | undefined
  /** Default 2,000. */
  readonly pingIntervalMs?: number | undefined
  /** Intervals of silence from the leader before rediscovery. Default 3. */
  readonly pingMissesMax?: number | undefined
  /** Requests waiting behind the one in flight. Default 64. */
  readonly queueCapacity?: number | undefined
  /** Delivered notices waiting for the consumer of `notices`. Default 1,024. */
  readonly noticesCapacity?: number | undefined
  /**
   * Takes every notice as it is delivered, in order, instead of `notices`: called on the
   * client's receive fiber, so keep it short and never throw. It saves a fiber hand-over per
   * notice (a load generator of many clients in one process spends much of its CPU on those).
   */
  readonly onNotice?: ((notice: DeliveredNotice) => void) | undefined
  /** Leader changes kept for `leaderChanges` (the oldest are dropped). Default 16. */
  readonly leaderChangesCapacity?: number | undefined
  /** Period of the notice timer (delivery after the consumer made room, gap re-asks). Default 250. */
  readonly noticeTickMs?: number | undefined
  /** Bounds of the ordering buffers (see ClientStreams). */
  readonly streams?: Partial<StreamLimits> | undefined
}

// ---------------------------------------------------------------------------
// Internals

/** The leader the client talks to. */
interface Target {
  readonly id: ServerId
  readonly address: Address
  readonly epoch: Epoch
}

interface OpenSession {
  readonly session: SessionId
  readonly token: SessionToken
}

/** Connection state; one `SubscriptionRef`, so decisions are atomic and waiters see every change. */
interface Conn {
  readonly leader: Target | null
  /** The highest epoch of any leader adopted: rediscovery never goes back below it. */
  readonly epochKnown: Epoch
  /** The last leader adopted, kept across rediscovery, to tell a change from a re-find. */
  readonly leaderLast: { readonly id: ServerId; readonly epoch: Epoch } | null
  readonly session: OpenSession | null
  /** The nonce of the registration in progress (null: none). */
  readonly nonce: number | null
}

/** The request in flight: what the receive loop, a leader change and the timer need to answer or resend it. */
interface InFlight {
  readonly requestId: RequestId
  /** Bound to this session for good: never resent under another (DESIGN §5). */
  readonly session: OpenSession
  readonly op: ClientOp
  readonly deadlineMs: number
  /** When the timer sends it again, unless answered first. */
  resendAtMs: number
  /** Its reply, or null once the deadline passed unanswered. */
  readonly answer: Deferred.Deferred<ReplyResult | null>
}

/** What adopting a leader did. */
type Adoption = "ignored" | "same" | "first" | "changed" | "lost"

const positiveInt = (name: string, value: number): Effect.Effect<number> =>
  Number.isSafeInteger(value) && value >= 1
    ? Effect.succeed(value)
    : Effect.dieMessage(`Client: ${name} must be a positive integer, got ${value}`)

const validateOp = Schema.validateEither(ClientOp)

/** A broken invariant stops a loop of the client: say so, instead of leaving callers waiting in silence. */
const loudly = <A, E>(loop: string, self: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.tapDefect(self, (defect) => Effect.logFatal(`client ${loop} loop died`, defect))

/** Builds the client in the current scope; its fibers (receive, connection, requests, notices) stop with it. */
export const make = (options: ClientOptions): Effect.Effect<ClientShape, never, Transport | Scope> =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const clientId = options.id
    const requestTimeoutMs = yield* positiveInt("requestTimeoutMs", options.requestTimeoutMs ?? 10_000)
    const retryIntervalMs = yield* positiveInt("retryIntervalMs", options.retryIntervalMs ?? 500)
    const discoveryIntervalMs = yield* positiveInt("discoveryIntervalMs", options.discoveryIntervalMs ?? 500)
    const pingIntervalMs = yield* positiveInt("pingIntervalMs", options.pingIntervalMs ?? 2_000)
    const pingMissesMax = yield* positiveInt("pingMissesMax", options.pingMissesMax ?? 3)
    const queueCapacity = yield* positiveInt("queueCapacity", options.queueCapacity ?? 64)
    const noticesCapacity = yield* positiveInt("noticesCapacity", options.noticesCapacity ?? 1_024)
    const leaderChangesCapacity = yield* positiveInt(
      "leaderChangesCapacity",
      options.leaderChangesCapacity ?? 16
    )
    const noticeTickMs = yield* positiveInt("noticeTickMs", options.noticeTickMs ?? 250)
    const limits: StreamLimits = { ...streamLimitsDefault, ...definedLimits(options.streams) }
    yield* positiveInt("streams.windowMax", limits.windowMax)
    yield* positiveInt("streams.pendingMax", limits.pendingMax)
    yield* positiveInt("streams.auctionsMax", limits.auctionsMax)
    yield* positiveInt("streams.gapRetryMs", limits.gapRetryMs)

    const conn = yield* SubscriptionRef.make<Conn>({
      leader: null,
      epochKnown: 0,
      leaderLast: null,
      session: null,
      nonce: null
    })
    // See the module comment: a restarted process never reuses a nonce of its previous life.
    let nonceNext = (yield* Clock.currentTimeMillis) * 1000 + (yield* Random.nextIntBetween(0, 1000))
    let requestIdNext = 1
    let inflight: InFlight | null = null
    /** When the leader last said anything (any datagram from its id). */
    let heardMs = 0
    /** Owned by synchronous sections only (receive loop, tick, worker): never torn. */
    let streams: ClientStreams = emptyStreams

    // The turn to have a request in flight; Effect's semaphore serves waiters in the order they came.
    const turn = yield* Effect.makeSemaphore(1)
    /** Callers waiting for the turn or holding it (≤ queueCapacity + 1). */
    let callers = 0
    const connectionKicks = yield* Queue.sliding<void>(1)
    const delivered = yield* Queue.bounded<DeliveredNotice>(noticesCapacity)
    const leaderEvents = yield* Queue.sliding<LeaderChange>(leaderChangesCapacity)

    // Finalizers run last-added first: this one runs after the fibers below are interrupted.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        if (inflight !== null) yield* Deferred.interrupt(inflight.answer)
        yield* Queue.shutdown(delivered)
        yield* Queue.shutdown(leaderEvents)
      })
    )

    const send = (to: Address, body: Body): Effect.Effect<void> =>
      transport.send(to, { body }).pipe(
        // A datagram that cannot leave is a lost datagram: every step here is retried.
        Effect.catchAll((error) => Effect.logWarning("client send failed", error))
      )

    const nowMs = Clock.currentTimeMillis

    const onNotice = options.onNotice
    // A callback takes every notice at once: there is always room.
    const roomOf = (): number =>
      onNotice === undefined
        ? noticesCapacity - Option.getOrElse(delivered.unsafeSize(), () => 0)
        : noticesCapacity

    /** Hands `Deliver` outputs to the user synchronously (they fit: room was counted) and returns the sends. */
    const deliverNow = (outputs: ReadonlyArray<StreamOutput>): ReadonlyArray<StreamOutput> => {
      const sends: Array<StreamOutput> = []
      for (const output of outputs) {
        if (output._tag === "Deliver") {
          if (onNotice !== undefined) onNotice(output.delivered)
          else if (!delivered.unsafeOffer(output.delivered)) {
            // Room was computed from the queue's size in this same synchronous section.
            throw new Error("invariant: a delivered notice did not fit the notices queue")
          }
        } else {
          sends.push(output)
        }
      }
      return sends
    }

    /** One datagram's worth of outputs: acks are cumulative (the last per auction is enough), one subscribe per auction. */
    const coalesce = (outputs: ReadonlyArray<StreamOutput>): ReadonlyArray<StreamOutput> => {
      const acks = new Map<AuctionId, StreamOutput>()
      const subscribes = new Map<AuctionId, StreamOutput>()
      for (const output of outputs) {
        if (output._tag === "Ack") acks.set(output.auction, output)
        else if (output._tag === "Subscribe" && !subscribes.has(output.auction))
          subscribes.set(output.auction, output)
      }
      return [...acks.values(), ...subscribes.values()]
    }

    /** Sends acks to `ackTo` (the notifying server) and subscriptions to the leader. */
    const sendStreamOutputs = (
      outputs: ReadonlyArray<StreamOutput>,
      ackTo: Address | null
    ): Effect.Effect<void> =>
      outputs.length === 0
        ? Effect.void
        : Effect.gen(function* () {
            const current = yield* SubscriptionRef.get(conn)
            const session = current.session
            if (session === null) return
            const leaderAddress = current.leader?.address ?? null
            for (const output of outputs) {
              if (output._tag === "Ack") {
                const to = ackTo ?? leaderAddress
                if (to === null) continue
                yield* send(to, {
                  _tag: "NotifyAck",
                  session: session.session,
                  token: session.token,
                  auction: output.auction,
                  seq: output.seq
                })
              } else if (output._tag === "Subscribe") {
                const to = leaderAddress ?? ackTo
                if (to === null) continue
                yield* send(to, {
                  _tag: "Subscribe",
                  session: session.session,
                  token: session.token,
                  auction: output.auction,
                  fromSeq: output.fromSeq
                })
              }
            }
          })

    // -- leader ------------------------------------------------------------------

    /** Applies a leader decision; on a new leader, resends the request in flight and resubscribes. */
    const afterAdoption = (adoption: Adoption, current: Conn): Effect.Effect<void> =>
      Effect.gen(function* () {
        if (adoption === "ignored") return
        yield* connectionKicks.offer(undefined)
        if (adoption === "lost") {
          yield* Effect.logInfo("leader lost: rediscovering")
          return
        }
        heardMs = yield* nowMs
        if (inflight !== null) yield* sendRequest(inflight)
        const leader = current.leader
        if (adoption !== "changed" || leader === null) return
        yield* Effect.logInfo("leader changed").pipe(
          Effect.annotateLogs({ leader: leader.id, epoch: leader.epoch })
        )
        yield* leaderEvents.offer({ leader: leader.id, epoch: leader.epoch })
        if (current.session === null) return
        const now = yield* nowMs
        const step = resubscribeAll(streams, now)
        streams = step.streams
        yield* sendStreamOutputs(step.outputs, null)
      })

    const adopted = (c: Conn, info: LeaderInfo, address: Address): [Adoption, Conn] => {
      const last = c.leaderLast
      const adoption: Adoption =
        last === null ? "first" : last.id === info.id && last.epoch === info.epoch ? "same" : "changed"
      return [
        adoption,
        {
          ...c,
          leader: { id: info.id, address, epoch: info.epoch },
          epochKnown: Math.max(c.epochKnown, info.epoch),
          leaderLast: { id: info.id, epoch: info.epoch }
        }
      ]
    }

    /** A discovery answer or `LeaderChanged`: only ever forward in epochs. */
    const offerLeader = (info: LeaderInfo, address: Address): Effect.Effect<void> =>
      Effect.flatMap(
        SubscriptionRef.modify(conn, (c): [readonly [Adoption, Conn], Conn] => {
          const acceptable = c.leader === null ? info.epoch >= c.epochKnown : info.epoch > c.leader.epoch
          if (!acceptable) return [["ignored", c], c]
          const [adoption, next] = adopted(c, info, address)
          return [[adoption, next], next]
        }),
        ([adoption, current]) => afterAdoption(adoption, current)
      )

    const onNotLeader = (from: ServerId, info: LeaderInfo | null): Effect.Effect<void> =>
      Effect.flatMap(
        SubscriptionRef.modify(conn, (c): [readonly [Adoption, Conn], Conn] => {
          const target = c.leader
          if (target !== null && target.id === from) {
            // The server we talk to is not the leader: follow its hint if it is news, else look.
            if (info !== null && info.id !== from && info.epoch >= target.epoch) {
              const [adoption, next] = adopted(c, info, info.address)
              return [[adoption, next], next]
            }
            const next = { ...c, leader: null }
            return [["lost", next], next]
          }
          // A late answer of a server we no longer target: only a newer leader is news.
          if (
            info !== null &&
            (target === null ? info.epoch >= c.epochKnown : info.epoch > target.epoch) &&
            info.id !== from
          ) {
            const [adoption, next] = adopted(c, info, info.address)
            return [[adoption, next], next]
          }
          return [["ignored", c], c]
        }),
        ([adoption, current]) => afterAdoption(adoption, current)
      )

    // -- receive -------------------------------------------------------------------

    const onNotify = (
      source: Address,
      notify: Extract<Body, { readonly _tag: "Notify" }>
    ): Effect.Effect<void> =>
      Effect.gen(function* () {
        const current = yield* SubscriptionRef.get(conn)
        // Without a session there is nobody to ack for; unacknowledged, it will come again.
        if (current.session === null) return
        const now = yield* nowMs
        const sends = yield* Effect.sync(() => {
          const outputs: Array<StreamOutput> = []
          for (const [i, notice] of notify.notices.entries()) {
            // Delivered one by one, so the room each notice sees is exact.
            const step = receive(
              streams,
              { auction: notify.auction, seq: notify.seq + i, notice },
              now,
              roomOf(),
              limits
            )
            streams = step.streams
            outputs.push(...deliverNow(step.outputs))
          }
          return coalesce(outputs)
        })
        yield* sendStreamOutputs(sends, source)
      })

    const handle = ({ envelope, source }: Incoming): Effect.Effect<void> =>
      Effect.gen(function* () {
        const from = envelope.from
        if (from.role !== "server") return
        const current = yield* SubscriptionRef.get(conn)
        if (current.leader !== null && current.leader.id === from.id) heardMs = yield* nowMs
        const body = envelope.body
        switch (body._tag) {
          case "DiscoveryResponse":
          case "LeaderChanged": {
            const info = body.leader
            if (info === null) return
            // The leader itself answered: its datagram's source is how to reach it.
            return yield* offerLeader(info, info.id === from.id ? source : info.address)
          }
          case "NotLeader":
            return yield* onNotLeader(from.id, body.leader)
          case "Registered":
            return yield* onRegistered(body, envelope)
          case "Reply":
            if (inflight !== null && body.requestId === inflight.requestId) {
              yield* Deferred.succeed(inflight.answer, body.result)
            }
            return
          case "Notify":
            return yield* onNotify(source, body)
          case "Subscribed":
            // Only the leader's answer counts: the old leader's late one says nothing of the new one.
            if (current.leader !== null && current.leader.id === from.id) {
              streams = subscribed(streams, body.auction)
            }
            return
          default:
            // Pong: counted as hearing from the leader above. Anything else is not for clients.
            return
        }
      })

    const onRegistered = (
      body: Extract<Body, { readonly _tag: "Registered" }>,
      envelope: Envelope
    ): Effect.Effect<void> =>
      Effect.gen(function* () {
        const opened = yield* SubscriptionRef.modify(conn, (c): [boolean, Conn] =>
          c.session === null && c.nonce === body.nonce
            ? [true, { ...c, session: { session: body.session, token: body.token }, nonce: null }]
            : [false, c]
        )
        if (!opened) return
        // A new session is a new participant: the old session's streams are not ours any more.
        streams = emptyStreams
        yield* Effect.logInfo("registered").pipe(
          Effect.annotateLogs({ session: body.session, server: envelope.from.id })
        )
        yield* connectionKicks.offer(undefined)
      })

    yield* Effect.forkScoped(
      loudly(
        "receive",
        forEachBatch(transport, (batch) => Effect.forEach(batch, handle, { discard: true }))
      )
    )

    // -- connection: discovery, registration, pings -----------------------------------

    const waitKick = (ms: number) => Effect.asVoid(Effect.timeoutOption(Queue.take(connectionKicks), ms))

    const connectionStep: Effect.Effect<void> = Effect.gen(function* () {
      const current = yield* SubscriptionRef.get(conn)
      const leader = current.leader
      if (leader === null) {
        yield* transport
          .broadcast({ body: { _tag: "DiscoveryRequest" } })
          .pipe(Effect.catchAll((error) => Effect.logWarning("discovery broadcast failed", error)))
        const jitterMs = yield* Random.nextIntBetween(0, Math.floor(discoveryIntervalMs / 4) + 1)
        return yield* waitKick(discoveryIntervalMs + jitterMs)
      }
      const now = yield* nowMs
      if (now - heardMs >= pingIntervalMs * pingMissesMax) {
        // Several pings unanswered: the leader crashed or we are cut off from it.
        yield* SubscriptionRef.update(conn, (c) => (c.leader?.id === leader.id ? { ...c, leader: null } : c))
        yield* Effect.logInfo("leader silent: rediscovering").pipe(Effect.annotateLogs({ leader: leader.id }))
        return
      }
      const session = current.session
      if (session === null) {
        const nonce =
          current.nonce ??
          (yield* SubscriptionRef.modify(conn, (c): [number, Conn] => {
            if (c.nonce !== null) return [c.nonce, c]
            nonceNext += 1
            return [nonceNext, { ...c, nonce: nonceNext }]
          }))
        yield* send(leader.address, { _tag: "Register", nonce })
        return yield* waitKick(retryIntervalMs)
      }
      yield* send(leader.address, { _tag: "Ping", session: session.session, token: session.token })
      yield* waitKick(pingIntervalMs)
    })

    yield* Effect.forkScoped(loudly("connection", Effect.forever(connectionStep)))

    // -- notices timer ---------------------------------------------------------------------

    // -- timer: notices, and the request in flight ---------------------------------------
    // One fiber for both: a timeout race per request cost more than the request's own work. A
    // request starts at least one period before its first resend, so a tick is never missed.

    const timerPeriodMs = Math.min(noticeTickMs, retryIntervalMs)
    let noticeTickDueMs = 0

    const timerTick: Effect.Effect<void> = Effect.gen(function* () {
      const now = yield* nowMs
      if (now >= noticeTickDueMs) {
        noticeTickDueMs = now + noticeTickMs
        const sends = yield* Effect.sync(() => {
          const step = tick(streams, now, roomOf(), limits)
          streams = step.streams
          return deliverNow(step.outputs)
        })
        yield* sendStreamOutputs(sends, null)
      }
      const request = inflight
      let dueMs = noticeTickDueMs
      if (request !== null) {
        if (now >= request.deadlineMs) yield* Deferred.succeed(request.answer, null)
        else if (now >= request.resendAtMs) yield* sendRequest(request)
        dueMs = Math.min(dueMs, request.resendAtMs, request.deadlineMs)
      }
      yield* Effect.sleep(Math.max(1, Math.min(dueMs - now, timerPeriodMs)))
    })

    yield* Effect.forkScoped(loudly("timer", Effect.forever(timerTick)))

    // -- requests ---------------------------------------------------------------------------

    const connectedOf = (c: Conn): Option.Option<Connected> =>
      c.leader !== null && c.session !== null
        ? Option.some({
            client: clientId,
            session: c.session.session,
            leader: { id: c.leader.id, address: c.leader.address, epoch: c.leader.epoch }
          })
        : Option.none()

    // Connected already (every request but the first): answered without subscribing to changes,
    // which costs ~300 µs of CPU (a PubSub subscription, a stream and a timeout race).
    const awaitConnected = (timeoutMs: number): Effect.Effect<Option.Option<Connected>> =>
      Effect.flatMap(SubscriptionRef.get(conn), (current) => {
        const now = connectedOf(current)
        return Option.isSome(now) ? Effect.succeed(now) : awaitConnectedChange(timeoutMs)
      })

    const awaitConnectedChange = (timeoutMs: number): Effect.Effect<Option.Option<Connected>> =>
      conn.changes.pipe(
        Stream.filterMap(connectedOf),
        Stream.runHead,
        Effect.timeoutOption(timeoutMs),
        Effect.map(Option.flatten)
      )

    const connect: Effect.Effect<Connected, NotConnected> = Effect.flatMap(
      awaitConnected(requestTimeoutMs),
      Option.match({
        onNone: () =>
          Effect.fail(new NotConnected({ message: `no leader and session within ${requestTimeoutMs} ms` })),
        onSome: Effect.succeed
      })
    )

    /** Sends the request in flight to the leader, if one is known (its adoption sends it again). */
    const sendRequest = (request: InFlight): Effect.Effect<void> =>
      Effect.gen(function* () {
        request.resendAtMs = (yield* nowMs) + retryIntervalMs
        const leader = (yield* SubscriptionRef.get(conn)).leader
        if (leader === null) return
        yield* send(leader.address, {
          _tag: "Request",
          session: request.session.session,
          token: request.session.token,
          requestId: request.requestId,
          op: request.op
        })
      })

    /** One request, from its turn to its answer. */
    const run = (op: ClientOp): Effect.Effect<ReplyResult, RequestError> =>
      Effect.gen(function* () {
        const startMs = yield* nowMs
        const connected = yield* awaitConnected(requestTimeoutMs)
        const current = yield* SubscriptionRef.get(conn)
        if (Option.isNone(connected) || current.session === null) {
          return yield* new NotConnected({
            message: `no leader and session within ${requestTimeoutMs} ms: the request was not sent`
          })
        }
        const session = current.session
        const requestId = requestIdNext as RequestId
        requestIdNext += 1
        const request: InFlight = {
          requestId,
          session,
          op,
          deadlineMs: startMs + requestTimeoutMs,
          resendAtMs: 0,
          answer: yield* Deferred.make<ReplyResult | null>()
        }
        inflight = request
        yield* sendRequest(request)
        const result = yield* Deferred.await(request.answer)
        if (result === null) {
          return yield* new Timeout({
            requestId,
            message: `no answer within ${requestTimeoutMs} ms: the request may have been applied`
          })
        }
        if (result._tag === "Failed" && result.code === "SessionExpired") {
          // The session is gone; a new one starts later requests. This one may have been applied.
          yield* SubscriptionRef.update(conn, (c) =>
            c.session?.session === session.session ? { ...c, session: null } : c
          )
          yield* connectionKicks.offer(undefined)
          return yield* new Timeout({
            requestId,
            message: "the session expired: the request may have been applied"
          })
        }
        // Auctions this session takes part in are followed (and resubscribed after a failover).
        if (result._tag === "Created" || result._tag === "Joined") {
          streams = track(streams, result.auction, limits)
        } else if (result._tag === "Failed" && result.code === "AlreadyJoined" && op._tag === "Join") {
          streams = track(streams, op.auction, limits)
        }
        return result
      }).pipe(
        Effect.ensuring(
          Effect.sync(() => {
            inflight = null
          })
        )
      )

    const request = (op: ClientOp): Effect.Effect<ReplyResult, RequestError> =>
      Effect.suspend(() => {
        const valid = validateOp(op)
        if (valid._tag === "Left") {
          // The wire schema would refuse to encode it: answer as the server would.
          const message = valid.left.message.slice(0, 1000)
          return Effect.succeed({ _tag: "Failed", code: "InvalidRequest", message } satisfies ReplyResult)
        }
        if (callers > queueCapacity) return Effect.fail(new ClientBusy({ capacity: queueCapacity }))
        callers += 1
        return turn
          .withPermits(1)(run(valid.right))
          .pipe(
            Effect.ensuring(
              Effect.sync(() => {
                callers -= 1
              })
            )
          )
      })

    /** The answer of a helper: its expected reply, `Refused` for `Failed`, a defect for anything else. */
    const expectReply = <Tag extends Exclude<ReplyResult["_tag"], "Failed">>(
      op: ClientOp,
      tag: Tag
    ): Effect.Effect<Extract<ReplyResult, { readonly _tag: Tag }>, RequestError | Refused> =>
      Effect.flatMap(request(op), (result) => {
        if (result._tag === tag) return Effect.succeed(result as Extract<ReplyResult, { readonly _tag: Tag }>)
        if (result._tag === "Failed")
          return Effect.fail(new Refused({ code: result.code, message: result.message }))
        return Effect.dieMessage(`Client: ${op._tag} was answered ${result._tag}, expected ${tag}`)
      })

    return Client.of({
      id: clientId,
      connect,
      connection: Effect.map(SubscriptionRef.get(conn), connectedOf),
      request,
      create: (auction) =>
        Effect.map(
          expectReply(
            {
              _tag: "Create",
              item: auction.item,
              minBid: auction.minBid,
              minRounds: auction.minRounds ?? 3,
              minBidders: auction.minBidders ?? 2
            },
            "Created"
          ),
          (created) => created.auction
        ),
      list: (page = 0) =>
        Effect.map(expectReply({ _tag: "List", page }, "Auctions"), (auctions) => ({
          auctions: auctions.auctions,
          nextPage: auctions.nextPage
        })),
      join: (auction) => Effect.asVoid(expectReply({ _tag: "Join", auction }, "Joined")),
      start: (auction) => Effect.asVoid(expectReply({ _tag: "Start", auction }, "Started")),
      cancel: (auction) => Effect.asVoid(expectReply({ _tag: "Cancel", auction }, "Cancelled")),
      bid: (auction, amount, round) =>
        Effect.gen(function* () {
          const known = round ?? Option.getOrUndefined(currentRound(streams, auction))
          if (known === undefined) {
            return yield* new Refused({
              code: "WrongRound",
              message: `no round of auction ${auction} has started that this client knows of`
            })
          }
          const accepted = yield* expectReply({ _tag: "Bid", auction, round: known, amount }, "BidAccepted")
          return { auction: accepted.auction, round: accepted.round, amount: accepted.amount }
        }),
      currentRound: (auction) => Effect.sync(() => currentRound(streams, auction)),
      notices: Stream.fromQueue(delivered),
      leaderChanges: Stream.fromQueue(leaderEvents)
    })
  }).pipe(Effect.annotateLogs({ node: options.id }))

/** Copies only the limits that are set: with exactOptionalPropertyTypes a spread could carry `undefined`. */
const definedLimits = (limits: Partial<StreamLimits> | undefined): Partial<StreamLimits> => {
  const out: { -readonly [K in keyof StreamLimits]?: number } = {}
  if (limits === undefined) return out
  for (const key of Object.keys(limits) as Array<keyof StreamLimits>) {
    const value = limits[key]
    if (value !== undefined) out[key] = value
  }
  return out
}

/** The client as a layer over the `Transport` in context (built as the client's identity). */
export const layer = (options: ClientOptions): Layer.Layer<Client, never, Transport> =>
  Layer.scoped(Client, make(options))
