/**
 * Every checker shown able to fail (STYLE, TigerBeetle's VOPR): the system is
 * broken on purpose through a test-only layer of Breaks.ts (a store whose
 * fsync lies, a store that forgets the vote, a notification path that skips
 * a number, answers built from the wrong amount, timeouts too long to end,
 * a disk that dies) or the checker's input is corrupted (the recorded winner),
 * and the named checker must catch it within a few seeds. Deterministic: the
 * seed that catches each break is the same on every run.
 */
import { describe, expect, it } from "@effect/vitest"
import * as B from "./Breaks.js"
import type { CheckerName } from "./Checkers.js"
import { checkLeadersPerEpoch } from "./Checkers.js"
import { makeHistory } from "./History.js"
import { type Breaks, type RunOptions, runSeed, type SeedReport } from "./Simulator.js"

const reports = new Map<string, SeedReport>()

/**
 * Lets vitest's worker answer its RPC between two runs: a run is synchronous, and a test that
 * blocks the event loop for a minute gets "Timeout calling onTaskUpdate".
 */
const breathe = () => new Promise<void>((resolve) => setImmediate(resolve))

/**
 * Runs seeds 1, 2, … of the broken system until `checker` reports; the seed and what it found.
 * With the recording client unless told otherwise: its raw record shows what the servers sent.
 */
const caught = async (
  breaks: Breaks,
  checker: CheckerName,
  seedsMax: number,
  given: Omit<RunOptions, "breaks"> = {}
) => {
  const options = { ...given, overrides: { clientKind: "recording" as const, ...given.overrides } }
  const tried: Array<string> = []
  for (let seed = 1; seed <= seedsMax; seed++) {
    const key = `${breaks.name}/${seed}/${JSON.stringify(options)}`
    await breathe()
    const report = reports.get(key) ?? runSeed(seed, { ...options, breaks })
    reports.set(key, report)
    const found = report.violations.filter((v) => v.checker === checker)
    if (found.length > 0) return { seed, found: found.map((v) => v.message) }
    tried.push(
      `seed ${seed}: ${[...new Set(report.violations.map((v) => v.checker))].join(", ") || "nothing"}`
    )
  }
  return { seed: null, found: tried }
}

/** A shorter fault phase than the seed would choose: the same breaks are caught, in less time. */
const shortFaults = (faultMs: number): Omit<RunOptions, "breaks"> => ({ overrides: { faultMs } })

describe("every checker can fail: a broken system is caught within a few seeds", () => {
  it("leaders-per-epoch: a store that forgets the vote (and that epoch) on restart → two leaders in one epoch", {
    timeout: 120_000
  }, async () => {
    const result = await caught(B.forgetfulVote, "leaders-per-epoch", 10, shortFaults(12_000))
    expect(result.seed, result.found.join("\n")).not.toBeNull()
    expect(result.found[0]).toMatch(/^epoch \d+: s\d, s\d/)
  })

  it("committed-prefix: the same store → servers commit different entries at one seq", {
    timeout: 120_000
  }, async () => {
    const result = await caught(B.forgetfulVote, "committed-prefix", 4, shortFaults(12_000))
    expect(result.seed, result.found.join("\n")).not.toBeNull()
    expect(result.found[0]).toMatch(/seq \d+: s\d has .*, s\d had /)
  })

  it("durability: a store that acknowledges writes it flushes only every 2 s, in a crash storm → committed entries lost", {
    timeout: 120_000
  }, async () => {
    const result = await caught(B.lyingStore(2_000), "durability", 8, shortFaults(8_000))
    expect(result.seed, result.found.join("\n")).not.toBeNull()
    // Lost, or replaced so that the history no longer applies: either way, not what was committed.
    expect(result.found[0]).toMatch(
      /was committed during the run, but at the end|no entry at seq|does not apply/
    )
  })

  it("requests: servers answer accepted bids with an amount other than the committed one", {
    timeout: 60_000
  }, async () => {
    const result = await caught(B.wrongBidAnswer, "requests", 2, shortFaults(6_000))
    expect(result.seed, result.found.join("\n")).toBe(1)
    expect(result.found[0]).toMatch(/the client got \{"_tag":"BidAccepted".* but seq \d+ answered/)
  })

  it("notifications: servers never send notification #3 → every client sees the gap", {
    timeout: 60_000
  }, async () => {
    const result = await caught(B.skipNotice(3), "notifications", 2, shortFaults(6_000))
    expect(result.seed, result.found.join("\n")).toBe(1)
    expect(result.found.join("\n")).toMatch(/gap: received up to #\d+ but never #3/)
  })

  it("notifications, through the real Client service: a notice never sent is a gap in what it delivers", {
    timeout: 60_000
  }, async () => {
    const result = await caught(B.skipNotice(3), "notifications", 2, {
      overrides: { faultMs: 6_000, clientKind: "service" }
    })
    expect(result.seed, result.found.join("\n")).toBe(1)
    // It delivers #1 and #2 and waits for #3 for good: the rest never reaches its user.
    expect(result.found.join("\n")).toMatch(/has 2 of the \d+ notices the log holds for it/)
  })

  it("winner: the recorded AuctionClosed names the lowest bidder", { timeout: 60_000 }, async () => {
    const result = await caught(B.corruptWinners, "winner", 2, shortFaults(6_000))
    expect(result.seed, result.found.join("\n")).toBe(1)
    expect(result.found[0]).toMatch(/auction \d+: winner \d+ with \d+, but the bids make \d+ the winner/)
  })

  it("termination: round and start timeouts of ten minutes → auctions still open past the bound", {
    timeout: 60_000
  }, async () => {
    const result = await caught(B.endlessRounds, "termination", 2, shortFaults(6_000))
    expect(result.seed, result.found.join("\n")).toBe(1)
    expect(result.found.join("\n")).toMatch(/auction \d+ is still (running|waiting) at the end/)
  })

  it("defects: a disk that dies after 200 writes → the replica loop dies, and it is reported", {
    timeout: 60_000
  }, async () => {
    const result = await caught(B.failingStore(200), "defects", 2, shortFaults(6_000))
    expect(result.seed, result.found.join("\n")).toBe(1)
    expect(result.found[0]).toMatch(/replica loop died/)
  })

  it("run: a run out of its step budget is a failure too", async () => {
    const result = await caught({ name: "no break" }, "run", 1, {
      maxSteps: 1_000,
      overrides: { faultMs: 1_000 }
    })
    expect(result.seed, result.found.join("\n")).toBe(1)
    expect(result.found[0]).toMatch(/ended step-budget/)
  })

  it("leaders-per-epoch also on a hand-made history: two servers leading epoch 4", () => {
    const history = makeHistory()
    history.roleEvents = [
      { atMs: 1, id: "s1", role: "leader", epoch: 3, leader: "s1" },
      { atMs: 2, id: "s2", role: "leader", epoch: 4, leader: "s2" },
      { atMs: 3, id: "s3", role: "leader", epoch: 4, leader: "s3" }
    ]
    expect(checkLeadersPerEpoch(history)).toEqual(["epoch 4: s2, s3"])
  })
})
