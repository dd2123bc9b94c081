/**
 * The auction service on the cluster (DESIGN §3, §5): the Agora state
 * machine (sessions + auctions) on the replicated log, and what a server
 * does for clients.
 *
 * Any server answers a client; only the leader decides. A request becomes a
 * proposal and is answered from the committed client table, so a retry gets
 * the first answer. Everything only a leader does — deadline timers, the
 * notifier, session expiry — lives in its leadership scope (`LeaderDuties`)
 * and stops the moment it stops leading.
 */
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as HashMap from "effect/HashMap"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import {
  type AgoraCommand,
  type AgoraEvent,
  type AgoraRefusal,
  type AgoraState,
  agoraMachine,
  commandOf
} from "../domain/agora/Agora.js"
import type {
  AuctionCommand,
  CancelledAuction,
  ClosedAuction,
  NumberedNotice
} from "../domain/auction/index.js"
import {
  encodeEndedNow,
  findAuction,
  listOpen,
  notificationsFor,
  recipientsOf,
  streamLength
} from "../domain/auction/index.js"
import type { ClusterConfig } from "../domain/cluster/Config.js"
import type { LogEntry } from "../domain/cluster/Entry.js"
import { type Body, jsonBytes } from "../domain/Envelope.js"
import type {
  AuctionId,
  ClientId,
  Epoch,
  Incarnation,
  RequestId,
  ServerId,
  SessionId,
  SessionToken
} from "../domain/Ids.js"
import type { AuctionSummary, ClientOp, ErrorCode, LeaderInfo, ReplyResult } from "../domain/Messages.js"
import { NoticesPerNotifyMax } from "../domain/Messages.js"
import type { Address } from "../domain/Schemas.js"
import { type ClusterShape, makeCluster, NotLeader, type ProposalResult, SplitGroup } from "./Cluster.js"
import { type EndedAuctionRecord, LogStore, Opened, type Stored } from "./LogStore.js"
import { randomHex } from "./RandomHex.js"
import { serverSettings, setting } from "./Setting.js"
import { type Incoming, Transport } from "./Transport.js"

export interface AuctionServerConfig {
  /** Round deadline (`--round-timeout`, 60 s). */
  readonly roundTimeoutMs: number
  /** Time the auctioneer has to start after the ready check (`--start-timeout`, 60 s). */
  readonly startTimeoutMs: number
  /** A client silent this long loses its session, and leaves the auctions still waiting. */
  readonly sessionTimeoutMs: number
  /**
   * A closed or cancelled auction stays in the replicated state this long (its final notices can
   * still be resent), then it is purged; the store keeps it for good in its `auctions` table.
   */
  readonly retentionMs: number
  /** Unacknowledged notifications are resent after this long. */
  readonly notifyResendMs: number
  /**
   * A `BidReceivedNotice` waits at most this long for company before it is sent:
   * the other bids of its round, and the round's end, which goes at once and takes it along. A
   * round's notices then share a few datagrams (and acks) instead of one each. 0: never waits.
   */
  readonly noticeLingerMs: number
  /** The datagram limit: list pages are cut to fit it. */
  readonly maxDatagramBytes: number
}

export const defaultAuctionServerConfig: AuctionServerConfig = {
  roundTimeoutMs: 60_000,
  startTimeoutMs: 60_000,
  sessionTimeoutMs: 60_000,
  retentionMs: 5 * 60_000,
  notifyResendMs: 300,
  noticeLingerMs: 100,
  maxDatagramBytes: 1_400
}

export interface AuctionServerOptions {
  readonly id: ServerId
  readonly cluster: ClusterConfig
  readonly server: AuctionServerConfig
  readonly stored: Stored
  readonly incarnation: Incarnation
  readonly onRoleChanged?: Parameters<typeof makeCluster>[0]["onRoleChanged"]
}

export type AgoraCluster = ClusterShape<AgoraState, AgoraCommand, AgoraRefusal>

/** The auction service on its cluster: what a server runs, and what a deployment reads its status from. */
export class AuctionServer extends Context.Tag("agora/AuctionServer")<AuctionServer, AgoraCluster>() {}

