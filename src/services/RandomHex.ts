/** Random hex strings (tokens, incarnations) from Effect's `Random`, so the simulator's seed decides them. */
import * as Effect from "effect/Effect"
import * as Random from "effect/Random"

export const randomHex = (digits: number): Effect.Effect<string> =>
  Effect.map(
    Effect.all(Array.from({ length: Math.ceil(digits / 4) }, () => Random.nextIntBetween(0, 0x10000))),
    (parts) =>
      parts
        .map((part) => part.toString(16).padStart(4, "0"))
        .join("")
        .slice(0, digits)
  )
