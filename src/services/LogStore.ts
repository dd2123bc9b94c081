/**
 * LogStore: where a server keeps what must survive a crash (DESIGN §5,
 * Checkpoints): its log, its hard state (group, incarnation, epoch, vote,
 * commit seq) and its boot counter. Two layers: `layerMemory` (tests and the
 * simulator, which can keep a store across a crash or lose it) and
 * `layerSqlite` (the default for `agora server`).
 *
 * Every write of one replication batch is one `write` call: one transaction
 * (group commit). The service around the replica writes before it sends.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type { LogEntry } from "../domain/cluster/Entry.js"
import type { Checkpoint, HardState } from "../domain/cluster/Replica.js"
import type { Epoch, Incarnation, Seq, ServerId } from "../domain/Ids.js"
import { randomHex } from "./RandomHex.js"

export type { Checkpoint }

/** One change to the store, applied in order within a batch. */
export type StoreOp =
  /** Keep this checkpoint and drop the log up to its seq. */
  | { readonly _tag: "Checkpoint"; readonly checkpoint: Checkpoint }
  | { readonly _tag: "Append"; readonly entries: ReadonlyArray<LogEntry> }
  | { readonly _tag: "Truncate"; readonly fromSeq: Seq }
  | { readonly _tag: "PersistHardState"; readonly hard: HardState }
  /** Everything goes: the store belonged to a group that no longer exists. */
  | { readonly _tag: "ResetStore"; readonly hard: HardState }

/** What a store held when it was opened. */
export interface Stored {
  /** null: a new store (no hard state was ever written). */
  readonly hard: HardState | null
  /** The snapshot point the log continues from (0, 0: none). */
  readonly startSeq: Seq
  readonly startEpoch: Epoch
  /** The checkpoint at startSeq, if any. */
  readonly checkpoint: Checkpoint | null
  readonly entries: ReadonlyArray<LogEntry>
  /** Raised at every open, before the server's first send (anti-replay, DESIGN §4). */
  readonly boot: number
}

/** The store cannot be used: corrupt, unreadable, or full. Fatal for the server. */
export class StoreError extends Schema.TaggedError<StoreError>()("StoreError", {
  message: Schema.String
}) {}

/** A finished auction as the store keeps it for good (queryable with `sqlite3`), after the replicated state purged it. */
export interface EndedAuctionRecord {
  readonly auction: number
  readonly item: string
  readonly auctioneer: number
  readonly status: "closed" | "cancelled"
  readonly winner: number | null
  readonly amount: number | null
  /** Every bidder's total (closed), or the bidders at cancellation with 0. */
  readonly totals: ReadonlyArray<{ readonly bidder: number; readonly amount: number }>
  readonly reason: string | null
  readonly rounds: number
  readonly minBid: number
  readonly createdAtMs: number
}

export interface LogStoreShape {
  /** Reads the store (and raises its boot counter). */
  readonly open: Effect.Effect<Stored, StoreError>
  /** Applies one batch of changes atomically and durably (per the sync setting). */
  readonly write: (ops: ReadonlyArray<StoreOp>) => Effect.Effect<void, StoreError>
  /**
   * Keeps finished auctions for good, outside the replicated state (which purges them after a
   * retention period). Idempotent: replaying the log after a restart records them again.
   */
  readonly recordEnded: (records: ReadonlyArray<EndedAuctionRecord>) => Effect.Effect<void, StoreError>
}

export class LogStore extends Context.Tag("agora/LogStore")<LogStore, LogStoreShape>() {}

/** A server's store as it was opened at start: who the server is, and what the store held. */
export interface OpenedShape {
  readonly id: ServerId
  /** The stored incarnation, or a fresh one for a new store (DESIGN §5, Identity). */
  readonly incarnation: Incarnation
  readonly stored: Stored
}

/**
 * The store, opened once: the transport needs its boot counter and incarnation before the
 * cluster starts, so opening is a service of its own that both are built from.
 */
export class Opened extends Context.Tag("agora/Opened")<Opened, OpenedShape>() {}

/** Opens the `LogStore` in context (raising its boot counter) for the server `id`. */
export const layerOpened = (id: ServerId): Layer.Layer<Opened, StoreError, LogStore> =>
  Layer.effect(
    Opened,
    Effect.gen(function* () {
      const stored = yield* Effect.flatMap(LogStore, (store) => store.open)
      const incarnation = stored.hard?.incarnation ?? ((yield* randomHex(16)) as Incarnation)
      return { id, incarnation, stored }
    })
  )

/**
 * The memory of one in-memory store, kept outside any server's scope so the
 * simulator can crash a server and start it again on the same store, or on a
 * fresh one (a lost disk).
 */
export interface MemoryStoreData {
  hard: HardState | null
  startSeq: Seq
  startEpoch: Epoch
  checkpoint: Checkpoint | null
  entries: Array<LogEntry>
  boot: number
  /** Batches written, for tests. */
  writes: number
  /** Finished auctions recorded, by id. */
  ended: Map<number, EndedAuctionRecord>
}

export const makeMemoryStoreData = (): MemoryStoreData => ({
  hard: null,
  startSeq: 0,
  startEpoch: 0,
  checkpoint: null,
  entries: [],
  boot: 0,
  writes: 0,
  ended: new Map()
})

/** Applies a batch to in-memory store data (also used by tests that inspect a store). */
export const applyStoreOps = (data: MemoryStoreData, ops: ReadonlyArray<StoreOp>): void => {
  for (const op of ops) {
    switch (op._tag) {
      case "Append":
        for (const entry of op.entries) {
          const expected = data.startSeq + data.entries.length + 1
          if (entry.seq !== expected)
            throw new Error(`store append out of order: ${entry.seq}, expected ${expected}`)
          data.entries.push(entry)
        }
        break
      case "Truncate":
        data.entries.length = Math.max(0, Math.min(data.entries.length, op.fromSeq - data.startSeq - 1))
        break
      case "PersistHardState":
        data.hard = op.hard
        break
      case "Checkpoint": {
        const { seq, epoch } = op.checkpoint
        if (seq < data.startSeq) break
        data.entries = data.entries.slice(Math.min(data.entries.length, seq - data.startSeq))
        data.startSeq = seq
        data.startEpoch = epoch
        data.checkpoint = op.checkpoint
        break
      }
      case "ResetStore":
        data.hard = op.hard
        data.entries = []
        data.startSeq = 0
        data.startEpoch = 0
        data.checkpoint = null
        break
    }
  }
  data.writes += 1
}

export const makeMemory = (data: MemoryStoreData): LogStoreShape => ({
  open: Effect.sync(() => {
    data.boot += 1
    return {
      hard: data.hard,
      startSeq: data.startSeq,
      startEpoch: data.startEpoch,
      checkpoint: data.checkpoint,
      entries: [...data.entries],
      boot: data.boot
    }
  }),
  write: (ops) => Effect.sync(() => applyStoreOps(data, ops)),
  recordEnded: (records) =>
    Effect.sync(() => {
      for (const record of records) data.ended.set(record.auction, record)
    })
})

/** An in-memory store over `data` (a fresh one when omitted). */
export const layerMemory = (data: MemoryStoreData = makeMemoryStoreData()): Layer.Layer<LogStore> =>
  Layer.succeed(LogStore, makeMemory(data))
