/**
 * The cluster's metrics (issue 7: drops by reason, elections, commits, commit
 * latency): what an operator reads to see a server's health. Metrics are
 * process-wide, so each assertion is on the change over the scenario.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric } from "effect"
import type { GroupId, Incarnation, ServerId } from "../../src/domain/Ids.js"
import { makeSim } from "../../src/layers/TransportSim.js"
import { clusterDropped, commitLatency, commits, elections } from "../../src/services/Cluster.js"
import { runScenario } from "../simulation/run.js"
import { makeSimCluster } from "../simulation/SimCluster.js"
import { counter } from "../support/Counter.js"

const ids = ["s1", "s2", "s3"]

describe("cluster metrics", () => {
  it("count elections, commits and their latency, and drops by node and reason", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const before = {
          elections: (yield* Metric.value(elections)).count,
          commits: (yield* Metric.value(commits)).count,
          latencies: (yield* Metric.value(commitLatency)).count
        }
        const cluster = yield* makeSimCluster({ ids, machine: counter, config: { expect: 3 } })
        yield* Effect.forEach(ids, (id) => cluster.start(id), { discard: true })
        const leader = yield* cluster.awaitLeader(10_000)
        for (let i = 1; i <= 10; i++) yield* cluster.propose(i)
        const status = (yield* cluster.statuses).find((s) => s.id === leader)
        // A server that is no member of the group acks the leader: dropped as "not-member".
        const notMember = (reason: string) =>
          Metric.value(Metric.tagged(Metric.tagged(clusterDropped, "node", leader), "reason", reason))
        const droppedBefore = (yield* notMember("not-member")).count
        const intruder = yield* Effect.orDie(
          makeSim({
            identity: { role: "server", id: "s9" as ServerId, incarnation: "s9-i" as Incarnation },
            boot: 1
          })
        )
        const leaderAddress = status?.leaderInfo?.address
        if (leaderAddress === undefined) return yield* Effect.dieMessage("no leader address")
        for (let i = 0; i < 3; i++) {
          yield* Effect.orDie(
            intruder.send(leaderAddress, {
              body: { _tag: "HeartbeatAck", round: 1, matchSeq: 1 },
              group: status?.group as GroupId,
              epoch: status?.epoch ?? 0
            })
          )
        }
        yield* Effect.sleep(100)
        return {
          elections: (yield* Metric.value(elections)).count - before.elections,
          commits: (yield* Metric.value(commits)).count - before.commits,
          latencies: (yield* Metric.value(commitLatency)).count - before.latencies,
          notMember: (yield* notMember("not-member")).count - droppedBefore
        }
      })
    )
    expect(result.elections).toBe(1)
    // 10 proposals on each of 3 servers, plus the group's first entry and the leader's no-op.
    expect(result.commits).toBe(3 * 12)
    expect(result.latencies).toBe(10)
    expect(result.notMember).toBe(3)
  })
})
