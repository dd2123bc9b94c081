/**
 * A state machine with a big state, for snapshot tests: every command appends
 * a line of text. Its state grows with every entry, so a checkpoint of it is
 * many datagrams long.
 */
import { Chunk, Either, Schema } from "effect"
import type { StateMachine } from "../../src/domain/cluster/StateMachine.js"

const Lines = Schema.Array(Schema.String)
const decodeLines = Schema.decodeUnknownEither(Lines)

export const ledger: StateMachine<Chunk.Chunk<string>, string, string, never> = {
  initial: Chunk.empty(),
  decide: (_state, line) => Either.right([line]),
  evolve: (state, line) => Chunk.append(state, line),
  encodeEvents: (events) => events,
  decodeEvents: (data) => decodeLines(data),
  holdsClientData: (state) => Chunk.isNonEmpty(state),
  encodeState: (state) => Chunk.toReadonlyArray(state),
  decodeState: (data) => Either.map(decodeLines(data), Chunk.fromIterable)
}
