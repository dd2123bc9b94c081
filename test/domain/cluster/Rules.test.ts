/**
 * Decision tests for rules of DESIGN §5 not covered elsewhere: membership
 * changes one at a time after the no-op, proposals and reads held until the
 * no-op commits, one heartbeat round shared by waiting reads, the epoch on
 * load, the order of the candidate's store and its Coordinator, and the
 * failure-timeout jitter. Each test names the rule it checks.
 */
import { describe, expect, it } from "@effect/vitest"
import { type ClusterConfig, defaultClusterConfig } from "../../../src/domain/cluster/Config.js"
import type { LogEntry, Member } from "../../../src/domain/cluster/Entry.js"
import { appendEntry } from "../../../src/domain/cluster/Leadership.js"
import { MemoryLog } from "../../../src/domain/cluster/Log.js"
import type { Input } from "../../../src/domain/cluster/Replica.js"
import { makeReplica, step, stepBatch, takeReady } from "../../../src/domain/cluster/Step.js"
import type { GroupId } from "../../../src/domain/Ids.js"
import { counter } from "../../support/Counter.js"
import {
  addressOf,
  app,
  config,
  dropsOf,
  electLeader,
  entries,
  group,
  inc,
  member,
  noop,
  receive,
  replicaOf,
  sent,
  sid,
  type TestOutput,
  type TestReplica,
  tags,
  tick
} from "./harness.js"

const three = ["s1", "s2", "s3"].map((id) => member(id))

const appended = (outputs: ReadonlyArray<TestOutput>): Array<LogEntry> =>
  outputs.flatMap((output) => (output._tag === "Append" ? [...output.entries] : []))

const resolved = (outputs: ReadonlyArray<TestOutput>) => outputs.filter((o) => o._tag === "Resolved")

const persisted = (replica: TestReplica): Array<TestOutput> => {
  step(replica, { _tag: "Persisted", lastSeq: replica.log.lastSeq }, replica.nowMs)
  return takeReady(replica)
}

const flush = (replica: TestReplica): Array<TestOutput> => {
  step(replica, { _tag: "Flush" }, replica.nowMs)
  return takeReady(replica)
}

const replicateAck = (replica: TestReplica, from: string, matchSeq: number, nowMs = replica.nowMs) =>
  receive(
    replica,
    from,
    replica.epoch,
    { _tag: "ReplicateAck", success: true, matchSeq, hintSeq: matchSeq },
    nowMs
  )

/**
 * s1 elected leader of epoch 2 over `members` at 1 000 ms, through the real
 * protocol with the grants and acks of `voters`; its no-op (seq 2) is stored
 * but not yet acked by anyone.
 */
const leadOver = (members: ReadonlyArray<Member>, voters: ReadonlyArray<string>): TestReplica => {
  const leader = replicaOf({ id: "s1", log: entries(members, []) })
  tick(leader, 1_000)
  for (const id of voters) {
    receive(leader, id, 1, {
      _tag: "ElectionAnswer",
      nextEpoch: 2,
      granted: true,
      rank: { lastEpoch: 1, lastSeq: 1 }
    })
  }
  for (const id of voters) receive(leader, id, 2, { _tag: "CoordinatorAck", lastSeq: 1, lastEpoch: 1 })
  persisted(leader)
  return leader
}

