/**
 * Configuration through `Config` (DESIGN §6, §7): the cluster's and the auction
 * service's settings from AGORA_* variables, with the same names, units and
 * ranges as `agora server`, the rest at their defaults.
 */
import { describe, expect, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either } from "effect"
import { defaultClusterConfig } from "../../src/domain/cluster/Config.js"
import { auctionServerConfigFromEnv, defaultAuctionServerConfig } from "../../src/services/AuctionServer.js"
import { clusterConfigFromEnv } from "../../src/services/Cluster.js"

const withEnv = (env: Record<string, string>) =>
  Effect.withConfigProvider(ConfigProvider.fromMap(new Map(Object.entries(env))))

describe("settings from the environment", () => {
  it.effect("cluster: AGORA_* in the units of agora server (ms, seconds for the removal timeout)", () =>
    Effect.gen(function* () {
      const config = yield* clusterConfigFromEnv.pipe(
        withEnv({
          AGORA_EXPECT: "3",
          AGORA_MIN_SERVERS: "5",
          AGORA_HEARTBEAT_INTERVAL: "20",
          AGORA_FAILURE_TIMEOUT: "200",
          AGORA_REMOVAL_TIMEOUT: "45"
        })
      )
      expect(config).toEqual({
        ...defaultClusterConfig,
        expect: 3,
        minServers: 5,
        heartbeatIntervalMs: 20,
        failureTimeoutMs: 200,
        removalTimeoutMs: 45_000
      })
      expect(yield* clusterConfigFromEnv.pipe(withEnv({}))).toEqual(defaultClusterConfig)
    })
  )

  it.effect("cluster: a value out of range is refused with its name and range", () =>
    Effect.gen(function* () {
      const refused = yield* Effect.either(clusterConfigFromEnv.pipe(withEnv({ AGORA_EXPECT: "16" })))
      expect(Either.isLeft(refused) && String(refused.left)).toContain(
        "AGORA_EXPECT must be a whole number from 1 to 15"
      )
    })
  )

  it.effect("auction service: round and start timeouts in seconds", () =>
    Effect.gen(function* () {
      const config = yield* auctionServerConfigFromEnv.pipe(
        withEnv({ AGORA_ROUND_TIMEOUT: "5", AGORA_START_TIMEOUT: "7" })
      )
      expect(config).toEqual({ ...defaultAuctionServerConfig, roundTimeoutMs: 5_000, startTimeoutMs: 7_000 })
    })
  )
})