/** The auction service as a layer, over the transport and the store in context, as the store was opened. */
export const layer = (
  options: Omit<AuctionServerOptions, "id" | "stored" | "incarnation">
): Layer.Layer<AuctionServer, never, Transport | LogStore | Opened> =>
  Layer.scoped(
    AuctionServer,
    Effect.flatMap(Opened, (opened) => makeAuctionServer({ ...options, ...opened }))
  )

/** AGORA_ROUND_TIMEOUT and AGORA_START_TIMEOUT (seconds, as `agora server`), the rest as `defaultAuctionServerConfig`. */
export const auctionServerConfigFromEnv: Config.Config<AuctionServerConfig> = Config.all({
  roundTimeoutMs: setting(serverSettings.roundTimeout, defaultAuctionServerConfig.roundTimeoutMs),
  startTimeoutMs: setting(serverSettings.startTimeout, defaultAuctionServerConfig.startTimeoutMs)
}).pipe(Config.map((settings) => ({ ...defaultAuctionServerConfig, ...settings })))

/**
 * Bytes kept for the envelope around a Notify or a list page (sender, group, epoch, replay
 * counters, the reply's own fields, the MAC). With unusually long ids a datagram may still
 * pass the limit: it then travels in fragments, so nothing is lost.
 */
const EnvelopeReserveBytes = 300
/** List requests answered at once; past this, datagrams wait for a slot (clients retry anyway). */
const ListsInFlightMax = 256
/** Notifications sent per stream per pass: a long backlog goes out over several passes. */
const NoticesPerPass = 128
/** Purge proposals in flight at once (after a failover every ended auction's purge is due together). */
const PurgesInFlightMax = 64
/** The longest a stream waits before resending unacknowledged notices. */
const ResendBackoffMaxMs = 5_000

export const clientRequests = Metric.counter("agora_client_requests", {
  description: "client requests handled, by outcome",
  incremental: true
})

/** `clientRequests` tagged with an outcome, made once per outcome (tagging anew cost more than counting). */
const requestsAnswered = (() => {
  const byOutcome = new Map<string, Metric.Metric.Counter<number>>()
  return (outcome: string): Metric.Metric.Counter<number> => {
    let counter = byOutcome.get(outcome)
    if (counter === undefined) {
      counter = Metric.tagged(clientRequests, "outcome", outcome)
      byOutcome.set(outcome, counter)
    }
    return counter
  }
})()

/** A leader's notification stream of one auction to one session (soft state, DESIGN §5). */
interface NoticeStream {
  readonly session: SessionId
  readonly auction: AuctionId
  /** Every notice up to this seq was acknowledged. */
  acked: number
  /** Every notice up to this seq was sent at least once. */
  sent: number
  lastSentMs: number
  /** How long unacknowledged notices wait before they are resent; doubles per resend, resets on progress. */
  resendMs: number
}

interface LeaderDuties {
  readonly applied: (events: ReadonlyArray<AgoraEvent>, state: AgoraState) => Effect.Effect<void>
  readonly touch: (session: SessionId) => void
  readonly ack: (session: SessionId, auction: AuctionId, seq: number) => void
  /** Restarts the stream from `fromSeq`; returns how many notices it has now. */
  readonly subscribe: (session: SessionId, auction: AuctionId, fromSeq: number) => number
}

