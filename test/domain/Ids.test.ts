import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import { AuctionId, ServerId } from "../../src/domain/Ids.js"

describe("Ids", () => {
  it("accepts a well-formed server id and refuses one with a space or too long", () => {
    expect(Either.isRight(Schema.decodeUnknownEither(ServerId)("s1"))).toBe(true)
    expect(Either.isLeft(Schema.decodeUnknownEither(ServerId)("s 1"))).toBe(true)
    expect(Either.isLeft(Schema.decodeUnknownEither(ServerId)("x".repeat(65)))).toBe(true)
  })

  it("refuses an auction id that is zero, fractional or unsafe", () => {
    for (const bad of [0, 1.5, Number.MAX_SAFE_INTEGER + 2, Number.NaN, "1"]) {
      expect(Either.isLeft(Schema.decodeUnknownEither(AuctionId)(bad))).toBe(true)
    }
  })
})
