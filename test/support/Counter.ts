/**
 * A trivial replicated state machine for cluster tests: a counter. A command
 * adds a positive amount; 0 decides nothing (like a retry); a negative amount
 * is refused.
 */
import { Either, Schema } from "effect"
import type { StateMachine } from "../../src/domain/cluster/StateMachine.js"

const decodeAmounts = Schema.decodeUnknownEither(Schema.Array(Schema.Int))

export const counter: StateMachine<number, number, number, string> = {
  initial: 0,
  decide: (_state, amount) =>
    amount < 0 ? Either.left(`refused ${amount}`) : Either.right(amount === 0 ? [] : [amount]),
  evolve: (state, amount) => state + amount,
  encodeEvents: (events) => events,
  decodeEvents: (data) => Either.mapLeft(decodeAmounts(data), (error) => error.message),
  holdsClientData: (state) => state > 0,
  encodeState: (state) => state,
  decodeState: (data) => (typeof data === "number" ? Either.right(data) : Either.left("not a number"))
}
