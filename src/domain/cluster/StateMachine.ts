/**
 * What the cluster replicates: a deterministic state machine of the user's, given as
 * `decide` and `evolve` (DESIGN §3). The leader decides commands on its
 * pending state; every server builds its committed state by `evolve` alone
 * (passive replication: backups never execute requests).
 */
import * as Either from "effect/Either"

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
  /**
   * The state as a checkpoint stores it, when most of it rarely changes (DESIGN §5,
   * Checkpoints): a small root, and parts by key that the store writes only when new. Without
   * it a checkpoint is the whole `encodeState` as its root. `decodeStored` must undo it.
   */
  readonly encodeStored?: (state: S) => StoredState
  readonly decodeStored?: (stored: StoredState) => Either.Either<S, unknown>
}

/**
 * A state as a checkpoint keeps it: JSON values. The store writes a part again only when it is
 * not the very object (by identity) it wrote for that key last time, and drops the parts whose
 * keys are gone; so parts that do not change must keep their encoding from one checkpoint to
 * the next (e.g. `EncodedOnce`).
 */
export interface StoredState {
  readonly root: unknown
  readonly parts: ReadonlyMap<string, unknown>
}

/** A state stored whole, as its root. */
export const noParts: ReadonlyMap<string, unknown> = new Map()

/** The state as a checkpoint keeps it (see `StateMachine.encodeStored`). */
export const encodeStoredState = <S, C, E, Err>(machine: StateMachine<S, C, E, Err>, state: S): StoredState =>
  machine.encodeStored?.(state) ?? { root: machine.encodeState(state), parts: noParts }

/** The state a checkpoint kept (see `StateMachine.decodeStored`). */
export const decodeStoredState = <S, C, E, Err>(
  machine: StateMachine<S, C, E, Err>,
  stored: StoredState
): Either.Either<S, unknown> => {
  if (machine.decodeStored !== undefined) return machine.decodeStored(stored)
  return stored.parts.size === 0
    ? machine.decodeState(stored.root)
    : Either.left(`${stored.parts.size} parts, and the machine has no decodeStored`)
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
