/**
 * Money: integer minor units (cents), never floats (DESIGN §3). A `Money` is a
 * non-negative safe integer, so every sum that is checked with `add` stays
 * exact, and JSON carries it without loss.
 *
 * Import as a module: `import * as Money from "./Money.js"`, then
 * `Money.Money` (schema and type), `Money.zero`, `Money.add`.
 */
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import * as Order from "effect/Order"
import * as Schema from "effect/Schema"

/** The largest amount: beyond it a JS number no longer counts cents exactly. */
export const maxValue = Number.MAX_SAFE_INTEGER

/** A non-negative safe integer amount in minor units. */
export const Money = Schema.Int.pipe(
  Schema.greaterThanOrEqualTo(0),
  Schema.lessThanOrEqualTo(maxValue),
  Schema.brand("Money"),
  Schema.annotations({
    identifier: "Money",
    description: "an amount in minor units: a non-negative safe integer"
  })
)
export type Money = typeof Money.Type

/** Whether a value is a valid amount (a number, whole, 0 ≤ n ≤ 2^53 − 1). */
export const isMoney: (u: unknown) => u is Money = Schema.is(Money)

/** An amount from a number, or none when it is negative, fractional, not finite or unsafe. */
export const fromNumber = (n: number): Option.Option<Money> => (isMoney(n) ? Option.some(n) : Option.none())

/** An amount from a number the caller has already checked; throws on a bad value (a defect). Cheap: used per bid. */
export const unsafeMake = (n: number): Money => {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${n} is not an amount of money`)
  return n as Money
}

export const zero: Money = unsafeMake(0)

/** A sum that would leave the safe integers: it would no longer be exact. */
export class MoneyOverflow extends Schema.TaggedError<MoneyOverflow>()("MoneyOverflow", {
  left: Money,
  right: Money
}) {
  override get message(): string {
    return `${this.left} + ${this.right} exceeds the largest safe amount ${maxValue}`
  }
}

/** `left + right`, or `MoneyOverflow` when the sum is not a safe integer. */
export const add = (left: Money, right: Money): Either.Either<Money, MoneyOverflow> => {
  const sum = left + right
  // Both are ≤ 2^53 − 1, so the float sum is exact up to 2^54 and this check is reliable.
  return sum <= maxValue ? Either.right(sum as Money) : Either.left(new MoneyOverflow({ left, right }))
}

/** The sum of all amounts, or the first overflow. */
export const sum = (amounts: Iterable<Money>): Either.Either<Money, MoneyOverflow> => {
  let total = zero
  for (const amount of amounts) {
    const next = add(total, amount)
    if (Either.isLeft(next)) return next
    total = next.right
  }
  return Either.right(total)
}

/** How much can still be added to `total` without overflow. */
export const headroom = (total: Money): Money => (maxValue - total) as Money

/** Ascending order of amounts. */
export const order: Order.Order<Money> = Order.number
