/** DESIGN §3 "Create": the server validates every field of a new auction. */
import { describe, expect, it } from "@effect/vitest"
import { decide, InvalidRequest, initialState, Rules } from "../../../src/domain/auction/index.js"
import {
  accepted,
  aid,
  auctioneer,
  createCommand,
  emptyWorld,
  expectRefused,
  sid,
  step,
  T0
} from "./helpers.js"

const MAX = Number.MAX_SAFE_INTEGER

const refusedWith = (overrides: Parameters<typeof createCommand>[0], message: string) =>
  expectRefused(decide(initialState, createCommand(overrides), T0), new InvalidRequest({ message }))

describe("create: valid terms", () => {
  it("create emits AuctionCreated with the next auction id, the trimmed item and the decision time", () => {
    const events = accepted(decide(initialState, createCommand({ item: "  Ming vase " }), T0))
    expect(events).toStrictEqual([
      {
        _tag: "AuctionCreated",
        auction: aid(1),
        auctioneer,
        item: "Ming vase",
        minBid: 10,
        minRounds: 2,
        minBidders: 2,
        roundTimeoutMs: 60_000,
        startTimeoutMs: 60_000,
        createdAtMs: T0
      }
    ])
  })

  it("auction ids come from the state's counter: 1, 2, 3 in creation order, whoever creates", () => {
    const w1 = step(emptyWorld, createCommand())
    const w2 = step(w1, createCommand({ auctioneer: sid(2) }))
    const w3 = step(w2, createCommand())
    expect([w1, w2, w3].map((w) => w.events[0]?.auction)).toStrictEqual([1, 2, 3])
    expect(w3.state.nextAuctionId).toBe(4)
  })

  it("the limits themselves are accepted: 200-character item, minBid 1 and MAX_SAFE_INTEGER, 100 rounds, 1000 bidders, 24 h", () => {
    for (const terms of [
      { item: "x".repeat(200) },
      { minBid: 1 },
      { minBid: MAX },
      { minRounds: 1 },
      { minRounds: 100 },
      { minBidders: 2 },
      { minBidders: 1000 },
      { roundTimeoutMs: 1, startTimeoutMs: 1 },
      { roundTimeoutMs: 86_400_000, startTimeoutMs: 86_400_000 }
    ]) {
      accepted(decide(initialState, createCommand(terms), T0))
    }
  })

  it("the documented defaults lie within the limits", () => {
    expect(Rules.minRoundsDefault).toBe(3)
    expect(Rules.minBiddersDefault).toBe(2)
    expect(Rules.roundTimeoutMsDefault).toBe(60_000)
    expect(Rules.startTimeoutMsDefault).toBe(60_000)
    expect(Rules.biddersMax).toBe(1000)
    expect(Rules.timeoutMsMax).toBe(24 * 3_600_000)
  })
})

describe("create: item must be non-empty after trimming, at most 200 characters, no control characters", () => {
  it("an empty or blank item is refused", () => {
    refusedWith({ item: "" }, "item must not be empty")
    refusedWith({ item: " \t " }, "item must not be empty")
  })

  it("an item of 201 characters is refused; surrounding spaces do not count", () => {
    refusedWith({ item: "x".repeat(201) }, "item must be at most 200 characters, got 201")
    accepted(decide(initialState, createCommand({ item: ` ${"x".repeat(200)} ` }), T0))
  })

  it("an item with a control character or a lone surrogate is refused", () => {
    refusedWith({ item: "Vase\nSold" }, "item must not contain control characters")
    refusedWith({ item: "Vase\u0000" }, "item must not contain control characters")
    refusedWith({ item: "Vase\uD800" }, "item must not contain control characters")
    accepted(decide(initialState, createCommand({ item: "Vase 🏺 é" }), T0))
  })
})

describe("create: minBid must be a positive safe integer", () => {
  const range = `from 1 to ${MAX}`
  it.each([
    [0, "0"],
    [-5, "-5"],
    [1.5, "1.5"],
    [Number.NaN, "NaN"],
    [Number.POSITIVE_INFINITY, "Infinity"],
    [Number.NEGATIVE_INFINITY, "-Infinity"],
    [MAX + 1, String(MAX + 1)]
  ])("minBid %s is refused", (minBid, shown) => {
    refusedWith({ minBid }, `minBid must be a whole number of minor units ${range}, got ${shown}`)
  })
})

describe("create: minRounds 1..100, minBidders 2..1000", () => {
  it.each([0, 101, 1.5, -1, Number.NaN, Number.POSITIVE_INFINITY])("minRounds %s is refused", (minRounds) => {
    refusedWith({ minRounds }, `minRounds must be a whole number from 1 to 100, got ${String(minRounds)}`)
  })

  it.each([1, 0, 1001, 2.5, Number.NaN, Number.POSITIVE_INFINITY])(
    "minBidders %s is refused",
    (minBidders) => {
      refusedWith(
        { minBidders },
        `minBidders must be a whole number from 2 to 1000, got ${String(minBidders)}`
      )
    }
  )
})

describe("create: roundTimeoutMs and startTimeoutMs are positive integers up to 24 h", () => {
  it.each([0, -1, 86_400_001, 1.5, Number.NaN, Number.POSITIVE_INFINITY])(
    "timeouts of %s ms are refused",
    (ms) => {
      refusedWith(
        { roundTimeoutMs: ms },
        `roundTimeoutMs must be a whole number of milliseconds from 1 to 86400000, got ${String(ms)}`
      )
      refusedWith(
        { startTimeoutMs: ms },
        `startTimeoutMs must be a whole number of milliseconds from 1 to 86400000, got ${String(ms)}`
      )
    }
  )
})

describe("create: every invalid field is reported at once", () => {
  it("several bad fields give one InvalidRequest naming each, in field order", () => {
    refusedWith(
      { item: "", minBid: 0, minBidders: 1 },
      `item must not be empty; minBid must be a whole number of minor units from 1 to ${MAX}, got 0; ` +
        "minBidders must be a whole number from 2 to 1000, got 1"
    )
  })

  it("a refused create does not consume an auction id", () => {
    expectRefused(
      decide(initialState, createCommand({ item: "" }), T0),
      new InvalidRequest({ message: "item must not be empty" })
    )
    expect(accepted(decide(initialState, createCommand(), T0))[0]?.auction).toBe(1)
  })
})

describe("decide's clock argument", () => {
  it("decide throws on a nowMs that is not a non-negative safe integer (a caller's bug, not a client's)", () => {
    for (const nowMs of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => decide(initialState, createCommand(), nowMs)).toThrow()
    }
  })
})
