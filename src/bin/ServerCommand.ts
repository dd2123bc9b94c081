/** `agora server`: one server of a group (DESIGN §7). */
import { setFlagsFromString } from "node:v8"
import { Command, Options } from "@effect/cli"
import * as Config from "effect/Config"
import * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import { defaultClusterConfig } from "../domain/cluster/Config.js"
import type { ServerId } from "../domain/Ids.js"
import { makeServer } from "../layers/Server.js"
import { defaultAuctionServerConfig } from "../services/AuctionServer.js"
import { serverSettings } from "../services/Setting.js"
import { withLogging } from "./Logging.js"
import { choice, integer, network, optionalId, serverSetting } from "./Options.js"
import { UsageError } from "./UsageError.js"

const options = {
  id: optionalId("this server's stable id; stored in the data dir on first start"),
  port: integer("port", {
    min: 0,
    max: 65535,
    default: 0,
    description: "unicast UDP port; 0 picks a free one"
  }),
  dataDir: Options.directory("data-dir").pipe(
    Options.withDescription(
      "directory of this server's store (agora.db), created on first start (env AGORA_DATA_DIR)"
    ),
    Options.withFallbackConfig(Config.string("AGORA_DATA_DIR"))
  ),
  expect: serverSetting(serverSettings.expect, {
    defaultMs: defaultClusterConfig.expect,
    description: "number of servers started together: the group forms once this many are heard"
  }),
  minServers: serverSetting(serverSettings.minServers, {
    defaultMs: defaultClusterConfig.minServers,
    description: "voters the group never shrinks below when it removes dead servers"
  }),
  heartbeatInterval: serverSetting(serverSettings.heartbeatInterval, {
    defaultMs: defaultClusterConfig.heartbeatIntervalMs,
    description: "ms between leader heartbeats"
  }),
  failureTimeout: serverSetting(serverSettings.failureTimeout, {
    defaultMs: defaultClusterConfig.failureTimeoutMs,
    description: "ms of leader silence before an election (plus up to 150 ms of random jitter)"
  }),
  removalTimeout: serverSetting(serverSettings.removalTimeout, {
    defaultMs: defaultClusterConfig.removalTimeoutMs,
    description: "seconds a silent server stays a member before it is removed"
  }),
  roundTimeout: serverSetting(serverSettings.roundTimeout, {
    defaultMs: defaultAuctionServerConfig.roundTimeoutMs,
    description: "seconds a bidding round lasts at most"
  }),
  startTimeout: serverSetting(serverSettings.startTimeout, {
    defaultMs: defaultAuctionServerConfig.startTimeoutMs,
    description: "seconds the auctioneer has to start after the ready check"
  }),
  sync: choice("sync", ["normal", "full"], {
    default: "normal",
    description: "normal survives kill -9; full fsyncs every batch and survives power loss"
  }),
  logFormat: choice("log-format", ["pretty", "json"], {
    default: "pretty",
    description: "log lines on stderr"
  }),
  ...network
}

/**
 * Between full collections V8 lets a busy server's heap grow to 3–4× its live data (a leader
 * with 60 MB live reached 250 MB, and 617 MiB of RSS with 10,000 auctions). A server grows it
 * by a fifth instead: with 50 % a full collection came every ~4 s under load (24 instead of 5 in
 * a 95 s run, ~1 % more of its time in the collector); 20 % took followers' RSS with 10,049
 * auctions from ~181 to ~172 MiB at the same throughput.
 */
const HeapGrowingPercent = 20

export const serverCommand = Command.make("server", options, (o) =>
  Effect.gen(function* () {
    if (o.heartbeatInterval * 2 > o.failureTimeout) {
      return yield* new UsageError({
        message: `--failure-timeout (${o.failureTimeout} ms) must be at least twice --heartbeat-interval (${o.heartbeatInterval} ms)`
      })
    }
    yield* Effect.sync(() => setFlagsFromString(`--heap-growing-percent=${HeapGrowingPercent}`))
    yield* makeServer({
      id: Option.getOrUndefined(o.id) as ServerId | undefined,
      dataDir: o.dataDir,
      sync: o.sync,
      bindAddress: o.bind,
      port: o.port,
      discoveryPort: o.discoveryPort,
      broadcastAddress: o.broadcast,
      maxDatagramBytes: o.maxDatagram,
      clusterKey: Option.getOrUndefined(o.clusterKey),
      cluster: {
        ...defaultClusterConfig,
        heartbeatIntervalMs: o.heartbeatInterval,
        failureTimeoutMs: o.failureTimeout,
        removalTimeoutMs: o.removalTimeout * serverSettings.removalTimeout.unitMs,
        minServers: o.minServers,
        expect: o.expect,
        batchBytesMax: o.maxDatagram - 400
      },
      server: {
        ...defaultAuctionServerConfig,
        roundTimeoutMs: o.roundTimeout * serverSettings.roundTimeout.unitMs,
        startTimeoutMs: o.startTimeout * serverSettings.startTimeout.unitMs
      }
    })
    return yield* Effect.never
  }).pipe(Effect.scoped, withLogging(o.logFormat, LogLevel.Info))
).pipe(
  Command.withDescription(
    "Run one Agora server. Servers on a LAN find each other by broadcast, elect a leader and replicate every auction.\n" +
      "Example: agora server --id s1 --data-dir ./s1 --expect 3 --broadcast 127.255.255.255"
  )
)
