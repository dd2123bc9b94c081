import { describe, expect, it } from "@effect/vitest"
import { nextTickDueMs, step } from "../../../src/domain/cluster/Step.js"
import {
  app,
  config,
  electLeader,
  entries,
  member,
  receive,
  replicaOf,
  type TestOutput,
  type TestReplica,
  tick
} from "./harness.js"

const three = ["s1", "s2", "s3"].map((id) => member(id))
const spaced = { ...config, checkpointEntries: 10, checkpointIntervalMs: 1_000, catchUpEntries: 0 }

/** Follower s2 of epoch 1, holding only the membership (seq 1). */
const follower = (random: number): TestReplica =>
  replicaOf({ id: "s2", log: entries(three, []), config: spaced, random: () => random })

/** Its leader s1 replicates entry `seq` (adding seq − 1 to the counter) and commits it in the same message. */
const replicateCommitted = (replica: TestReplica, seq: number) =>
  receive(replica, "s1", 1, {
    _tag: "Replicate",
    prevSeq: seq - 1,
    prevEpoch: 1,
    entries: [{ epoch: 1, seq, body: app(seq - 1) }],
    commitSeq: seq
  })

const taken = (outputs: ReadonlyArray<TestOutput>) =>
  outputs.flatMap((output) => (output._tag === "CheckpointTaken" ? [output] : []))

/** The seqs at which the follower checkpoints as its leader's commit seq moves up one at a time. */
const checkpointSeqs = (replica: TestReplica): Array<number> =>
  Array.from({ length: 29 }, (_, i) => taken(replicateCommitted(replica, i + 2))).flatMap((outputs) =>
    outputs.map((output) => output.at.seq)
  )

describe("Checkpoints (DESIGN §5, Checkpoints and recovery)", () => {
  it("are taken every checkpointEntries applied entries, stretched by the replica's draw", () => {
    // A draw of 0 keeps the configured 10; 0.9 stretches it to 14.5, rounded up to 15.
    expect(checkpointSeqs(follower(0))).toEqual([10, 20, 30])
    expect(checkpointSeqs(follower(0.9))).toEqual([15, 30])
  })

  it("hand over the committed state unencoded and drop the log up to their seq", () => {
    const replica = follower(0)
    const outputs = Array.from({ length: 9 }, (_, i) => replicateCommitted(replica, i + 2)).flat()
    expect(taken(outputs)).toEqual([
      {
        _tag: "CheckpointTaken",
        at: { seq: 10, epoch: 1, members: three, membershipSeq: 1 },
        app: 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9
      }
    ])
    expect(replica.log.startSeq).toBe(10)
  })

  it("keep catchUpEntries entries before their seq: a follower that far behind gets entries, one further the snapshot", () => {
    /** What a leader that just checkpointed at its last seq sends s3, `behind` entries short of it. */
    const sentTo = (behind: number) => {
      const leader = electLeader(
        ["s1", "s2", "s3"],
        Array.from({ length: 12 }, (_, i) => [1, app(i + 1)] as const),
        false,
        { ...spaced, catchUpEntries: 4 }
      )
      const seq = leader.log.lastSeq
      const ack = { _tag: "ReplicateAck", success: true, matchSeq: seq, hintSeq: seq } as const
      expect(taken(receive(leader, "s2", leader.epoch, ack)).map((output) => output.at.seq)).toEqual([seq])
      expect([leader.log.startSeq, leader.base.seq]).toEqual([seq - 4, seq])
      return receive(leader, "s3", leader.epoch, {
        ...ack,
        success: false,
        matchSeq: 0,
        hintSeq: seq - behind
      })
        .flatMap((output) => (output._tag === "Send" ? [output.message.body] : []))
        .map((body) =>
          body._tag === "Replicate" ? `Replicate after ${seq - body.prevSeq} short` : body._tag
        )
    }
    expect(sentTo(4)).toEqual(["Replicate after 4 short"])
    expect(sentTo(5)[0]).toBe("SnapshotChunk")
  })

  it("a member silent past the failure timeout gets no snapshot until it answers again", () => {
    const leader = electLeader(
      ["s1", "s2", "s3"],
      Array.from({ length: 12 }, (_, i) => [1, app(i + 1)] as const),
      false,
      { ...spaced, catchUpEntries: 0 }
    )
    step(leader, { _tag: "Flush" }, leader.nowMs)
    const seq = leader.log.lastSeq
    receive(leader, "s2", leader.epoch, { _tag: "ReplicateAck", success: true, matchSeq: seq, hintSeq: seq })
    expect(leader.log.startSeq).toBe(seq)
    const snapshotsTo = (outputs: ReadonlyArray<TestOutput>) =>
      outputs.filter(
        (output) =>
          output._tag === "Send" &&
          output.to.host === "host-s3" &&
          output.message.body._tag === "SnapshotChunk"
      ).length
    // s2 keeps answering, s3 never does: the retransmission of its batch falls below the log start.
    const quiet = leader.nowMs + spaced.failureTimeoutMs + 1
    receive(leader, "s2", leader.epoch, { _tag: "HeartbeatAck", round: 1, matchSeq: seq }, quiet)
    expect(snapshotsTo(tick(leader, quiet))).toBe(0)
    // Once it answers, it gets the snapshot.
    expect(
      snapshotsTo(
        receive(leader, "s3", leader.epoch, { _tag: "HeartbeatAck", round: 1, matchSeq: 0 }, quiet + 1)
      )
    ).toBeGreaterThan(0)
  })

  it("the time trigger is stretched too: the replica's next timer is the stretched interval", () => {
    const replica = follower(0.9)
    replicateCommitted(replica, 2)
    // Nothing else due before it once the leader's timeout is pushed out of the way.
    replica.leaderContactMs = Number.POSITIVE_INFINITY
    expect(nextTickDueMs(replica, 10_000)).toBe(1_450)
  })

  it("a leader sends its followers a heartbeat round right before it checkpoints", () => {
    const leader = electLeader(
      ["s1", "s2", "s3"],
      Array.from({ length: 12 }, (_, i) => [1, app(i + 1)] as const),
      false,
      spaced
    )
    const seq = leader.log.lastSeq
    const outputs = receive(leader, "s2", leader.epoch, {
      _tag: "ReplicateAck",
      success: true,
      matchSeq: seq,
      hintSeq: seq
    })
    const order = outputs.flatMap((output) =>
      output._tag === "CheckpointTaken"
        ? [`checkpoint ${output.at.seq}`]
        : output._tag === "Send" && output.message.body._tag === "Heartbeat"
          ? [`heartbeat to ${output.to.host}`]
          : []
    )
    expect(order).toEqual(["heartbeat to host-s2", "heartbeat to host-s3", `checkpoint ${seq}`])
  })
})
