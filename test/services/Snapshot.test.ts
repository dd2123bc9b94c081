import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect } from "effect"
import { DatagramBytesDefault } from "../../src/domain/Envelope.js"
import { runScenario } from "../simulation/run.js"
import { makeSimCluster } from "../simulation/SimCluster.js"
import { ledger } from "../support/Ledger.js"

const ids = ["s1", "s2", "s3"]

describe("Checkpoints and snapshot transfer (DESIGN §5)", () => {
  it("a follower more than 1,000 datagrams behind the log start catches up through chunks within the limit, under 10% loss", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const cluster = yield* makeSimCluster({
          ids,
          machine: ledger,
          config: { expect: 3, checkpointEntries: 200, catchUpEntries: 0 },
          recordSends: true
        })
        yield* Effect.forEach(ids, (id) => cluster.start(id), { discard: true })
        const leader = yield* cluster.awaitLeader(10_000)
        const behind = ids.find((id) => id !== leader) ?? "s1"
        yield* cluster.crash(behind)
        const line = "x".repeat(700)
        yield* Effect.forEach(
          Array.from({ length: 2_200 }, (_, i) => `${i}:${line}`),
          (text) => cluster.propose(text, 60_000),
          { concurrency: 32, discard: true }
        )
        yield* cluster.start(behind)
        yield* Effect.sleep(20_000)
        const statuses = yield* cluster.statuses
        const leaderState = yield* Effect.orDie(cluster.cluster(leader)?.read ?? Effect.die("no leader"))
        const chunks = cluster.sendEvents.filter((e) => e.tag === "SnapshotChunk")
        const snapshotChars = chunks.length === 0 ? 0 : Chunk.size(leaderState)
        // What the follower holds now, read from its own store: the installed snapshot, then its log
        // up to its commit seq; it must be the leader's state exactly.
        const data = cluster.store(behind)
        const snapshotSeq = data.checkpoint?.seq ?? 0
        const followerLines = [
          ...((data.checkpoint?.state.root ?? []) as ReadonlyArray<string>),
          ...data.entries
            .filter((entry) => entry.seq > snapshotSeq && entry.seq <= (data.hard?.commitSeq ?? 0))
            .flatMap((entry) => (entry.body._tag === "App" ? (entry.body.data as ReadonlyArray<string>) : []))
        ]
        return {
          sameState: JSON.stringify(followerLines) === JSON.stringify(Chunk.toReadonlyArray(leaderState)),
          installedSnapshotSeq: snapshotSeq,
          caughtUp:
            statuses.find((s) => s.id === behind)?.appliedSeq ===
            statuses.find((s) => s.id === leader)?.appliedSeq,
          chunks: chunks.length,
          largestChunkBytes: Math.max(...chunks.map((e) => e.bodyBytes)),
          lines: snapshotChars
        }
      }),
      { link: { dropProbability: 0.1 } }
    )
    expect(result.caughtUp).toBe(true)
    expect(result.sameState).toBe(true)
    // It was far behind the leader's log start: it got there through a snapshot, not the log.
    expect(result.installedSnapshotSeq).toBeGreaterThan(1_000)
    expect(result.chunks).toBeGreaterThan(1_000)
    expect(result.largestChunkBytes).toBeLessThan(DatagramBytesDefault - 300)
    expect(result.lines).toBe(2_200)
  })

  it("a follower down while the leader checkpointed, but within catchUpEntries of it, catches up from the log", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const cluster = yield* makeSimCluster({
          ids,
          machine: ledger,
          config: { expect: 3, checkpointEntries: 200, catchUpEntries: 300 },
          recordSends: true
        })
        yield* Effect.forEach(ids, (id) => cluster.start(id), { discard: true })
        const leader = yield* cluster.awaitLeader(10_000)
        const behind = ids.find((id) => id !== leader) ?? "s1"
        yield* cluster.crash(behind)
        yield* Effect.forEach(
          Array.from({ length: 250 }, (_, i) => `line ${i}`),
          (text) => cluster.propose(text, 60_000),
          { concurrency: 32, discard: true }
        )
        const leaderStatus = (yield* cluster.statuses).find((s) => s.id === leader)
        yield* cluster.start(behind)
        yield* Effect.sleep(5_000)
        const statuses = yield* cluster.statuses
        return {
          leaderCheckpointSeq: cluster.store(leader).checkpoint?.seq ?? 0,
          leaderApplied: leaderStatus?.appliedSeq ?? 0,
          caughtUp:
            statuses.find((s) => s.id === behind)?.appliedSeq ===
            statuses.find((s) => s.id === leader)?.appliedSeq,
          chunks: cluster.sendEvents.filter((e) => e.tag === "SnapshotChunk").length
        }
      })
    )
    // The leader checkpointed past everything the follower held, yet sent it entries, not the snapshot.
    expect(result.leaderCheckpointSeq).toBeGreaterThan(200)
    expect(result.caughtUp).toBe(true)
    expect(result.chunks).toBe(0)
  })
})
