import { describe, expect, it } from "@effect/vitest"
import { step, takeReady } from "../../../src/domain/cluster/Step.js"
import { electLeader, receive, type TestOutput } from "./harness.js"

const resolved = (outputs: ReadonlyArray<TestOutput>) => outputs.filter((o) => o._tag === "Resolved")

describe("Reads and refusals (DESIGN §5, Reads and refusals)", () => {
  it("an ack of a heartbeat round older than the read does not confirm it", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    const oldRound = leader.lead?.heartbeatRound ?? 0
    step(leader, { _tag: "Read", proposal: 7 }, leader.nowMs)
    expect(
      resolved(receive(leader, "s2", 2, { _tag: "HeartbeatAck", round: oldRound, matchSeq: 2 }))
    ).toEqual([])
    step(leader, { _tag: "Flush" }, leader.nowMs)
    takeReady(leader)
    const out = receive(leader, "s2", 2, { _tag: "HeartbeatAck", round: oldRound + 1, matchSeq: 2 })
    expect(resolved(out)).toEqual([{ _tag: "Resolved", proposal: 7, outcome: { _tag: "Read", state: 0 } }])
  })

  it("a refusal resting on an uncommitted entry is held back until that entry commits", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    step(leader, { _tag: "Propose", proposal: 1, command: 5 }, leader.nowMs)
    step(leader, { _tag: "Propose", proposal: 2, command: -1 }, leader.nowMs)
    step(leader, { _tag: "Flush" }, leader.nowMs)
    step(leader, { _tag: "Persisted", lastSeq: leader.log.lastSeq }, leader.nowMs)
    takeReady(leader)
    const round = leader.lead?.heartbeatRound ?? 0
    // The round is confirmed, but the entry the refusal rests on is not committed yet.
    expect(resolved(receive(leader, "s2", 2, { _tag: "HeartbeatAck", round, matchSeq: 2 }))).toEqual([])
    const out = receive(leader, "s2", 2, { _tag: "ReplicateAck", success: true, matchSeq: 3, hintSeq: 3 })
    expect(resolved(out)).toEqual([
      { _tag: "Resolved", proposal: 1, outcome: { _tag: "Committed", seq: 3, state: 5 } },
      { _tag: "Resolved", proposal: 2, outcome: { _tag: "Refused", error: "refused -1" } }
    ])
  })

  it("a deposed leader answers every waiting proposal NotLeader", () => {
    const leader = electLeader(["s1", "s2", "s3"])
    step(leader, { _tag: "Propose", proposal: 1, command: 5 }, leader.nowMs)
    takeReady(leader)
    const out = receive(leader, "s3", 3, { _tag: "HeartbeatAck", round: 1, matchSeq: 0 })
    expect(resolved(out)).toEqual([
      { _tag: "Resolved", proposal: 1, outcome: { _tag: "NotLeader", leader: null } }
    ])
  })
})