describe("Membership (DESIGN §5, Membership)", () => {
  it("a caught-up learner is promoted only after the leader's no-op of this epoch is committed, and a second promotion waits until the first is committed (one change at a time)", () => {
    const members = [member("s1"), member("s2"), member("s3"), member("s4", false), member("s5", false)]
    const leader = leadOver(members, ["s2"])
    expect(leader.role).toBe("leader")
    expect(leader.log.entry(2)).toEqual({ epoch: 2, seq: 2, body: noop("s1") })

    // Both learners hold the no-op (caught up), but the no-op is not committed: learners do not count.
    replicateAck(leader, "s4", 2, 1_010)
    replicateAck(leader, "s5", 2, 1_010)
    expect(leader.commitSeq).toBe(1)
    expect(appended(tick(leader, 1_020))).toEqual([])

    // The no-op commits; the next tick proposes exactly one change.
    replicateAck(leader, "s2", 2, 1_030)
    expect(leader.commitSeq).toBe(2)
    expect(appended(tick(leader, 1_040))).toEqual([
      { epoch: 2, seq: 3, body: { _tag: "ServerPromoted", id: sid("s4"), incarnation: inc("s4") } }
    ])

    // s5 is caught up too, but the promotion of s4 is not committed yet: nothing more is proposed.
    persisted(leader)
    replicateAck(leader, "s5", 3, 1_050)
    expect(leader.commitSeq).toBe(2)
    expect(appended(tick(leader, 1_060))).toEqual([])
    expect(appended(tick(leader, 1_110))).toEqual([])

    // The first change commits (voters now s1..s4: s1, s2, s4 hold it), then the second is proposed.
    replicateAck(leader, "s2", 3, 1_120)
    replicateAck(leader, "s4", 3, 1_120)
    expect(leader.commitSeq).toBe(3)
    expect(appended(tick(leader, 1_130))).toEqual([
      { epoch: 2, seq: 4, body: { _tag: "ServerPromoted", id: sid("s5"), incarnation: inc("s5") } }
    ])
  })

  it("in a group of 5, members silent past the removal timeout are removed only after the no-op is committed, and one removal at a time", () => {
    const five = ["s1", "s2", "s3", "s4", "s5"].map((id) => member(id))
    const leader = leadOver(five, ["s2", "s3"])
    expect(leader.role).toBe("leader")

    // 31 s later s4 and s5 have been silent past the removal timeout; s2 and s3 answer but lack the no-op.
    const late = 1_000 + defaultClusterConfig.removalTimeoutMs + 1_000
    receive(leader, "s2", 2, { _tag: "HeartbeatAck", round: 0, matchSeq: 1 }, late)
    receive(leader, "s3", 2, { _tag: "HeartbeatAck", round: 0, matchSeq: 1 }, late)
    const beforeNoop = tick(leader, late)
    expect(leader.role).toBe("leader")
    expect(leader.commitSeq).toBe(1)
    expect(appended(beforeNoop)).toEqual([])

    replicateAck(leader, "s2", 2, late + 10)
    replicateAck(leader, "s3", 2, late + 10)
    expect(leader.commitSeq).toBe(2)
    expect(appended(tick(leader, late + 20))).toEqual([
      { epoch: 2, seq: 3, body: { _tag: "ServerLeft", id: sid("s4"), incarnation: inc("s4") } }
    ])

    // s5 is as silent, but the removal of s4 is not committed yet.
    expect(appended(tick(leader, late + 30))).toEqual([])

    persisted(leader)
    replicateAck(leader, "s2", 3, late + 40)
    replicateAck(leader, "s3", 3, late + 40)
    expect(leader.commitSeq).toBe(3)
    // Four voters left, min-servers 3: one more removal is allowed.
    expect(appended(tick(leader, late + 50))).toEqual([
      { epoch: 2, seq: 4, body: { _tag: "ServerLeft", id: sid("s5"), incarnation: inc("s5") } }
    ])
  })
})

describe("Replication and Reads (DESIGN §5: a new leader commits its no-op before it decides anything)", () => {
  it("a proposal and a read that arrive before the no-op commits are held, and go ahead once it commits", () => {
    const leader = electLeader(["s1", "s2", "s3"], [], false)
    expect(leader.commitSeq).toBe(1)
    step(leader, { _tag: "Propose", proposal: 1, command: 5 }, leader.nowMs)
    step(leader, { _tag: "Read", proposal: 2 }, leader.nowMs)
    const held = flush(leader)
    expect(appended(held)).toEqual([])
    expect(resolved(held)).toEqual([])
    expect(leader.log.lastSeq).toBe(2)

    // A confirmed heartbeat round alone does not answer the read: the no-op is not committed.
    const round = leader.lead?.heartbeatRound ?? 0
    expect(round).toBe(1)
    const confirmed = receive(leader, "s2", 2, { _tag: "HeartbeatAck", round, matchSeq: 1 })
    expect(appended(confirmed)).toEqual([])
    expect(resolved(confirmed)).toEqual([])

    // The no-op commits: the proposal is decided and appended.
    const commit = replicateAck(leader, "s2", 2)
    expect(leader.commitSeq).toBe(2)
    expect(appended(commit)).toEqual([{ epoch: 2, seq: 3, body: app(5) }])
    expect(resolved(commit)).toEqual([])

    // The read waits for a round that starts after it went ahead, then is answered from committed state.
    flush(leader)
    const nextRound = leader.lead?.heartbeatRound ?? 0
    expect(nextRound).toBe(round + 1)
    expect(
      resolved(receive(leader, "s2", 2, { _tag: "HeartbeatAck", round: nextRound, matchSeq: 2 }))
    ).toEqual([{ _tag: "Resolved", proposal: 2, outcome: { _tag: "Read", state: 0 } }])

    persisted(leader)
    expect(resolved(replicateAck(leader, "s2", 3))).toEqual([
      { _tag: "Resolved", proposal: 1, outcome: { _tag: "Committed", seq: 3, state: 5 } }
    ])
  })
})

