/**
 * What the cluster replicates: a deterministic state machine of the user's, given as
 * `decide` and `evolve` (DESIGN §3). The leader decides commands on its
 * pending state; every server builds its committed state by `evolve` alone
 * (passive replication: backups never execute requests).
 */
import type { Either } from "effect"

export interface StateMachine<S, C, E, Err> {
  readonly initial: S
  /** Run by the leader only, on its pending state. No events and no error: nothing to append. */
  readonly decide: (state: S, command: C, nowMs: number) => Either.Either<ReadonlyArray<E>, Err>
  readonly evolve: (state: S, event: E) => S
  /** Events as the JSON value stored in an `App` entry. */
  readonly encodeEvents: (events: ReadonlyArray<E>) => unknown
  readonly decodeEvents: (data: unknown) => Either.Either<ReadonlyArray<E>, unknown>
  /** Whether the state holds anything a client put there: a group holding such state never dissolves. */
  readonly holdsClientData: (state: S) => boolean
  /** The state as a JSON value, for checkpoints and snapshots; equal states must encode to equal JSON. */
  readonly encodeState: (state: S) => unknown
  readonly decodeState: (data: unknown) => Either.Either<S, unknown>
}

/** Folds a batch of events into the state. */
export const evolveAll = <S, C, E, Err>(
  machine: StateMachine<S, C, E, Err>,
  state: S,
  events: ReadonlyArray<E>
): S => {
  let next = state
  for (const event of events) next = machine.evolve(next, event)
  return next
}
