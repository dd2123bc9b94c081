/**
 * A whole Agora server, assembled from its edges: the SQLite store in its data
 * dir, the UDP transport, and the auction service on the cluster. This is what
 * `agora server` runs, and what a custom deployment composes.
 *
 * Order matters: the store is opened first (it holds the server id, the
 * incarnation and the boot counter the transport stamps on every datagram).
 * As layers: SQLite → Opened → UDP → AuctionServer, each built from the ones before.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import type { ClusterConfig } from "../domain/cluster/Config.js"
import type { ServerId } from "../domain/Ids.js"
import type { Address } from "../domain/Schemas.js"
import {
  type AgoraCluster,
  AuctionServer,
  type AuctionServerConfig,
  layer as auctionServerLayer
} from "../services/AuctionServer.js"
import { layerOpened, Opened, type StoreError } from "../services/LogStore.js"
import { Transport } from "../services/Transport.js"
import { DataDir, layerSqlite, type SyncMode } from "./StoreSqlite.js"
import { layerUdp, type UdpBindError } from "./TransportUdp.js"

export interface ServerOptions {
  /** `--id`; when absent, the id stored in the data dir (or a new one). */
  readonly id?: ServerId | undefined
  readonly dataDir: string
  readonly sync: SyncMode
  readonly bindAddress: string
  readonly port: number
  readonly discoveryPort: number
  readonly broadcastAddress: string
  readonly maxDatagramBytes: number
  readonly clusterKey?: Redacted.Redacted<string> | undefined
  readonly cluster: ClusterConfig
  readonly server: AuctionServerConfig
}

export interface RunningServer {
  readonly id: ServerId
  readonly address: Address
  readonly cluster: AgoraCluster
}

/** A whole server as a layer: the auction service and the transport it listens on. */
export const layerServer = (
  options: ServerOptions
): Layer.Layer<AuctionServer | Transport, StoreError | UdpBindError> => {
  const store = layerSqlite({ dataDir: options.dataDir, sync: options.sync })
  const opened = Layer.unwrapEffect(
    Effect.map(
      Effect.flatMap(DataDir, (dataDir) => dataDir.serverIdentity(options.id)),
      layerOpened
    )
  ).pipe(Layer.provideMerge(store))
  const transport = Layer.unwrapEffect(
    Effect.map(Opened, (server) =>
      layerUdp({
        identity: { role: "server", id: server.id, incarnation: server.incarnation },
        boot: server.stored.boot,
        bindAddress: options.bindAddress,
        port: options.port,
        discoveryPort: options.discoveryPort,
        broadcastAddress: options.broadcastAddress,
        maxDatagramBytes: options.maxDatagramBytes,
        clusterKey: options.clusterKey
      })
    )
  )
  const warning =
    options.clusterKey === undefined
      ? Layer.effectDiscard(
          Effect.logWarning(
            "no cluster key (--cluster-key / AGORA_CLUSTER_KEY): anyone on this LAN who knows a server id can impersonate it"
          )
        )
      : Layer.empty
  return auctionServerLayer({
    cluster: options.cluster,
    server: { ...options.server, maxDatagramBytes: options.maxDatagramBytes }
  }).pipe(Layer.provideMerge(transport), Layer.provideMerge(warning), Layer.provide(opened))
}

/** Builds the server in the current scope: closing it stops the server (SIGTERM in `agora server`). */
export const makeServer = (
  options: ServerOptions
): Effect.Effect<RunningServer, StoreError | UdpBindError, Scope.Scope> =>
  Effect.gen(function* () {
    const context = yield* Layer.build(layerServer(options))
    const cluster = Context.get(context, AuctionServer)
    const address = Context.get(context, Transport).address
    const { id } = yield* cluster.status
    yield* Effect.logInfo(`server ${id} listening on ${address.host}:${address.port}`)
    return { id, address, cluster }
  }).pipe(Effect.annotateLogs({ node: options.id ?? "server" }))