describe("Reads (DESIGN §5, Reads and refusals: one round shared by all waiting requests)", () => {
  it("two waiting reads are confirmed by one heartbeat round, both answered once a majority acks it", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    expect(leader.commitSeq).toBe(2)
    const before = leader.lead?.heartbeatRound ?? 0
    step(leader, { _tag: "Read", proposal: 1 }, leader.nowMs)
    step(leader, { _tag: "Read", proposal: 2 }, leader.nowMs)
    const out = flush(leader)
    expect(sent(out).filter((s) => s.body._tag === "Heartbeat")).toEqual([
      { to: "s2", body: { _tag: "Heartbeat", round: before + 1, commitSeq: 2 }, epoch: 2 },
      { to: "s3", body: { _tag: "Heartbeat", round: before + 1, commitSeq: 2 }, epoch: 2 }
    ])
    expect(resolved(out)).toEqual([])
    expect(leader.lead?.heartbeatRound).toBe(before + 1)

    const acked = receive(leader, "s3", 2, { _tag: "HeartbeatAck", round: before + 1, matchSeq: 2 })
    expect(resolved(acked)).toEqual([
      { _tag: "Resolved", proposal: 1, outcome: { _tag: "Read", state: 0 } },
      { _tag: "Resolved", proposal: 2, outcome: { _tag: "Read", state: 0 } }
    ])
    expect(leader.lead?.heartbeatRound).toBe(before + 1)
  })
})

describe("Election (DESIGN §5: on load, epoch = max(stored epoch, last log epoch))", () => {
  it("a stored epoch below the last log entry's epoch loads as the log's epoch", () => {
    const replica = replicaOf({ id: "s2", log: entries(three, [[3, app(1)]]), hard: { epoch: 2 } })
    expect(replica.epoch).toBe(3)
    const out = tick(replica, 1_000)
    expect(sent(out)).toEqual([])
    expect(out.filter((o) => o._tag === "Broadcast").map((o) => o._tag === "Broadcast" && o.message)).toEqual(
      [
        {
          body: { _tag: "Election", nextEpoch: 4, rank: { lastEpoch: 3, lastSeq: 2 } },
          group,
          epoch: 3,
          incarnation: inc("s2")
        }
      ]
    )
  })

  it("a stored epoch above the last log entry's epoch is kept", () => {
    const replica = replicaOf({ id: "s2", log: entries(three, [[3, app(1)]]), hard: { epoch: 5 } })
    expect(replica.epoch).toBe(5)
  })
})

