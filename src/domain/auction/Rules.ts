/**
 * The limits of DESIGN §3, in one place, and the checks of a new auction's
 * terms. Every limit is a named constant so clients (for a friendly prompt),
 * wire schemas and the rules agree; every check says which field is wrong and
 * what range it allows.
 */
import * as Schema from "effect/Schema"
import * as Money from "../Money.js"

/** An item name is at most this many UTF-16 code units after trimming (as `Schema.maxLength` counts on the wire). */
export const itemLengthMax = 200

/** Rounds per auction: exactly `minRounds` are played. */
export const minRoundsMin = 1
export const minRoundsMax = 100
export const minRoundsDefault = 3

/** Bidders an auction needs before it can start. */
export const minBiddersMin = 2
export const minBiddersMax = 1000
export const minBiddersDefault = 2

/** Bidders an auction accepts at most (`AuctionFull` beyond). Bounds every per-auction table and event. */
export const biddersMax = 1000

/** Round and start timeouts: positive, at most a day. */
export const timeoutMsMin = 1
export const timeoutMsMax = 24 * 60 * 60 * 1000
export const roundTimeoutMsDefault = 60_000
export const startTimeoutMsDefault = 60_000

/** The smallest and largest minimum bid (minor units). */
export const minBidMin = 1
export const minBidMax = Money.maxValue

// Control characters would break the client's tables and the logs; lone
// surrogates are not text (they cannot be encoded as UTF-8).
const forbiddenInItem = /[\p{Cc}\p{Cs}]/u

/** Why an item name is refused, or undefined when it is fine. Expects the trimmed name. */
export const itemProblem = (item: string): string | undefined => {
  if (item.length === 0) return "item must not be empty"
  if (item.length > itemLengthMax) {
    return `item must be at most ${itemLengthMax} characters, got ${item.length}`
  }
  if (forbiddenInItem.test(item)) return "item must not contain control characters"
  return undefined
}

/** An item name as stored: trimmed, 1–200 characters, no control characters. */
export const Item = Schema.String.pipe(
  Schema.filter((item) => (item.trim() !== item ? "item must be trimmed" : itemProblem(item)) ?? true),
  Schema.annotations({ identifier: "Item" })
)

const intBetween = (min: number, max: number, identifier: string) =>
  Schema.Int.pipe(Schema.between(min, max), Schema.annotations({ identifier }))

export const Rounds = intBetween(minRoundsMin, minRoundsMax, "Rounds")
export const MinBidders = intBetween(minBiddersMin, minBiddersMax, "MinBidders")
export const TimeoutMs = intBetween(timeoutMsMin, timeoutMsMax, "TimeoutMs")
/** A number of bidders that have joined. */
export const BidderCount = intBetween(0, biddersMax, "BidderCount")
/** A round number. */
export const Round = intBetween(1, minRoundsMax, "Round")
/** A point in time (ms since the epoch, by the deciding leader's clock). */
export const TimeMs = intBetween(0, Number.MAX_SAFE_INTEGER, "TimeMs")
/** A position in a list (an index into an auction's events, a join order). */
export const Index = intBetween(0, Number.MAX_SAFE_INTEGER, "Index")

const wholeBetween = (
  field: string,
  value: number,
  min: number,
  max: number,
  unit = ""
): string | undefined =>
  Number.isInteger(value) && value >= min && value <= max
    ? undefined
    : `${field} must be a whole number${unit} from ${min} to ${max}, got ${String(value)}`

/** The terms a client proposes for a new auction, before checking. */
export interface Terms {
  readonly item: string
  readonly minBid: number
  readonly minRounds: number
  readonly minBidders: number
  readonly roundTimeoutMs: number
  readonly startTimeoutMs: number
}

/** Every problem with the proposed terms, in field order (empty when they are valid). */
export const termsProblems = (terms: Terms): ReadonlyArray<string> => {
  const problems = [
    itemProblem(terms.item.trim()),
    wholeBetween("minBid", terms.minBid, minBidMin, minBidMax, " of minor units"),
    wholeBetween("minRounds", terms.minRounds, minRoundsMin, minRoundsMax),
    wholeBetween("minBidders", terms.minBidders, minBiddersMin, minBiddersMax),
    wholeBetween("roundTimeoutMs", terms.roundTimeoutMs, timeoutMsMin, timeoutMsMax, " of milliseconds"),
    wholeBetween("startTimeoutMs", terms.startTimeoutMs, timeoutMsMin, timeoutMsMax, " of milliseconds")
  ]
  return problems.filter((problem): problem is string => problem !== undefined)
}
