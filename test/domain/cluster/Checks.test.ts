/**
 * The checks on every server datagram the cluster makes, after the transport's
 * (size, MAC, decode, replay): group → membership → epoch (DESIGN §5, "Checks on
 * every datagram"). Each refusal is a `Dropped` output with its reason, which
 * the Cluster service counts in `agora_cluster_dropped{reason}`, and changes
 * nothing.
 */
import { describe, expect, it } from "@effect/vitest"
import { step, takeReady } from "../../../src/domain/cluster/Step.js"
import type { Body } from "../../../src/domain/Envelope.js"
import type { GroupId } from "../../../src/domain/Ids.js"
import {
  addressOf,
  app,
  dropsOf,
  electLeader,
  entries,
  inc,
  member,
  receive,
  replicaOf,
  sent,
  sid
} from "./harness.js"

const three = ["s1", "s2", "s3"].map((id) => member(id))
const ack: Body = { _tag: "HeartbeatAck", round: 1, matchSeq: 1 }

describe("cluster checks on every datagram (DESIGN §5), each drop by reason", () => {
  it("another group's messages are dropped, and its epochs never adopted", () => {
    const follower = replicaOf({ id: "s2", log: entries(three, []), hard: { epoch: 2 } })
    step(
      follower,
      {
        _tag: "Receive",
        body: { _tag: "Heartbeat", round: 1, commitSeq: 1 },
        meta: {
          from: { role: "server", id: sid("s1"), incarnation: inc("s1"), port: 7000 },
          group: "other" as GroupId,
          epoch: 9
        },
        source: addressOf("s1")
      },
      1_000
    )
    const out = takeReady(follower)
    expect(dropsOf(out)).toEqual(["other-group"])
    expect(sent(out)).toEqual([])
    expect(follower.epoch).toBe(2)
  })

  it("a vote or ack from a non-member is dropped, and a leader tells it NotMember", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    const out = receive(leader, "s9", leader.epoch, ack)
    expect(dropsOf(out)).toEqual(["not-member"])
    expect(sent(out)).toEqual([{ to: "s9", body: { _tag: "NotMember" }, epoch: leader.epoch }])
    const follower = replicaOf({ id: "s2", log: entries(three, []), hard: { epoch: 2 } })
    const election = receive(follower, "s9", 2, {
      _tag: "Election",
      nextEpoch: 3,
      rank: { lastEpoch: 9, lastSeq: 99 }
    })
    expect(dropsOf(election)).toEqual(["not-member"])
    expect(sent(election)).toEqual([])
    expect(follower.epoch).toBe(2)
  })

  it("an ack of a lower epoch is stale; one of a higher epoch deposes the leader", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    const epoch = leader.epoch
    expect(dropsOf(receive(leader, "s2", epoch - 1, ack))).toEqual(["stale-epoch"])
    expect(leader.role).toBe("leader")
    receive(leader, "s2", epoch + 3, ack)
    expect(leader.role).toBe("follower")
    expect(leader.epoch).toBe(epoch + 3)
  })

  it("NotMember is acted on only from the leader of our epoch or a later one (DESIGN §5, Membership)", () => {
    const follower = replicaOf({ id: "s2", log: entries(three, []), hard: { epoch: 2 } })
    receive(follower, "s1", 2, { _tag: "Heartbeat", round: 1, commitSeq: 1 }, 1_000)
    expect(follower.leader).toBe("s1")
    const incarnation = follower.incarnation
    expect(dropsOf(receive(follower, "s3", 1, { _tag: "NotMember" }))).toEqual(["stale-epoch"])
    expect(dropsOf(receive(follower, "s3", 2, { _tag: "NotMember" }))).toEqual(["not-leader"])
    expect(follower.incarnation).toBe(incarnation)
    expect(follower.role).toBe("follower")
    receive(follower, "s1", 2, { _tag: "NotMember" })
    expect(follower.role).toBe("joining")
    expect(follower.incarnation).not.toBe(incarnation)
  })

  it("a store is reset only when the server it asked to join answers ResetStore (DESIGN §5, Membership), not when another server says so", () => {
    const follower = replicaOf({ id: "s2", log: entries(three, [[2, app(5)]]), hard: { epoch: 2 } })
    expect(follower.group).toBe("g1")
    receive(follower, "s1", 2, { _tag: "Heartbeat", round: 1, commitSeq: 2 }, 1_000)
    // The leader no longer lists it: it asks s1 to join, keeping its log.
    receive(follower, "s1", 2, { _tag: "NotMember" })
    expect(follower.role).toBe("joining")
    expect(follower.log.lastSeq).toBe(2)
    const answer: Body = {
      _tag: "JoinAnswer",
      outcome: "ResetStore",
      reason: "group g1 dissolved",
      firstEntry: null
    }
    // An answer from a server it did not ask changes nothing.
    const stray = receive(follower, "s3", 2, answer)
    expect(dropsOf(stray)).toEqual(["unexpected-join-answer"])
    expect(stray.some((output) => output._tag === "ResetStore")).toBe(false)
    expect(follower.log.lastSeq).toBe(2)
    // The answer of the server it asked resets the store, loudly.
    const reset = receive(follower, "s1", 2, answer)
    expect(reset.filter((output) => output._tag === "ResetStore")).toHaveLength(1)
    expect(
      reset.some(
        (output) =>
          output._tag === "Note" && output.level === "warning" && output.message.includes("RESETTING STORE")
      )
    ).toBe(true)
    expect(follower.group).toBe(null)
    expect(follower.log.lastSeq).toBe(0)
  })
})