describe("Election (DESIGN §5, Election phases 1 and 2: what a candidate stores, and when)", () => {
  it("a candidate's own pre-vote (Election after its failure timeout) stores nothing", () => {
    const candidate = replicaOf({ id: "s1", log: entries(three, []) })
    const out = tick(candidate, 1_000)
    expect(tags(out)).toEqual(["RoleChanged", "Broadcast:Election"])
    expect(out.filter((o) => o._tag === "PersistHardState" || o._tag === "ResetStore")).toEqual([])
    expect(candidate.role).toBe("precandidate")
    expect(candidate.epoch).toBe(1)
    expect(candidate.vote).toBe(null)
  })

  it("with a majority of pre-vote grants, the candidate stores (epoch, vote = itself) before it sends Coordinator", () => {
    const candidate = replicaOf({ id: "s1", log: entries(three, []) })
    tick(candidate, 1_000)
    const out = receive(candidate, "s2", 1, {
      _tag: "ElectionAnswer",
      nextEpoch: 2,
      granted: true,
      rank: { lastEpoch: 1, lastSeq: 1 }
    })
    expect(tags(out)).toEqual(["PersistHardState", "RoleChanged", "Send:Coordinator", "Send:Coordinator"])
    expect(out[0]).toEqual({
      _tag: "PersistHardState",
      hard: { group, incarnation: inc("s1"), epoch: 2, vote: sid("s1"), commitSeq: 1 }
    })
    expect(sent(out)).toEqual([
      { to: "s2", body: { _tag: "Coordinator", rank: { lastEpoch: 1, lastSeq: 1 } }, epoch: 2 },
      { to: "s3", body: { _tag: "Coordinator", rank: { lastEpoch: 1, lastSeq: 1 } }, epoch: 2 }
    ])
    expect(candidate.epoch).toBe(2)
    expect(candidate.vote).toBe("s1")
  })
})

describe("A turn of inputs that arrived together (stepBatch)", () => {
  /** s1 leads s1..s3 and last heard s2 and s3 at 2 000 ms; then it stalls for 400 ms. */
  const stalledLeader = (): TestReplica => {
    const leader = electLeader(["s1", "s2", "s3"])
    replicateAck(leader, "s2", leader.log.lastSeq, 2_000)
    replicateAck(leader, "s3", leader.log.lastSeq, 2_000)
    takeReady(leader)
    return leader
  }
  /** The ack s2 sent during the stall, waiting in the leader's inbox with its timer. */
  const ackFromS2 = (leader: TestReplica): Input<number> => ({
    _tag: "Receive",
    body: { _tag: "ReplicateAck", success: true, matchSeq: leader.log.lastSeq, hintSeq: leader.log.lastSeq },
    meta: {
      from: { role: "server", id: sid("s2"), incarnation: inc("s2"), port: 7000 },
      group,
      epoch: leader.epoch
    },
    source: addressOf("s2")
  })

  it("runs the timers after the messages: a leader that stalled past the failure timeout stays leader", () => {
    const leader = stalledLeader()
    stepBatch(leader, [{ _tag: "Tick" }, ackFromS2(leader)], 2_400, config.heartbeatIntervalMs)
    expect(leader.role).toBe("leader")
    expect(tags(takeReady(leader))).not.toContain("RoleChanged")
  })

  it("the same inputs stepped in arrival order make it step down (what the batch order prevents)", () => {
    const leader = stalledLeader()
    step(leader, { _tag: "Tick" }, 2_400)
    expect(leader.role).toBe("follower")
  })

  it("does not count the time its timers ran late (it stalled) as its followers' silence", () => {
    const leader = stalledLeader()
    stepBatch(leader, [{ _tag: "Tick" }], 2_000, config.heartbeatIntervalMs)
    takeReady(leader)
    // Next due within a heartbeat interval; the turn comes 400 ms later, with nothing heard.
    stepBatch(leader, [{ _tag: "Tick" }], 2_400, config.heartbeatIntervalMs)
    expect(leader.role).toBe("leader")
    const outputs = takeReady(leader)
    expect(outputs).toContainEqual({
      _tag: "Note",
      level: "warning",
      message: "its timers ran 350 ms late: that silence is not counted against its peers"
    })
    expect(sent(outputs).filter((send) => send.body._tag === "Heartbeat")).toHaveLength(2)
  })

  it("a leader whose turns came on time counts the same silence and steps down", () => {
    const leader = stalledLeader()
    for (let nowMs = 2_000; nowMs <= 2_300; nowMs += 50)
      stepBatch(leader, [{ _tag: "Tick" }], nowMs, config.heartbeatIntervalMs)
    expect(leader.role).toBe("follower")
  })

  it("ticks once however many timer inputs the turn holds", () => {
    const leader = stalledLeader()
    stepBatch(
      leader,
      [{ _tag: "Tick" }, { _tag: "Tick" }, ackFromS2(leader)],
      2_040,
      config.heartbeatIntervalMs
    )
    const heartbeats = sent(takeReady(leader)).filter((send) => send.body._tag === "Heartbeat")
    expect(heartbeats.map((send) => send.to)).toEqual(["s2", "s3"])
  })
})

