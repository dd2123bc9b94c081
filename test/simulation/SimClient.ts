/**
 * The clients of the simulator, behind one small interface (`WorkloadClient`)
 * so the workload does not care which client drives the cluster. Today it is
 * `makeRecordingClient`, a hand-written client of the wire protocol in the
 * spirit of `RawClient.ts`, with what a long faulty run needs on top:
 *
 * - a request is resent (same request id) every `retryMs`; with no answer for
 *   `rediscoverAfterMs` it forgets the leader and rediscovers it by broadcast,
 *   so a crashed leader does not swallow every retry until the request timeout;
 * - `Ping` every `keepAliveMs`: the leader's `Pong` (or anything else from it)
 *   keeps it; silence for three intervals → rediscover;
 * - after a change of leader, and when it sees a gap in an auction's numbers,
 *   it sends `Subscribe` from its first missing number for every auction it
 *   knows it takes part in (DESIGN §5: "after a failover the client
 *   resubscribes from the last number it has"; "a client that sees a gap asks
 *   for the range"), after a change of leader until the leader answers `Subscribed`;
 * - it records every notification as it arrives (order, duplicates and all):
 *   the checkers judge the server's delivery from that raw record.
 *
 * When the real `Client` service (src/services/Client.ts) is finished, an
 * adapter from it to `WorkloadClient` with `deliveryKind: "ordered"` (what it
 * hands its user, in order) swaps it in; the checkers already handle both.
 */
import { Clock, Deferred, Effect, Option, type Scope, Stream } from "effect"
import type { Notice } from "../../src/domain/auction/Notifications.js"
import type { Body } from "../../src/domain/Envelope.js"
import type { AuctionId, ClientId, RequestId, SessionId, SessionToken } from "../../src/domain/Ids.js"
import type { ClientOp, ReplyResult } from "../../src/domain/Messages.js"
import type { Address } from "../../src/domain/Schemas.js"
import { recordTrace } from "../../src/layers/SimTrace.js"
import { makeSim, type SimNetwork } from "../../src/layers/TransportSim.js"
import { sendNotifyAck } from "./RawClient.js"

/** One notification as the client recorded it. */
export interface Delivery {
  readonly atMs: number
  readonly auction: number
  readonly seq: number
  readonly notice: Notice
}

/** What the workload needs of a client. */
export interface WorkloadClient {
  readonly name: string
  /**
   * "raw": `deliveries` is every datagram as it arrived (duplicates, any order);
   * "ordered": what the client handed its user (must be in order, gap- and duplicate-free).
   */
  readonly deliveryKind: "raw" | "ordered"
  /** Registers, retrying, until a session is open or `timeoutMs` passes. */
  readonly connect: (timeoutMs: number) => Effect.Effect<SessionId | null>
  readonly session: () => SessionId | null
  /**
   * Sends `op` with the next request id until answered or timed out ("timeout": it may have been
   * applied). `onRequestId` learns the id before anything is sent, so an operation still in flight
   * when the run ends is known by its id too.
   */
  readonly request: (
    op: ClientOp,
    onRequestId?: (requestId: number) => void
  ) => Effect.Effect<{ readonly requestId: number; readonly result: Answer }>
  /** Sends `op` as someone else (their session, a made-up token) under `requestId`. */
  readonly forge: (
    op: ClientOp,
    session: SessionId,
    requestId: number
  ) => Effect.Effect<{ readonly requestId: number; readonly result: Answer }>
  /** Every notification recorded so far (see `deliveryKind`). */
  readonly deliveries: () => ReadonlyArray<Delivery>
  /** The client takes part in `auction` (created or joined it): resubscribe to it after a failover. */
  readonly track: (auction: number) => void
}

export type Answer = ReplyResult | "timeout"

export interface RecordingClientOptions {
  /** The whole budget of one request, retries included (DESIGN §7 default: 10 s). */
  readonly requestTimeoutMs: number
  /** Resend period of an unanswered request. */
  readonly retryMs: number
  /** No answer this long → forget the leader and rediscover. */
  readonly rediscoverAfterMs: number
  /** Ping period; the leader is forgotten after three silent periods. */
  readonly keepAliveMs: number
  /** Least time between two asks for the same gap (as the real client's `gapRetryMs`). */
  readonly gapRetryMs: number
}

export const recordingClientDefaults: RecordingClientOptions = {
  requestTimeoutMs: 10_000,
  retryMs: 100,
  rediscoverAfterMs: 600,
  keepAliveMs: 500,
  gapRetryMs: 1_000
}

