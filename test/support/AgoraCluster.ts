/**
 * A simulated group of Agora auction servers for scenario tests, and readers
 * of what its committed logs say (the Agora events with their seqs).
 */
import { Effect, Either } from "effect"
import { type AgoraEvent, agoraMachine } from "../../src/domain/agora/Agora.js"
import type { ClusterConfig } from "../../src/domain/cluster/Config.js"
import type { LogEntry } from "../../src/domain/cluster/Entry.js"
import type { Body } from "../../src/domain/Envelope.js"
import {
  type AuctionServerConfig,
  defaultAuctionServerConfig,
  makeAuctionServer
} from "../../src/services/AuctionServer.js"
import { Transport, type TransportShape } from "../../src/services/Transport.js"
import { makeSimCluster } from "../simulation/SimCluster.js"

export const serverIds: ReadonlyArray<string> = ["s1", "s2", "s3"]

export interface AgoraClusterOptions {
  readonly ids?: ReadonlyArray<string>
  readonly server?: Partial<AuctionServerConfig>
  readonly cluster?: Partial<ClusterConfig>
  readonly recordSends?: boolean
  /** Called with every message a server sends (cheaper than `recordSends` when only a few tags matter). */
  readonly onSend?: (id: string, body: Body) => void
}

/** Servers started together (`expect` = their number), their leader elected. Deadlines 5 s unless given. */
export const startAgoraCluster = (options: AgoraClusterOptions = {}) =>
  Effect.gen(function* () {
    const ids = options.ids ?? serverIds
    const cluster = yield* makeSimCluster({
      ids,
      machine: agoraMachine,
      config: { expect: ids.length, ...options.cluster },
      recordSends: options.recordSends ?? false,
      makeServer: (context) =>
        Effect.flatMap(Transport, (transport) =>
          makeAuctionServer({
            ...context,
            cluster: context.config,
            server: {
              ...defaultAuctionServerConfig,
              roundTimeoutMs: 5_000,
              startTimeoutMs: 5_000,
              ...options.server
            }
          }).pipe(Effect.provideService(Transport, tapped(transport, context.id, options.onSend)))
        )
    })
    yield* Effect.forEach(ids, (id) => cluster.start(id), { discard: true })
    const leader = yield* cluster.awaitLeader(10_000)
    return { cluster, leader }
  })

const tapped = (
  transport: TransportShape,
  id: string,
  onSend: ((id: string, body: Body) => void) | undefined
): TransportShape =>
  onSend === undefined
    ? transport
    : {
        ...transport,
        send: (to, message) =>
          Effect.suspend(() => {
            onSend(id, message.body)
            return transport.send(to, message)
          })
      }

/** One Agora event of a committed log, with the seq of its entry. */
export interface LoggedEvent {
  readonly seq: number
  readonly event: AgoraEvent
}

/** The Agora events of committed entries, in log order. */
export const agoraEventsOf = (log: ReadonlyArray<LogEntry>): ReadonlyArray<LoggedEvent> =>
  log.flatMap((entry) => {
    if (entry.body._tag !== "App") return []
    const events = agoraMachine.decodeEvents(entry.body.data)
    if (Either.isLeft(events)) throw new Error(`entry ${entry.seq} does not decode: ${String(events.left)}`)
    return events.right.map((event) => ({ seq: entry.seq, event }))
  })

/** The auction events (`AuctionHappened`) of a committed log, unwrapped, with their seqs. */
export const auctionEventsOf = (log: ReadonlyArray<LogEntry>) =>
  agoraEventsOf(log).flatMap(({ seq, event }) =>
    event._tag === "AuctionHappened" ? [{ seq, event: event.event }] : []
  )