describe("Failure detection (DESIGN §5: failure timeout plus a random 0–150 ms from the seeded Random)", () => {
  const jittered: ClusterConfig = { ...config, failureJitterMs: 150 }

  /** A follower s2 of a group of three, with `random` as its seeded source. */
  const followerWith = (random: () => number): TestReplica => {
    const log = new MemoryLog()
    for (const entry of entries(three, [])) log.append(entry)
    const replica = makeReplica({
      machine: counter,
      config: jittered,
      id: sid("s2"),
      selfAddress: addressOf("s2"),
      random,
      hard: { group, incarnation: inc("s2"), epoch: 1, vote: null, commitSeq: 1 },
      incarnation: inc("s2"),
      log,
      nowMs: 0
    })
    takeReady(replica)
    return replica
  }

  const heartbeatAt = 1_000

  /** Ms after the last heartbeat (at 1 000 ms) at which the first pre-vote is broadcast, ticking every ms. */
  const electionDelay = (random: () => number): number | undefined => {
    const follower = followerWith(random)
    receive(follower, "s1", 1, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, heartbeatAt)
    for (let ms = heartbeatAt + 1; ms <= heartbeatAt + 1_000; ms += 1) {
      if (tags(tick(follower, ms)).includes("Broadcast:Election")) return ms - heartbeatAt
    }
    return undefined
  }

  it("random 0: the election starts exactly at the failure timeout (300 ms), not before", () => {
    const follower = followerWith(() => 0)
    receive(follower, "s1", 1, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, heartbeatAt)
    // Silent since the heartbeat: it probes its leader, and waits for the timeout.
    expect(tags(tick(follower, heartbeatAt + 299))).toEqual(["Probe"])
    expect(tags(tick(follower, heartbeatAt + 300))).toEqual(["RoleChanged", "Broadcast:Election"])
  })

  it("random 0.999: the election starts before 450 ms (at 449 ms), not before", () => {
    const follower = followerWith(() => 0.999)
    receive(follower, "s1", 1, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, heartbeatAt)
    expect(tags(tick(follower, heartbeatAt + 448))).toEqual(["Probe"])
    expect(tags(tick(follower, heartbeatAt + 449))).toEqual(["RoleChanged", "Broadcast:Election"])
  })

  it("a silent leader is probed after one and a half heartbeat intervals, then once per interval, never while it is heard", () => {
    const follower = followerWith(() => 0.999)
    receive(follower, "s1", 1, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, heartbeatAt)
    const probesAt: Array<number> = []
    for (let ms = heartbeatAt + 1; ms < heartbeatAt + 449; ms += 1) {
      for (const output of tick(follower, ms)) {
        if (output._tag === "Probe") {
          expect(output.server).toBe("s1")
          expect(output.address).toEqual(addressOf("s1"))
          probesAt.push(ms - heartbeatAt)
        }
      }
      // Heard again at +120: the next probe waits for 1.5 intervals of silence from then.
      if (ms === heartbeatAt + 120)
        receive(follower, "s1", 1, { _tag: "Heartbeat", round: 2, commitSeq: 1 }, ms)
    }
    expect(probesAt).toEqual([75, 195, 245, 295, 345, 395, 445])
  })

  it("Unreachable after a probe: the follower grants a pre-vote at once and stands within a heartbeat interval", () => {
    const follower = followerWith(() => 0.5)
    receive(follower, "s1", 1, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, heartbeatAt)
    expect(tags(tick(follower, heartbeatAt + 100))).toEqual(["Probe"])
    // Before the answer, s3's pre-vote is refused: the leader was heard within the timeout.
    const early = receive(follower, "s3", 1, {
      _tag: "Election",
      nextEpoch: 2,
      rank: { lastEpoch: 1, lastSeq: 1 }
    })
    expect(dropsOf(early)).toEqual(["leader-alive"])
    step(follower, { _tag: "Unreachable", server: sid("s1") }, heartbeatAt + 103)
    takeReady(follower)
    const granted = receive(follower, "s3", 1, {
      _tag: "Election",
      nextEpoch: 2,
      rank: { lastEpoch: 1, lastSeq: 1 }
    })
    expect(sent(granted).map(({ to, body }) => [to, body._tag, "granted" in body && body.granted])).toEqual([
      ["s3", "ElectionAnswer", true]
    ])
    // Its own pre-vote: 0.5 of a heartbeat interval (25 ms) after the answer, not 300 + 75 ms.
    expect(tags(tick(follower, heartbeatAt + 127))).not.toContain("Broadcast:Election")
    expect(tags(tick(follower, heartbeatAt + 128))).toEqual(["RoleChanged", "Broadcast:Election"])
  })

  it("Unreachable is ignored without a probe, for another server, and when the leader was heard since the probe", () => {
    const follower = followerWith(() => 0)
    receive(follower, "s1", 1, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, heartbeatAt)
    step(follower, { _tag: "Unreachable", server: sid("s1") }, heartbeatAt + 10)
    expect(dropsOf(takeReady(follower))).toEqual(["leader-alive"])
    tick(follower, heartbeatAt + 100)
    step(follower, { _tag: "Unreachable", server: sid("s3") }, heartbeatAt + 101)
    expect(dropsOf(takeReady(follower))).toEqual(["stale-answer"])
    // The leader restarted on its port and was heard before the answer came back.
    receive(follower, "s1", 1, { _tag: "Heartbeat", round: 2, commitSeq: 1 }, heartbeatAt + 102)
    step(follower, { _tag: "Unreachable", server: sid("s1") }, heartbeatAt + 103)
    expect(dropsOf(takeReady(follower))).toEqual(["leader-alive"])
    expect(tags(tick(follower, heartbeatAt + 401))).not.toContain("Broadcast:Election")
  })

  it("a precandidate repeats its Election every heartbeat interval until its pre-vote times out", () => {
    const follower = followerWith(() => 0)
    receive(follower, "s1", 1, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, heartbeatAt)
    const electionsAt: Array<number> = []
    for (let ms = heartbeatAt + 1; ms <= heartbeatAt + 600; ms += 1) {
      if (tags(tick(follower, ms)).includes("Broadcast:Election")) electionsAt.push(ms - heartbeatAt)
    }
    // Started at 300; repeated at 350..550; backed off at 600 (pre-vote timeout 300 ms).
    expect(electionsAt).toEqual([300, 350, 400, 450, 500, 550])
    expect(follower.role).toBe("follower")
  })

  it("the election starts at 300 + random()·150 ms after the last heartbeat, never outside [300, 450)", () => {
    const draws = [0, 0.2, 0.5, 0.8, 0.999, 0.9999999]
    const delays = draws.map((r) => electionDelay(() => r))
    expect(delays).toEqual([300, 330, 375, 420, 449, 449])
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(300)
      expect(delay).toBeLessThan(450)
    }
  })
})

describe("A group that dissolves (DESIGN §5, Bootstrap: never two groups)", () => {
  it("its leader sends the commit of GroupDissolved to every follower before it leaves", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    appendEntry(leader, { _tag: "GroupDissolved", into: "g2" as GroupId })
    const seq = leader.log.lastSeq
    step(leader, { _tag: "Persisted", lastSeq: seq }, leader.nowMs)
    takeReady(leader)
    const outputs = receive(leader, "s2", leader.epoch, {
      _tag: "ReplicateAck",
      success: true,
      matchSeq: seq,
      hintSeq: seq
    })
    const heartbeats = sent(outputs).filter((send) => send.body._tag === "Heartbeat")
    expect(heartbeats.map((send) => [send.to, send.body])).toEqual([
      ["s2", { _tag: "Heartbeat", round: expect.any(Number), commitSeq: seq }],
      ["s3", { _tag: "Heartbeat", round: expect.any(Number), commitSeq: seq }]
    ])
    expect(leader.role).toBe("joining")
  })
})
