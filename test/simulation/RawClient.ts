/**
 * A deliberately small client that speaks the wire protocol by hand, for
 * server tests that must not depend on the real `Client` service: discover,
 * register, send a request with retries (same request id) until a reply,
 * follow NotLeader, collect notifications and acknowledge the in-order prefix.
 */
import { Clock, Deferred, Effect, Option, type Scope, Stream } from "effect"
import type { Notice } from "../../src/domain/auction/Notifications.js"
import type { AuctionId, ClientId, RequestId, SessionId, SessionToken } from "../../src/domain/Ids.js"
import type { ClientOp, ReplyResult } from "../../src/domain/Messages.js"
import type { Address } from "../../src/domain/Schemas.js"
import { makeSim, type SimNetwork } from "../../src/layers/TransportSim.js"
import type { TransportShape } from "../../src/services/Transport.js"

/** Acknowledges every notice of `auction` up to `seq` to the server that sent them (a lost ack is repaired by the next). */
export const sendNotifyAck = (
  transport: TransportShape,
  to: Address,
  as: { readonly session: SessionId; readonly token: SessionToken },
  auction: number,
  seq: number
): Effect.Effect<void> =>
  transport
    .send(to, { body: { _tag: "NotifyAck", ...as, auction: auction as AuctionId, seq } })
    .pipe(Effect.ignore)

export interface RawClient {
  readonly session: () => SessionId
  readonly connect: Effect.Effect<SessionId>
  /** Sends `op` with a fresh request id (or the given one, to test retries) until answered. */
  readonly request: (op: ClientOp, requestId?: number) => Effect.Effect<ReplyResult | "timeout">
  /** Sends `op` in someone else's name: another session, a made-up token. */
  readonly forge: (op: ClientOp, session: SessionId, token: string) => Effect.Effect<ReplyResult | "timeout">
  /** Every notice received for `auction`, by seq (duplicates collapse). */
  readonly notices: (auction: number) => ReadonlyArray<Notice>
  readonly lastRequestId: () => number
  /** The session's token (to propose in its name straight to a server, in scale tests). */
  readonly token: () => SessionToken
  /** Every notification of `auction` as it arrived, duplicates and all, with its arrival time. */
  readonly arrivals: (auction: number) => ReadonlyArray<NoticeArrival>
  /** Every reply received for `requestId`, in arrival order (the first one answered `request`). */
  readonly replies: (requestId: number) => ReadonlyArray<ReplyResult>
  /** Request datagrams sent so far (first copies and retries). */
  readonly requestsSent: () => number
  /** Asks the leader it knows to resend `auction` from `fromSeq` (default: after the in-order prefix it holds). */
  readonly subscribe: (auction: number, fromSeq?: number) => Effect.Effect<void>
}

export interface NoticeArrival {
  readonly seq: number
  readonly notice: Notice
  readonly atMs: number
}

