import { describe, expect, it } from "@effect/vitest"
import type { Incarnation } from "../../../src/domain/Ids.js"
import {
  app,
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
const rank0 = { lastEpoch: 1, lastSeq: 1 }

describe("Election — pre-vote (DESIGN §5, Election phase 1)", () => {
  it("a pre-vote is granted without storing anything", () => {
    const voter = replicaOf({ id: "s2", log: entries(three, []) })
    const out = receive(voter, "s3", 1, { _tag: "Election", nextEpoch: 2, rank: rank0 }, 1_000)
    expect(tags(out)).toEqual(["Send:ElectionAnswer"])
    expect(sent(out)[0]?.body).toEqual({ _tag: "ElectionAnswer", nextEpoch: 2, granted: true, rank: rank0 })
    expect(voter.epoch).toBe(1)
    expect(voter.vote).toBe(null)
  })

  it("a server that heard its leader within the failure timeout ignores Election and Coordinator", () => {
    const voter = replicaOf({ id: "s2", log: entries(three, []) })
    receive(voter, "s1", 1, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, 1_000)
    const election = receive(voter, "s3", 1, { _tag: "Election", nextEpoch: 2, rank: rank0 }, 1_100)
    const coordinator = receive(voter, "s3", 2, { _tag: "Coordinator", rank: rank0 }, 1_200)
    expect(dropsOf(election)).toEqual(["leader-alive"])
    expect(dropsOf(coordinator)).toEqual(["leader-alive"])
    expect(voter.epoch).toBe(1)
    expect(voter.leader).toBe("s1")
  })

  it("a voter that outranks the candidate refuses and runs its own pre-vote (the bully)", () => {
    const voter = replicaOf({ id: "s3", log: entries(three, []) })
    const out = receive(voter, "s1", 1, { _tag: "Election", nextEpoch: 2, rank: rank0 }, 1_000)
    expect(sent(out).map((s) => [s.to, s.body._tag])).toEqual([["s1", "ElectionAnswer"]])
    // Its own pre-vote goes to everyone by broadcast (peers may have moved to new ports).
    expect(tags(out)).toContain("Broadcast:Election")
    expect(sent(out)[0]?.body).toMatchObject({ granted: false })
    expect(voter.role).toBe("precandidate")
  })

  it("a voter refuses a candidate whose log is behind, whatever its id", () => {
    const voter = replicaOf({ id: "s1", log: entries(three, [[1, app(1)]]) })
    const out = receive(voter, "s3", 1, { _tag: "Election", nextEpoch: 2, rank: rank0 }, 1_000)
    expect(sent(out)[0]?.body).toMatchObject({ _tag: "ElectionAnswer", granted: false })
  })

  it("a candidate refused by a higher-ranked voter holds off one timeout, then tries again", () => {
    const candidate = replicaOf({ id: "s1", log: entries(three, []) })
    tick(candidate, 1_000)
    expect(candidate.role).toBe("precandidate")
    receive(candidate, "s3", 1, { _tag: "ElectionAnswer", nextEpoch: 2, granted: false, rank: rank0 }, 1_001)
    expect(candidate.role).toBe("follower")
    expect(tags(tick(candidate, 1_200))).not.toContain("Broadcast:Election")
    expect(tags(tick(candidate, 1_301))).toContain("Broadcast:Election")
  })
})

describe("Election — vote (DESIGN §5, Election phase 2)", () => {
  it("a voter stores (epoch, vote) before it acks a coordinator", () => {
    const voter = replicaOf({ id: "s2", log: entries(three, []) })
    const out = receive(voter, "s3", 2, { _tag: "Coordinator", rank: rank0 }, 1_000)
    expect(tags(out)).toEqual(["PersistHardState", "Send:CoordinatorAck"])
    expect(out[0]).toMatchObject({ hard: { epoch: 2, vote: "s3" } })
    expect(sent(out)[0]?.epoch).toBe(2)
  })

  it("a restarted server refuses a second coordinator of the epoch it voted in, and re-acks the first", () => {
    const voter = replicaOf({ id: "s2", log: entries(three, []), hard: { epoch: 2, vote: member("s3").id } })
    expect(dropsOf(receive(voter, "s1", 2, { _tag: "Coordinator", rank: rank0 }, 1_000))).toEqual([
      "already-voted"
    ])
    expect(tags(receive(voter, "s3", 2, { _tag: "Coordinator", rank: rank0 }, 1_000))).toEqual([
      "Send:CoordinatorAck"
    ])
  })

  it("a server whose incarnation the group does not list (a lost store) cannot vote or stand", () => {
    const voter = replicaOf({
      id: "s2",
      log: entries(three, []),
      hard: { incarnation: "fresh" as Incarnation }
    })
    expect(dropsOf(receive(voter, "s3", 1, { _tag: "Election", nextEpoch: 2, rank: rank0 }, 1_000))).toEqual([
      "not-a-voter"
    ])
    expect(dropsOf(receive(voter, "s3", 2, { _tag: "Coordinator", rank: rank0 }, 1_000))).toEqual([
      "not-a-voter"
    ])
    expect(tags(tick(voter, 5_000))).not.toContain("Broadcast:Election")
  })

  it("a majority of grants makes a coordinator that stored (epoch, itself); a majority of acks a leader with a no-op", () => {
    const leader = electLeader(["s1", "s2", "s3"], [], false)
    expect(leader.role).toBe("leader")
    expect(leader.epoch).toBe(2)
    expect(leader.vote).toBe("s1")
    expect(leader.log.entry(2)).toEqual({ epoch: 2, seq: 2, body: noop("s1") })
  })

  it("a leader without a majority's acks within the failure timeout steps down", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    const start = leader.nowMs
    tick(leader, start + 200)
    expect(leader.role).toBe("leader")
    const out = tick(leader, start + 301)
    expect(leader.role).toBe("follower")
    expect(tags(out)).toContain("RoleChanged")
  })

  it("a follower of an old leader follows the leader of a higher epoch it did not vote in (one leader per epoch, not per server)", () => {
    const follower = replicaOf({ id: "s2", log: entries(three, []) })
    receive(follower, "s1", 1, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, 1_000)
    expect(follower.leader).toBe("s1")
    const out = receive(follower, "s3", 4, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, 1_100)
    expect(follower.leader).toBe("s3")
    expect(follower.epoch).toBe(4)
    expect(sent(out)[0]).toEqual({
      to: "s3",
      body: { _tag: "HeartbeatAck", round: 1, matchSeq: 1 },
      epoch: 4
    })
  })

  it("a stale leader is fenced: its heartbeat gets our higher epoch, and it steps down on seeing it", () => {
    const follower = replicaOf({ id: "s2", log: entries(three, []), hard: { epoch: 5 } })
    const out = receive(follower, "s1", 2, { _tag: "Heartbeat", round: 9, commitSeq: 1 }, 1_000)
    expect(sent(out)).toEqual([{ to: "s1", body: { _tag: "HeartbeatAck", round: 9, matchSeq: 0 }, epoch: 5 }])
    const leader = electLeader(["s1", "s2", "s3"])
    receive(leader, "s2", 5, { _tag: "HeartbeatAck", round: 9, matchSeq: 0 })
    expect(leader.role).toBe("follower")
    expect(leader.epoch).toBe(5)
  })

  it("a leader that sees a higher epoch while still leading sends nothing as leader from that instant (DESIGN §6, leadership as a scope)", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    expect(leader.role).toBe("leader")
    const oldEpoch = leader.epoch
    // Still leading (acks are fresh), it hears the leader of a higher epoch.
    const seen = receive(leader, "s3", oldEpoch + 1, { _tag: "Heartbeat", round: 1, commitSeq: 1 })
    expect(leader.role).toBe("follower")
    expect(leader.leader).toBe("s3")
    const later = [...seen]
    const fromMs = leader.nowMs
    for (let ms = fromMs + 10; ms <= fromMs + 2_000; ms += 10) later.push(...tick(leader, ms))
    const asLeader = sent(later).filter(
      (message) =>
        message.body._tag === "Heartbeat" ||
        message.body._tag === "Replicate" ||
        message.body._tag === "SnapshotChunk" ||
        message.epoch === oldEpoch
    )
    expect(asLeader).toEqual([])
  })
})