export const makeAuctionServer = (
  options: AuctionServerOptions
): Effect.Effect<AgoraCluster, never, Transport | LogStore | Scope.Scope> =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const store = yield* LogStore
    const serverScope = yield* Effect.scope
    const config = options.server
    /** Room for notices in one Notify, or rows in one list page: the datagram minus the envelope around them. */
    const bodyBytesMax = Math.max(200, config.maxDatagramBytes - EnvelopeReserveBytes)
    const lists = yield* Effect.makeSemaphore(ListsInFlightMax)
    let duties: LeaderDuties | null = null
    let latest: AgoraState = agoraMachine.initial

    const reply = (to: Address, body: Body) => transport.send(to, { body }).pipe(Effect.ignore)

    const cluster: AgoraCluster = yield* makeCluster({
      id: options.id,
      machine: agoraMachine,
      config: options.cluster,
      stored: options.stored,
      incarnation: options.incarnation,
      onRoleChanged: options.onRoleChanged,
      onApplied: (_entry: LogEntry, events, state) =>
        Effect.suspend(() => {
          latest = state
          const ended = endedAuctions(events, state)
          // Now, not all at once in the next checkpoint (see encodeEndedNow).
          for (const auction of ended) encodeEndedNow(auction)
          const record =
            ended.length === 0 ? Effect.void : Effect.orDie(store.recordEnded(ended.map(endedRecord)))
          return duties === null ? record : Effect.zipRight(record, duties.applied(events, state))
        }),
      whileLeader: (epoch) =>
        Effect.gen(function* () {
          const mine = yield* makeLeaderDuties(epoch)
          duties = mine
          yield* Effect.addFinalizer(() =>
            Effect.sync(() => {
              if (duties === mine) duties = null
            })
          )
        }),
      // On the receive loop: a request or registration is proposed there and answered on the
      // replica's fiber once decided (`proposeThen`). Only a list waits (for a confirmed read),
      // in a fiber of its own in the server's scope, so a crash stops it; bounded, so a flood
      // of them waits in the transport's queue instead.
      onClientMessage: (incoming) => {
        const body = incoming.envelope.body
        return body._tag === "Request" && body.op._tag === "List"
          ? Effect.zipRight(
              lists.take(1),
              Effect.forkIn(Effect.ensuring(handleClient(incoming), lists.release(1)), serverScope)
            )
          : handleClient(incoming)
      }
    })

    const leaderInfo: Effect.Effect<LeaderInfo | null> = Effect.map(
      cluster.status,
      (status) => status.leaderInfo
    )

    const notLeader = (to: Address) =>
      Effect.flatMap(leaderInfo, (leader) => reply(to, { _tag: "NotLeader", leader }))

    const failed = (code: ErrorCode, message: string): ReplyResult => ({ _tag: "Failed", code, message })

    /** Notifications are a session's own: acks and subscriptions need its token (as requests do). */
    const tokenMatches = (session: SessionId, token: SessionToken): boolean =>
      Option.exists(HashMap.get(latest.sessions, session), (entry) => entry.token === token)

    const handleClient = (incoming: Incoming): Effect.Effect<void> => {
      const { envelope, source } = incoming
      const body = envelope.body
      if (envelope.from.role !== "client") return Effect.void
      const client = envelope.from.id
      switch (body._tag) {
        case "Register":
          return register(client, body.nonce, source)
        case "Request":
          duties?.touch(body.session)
          return body.op._tag === "List"
            ? list(body.requestId, body.op.page, source)
            : decideRequest(body.session, body.token, body.requestId, body.op, source)
        case "Ping":
          duties?.touch(body.session)
          return Effect.flatMap(cluster.status, (status) =>
            status.role === "leader"
              ? reply(source, { _tag: "Pong", leader: options.id, epoch: status.epoch })
              : notLeader(source)
          )
        case "NotifyAck":
          if (!tokenMatches(body.session, body.token)) return Effect.void
          duties?.touch(body.session)
          return Effect.sync(() => duties?.ack(body.session, body.auction, body.seq))
        case "Subscribe": {
          // Only a leader with its duties running answers; the client asks again until one does.
          if (!tokenMatches(body.session, body.token) || duties === null) return Effect.void
          duties.touch(body.session)
          const lastSeq = duties.subscribe(body.session, body.auction, body.fromSeq)
          return reply(source, { _tag: "Subscribed", auction: body.auction, lastSeq })
        }
        default:
          return Effect.void
      }
    }

    const register = (client: ClientId, nonce: number, source: Address) =>
      Effect.flatMap(randomHex(16), (token) =>
        cluster.proposeThen(
          { _tag: "RegisterClient", client, nonce, address: source, token: token as SessionToken },
          (result) => {
            if (result._tag === "Left") {
              return result.left instanceof NotLeader || result.left instanceof SplitGroup
                ? notLeader(source)
                : Effect.void
            }
            for (const [session, entry] of result.right.state.sessions) {
              if (entry.client === client && entry.nonce === nonce) {
                return reply(source, {
                  _tag: "Registered",
                  nonce,
                  session,
                  token: entry.token,
                  leader: options.id
                })
              }
            }
            return Effect.void
          }
        )
      )

    const decideRequest = (
      session: SessionId,
      token: SessionToken,
      requestId: RequestId,
      op: Exclude<ClientOp, { readonly _tag: "List" }>,
      source: Address
    ) =>
      cluster.proposeThen(
        { _tag: "ClientRequest", session, token, requestId, command: commandOf(op, session, config) },
        (result) => answerRequest(result, session, requestId, source)
      )

    /** The answer of a decided request: the committed client table's, or why it was refused. */
    const answerRequest = (
      result: ProposalResult<AgoraState, AgoraRefusal>,
      session: SessionId,
      requestId: RequestId,
      source: Address
    ): Effect.Effect<void> => {
      const answer = (result: ReplyResult) => reply(source, { _tag: "Reply", requestId, result })
      if (result._tag === "Right") {
        const entry = HashMap.get(result.right.state.sessions, session)
        if (Option.isSome(entry) && entry.value.lastRequest === requestId && entry.value.answer !== null) {
          return Effect.zipRight(
            Metric.increment(requestsAnswered(entry.value.answer._tag)),
            answer(entry.value.answer)
          )
        }
        // A newer request of the same session overtook this one: it is stale now.
        return Effect.void
      }
      const error = result.left
      const answered = (() => {
        switch (error._tag) {
          case "NotLeader":
            return notLeader(source)
          case "SplitGroup":
            return answer(
              failed("SplitGroup", "this group met another one holding client data and stopped serving")
            )
          case "UnknownSession":
            return answer(failed("SessionExpired", `session ${session} does not exist (expired?)`))
          case "BadToken":
            return answer(failed("BadToken", `wrong token for session ${session}`))
          case "StaleRequest":
            return Effect.void
          default:
            return answer(failed(error._tag, error.message))
        }
      })()
      return Effect.zipRight(Metric.increment(requestsAnswered(error._tag)), answered)
    }

    /** One page of open auctions, cut to fit a datagram; `after` is the auction id the page continues after. */
    const list = (requestId: RequestId, after: number, source: Address) =>
      Effect.gen(function* () {
        const state = yield* Effect.either(cluster.read)
        if (state._tag === "Left") return yield* notLeader(source)
        const rows = listOpen(state.right.auctions, { after: after as AuctionId })
        const page: Array<AuctionSummary> = []
        let bytes = 0
        for (const row of rows) {
          const size = jsonBytes(row) + 1
          if (page.length > 0 && bytes + size > bodyBytesMax) break
          page.push(row)
          bytes += size
        }
        const last = page.at(-1)
        const nextPage = page.length < rows.length && last !== undefined ? last.auction : null
        yield* reply(source, {
          _tag: "Reply",
          requestId,
          result: { _tag: "Auctions", auctions: page, nextPage }
        })
      })

    // -------------------------------------------------------------------------
    // Leader duties: deadlines, notifications, session expiry.

    const makeLeaderDuties = (epoch: Epoch): Effect.Effect<LeaderDuties, never, Scope.Scope> =>
      Effect.gen(function* () {
        const scope = yield* Effect.scope
        const timers = new Map<AuctionId, Fiber.RuntimeFiber<void>>()
        const streams = new Map<string, NoticeStream>()
        const activity = new Map<SessionId, number>()
        const dirty = yield* Queue.unbounded<string>()
        /** Streams whose only new notices are bids received: they wait for company (`noticeLingerMs`). */
        const lingering = yield* Queue.unbounded<string>()
        const lingerQueued = new Set<string>()
        const startedMs = yield* Clock.currentTimeMillis
        /** The time as of the resender's last pass: precise enough for session activity, and free to read. */
        let nowMs = startedMs

        const propose = (command: AuctionCommand) =>
          cluster.propose({ _tag: "SystemCommand", command }).pipe(Effect.ignore)

        const schedule = (auction: AuctionId, delayMs: number, command: AuctionCommand | null) =>
          Effect.gen(function* () {
            const previous = timers.get(auction)
            timers.delete(auction)
            if (previous !== undefined) yield* Fiber.interruptFork(previous)
            if (command === null) return
            const fiber = yield* Effect.forkIn(
              Effect.zipRight(Effect.sleep(delayMs), propose(command)),
              scope
            )
            timers.set(auction, fiber)
          })

        /** The timer an event calls for (DESIGN §5, Timers across failover). */
        const deadlineFor = (state: AgoraState, event: AgoraEvent): Effect.Effect<void> => {
          if (event._tag !== "AuctionHappened") return Effect.void
          const inner = event.event
          const auction = Option.getOrUndefined(findAuction(state.auctions, inner.auction))
          if (auction === undefined) return Effect.void
          switch (inner._tag) {
            case "ReadyCheck":
              return schedule(inner.auction, auction.startTimeoutMs, {
                _tag: "StartDeadline",
                auction: inner.auction
              })
            case "RoundStarted":
              return schedule(inner.auction, auction.roundTimeoutMs, {
                _tag: "RoundDeadline",
                auction: inner.auction,
                round: inner.round
              })
            case "AuctionClosed":
            case "AuctionCancelled":
              // Its round or start deadline is moot now; its purge waits in the queue.
              return Effect.zipRight(schedule(inner.auction, 0, null), purgeLater(inner.auction))
            default:
              return Effect.void
          }
        }

        /** Every open deadline restarted in full: after a failover none is ever shortened. */
        const restartDeadlines = (state: AgoraState) =>
          Effect.gen(function* () {
            for (const auction of HashMap.values(state.auctions.open)) {
              if (auction.phase === "waiting" && Option.isSome(auction.readyCheckIndex)) {
                yield* schedule(auction.auction, auction.startTimeoutMs, {
                  _tag: "StartDeadline",
                  auction: auction.auction
                })
              } else if (auction.phase === "running") {
                yield* schedule(auction.auction, auction.roundTimeoutMs, {
                  _tag: "RoundDeadline",
                  auction: auction.auction,
                  round: auction.round
                })
              }
            }
            for (const auction of HashMap.keys(state.auctions.history)) yield* purgeLater(auction)
          })

        /**
         * Ended auctions waiting for their purge, in the order they are due: the retention is
         * the same for all, so each one queued is due no earlier than those before it. One
         * fiber purges them: a sleeping fiber per ended auction kept 10,000 fibers, each with
         * its scope entry, alive on a leader for the whole retention.
         */
        const purges: Array<{ readonly auction: AuctionId; readonly dueMs: number }> = []
        const purgesQueued = new Set<AuctionId>()
        const purgesAdded = yield* Queue.sliding<void>(1)

        const purgeLater = (auction: AuctionId): Effect.Effect<void> =>
          Effect.flatMap(Clock.currentTimeMillis, (now) => {
            if (purgesQueued.has(auction)) return Effect.void
            purgesQueued.add(auction)
            purges.push({ auction, dueMs: now + config.retentionMs })
            return Queue.offer(purgesAdded, undefined)
          })

        yield* Effect.forkScoped(
          Effect.forever(
            Effect.gen(function* () {
              const next = purges[0]
              if (next === undefined) return yield* Queue.take(purgesAdded)
              const now = yield* Clock.currentTimeMillis
              if (next.dueMs > now) return yield* Effect.sleep(next.dueMs - now)
              const notDue = purges.findIndex((purge) => purge.dueMs > now)
              const due = purges.splice(0, notDue === -1 ? purges.length : notDue)
              for (const { auction } of due) purgesQueued.delete(auction)
              // A purge of an auction already gone is refused, harmlessly (ignored).
              yield* Effect.forEach(due, ({ auction }) => propose({ _tag: "PurgeAuction", auction }), {
                concurrency: PurgesInFlightMax,
                discard: true
              })
            })
          )
        )

        const streamOf = (session: SessionId, auction: AuctionId): NoticeStream => {
          const key = `${session}/${auction}`
          let stream = streams.get(key)
          if (stream === undefined) {
            stream = { session, auction, acked: 0, sent: 0, lastSentMs: 0, resendMs: config.notifyResendMs }
            streams.set(key, stream)
          }
          return stream
        }

        /** Sends what a stream has not sent yet (a bounded number per pass). */
        const flush = (stream: NoticeStream) =>
          Effect.gen(function* () {
            const auction = Option.getOrUndefined(findAuction(latest.auctions, stream.auction))
            const session = Option.getOrUndefined(HashMap.get(latest.sessions, stream.session))
            if (auction === undefined || session === undefined) {
              streams.delete(`${stream.session}/${stream.auction}`)
              return
            }
            const { notifications, length } = notificationsFor(
              auction,
              stream.session,
              stream.sent + 1,
              NoticesPerPass
            )
            // Consecutive notices go out together, as many as fit a datagram.
            let batch: Array<NumberedNotice> = []
            let bytes = 0
            const sendBatch = () => {
              const first = batch[0]
              if (first === undefined) return Effect.void
              const notices = batch.map((numbered) => numbered.notice)
              batch = []
              bytes = 0
              return reply(session.address, {
                _tag: "Notify",
                auction: stream.auction,
                seq: first.seq,
                notices
              })
            }
            for (const numbered of notifications) {
              const size = jsonBytes(numbered.notice) + 1
              if (batch.length >= NoticesPerNotifyMax || (batch.length > 0 && bytes + size > bodyBytesMax)) {
                yield* sendBatch()
              }
              batch.push(numbered)
              bytes += size
              stream.sent = numbered.seq
            }
            yield* sendBatch()
            stream.lastSentMs = yield* Clock.currentTimeMillis
            if (stream.sent < length) Queue.unsafeOffer(dirty, `${stream.session}/${stream.auction}`)
          })

        // The sender: streams with something new.
        yield* Effect.forkScoped(
          Effect.forever(
            Effect.gen(function* () {
              const keys = new Set(yield* Queue.takeBetween(dirty, 1, 1_024))
              for (const key of keys) {
                const stream = streams.get(key)
                if (stream !== undefined) yield* flush(stream)
              }
            })
          )
        )

        // The linger: streams that waited noticeLingerMs go out (unless something urgent took them first).
        yield* Effect.forkScoped(
          Effect.forever(
            Effect.gen(function* () {
              const first = yield* Queue.take(lingering)
              yield* Effect.sleep(config.noticeLingerMs)
              // Those that came during the sleep go too: each waits at most noticeLingerMs.
              const rest = yield* Queue.takeAll(lingering)
              for (const key of [first, ...rest]) {
                lingerQueued.delete(key)
                Queue.unsafeOffer(dirty, key)
              }
            })
          )
        )

        // The resender: what stays unacknowledged is sent again from the first unacked notice.
        yield* Effect.forkScoped(
          Effect.forever(
            Effect.gen(function* () {
              yield* Effect.sleep(config.notifyResendMs)
              const now = yield* Clock.currentTimeMillis
              nowMs = now
              for (const [key, stream] of streams) {
                if (stream.acked < stream.sent && now - stream.lastSentMs >= stream.resendMs) {
                  // Unacknowledged past its resend interval: send again from the first unacknowledged
                  // notice, and wait twice as long next time (an overloaded client or network gets
                  // fewer resends, not more).
                  stream.sent = stream.acked
                  stream.resendMs = Math.min(stream.resendMs * 2, ResendBackoffMaxMs)
                  Queue.unsafeOffer(dirty, key)
                }
              }
            })
          )
        )

        // Session expiry: a client silent past the session timeout loses its session (a committed command).
        yield* Effect.forkScoped(
          Effect.forever(
            Effect.gen(function* () {
              yield* Effect.sleep(Math.max(100, Math.floor(config.sessionTimeoutMs / 4)))
              const now = yield* Clock.currentTimeMillis
              for (const session of HashMap.keys(latest.sessions)) {
                const seenMs = activity.get(session) ?? startedMs
                if (now - seenMs > config.sessionTimeoutMs) {
                  activity.delete(session)
                  yield* cluster.propose({ _tag: "ExpireSession", session }).pipe(Effect.ignore)
                }
              }
            })
          )
        )

        // Take over: restart the deadlines in full, then tell every session where the leader is.
        yield* Effect.forkScoped(
          Effect.gen(function* () {
            const restarted = yield* Effect.either(cluster.propose({ _tag: "RestartDeadlines" }))
            if (restarted._tag === "Left") return
            // From the latest applied state, not the one right after RestartDeadlines: entries
            // committed with it (a Start, a last bid) may already be applied and have set their
            // timers, which a deadline of the older state would replace (found by the simulator,
            // seed 246: a StartDeadline replaced a round's deadline and the round never ended).
            yield* restartDeadlines(latest)
            const leader = yield* leaderInfo
            if (leader === null) return
            for (const session of HashMap.values(restarted.right.state.sessions)) {
              yield* reply(session.address, { _tag: "LeaderChanged", leader })
            }
          })
        )
        yield* Effect.logInfo(`leader duties started for epoch ${epoch}`)

        return {
          applied: (events, state) =>
            Effect.suspend(() => {
              // How many notices this entry adds per stream: a stream this leader did not know yet
              // starts right before them (a client that missed earlier ones resubscribes for them).
              const added = new Map<
                string,
                { session: SessionId; auction: AuctionId; count: number; urgent: boolean }
              >()
              for (const event of events) {
                if (event._tag === "SessionExpired") activity.delete(event.session)
                if (event._tag !== "AuctionHappened") continue
                const auction = Option.getOrUndefined(findAuction(state.auctions, event.event.auction))
                if (auction === undefined) continue
                const urgent = event.event._tag !== "BidPlaced" || config.noticeLingerMs === 0
                for (const session of recipientsOf(auction, event.event)) {
                  const key = `${session}/${event.event.auction}`
                  const entry = added.get(key) ?? {
                    session,
                    auction: event.event.auction,
                    count: 0,
                    urgent: false
                  }
                  entry.count += 1
                  entry.urgent ||= urgent
                  added.set(key, entry)
                }
              }
              for (const [key, { session, auction, count, urgent }] of added) {
                if (!streams.has(key)) {
                  const found = Option.getOrUndefined(findAuction(state.auctions, auction))
                  const length = found === undefined ? 0 : streamLength(found, session)
                  const stream = streamOf(session, auction)
                  stream.acked = Math.max(0, length - count)
                  stream.sent = stream.acked
                }
                if (urgent) Queue.unsafeOffer(dirty, key)
                else if (!lingerQueued.has(key)) {
                  lingerQueued.add(key)
                  Queue.unsafeOffer(lingering, key)
                }
              }
              return Effect.forEach(events, (event) => deadlineFor(state, event), { discard: true })
            }),
          touch: (session) => {
            activity.set(session, nowMs)
          },
          ack: (session, auction, seq) => {
            const key = `${session}/${auction}`
            const stream = streams.get(key)
            if (stream === undefined) return
            const acked = Math.min(seq, stream.sent)
            if (acked > stream.acked) stream.resendMs = config.notifyResendMs
            stream.acked = Math.max(stream.acked, acked)
            // A fully acknowledged stream of an ended auction has nothing more to send: forget it
            // (a resubscribe recreates it), so the notifier does not grow with history.
            const ended = Option.getOrUndefined(findAuction(latest.auctions, auction))
            if (ended !== undefined && (ended.phase === "closed" || ended.phase === "cancelled")) {
              if (stream.acked >= streamLength(ended, session)) streams.delete(key)
            }
          },
          subscribe: (session, auction, fromSeq) => {
            const stream = streamOf(session, auction)
            stream.acked = Math.max(0, fromSeq - 1)
            stream.sent = stream.acked
            Queue.unsafeOffer(dirty, `${session}/${auction}`)
            const found = Option.getOrUndefined(findAuction(latest.auctions, auction))
            return found === undefined ? 0 : streamLength(found, session)
          }
        } satisfies LeaderDuties
      })

    return cluster
  })