export const makeRecordingClient = (
  name: string,
  options: RecordingClientOptions = recordingClientDefaults
): Effect.Effect<WorkloadClient, never, SimNetwork | Scope.Scope> =>
  Effect.gen(function* () {
    const transport = yield* Effect.orDie(
      makeSim({ identity: { role: "client", id: name as ClientId }, boot: 0, listenDiscovery: false })
    )
    let leader: Address | null = null
    let leaderHeardMs = 0
    let leaderEpoch = -1
    let resubscribeDue = false
    let session: SessionId | null = null
    let token: SessionToken | null = null
    let registered: Deferred.Deferred<void> | null = null
    let nextRequest = 0
    const waiting = new Map<number, Deferred.Deferred<ReplyResult>>()
    const deliveries: Array<Delivery> = []
    /** Per auction: the numbers received, and the contiguous prefix. */
    const streams = new Map<number, { readonly seqs: Set<number>; contiguous: number }>()
    const tracked = new Set<number>()
    /** Auctions with a gap (a number received past the contiguous prefix), and when it was last asked for. */
    const gaps = new Map<number, number>()
    /** Resubscriptions the leader has not answered (`Subscribed`) yet, and when each was last sent. */
    const unconfirmed = new Map<number, number>()

    const sameAddress = (a: Address | null, b: Address | null) =>
      a !== null && b !== null && a.host === b.host && a.port === b.port

    const setLeader = (address: Address | null, epoch: number | undefined, nowMs: number) => {
      if (address !== null && !sameAddress(address, leader)) resubscribeDue = true
      if (epoch !== undefined && epoch > leaderEpoch) {
        if (leaderEpoch >= 0) resubscribeDue = true
        leaderEpoch = epoch
      }
      leader = address
      if (address !== null) leaderHeardMs = nowMs
    }

    const send = (body: Body) =>
      leader === null
        ? transport.broadcast({ body: { _tag: "DiscoveryRequest" } }).pipe(Effect.ignore)
        : transport.send(leader, { body }).pipe(Effect.ignore)

    const streamOf = (auction: number) => {
      let stream = streams.get(auction)
      if (stream === undefined) {
        stream = { seqs: new Set(), contiguous: 0 }
        streams.set(auction, stream)
      }
      return stream
    }

    yield* Effect.forkScoped(
      Stream.runForEach(transport.incoming, ({ envelope, source }) =>
        Effect.gen(function* () {
          const body = envelope.body
          const nowMs = yield* Clock.currentTimeMillis
          if (sameAddress(source, leader)) leaderHeardMs = nowMs
          switch (body._tag) {
            case "DiscoveryResponse":
              if (body.leader !== null && (leader === null || body.leader.epoch >= leaderEpoch)) {
                setLeader(
                  body.leader.id === envelope.from.id ? source : body.leader.address,
                  body.leader.epoch,
                  nowMs
                )
              }
              return
            case "NotLeader":
              setLeader(body.leader?.address ?? null, body.leader?.epoch, nowMs)
              return
            case "LeaderChanged":
              if (body.leader.epoch >= leaderEpoch) setLeader(source, body.leader.epoch, nowMs)
              return
            case "Pong":
              setLeader(source, body.epoch, nowMs)
              return
            case "Registered":
              if (session === null) {
                session = body.session
                token = body.token
              }
              setLeader(source, undefined, nowMs)
              if (registered !== null) yield* Deferred.succeed(registered, undefined)
              return
            case "Subscribed":
              if (sameAddress(source, leader)) unconfirmed.delete(body.auction)
              return
            case "Reply": {
              const deferred = waiting.get(body.requestId)
              if (deferred !== undefined) yield* Deferred.succeed(deferred, body.result)
              return
            }
            case "Notify": {
              // One datagram carries consecutive notices, numbered from `seq`.
              const stream = streamOf(body.auction)
              for (const [index, notice] of body.notices.entries()) {
                const seq = body.seq + index
                deliveries.push({ atMs: nowMs, auction: body.auction, seq, notice })
                yield* recordTrace(`sim ${name} got a${body.auction}#${seq} ${notice._tag}`)
                stream.seqs.add(seq)
              }
              tracked.add(body.auction)
              while (stream.seqs.has(stream.contiguous + 1)) stream.contiguous += 1
              // A gap: something received past the contiguous prefix (asked for at the next keep-alive).
              if (![...stream.seqs].some((n) => n > stream.contiguous)) gaps.delete(body.auction)
              else if (!gaps.has(body.auction)) gaps.set(body.auction, 0)
              if (session !== null && token !== null && stream.contiguous > 0) {
                yield* sendNotifyAck(transport, source, { session, token }, body.auction, stream.contiguous)
              }
              return
            }
            default:
              return
          }
        })
      )
    )

    const subscribe = (auction: number) =>
      session === null || token === null || leader === null
        ? Effect.void
        : Effect.zipRight(
            recordTrace(`sim ${name} subscribes a${auction} from #${streamOf(auction).contiguous + 1}`),
            transport.send(leader, {
              body: {
                _tag: "Subscribe",
                session,
                token,
                auction: auction as AuctionId,
                fromSeq: streamOf(auction).contiguous + 1
              }
            })
          ).pipe(Effect.ignore)

    // Keep-alive: ping the leader, forget a silent one, resubscribe after a change of leader or a gap.
    yield* Effect.forkScoped(
      Effect.forever(
        Effect.gen(function* () {
          yield* Effect.sleep(options.keepAliveMs)
          if (session === null || token === null) return
          const nowMs = yield* Clock.currentTimeMillis
          if (leader !== null && nowMs - leaderHeardMs > 3 * options.keepAliveMs) leader = null
          yield* send({ _tag: "Ping", session, token })
          if (leader === null) return
          if (resubscribeDue) {
            resubscribeDue = false
            for (const auction of [...tracked].sort((a, b) => a - b)) {
              unconfirmed.set(auction, nowMs)
              yield* subscribe(auction)
            }
            for (const auction of gaps.keys()) gaps.set(auction, nowMs)
          } else {
            // Asked again until the leader answers: a lost `Subscribe` looks like a quiet stream.
            for (const [auction, askedMs] of [...unconfirmed].sort(([a], [b]) => a - b)) {
              if (nowMs - askedMs < options.gapRetryMs) continue
              unconfirmed.set(auction, nowMs)
              yield* subscribe(auction)
            }
            // A gap is asked for again every `gapRetryMs` while it lasts (the ask or its answer may be lost).
            for (const [auction, askedMs] of [...gaps].sort(([a], [b]) => a - b)) {
              if (nowMs - askedMs < options.gapRetryMs) continue
              gaps.set(auction, nowMs)
              yield* subscribe(auction)
            }
          }
        })
      )
    )

    const connect = (timeoutMs: number): Effect.Effect<SessionId | null> =>
      Effect.gen(function* () {
        if (session !== null) return session
        const done = yield* Deferred.make<void>()
        registered = done
        const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
        while (Option.isNone(yield* Deferred.poll(done)) && (yield* Clock.currentTimeMillis) < deadline) {
          yield* send({ _tag: "Register", nonce: 1 })
          yield* Effect.sleep(options.retryMs)
        }
        return session
      })

    const exchange = (
      op: ClientOp,
      requestId: number,
      as: () => { readonly session: SessionId; readonly token: SessionToken } | null
    ): Effect.Effect<{ readonly requestId: number; readonly result: Answer }> =>
      Effect.gen(function* () {
        const deferred = yield* Deferred.make<ReplyResult>()
        waiting.set(requestId, deferred)
        const startMs = yield* Clock.currentTimeMillis
        const deadline = startMs + options.requestTimeoutMs
        let progressMs = startMs
        while ((yield* Clock.currentTimeMillis) < deadline) {
          const nowMs = yield* Clock.currentTimeMillis
          if (leader !== null && nowMs - progressMs >= options.rediscoverAfterMs) {
            leader = null
            progressMs = nowMs
          }
          const sender = as()
          if (sender !== null) {
            yield* send({
              _tag: "Request",
              session: sender.session,
              token: sender.token,
              requestId: requestId as RequestId,
              op
            })
          }
          const answer = yield* Deferred.await(deferred).pipe(
            Effect.timeout(Math.min(options.retryMs, Math.max(1, deadline - nowMs))),
            Effect.option
          )
          if (Option.isSome(answer)) {
            waiting.delete(requestId)
            return { requestId, result: answer.value }
          }
          if (leader === null) progressMs = yield* Clock.currentTimeMillis
        }
        waiting.delete(requestId)
        return { requestId, result: "timeout" as const }
      })

    const client: WorkloadClient = {
      name,
      deliveryKind: "raw",
      connect,
      session: () => session,
      request: (op, onRequestId) => {
        nextRequest += 1
        onRequestId?.(nextRequest)
        return exchange(op, nextRequest, () =>
          session !== null && token !== null ? { session, token } : null
        )
      },
      forge: (op, victim, requestId) =>
        exchange(op, requestId, () => ({ session: victim, token: `forged-by-${name}` as SessionToken })),
      deliveries: () => deliveries,
      track: (auction) => {
        tracked.add(auction)
      }
    }
    return client
  })
