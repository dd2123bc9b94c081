/**
 * The real `Client` service (src/services/Client.ts) as a simulated client
 * (`WorkloadClient`), so the simulator checks what users get: its retries,
 * leader following, resubscription and ordering. `deliveryKind: "ordered"`:
 * `deliveries` is what the service handed its user, which the checkers hold to
 * in order, gap-free and duplicate-free.
 *
 * The service keeps its request ids to itself; the checkers need them to find
 * each request in the committed log, so the adapter reads them off the
 * `Request` datagrams the service sends (one request in flight: the first new
 * id sent after `request` starts is its id). A forged request is sent by a
 * companion recording client without a session of its own.
 */
import { Clock, Effect, Option, type Scope, Stream } from "effect"
import type { ClientId, SessionId } from "../../src/domain/Ids.js"
import { recordTrace } from "../../src/layers/SimTrace.js"
import { makeSim, type SimNetwork } from "../../src/layers/TransportSim.js"
import * as Client from "../../src/services/Client.js"
import { Transport } from "../../src/services/Transport.js"
import {
  type Delivery,
  makeRecordingClient,
  type RecordingClientOptions,
  type WorkloadClient
} from "./SimClient.js"

export const makeServiceClient = (
  name: string,
  options: RecordingClientOptions
): Effect.Effect<WorkloadClient, never, SimNetwork | Scope.Scope> =>
  Effect.gen(function* () {
    const transport = yield* Effect.orDie(
      makeSim({ identity: { role: "client", id: name as ClientId }, boot: 0, listenDiscovery: false })
    )
    let session: SessionId | null = null
    let lastRequestId = 0
    let onSent: ((requestId: number, session: SessionId) => void) | null = null
    const watched = Transport.of({
      ...transport,
      send: (to, message) => {
        const body = message.body
        if (body._tag === "Request" && body.requestId > lastRequestId) {
          lastRequestId = body.requestId
          onSent?.(body.requestId, body.session)
        }
        return transport.send(to, message)
      }
    })
    const client = yield* Client.make({
      id: name as ClientId,
      requestTimeoutMs: options.requestTimeoutMs,
      retryIntervalMs: options.retryMs,
      pingIntervalMs: options.keepAliveMs,
      streams: { gapRetryMs: options.gapRetryMs }
    }).pipe(Effect.provideService(Transport, watched))

    const deliveries: Array<Delivery> = []
    yield* Effect.forkScoped(
      Stream.runForEach(client.notices, ({ auction, seq, notice }) =>
        Effect.gen(function* () {
          deliveries.push({ atMs: yield* Clock.currentTimeMillis, auction, seq, notice })
          yield* recordTrace(`sim ${name} delivered a${auction}#${seq} ${notice._tag}`)
        })
      )
    )

    const refreshSession = Effect.map(client.connection, (connection) => {
      session = Option.match(connection, { onNone: () => session, onSome: (c) => c.session })
    })

    const forger = yield* makeRecordingClient(`${name}~forger`, options)

    return {
      name,
      deliveryKind: "ordered",
      connect: (timeoutMs) =>
        client.connect.pipe(
          Effect.timeoutOption(timeoutMs),
          Effect.map(Option.map((connected) => connected.session)),
          Effect.catchTag("NotConnected", () => Effect.succeed(Option.none<SessionId>())),
          Effect.tap((connected) =>
            Effect.sync(() => {
              if (Option.isSome(connected)) session = connected.value
            })
          ),
          Effect.map(Option.getOrNull)
        ),
      session: () => session,
      request: (op, onRequestId) =>
        Effect.gen(function* () {
          let requestId = 0
          onSent = (id) => {
            requestId = id
            onRequestId?.(id)
          }
          const outcome = yield* client.request(op).pipe(
            Effect.map((result) => ({ requestId, result })),
            Effect.catchTags({
              // It may have been applied: its id came from the datagram that carried it.
              Timeout: (timeout) =>
                Effect.succeed({ requestId: timeout.requestId, result: "timeout" as const }),
              // Never sent: id 0, which no committed entry has.
              NotConnected: () => Effect.succeed({ requestId: 0, result: "timeout" as const }),
              ClientBusy: () => Effect.dieMessage(`${name}: the workload sends one request at a time`)
            }),
            Effect.ensuring(
              Effect.sync(() => {
                onSent = null
              })
            )
          )
          yield* refreshSession
          return outcome
        }),
      forge: forger.forge,
      deliveries: () => deliveries,
      // The service follows the auctions it created or joined by itself.
      track: () => {}
    } satisfies WorkloadClient
  })
