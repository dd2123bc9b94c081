import { describe, expect, it } from "@effect/vitest"
import { step, takeReady } from "../../../src/domain/cluster/Step.js"
import {
  app,
  config,
  dropsOf,
  electLeader,
  entries,
  member,
  noop,
  receive,
  replicaOf,
  sent,
  tags,
  tick
} from "./harness.js"

const three = ["s1", "s2", "s3"].map((id) => member(id))

describe("Replication — log matching (DESIGN §5, Replication)", () => {
  it("a follower refuses a batch whose prevSeq it lacks, hinting its last seq", () => {
    const follower = replicaOf({ id: "s2", log: entries(three, [[1, app(5)]]) })
    const out = receive(follower, "s1", 1, {
      _tag: "Replicate",
      prevSeq: 5,
      prevEpoch: 1,
      entries: [],
      commitSeq: 1
    })
    expect(sent(out).map((s) => s.body)).toEqual([
      { _tag: "ReplicateAck", success: false, matchSeq: 1, hintSeq: 2 }
    ])
    expect(follower.log.lastSeq).toBe(2)
  })

  it("a follower refuses a batch whose prevEpoch differs from its entry at prevSeq, hinting before that epoch's run", () => {
    const follower = replicaOf({
      id: "s2",
      log: entries(three, [
        [1, app(1)],
        [2, app(2)],
        [2, app(3)]
      ])
    })
    const out = receive(follower, "s1", 3, {
      _tag: "Replicate",
      prevSeq: 4,
      prevEpoch: 3,
      entries: [],
      commitSeq: 1
    })
    expect(sent(out).map((s) => s.body)).toEqual([
      { _tag: "ReplicateAck", success: false, matchSeq: 1, hintSeq: 2 }
    ])
    expect(tags(out)).not.toContain("Truncate")
  })

  it("truncates only where an entry's epoch conflicts, then appends, then acks the batch end", () => {
    const follower = replicaOf({
      id: "s2",
      log: entries(three, [
        [1, app(1)],
        [2, app(2)],
        [2, app(3)]
      ])
    })
    const incoming = [
      { epoch: 3, seq: 3, body: app(4) },
      { epoch: 3, seq: 4, body: app(5) }
    ]
    const out = receive(follower, "s1", 3, {
      _tag: "Replicate",
      prevSeq: 2,
      prevEpoch: 1,
      entries: incoming,
      commitSeq: 1
    })
    expect(tags(out)).toEqual(["PersistHardState", "RoleChanged", "Truncate", "Append", "Send:ReplicateAck"])
    expect(out.find((o) => o._tag === "Truncate")).toEqual({ _tag: "Truncate", fromSeq: 3 })
    expect(follower.log.range(2, 4)).toEqual(incoming)
    expect(sent(out)[0]?.body).toEqual({ _tag: "ReplicateAck", success: true, matchSeq: 4, hintSeq: 4 })
  })

  it("a stale duplicate batch truncates nothing and appends nothing", () => {
    const follower = replicaOf({
      id: "s2",
      log: entries(three, [
        [1, app(1)],
        [1, app(2)],
        [1, app(3)]
      ])
    })
    const out = receive(follower, "s1", 1, {
      _tag: "Replicate",
      prevSeq: 1,
      prevEpoch: 1,
      entries: [{ epoch: 1, seq: 2, body: app(1) }],
      commitSeq: 1
    })
    expect(tags(out)).not.toContain("Truncate")
    expect(tags(out)).not.toContain("Append")
    expect(follower.log.lastSeq).toBe(4)
  })

  it("acks matchSeq = prevSeq + entries of the batch, never merely its own last seq", () => {
    const follower = replicaOf({
      id: "s2",
      log: entries(three, [
        [1, app(1)],
        [1, app(2)]
      ])
    })
    const out = receive(follower, "s1", 2, {
      _tag: "Replicate",
      prevSeq: 1,
      prevEpoch: 1,
      entries: [{ epoch: 1, seq: 2, body: app(1) }],
      commitSeq: 1
    })
    expect(sent(out)[0]?.body).toMatchObject({ success: true, matchSeq: 2 })
  })

  it("a follower applies only up to min(leader's commitSeq, what it verified)", () => {
    const follower = replicaOf({
      id: "s2",
      log: entries(three, [
        [1, app(1)],
        [1, app(2)]
      ])
    })
    receive(follower, "s1", 2, { _tag: "Heartbeat", round: 1, commitSeq: 3 })
    expect(follower.commitSeq).toBe(1)
    expect(follower.app).toBe(0)
    receive(follower, "s1", 2, {
      _tag: "Replicate",
      prevSeq: 1,
      prevEpoch: 1,
      entries: [{ epoch: 1, seq: 2, body: app(1) }],
      commitSeq: 3
    })
    expect(follower.commitSeq).toBe(2)
    expect(follower.app).toBe(1)
  })
})

