/**
 * A whole Agora server, assembled from its edges: the SQLite store in its data
 * dir, the UDP transport, and the auction service on the cluster. This is what
 * `agora server` runs, and what a custom deployment composes.
 *
 * Order matters: the store is opened first (it holds the server id, the
 * incarnation and the boot counter the transport stamps on every datagram).
 */
import { randomBytes } from "node:crypto"
import { Context, Effect, Layer, type Redacted, type Scope } from "effect"
import type { ClusterConfig } from "../domain/cluster/Config.js"
import type { Incarnation, ServerId } from "../domain/Ids.js"
import type { Address } from "../domain/Schemas.js"
import { type AgoraCluster, type AuctionServerConfig, makeAuctionServer } from "../services/AuctionServer.js"
import { LogStore, type StoreError } from "../services/LogStore.js"
import { Transport } from "../services/Transport.js"
import { DataDir, layerSqlite, type SyncMode } from "./StoreSqlite.js"
import { makeUdp, type UdpBindError } from "./TransportUdp.js"

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

export const makeServer = (
  options: ServerOptions
): Effect.Effect<RunningServer, StoreError | UdpBindError, Scope.Scope> =>
  Effect.gen(function* () {
    const storeContext = yield* Layer.build(layerSqlite({ dataDir: options.dataDir, sync: options.sync }))
    const store = Context.get(storeContext, LogStore)
    const id = yield* Context.get(storeContext, DataDir).serverIdentity(options.id)
    const stored = yield* store.open
    const incarnation = stored.hard?.incarnation ?? (randomBytes(8).toString("hex") as Incarnation)
    if (options.clusterKey === undefined) {
      yield* Effect.logWarning(
        "no cluster key (--cluster-key / AGORA_CLUSTER_KEY): anyone on this LAN who knows a server id can impersonate it"
      )
    }
    const transport = yield* makeUdp({
      identity: { role: "server", id, incarnation },
      boot: stored.boot,
      bindAddress: options.bindAddress,
      port: options.port,
      discoveryPort: options.discoveryPort,
      broadcastAddress: options.broadcastAddress,
      maxDatagramBytes: options.maxDatagramBytes,
      clusterKey: options.clusterKey
    })
    const cluster = yield* makeAuctionServer({
      id,
      cluster: options.cluster,
      server: { ...options.server, maxDatagramBytes: options.maxDatagramBytes },
      stored,
      incarnation
    }).pipe(Effect.provideService(Transport, transport), Effect.provideService(LogStore, store))
    yield* Effect.logInfo(`server ${id} listening on ${transport.address.host}:${transport.address.port}`)
    return { id, address: transport.address, cluster }
  }).pipe(Effect.annotateLogs({ node: options.id ?? "server" }))
