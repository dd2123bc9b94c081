import { describe, expect, it } from "@effect/vitest"
import { Exit } from "effect"
import { runExample } from "../examples/replicated-counter.js"

describe("examples/replicated-counter (public API)", () => {
  it("keeps every committed addition across a leader crash, and replays exactly from its seed", () => {
    const first = runExample(42)
    const again = runExample(42)
    expect(Exit.isSuccess(first.exit)).toBe(true)
    if (Exit.isSuccess(first.exit)) {
      // odd: 1 + 3 + … + 29 = 225; even: 2 + 4 + … + 30 = 240
      expect(first.exit.value.counters).toEqual({ odd: 225, even: 240 })
    }
    expect(again.trace.hash).toBe(first.trace.hash)
  })
})
