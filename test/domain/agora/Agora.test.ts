/**
 * The Agora state machine's events as the log holds them: they encode to themselves, so the
 * leader appends the events `decide` made as they are and applies them without decoding its own
 * encoding (StateMachine.encodeEvents; the followers decode what they receive).
 */
import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Either, Schema } from "effect"
import { AgoraEvent, agoraMachine } from "../../../src/domain/agora/Agora.js"

const events = Arbitrary.make(Schema.Array(AgoraEvent))

describe("Agora events in the log", () => {
  it.prop("encoding events returns them unchanged, and they decode to equal events", [events], ([sample]) => {
    const encoded = agoraMachine.encodeEvents(sample)
    expect(encoded).toBe(sample)
    expect(Schema.encodeSync(Schema.Array(AgoraEvent))(sample)).toStrictEqual(sample)
    const decoded = agoraMachine.decodeEvents(JSON.parse(JSON.stringify(encoded)))
    expect(Either.isRight(decoded) && decoded.right).toStrictEqual(JSON.parse(JSON.stringify(sample)))
  })
})