export const makeRawClient = (name: string): Effect.Effect<RawClient, never, SimNetwork | Scope.Scope> =>
  Effect.gen(function* () {
    const transport = yield* Effect.orDie(
      makeSim({ identity: { role: "client", id: name as ClientId }, boot: 0, listenDiscovery: false })
    )
    let leader: Address | null = null
    let session: SessionId | null = null
    let token: SessionToken | null = null
    let nextRequest = 0
    const waiting = new Map<number, Deferred.Deferred<ReplyResult>>()
    let registered: Deferred.Deferred<void> | null = null
    const streams = new Map<number, Map<number, Notice>>()
    const arrivals = new Map<number, Array<NoticeArrival>>()
    const replies = new Map<number, Array<ReplyResult>>()
    let requestsSent = 0

    /** The highest seq up to which `auction`'s notices are all in. */
    const contiguousOf = (auction: number): number => {
      const stream = streams.get(auction)
      let contiguous = 0
      while (stream?.has(contiguous + 1) === true) contiguous += 1
      return contiguous
    }

    const send = (body: Parameters<typeof transport.send>[1]["body"]) =>
      leader === null
        ? transport.broadcast({ body: { _tag: "DiscoveryRequest" } }).pipe(Effect.ignore)
        : transport.send(leader, { body }).pipe(Effect.ignore)

    yield* Effect.forkScoped(
      Stream.runForEach(transport.incoming, ({ envelope, source }) =>
        Effect.gen(function* () {
          const body = envelope.body
          switch (body._tag) {
            case "DiscoveryResponse":
              if (body.leader !== null)
                leader = body.leader.id === envelope.from.id ? source : body.leader.address
              return
            case "NotLeader":
              leader = body.leader?.address ?? null
              return
            case "LeaderChanged":
              leader = source
              return
            case "Registered":
              session = body.session
              token = body.token
              leader = source
              if (registered !== null) yield* Deferred.succeed(registered, undefined)
              return
            case "Reply": {
              const received = replies.get(body.requestId) ?? []
              replies.set(body.requestId, received)
              received.push(body.result)
              const deferred = waiting.get(body.requestId)
              if (deferred !== undefined) yield* Deferred.succeed(deferred, body.result)
              return
            }
            case "Notify": {
              const stream = streams.get(body.auction) ?? new Map<number, Notice>()
              streams.set(body.auction, stream)
              const arrived = arrivals.get(body.auction) ?? []
              arrivals.set(body.auction, arrived)
              const atMs = yield* Clock.currentTimeMillis
              for (const [i, notice] of body.notices.entries()) {
                stream.set(body.seq + i, notice)
                arrived.push({ seq: body.seq + i, notice, atMs })
              }
              const contiguous = contiguousOf(body.auction)
              if (session !== null && token !== null && contiguous > 0) {
                yield* sendNotifyAck(transport, source, { session, token }, body.auction, contiguous)
              }
              return
            }
            default:
              return
          }
        })
      )
    )

    const connect = Effect.gen(function* () {
      const done = yield* Deferred.make<void>()
      registered = done
      while (Option.isNone(yield* Deferred.poll(done))) {
        yield* send({ _tag: "Register", nonce: 1 })
        yield* Effect.sleep(100)
      }
      return session as unknown as SessionId
    })

    const request = (
      op: ClientOp,
      requestId?: number,
      as?: { readonly session: SessionId; readonly token: SessionToken }
    ): Effect.Effect<ReplyResult | "timeout"> =>
      Effect.gen(function* () {
        const id = requestId ?? ++nextRequest
        nextRequest = Math.max(nextRequest, id)
        const deferred = yield* Deferred.make<ReplyResult>()
        waiting.set(id, deferred)
        const deadline = (yield* Clock.currentTimeMillis) + 10_000
        while ((yield* Clock.currentTimeMillis) < deadline) {
          const sender = as ?? (session !== null && token !== null ? { session, token } : null)
          if (sender !== null) {
            requestsSent += 1
            yield* send({
              _tag: "Request",
              session: sender.session,
              token: sender.token,
              requestId: id as RequestId,
              op
            })
          }
          const answer = yield* Deferred.await(deferred).pipe(Effect.timeout(100), Effect.option)
          if (Option.isSome(answer)) {
            waiting.delete(id)
            return answer.value
          }
        }
        waiting.delete(id)
        return "timeout" as const
      })

    return {
      session: () => session as unknown as SessionId,
      connect,
      request: (op, requestId) => request(op, requestId),
      forge: (op, victim, forgedToken) =>
        request(op, undefined, { session: victim, token: forgedToken as SessionToken }),
      notices: (auction) => {
        const stream = streams.get(auction)
        if (stream === undefined) return []
        return [...stream.entries()].sort(([a], [b]) => a - b).map(([, notice]) => notice)
      },
      lastRequestId: () => nextRequest,
      token: () => token as unknown as SessionToken,
      arrivals: (auction) => arrivals.get(auction) ?? [],
      replies: (requestId) => replies.get(requestId) ?? [],
      requestsSent: () => requestsSent,
      subscribe: (auction, fromSeq) =>
        Effect.suspend(() =>
          session === null || token === null
            ? Effect.void
            : send({
                _tag: "Subscribe",
                session,
                token,
                auction: auction as AuctionId,
                fromSeq: fromSeq ?? contiguousOf(auction) + 1
              })
        )
    }
  })
