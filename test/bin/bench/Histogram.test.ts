import { describe, expect, it } from "@effect/vitest"
import { bucketHigh, bucketOf, Histogram, HistogramValueMax } from "../../../src/bin/bench/Histogram.js"

describe("bench Histogram (log-bucketed, HDR-style)", () => {
  it("keeps every value within 1/64 of itself, never reporting below it", () => {
    for (const value of [0, 1, 127, 128, 129, 255, 256, 1_000, 12_345, 999_999, 2 ** 30, HistogramValueMax]) {
      const high = bucketHigh(bucketOf(value))
      expect(high).toBeGreaterThanOrEqual(value)
      expect(high - value).toBeLessThanOrEqual(Math.max(0, value / 64))
    }
  })

  it("buckets are contiguous and rising: each value's bucket is the first whose top reaches it", () => {
    const wrong: Array<number> = []
    let previous = -1
    for (let value = 0; value < 70_000; value += 7) {
      const bucket = bucketOf(value)
      if (bucket < previous || (bucket > 0 && bucketHigh(bucket - 1) >= value)) wrong.push(value)
      previous = bucket
    }
    expect(wrong).toEqual([])
  })

  it("percentiles of 1..10,000 µs are right within the bucket precision; max and min are exact", () => {
    const histogram = new Histogram()
    for (let value = 1; value <= 10_000; value++) histogram.record(value)
    expect(histogram.total).toBe(10_000)
    expect(histogram.min).toBe(1)
    expect(histogram.max).toBe(10_000)
    for (const [q, exact] of [
      [0.5, 5_000],
      [0.9, 9_000],
      [0.99, 9_900]
    ] as const) {
      const reported = histogram.quantile(q)
      expect(reported).toBeGreaterThanOrEqual(exact)
      expect(reported).toBeLessThanOrEqual(exact * (1 + 1 / 64))
    }
    expect(histogram.quantile(1)).toBe(10_000)
    expect(histogram.mean()).toBeCloseTo(5_000.5, 6)
  })

  it("merging the JSON of two histograms equals recording everything in one", () => {
    const a = new Histogram()
    const b = new Histogram()
    const all = new Histogram()
    for (let i = 0; i < 5_000; i++) {
      const value = (i * 7919) % 100_000
      ;(i % 2 === 0 ? a : b).record(value)
      all.record(value)
    }
    const merged = Histogram.fromJSON(JSON.parse(JSON.stringify(a.toJSON()))).merge(b.toJSON())
    expect(merged.toJSON()).toEqual(all.toJSON())
  })

  it("clamps values past the range and counts them; an empty histogram reports zeros", () => {
    const histogram = new Histogram()
    expect(histogram.quantile(0.99)).toBe(0)
    histogram.record(HistogramValueMax * 4)
    histogram.record(-3)
    expect(histogram.clamped).toBe(1)
    expect(histogram.max).toBe(HistogramValueMax)
    expect(histogram.min).toBe(0)
  })
})
