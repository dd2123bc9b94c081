/**
 * A leader applies the events of the entries it appended as `decide` gave them, and only the
 * followers decode them (they received them as JSON): the Agora leader spent ~4 % of its time
 * encoding its events and decoding them again.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type { StateMachine } from "../../src/domain/cluster/StateMachine.js"
import { runScenario } from "../simulation/run.js"
import { makeSimCluster } from "../simulation/SimCluster.js"
import { counter } from "../support/Counter.js"

const ids = ["s1", "s2", "s3"]

describe("applying committed entries", () => {
  it("the leader does not decode its own entries; each follower decodes each once", () => {
    let decodes = 0
    const counting: StateMachine<number, number, number, string> = {
      ...counter,
      decodeEvents: (data) => {
        decodes += 1
        return counter.decodeEvents(data)
      }
    }
    const result = runScenario(
      Effect.gen(function* () {
        const cluster = yield* makeSimCluster({ ids, machine: counting, config: { expect: 3 } })
        yield* Effect.forEach(ids, (id) => cluster.start(id), { discard: true })
        yield* cluster.awaitLeader(10_000)
        const before = decodes
        for (let i = 1; i <= 10; i++) yield* cluster.propose(i)
        // Every follower has applied them once the next heartbeats carried the commit.
        yield* Effect.sleep(500)
        const states = (yield* cluster.statuses).map((status) => status.appliedSeq)
        return { decoded: decodes - before, states }
      })
    )
    expect(new Set(result.states).size).toBe(1)
    expect(result.decoded).toBe(2 * 10)
  })
})
