import { describe, expect, it } from "@effect/vitest"
import { ReplayWindow, ReplayWindowSize } from "../../src/domain/ReplayWindow.js"

describe("ReplayWindow (DESIGN §4: replayed datagrams are dropped)", () => {
  it("accepts each n once, in any order within the window", () => {
    const window = new ReplayWindow()
    const order = [5, 1, 3, 2, 4, 9, 7, 8, 6]
    for (const n of order) expect(window.accept("s1", 1, n)).toBe(true)
    for (const n of order) expect(window.accept("s1", 1, n)).toBe(false)
  })

  it("refuses a datagram older than the window and any datagram of an older boot", () => {
    const window = new ReplayWindow()
    expect(window.accept("s1", 2, 1)).toBe(true)
    expect(window.accept("s1", 2, ReplayWindowSize + 10)).toBe(true)
    expect(window.accept("s1", 2, 5)).toBe(false)
    expect(window.accept("s1", 2, 11)).toBe(true)
    expect(window.accept("s1", 1, 100_000)).toBe(false)
  })

  it("starts afresh at a higher boot, and keeps senders apart", () => {
    const window = new ReplayWindow()
    expect(window.accept("s1", 1, 7)).toBe(true)
    expect(window.accept("s1", 2, 1)).toBe(true)
    expect(window.accept("s1", 2, 1)).toBe(false)
    expect(window.accept("s2", 1, 7)).toBe(true)
  })

  it("matches a reference set over a long random sequence with shifts across word boundaries", () => {
    const window = new ReplayWindow()
    const accepted = new Set<number>()
    let top = 0
    let state = 12345
    for (let i = 0; i < 20_000; i++) {
      state = (state * 1103515245 + 12345) % 2147483648
      const n = Math.max(1, top + (state % 80) - 60)
      const expected = !accepted.has(n) && (n > top || top - n < ReplayWindowSize)
      expect(window.accept("s", 1, n)).toBe(expected)
      if (expected) {
        accepted.add(n)
        top = Math.max(top, n)
      }
    }
  })
})