describe("Replication — probing after a rejection (etcd's probe state)", () => {
  /** s1 leads s1..s3 over ten entries of epoch 1, one entry per batch, four batches in flight at most. */
  const leaderOfTen = () =>
    electLeader(
      ["s1", "s2", "s3"],
      Array.from({ length: 10 }, (_, i) => [1, app(i + 1)] as const),
      true,
      { ...config, batchBytesMax: 1, windowBatches: 4 }
    )
  const replicates = (outputs: ReturnType<typeof receive>) =>
    sent(outputs).flatMap(({ to, body }) =>
      body._tag === "Replicate" ? [{ to, prevSeq: body.prevSeq }] : []
    )
  const refusal = { _tag: "ReplicateAck", success: false, matchSeq: 1, hintSeq: 1 } as const

  it("answers a rejection with one batch from the hint, not a window", () => {
    const leader = leaderOfTen()
    expect(replicates(receive(leader, "s3", 2, refusal))).toEqual([{ to: "s3", prevSeq: 1 }])
  })

  it("drops the window's other rejections of the same hint while the probe is in flight", () => {
    const leader = leaderOfTen()
    receive(leader, "s3", 2, refusal)
    const again = receive(leader, "s3", 2, refusal)
    expect(replicates(again)).toEqual([])
    expect(dropsOf(again)).toEqual(["stale-ack"])
  })

  it("a rejection with another hint moves the probe there", () => {
    const leader = leaderOfTen()
    receive(leader, "s3", 2, { ...refusal, hintSeq: 5 })
    expect(replicates(receive(leader, "s3", 2, refusal))).toEqual([{ to: "s3", prevSeq: 1 }])
  })

  it("the probe's answer shows where the logs match: the window fills again", () => {
    const leader = leaderOfTen()
    receive(leader, "s3", 2, refusal)
    const matched = receive(leader, "s3", 2, { _tag: "ReplicateAck", success: true, matchSeq: 2, hintSeq: 2 })
    expect(replicates(matched).map((r) => r.prevSeq)).toEqual([2, 3, 4, 5])
  })

  it("a member not heard since the election is probed at the end of the log, and resent there", () => {
    const leader = leaderOfTen()
    step(leader, { _tag: "Flush" }, leader.nowMs)
    expect(replicates(takeReady(leader)).filter((r) => r.to === "s3")).toEqual([
      { to: "s3", prevSeq: leader.log.lastSeq - 1 }
    ])
    // From its matchSeq (0) it would get the whole log, or the snapshot: the leader just killed
    // got 1.6 MB that way, as the new leader's first work after a failover.
    const resent = tick(leader, leader.nowMs + config.retransmitTimeoutMs)
    expect(replicates(resent).filter((r) => r.to === "s3")).toEqual([
      { to: "s3", prevSeq: leader.log.lastSeq - 1 }
    ])
  })

  it("a probe lost on the way is resent from where it started, once per retransmit timeout", () => {
    const leader = leaderOfTen()
    receive(leader, "s3", 2, refusal)
    const resent = tick(leader, leader.nowMs + config.retransmitTimeoutMs)
    expect(replicates(resent).filter((r) => r.to === "s3")).toEqual([{ to: "s3", prevSeq: 1 }])
  })
})

describe("Replication — commit (DESIGN §5; Raft Figure 8)", () => {
  it("an old-epoch entry held by a majority is not committed until an entry of the leader's epoch is", () => {
    // s1 holds an uncommitted entry of epoch 1 (seq 2), then becomes leader of epoch 2.
    const leader = electLeader(["s1", "s2", "s3"], [[1, app(7)]], false)
    expect(leader.role).toBe("leader")
    expect(leader.log.entry(3)?.body).toEqual(noop("s1"))
    // s2 holds the old entry (seq 2) but not the no-op: a majority holds seq 2, yet nothing commits.
    receive(leader, "s2", 2, { _tag: "ReplicateAck", success: true, matchSeq: 2, hintSeq: 2 })
    expect(leader.commitSeq).toBe(1)
    expect(leader.app).toBe(0)
    // Once a majority holds the no-op of epoch 2, both commit together.
    receive(leader, "s2", 2, { _tag: "ReplicateAck", success: true, matchSeq: 3, hintSeq: 3 })
    expect(leader.commitSeq).toBe(3)
    expect(leader.app).toBe(7)
  })

  it("once nothing is left uncommitted, the leader's pending state is its committed state itself", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    const lead = leader.lead
    if (lead === null) throw new Error("not leading")
    const commitThrough = (seq: number) => {
      step(leader, { _tag: "Persisted", lastSeq: leader.log.lastSeq }, leader.nowMs)
      receive(leader, "s2", 2, { _tag: "ReplicateAck", success: true, matchSeq: seq, hintSeq: seq })
    }
    step(leader, { _tag: "Propose", proposal: 1, command: 4 }, leader.nowMs)
    const first = leader.log.lastSeq
    step(leader, { _tag: "Propose", proposal: 2, command: 5 }, leader.nowMs)
    // A stand-in for a separately evolved copy: the pending state is never compared by value.
    lead.pending = 100
    commitThrough(first)
    expect([leader.app, lead.pending]).toEqual([4, 100])
    commitThrough(leader.log.lastSeq)
    expect([leader.app, lead.pending]).toEqual([9, 9])
  })

  it("the leader counts itself only after its own store write", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    step(leader, { _tag: "Propose", proposal: 1, command: 4 }, leader.nowMs)
    const seq = leader.log.lastSeq
    receive(leader, "s2", 2, { _tag: "ReplicateAck", success: true, matchSeq: seq, hintSeq: seq })
    // s2 alone is not a majority of three: the leader's own write is missing.
    expect(leader.commitSeq).toBe(seq - 1)
    step(leader, { _tag: "Persisted", lastSeq: seq }, leader.nowMs)
    const out = takeReady(leader)
    expect(leader.commitSeq).toBe(seq)
    expect(out).toContainEqual({
      _tag: "Resolved",
      proposal: 1,
      outcome: { _tag: "Committed", seq, state: 4 }
    })
  })
})
