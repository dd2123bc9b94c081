import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck, Option, Schema } from "effect"
import * as Money from "../../src/domain/Money.js"

const safeMoney = FastCheck.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }).map(Money.unsafeMake)

describe("Money", () => {
  it("money is a non-negative safe integer: decoding refuses negative, fractional, NaN, infinite, unsafe and non-numbers", () => {
    for (const bad of [
      -1,
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.MAX_SAFE_INTEGER + 1,
      "10",
      null
    ]) {
      expect(Either.isLeft(Schema.decodeUnknownEither(Money.Money)(bad))).toBe(true)
      expect(Money.isMoney(bad)).toBe(false)
    }
    for (const good of [0, 1, 10_000, Number.MAX_SAFE_INTEGER]) {
      expect(Schema.decodeUnknownSync(Money.Money)(good)).toBe(good)
      expect(Option.getOrThrow(Money.fromNumber(good))).toBe(good)
    }
    expect(Money.fromNumber(0.1 + 0.2)).toStrictEqual(Option.none())
  })

  it("Money.zero is 0 and the neutral element of add", () => {
    expect(Money.zero).toBe(0)
    expect(Money.add(Money.zero, Money.unsafeMake(42))).toStrictEqual(Either.right(42))
  })

  it("unsafeMake throws on a value that is not money (a defect, never a silent float)", () => {
    expect(() => Money.unsafeMake(1.5)).toThrow()
    expect(() => Money.unsafeMake(-1)).toThrow()
  })

  it("add at the edge: MAX_SAFE_INTEGER is reachable, one more overflows", () => {
    const max = Money.unsafeMake(Number.MAX_SAFE_INTEGER)
    expect(Money.add(Money.unsafeMake(Number.MAX_SAFE_INTEGER - 1), Money.unsafeMake(1))).toStrictEqual(
      Either.right(Number.MAX_SAFE_INTEGER)
    )
    const overflow = Money.add(max, Money.unsafeMake(1))
    expect(Either.isLeft(overflow)).toBe(true)
    if (Either.isLeft(overflow)) {
      expect(overflow.left._tag).toBe("MoneyOverflow")
      expect(overflow.left.message).toBe(
        `${Number.MAX_SAFE_INTEGER} + 1 exceeds the largest safe amount ${Number.MAX_SAFE_INTEGER}`
      )
    }
    expect(Either.isLeft(Money.add(max, max))).toBe(true)
  })

  it.prop(
    "add is exact: a sum is returned iff it is a safe integer, and then equals the BigInt sum",
    [safeMoney, safeMoney],
    ([a, b]) => {
      const exact = BigInt(a) + BigInt(b)
      const result = Money.add(a, b)
      if (exact <= BigInt(Number.MAX_SAFE_INTEGER)) {
        expect(result).toStrictEqual(Either.right(Number(exact)))
      } else {
        expect(Either.isLeft(result)).toBe(true)
      }
    }
  )

  it("sum adds every amount and stops at the first overflow", () => {
    expect(Money.sum([1, 2, 3].map(Money.unsafeMake))).toStrictEqual(Either.right(6))
    expect(Money.sum([])).toStrictEqual(Either.right(0))
    const huge = Money.unsafeMake(Number.MAX_SAFE_INTEGER - 1)
    expect(Either.isLeft(Money.sum([huge, Money.unsafeMake(1), Money.unsafeMake(1)]))).toBe(true)
  })

  it("headroom is what can still be added without overflow", () => {
    expect(Money.headroom(Money.unsafeMake(Number.MAX_SAFE_INTEGER - 5))).toBe(5)
    expect(Money.headroom(Money.zero)).toBe(Number.MAX_SAFE_INTEGER)
  })
})