/** The auctions these events ended. */
const endedAuctions = (
  events: ReadonlyArray<AgoraEvent>,
  state: AgoraState
): ReadonlyArray<ClosedAuction | CancelledAuction> =>
  events.flatMap((event) => {
    if (event._tag !== "AuctionHappened") return []
    const inner = event.event
    if (inner._tag !== "AuctionClosed" && inner._tag !== "AuctionCancelled") return []
    const auction = Option.getOrUndefined(findAuction(state.auctions, inner.auction))
    if (auction === undefined || (auction.phase !== "closed" && auction.phase !== "cancelled")) return []
    return [auction]
  })

/** A finished auction as the store keeps it for good. */
const endedRecord = (auction: ClosedAuction | CancelledAuction): EndedAuctionRecord => ({
  auction: auction.auction,
  item: auction.item,
  auctioneer: auction.auctioneer,
  status: auction.phase,
  winner: auction.phase === "closed" ? auction.winner : null,
  amount: auction.phase === "closed" ? auction.amount : null,
  totals:
    auction.phase === "closed" ? auction.totals : auction.bidders.map((bidder) => ({ bidder, amount: 0 })),
  reason: auction.phase === "cancelled" ? auction.reason : null,
  rounds: auction.minRounds,
  minBid: auction.minBid,
  createdAtMs: auction.createdAtMs
})
