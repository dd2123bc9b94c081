/**
 * `LogStore` on SQLite (DESIGN §5, Checkpoints and recovery): the default store
 * of `agora server`. One file per server, `<data dir>/agora.db`, created with
 * its directory on first start, opened through `@effect/sql-sqlite-node` in WAL
 * mode (the client's default).
 *
 * Durability (`--sync`):
 * - `normal` (default): `PRAGMA synchronous=NORMAL`. A committed write is in
 *   the WAL file before `write` returns, so it survives kill -9 of the process;
 *   a power loss may lose the last transactions.
 * - `full`: `PRAGMA synchronous=FULL`, an fsync per transaction: it also
 *   survives power loss.
 *
 * Group commit: one `write` call (one replication batch: entries, hard state,
 * maybe a checkpoint) is one transaction. Statements go straight to the
 * client's reserved connection, prepared once and cached, and appends are
 * multi-row INSERTs; the client's tagged-template API costs ~30 µs a statement
 * (spans, compilation), five times the work SQLite does for a row.
 *
 * Tables (schema version 2). Read them with `sqlite3 DIR/agora.db`, e.g.
 * `SELECT * FROM meta; SELECT * FROM hard_state;`
 * `SELECT seq, epoch, json_extract(body, '$._tag') FROM log ORDER BY seq DESC LIMIT 20;`
 * `SELECT seq, epoch, membership_seq, members, length(state) FROM checkpoint;`
 *
 *   meta        one row: the data dir's identity
 *     singleton       INTEGER PRIMARY KEY CHECK (singleton = 1)
 *     schema_version  INTEGER NOT NULL    2; a version 1 store is migrated (it gains
 *                                         checkpoint_part), any other version is refused
 *     server_id       TEXT                the server this data dir belongs to (NULL until claimed)
 *     boot            INTEGER NOT NULL    raised at every open, before the server's first send
 *   hard_state  at most one row (none: a new store)
 *     singleton       INTEGER PRIMARY KEY CHECK (singleton = 1)
 *     group_id        TEXT                NULL: not in a group
 *     incarnation     TEXT NOT NULL
 *     epoch           INTEGER NOT NULL
 *     vote            TEXT                the coordinator accepted in `epoch`, or NULL
 *     commit_seq      INTEGER NOT NULL
 *   log         the entries after the checkpoint, contiguous; the rows a checkpoint covers stay
 *               until the writes after it delete them, 500 each (not all in the checkpoint's stall)
 *     seq             INTEGER PRIMARY KEY
 *     epoch           INTEGER NOT NULL
 *     body            TEXT NOT NULL       the entry body as JSON ({"_tag":"App","data":...}, ...)
 *   checkpoint  at most one row: the committed state at `seq`; the log continues after it
 *     singleton       INTEGER PRIMARY KEY CHECK (singleton = 1)
 *     seq             INTEGER NOT NULL
 *     epoch           INTEGER NOT NULL    the epoch of entry `seq`
 *     members         TEXT NOT NULL       JSON array of members as of `seq`
 *     membership_seq  INTEGER NOT NULL    the seq of the membership entry in force at `seq`
 *     state           TEXT NOT NULL       the root of the state machine's state, JSON
 *   checkpoint_part  the rest of the checkpoint's state, by key (for Agora: one row per ended
 *               auction, written once when a checkpoint first holds it, deleted with the first
 *               checkpoint after its purge), so a checkpoint writes only what changed
 *     key             TEXT PRIMARY KEY
 *     value           TEXT NOT NULL       JSON
 *   auctions    every finished auction, kept for good (the replicated state purges them
 *               after a retention period); written as each server applies the close
 *     auction         INTEGER PRIMARY KEY
 *     item            TEXT NOT NULL
 *     auctioneer      INTEGER NOT NULL    the auctioneer's session
 *     status          TEXT NOT NULL       closed | cancelled
 *     winner          INTEGER             the winner's session (closed)
 *     amount          INTEGER             the winner's total (closed)
 *     totals          TEXT NOT NULL       JSON [{bidder, amount}] in join order
 *     reason          TEXT                why it was cancelled
 *     rounds          INTEGER NOT NULL
 *     min_bid         INTEGER NOT NULL
 *     created_at_ms   INTEGER NOT NULL
 *
 * Corruption is never repaired silently: a file that is not SQLite, a foreign
 * SQLite database, an unknown schema version or a row that does not decode
 * makes `open` (and `serverIdentity`) fail with a `StoreError` naming the file
 * and what is wrong. A store that is refused is not modified.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Path from "node:path"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as ExecutionStrategy from "effect/ExecutionStrategy"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { EntryBody, type LogEntry, Members } from "../domain/cluster/Entry.js"
import type { HardState } from "../domain/cluster/Replica.js"
import { noParts } from "../domain/cluster/StateMachine.js"
import { Epoch, GroupId, Incarnation, Seq, ServerId } from "../domain/Ids.js"
import { Count } from "../domain/Schemas.js"
import {
  type Checkpoint,
  type EndedAuctionRecord,
  LogStore,
  type LogStoreShape,
  type Stored,
  StoreError,
  type StoreOp
} from "../services/LogStore.js"

/** The layout described above. Bump it (and migrate, or refuse) on any change. */
export const SchemaVersion = 2

/** The store's file name inside the data dir. */
export const StoreFileName = "agora.db"

export type SyncMode = "normal" | "full"

export interface SqliteStoreOptions {
  /** The server's data dir (`--data-dir`); created on first start. */
  readonly dataDir: string
  /** `--sync`: normal (survives kill -9, the default) or full (an fsync per batch: survives power loss). */
  readonly sync?: SyncMode | undefined
}

/** The data dir of a server on SQLite: which file, whose server, how durable. */
export interface DataDirShape {
  readonly dataDir: string
  /** `<dataDir>/agora.db` */
  readonly file: string
  /**
   * The server id this data dir belongs to (DESIGN §5, Identity). On first
   * start it stores `requestedId` (`--id`), or a random id when none is given;
   * later it returns the stored id, and fails if `requestedId` differs from it.
   */
  readonly serverIdentity: (requestedId?: ServerId) => Effect.Effect<ServerId, StoreError>
  /** `PRAGMA synchronous` of the store's connection: 1 = NORMAL, 2 = FULL. */
  readonly synchronous: Effect.Effect<number, StoreError>
}

export class DataDir extends Context.Tag("agora/DataDir")<DataDir, DataDirShape>() {}

/** The server id of the data dir in use (see `DataDirShape.serverIdentity`). */
export const serverIdentity = (requestedId?: ServerId): Effect.Effect<ServerId, StoreError, DataDir> =>
  Effect.flatMap(DataDir, (dataDir) => dataDir.serverIdentity(requestedId))

// ---------------------------------------------------------------------------
// SQL

const createCheckpointPart = `CREATE TABLE checkpoint_part (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  )`
const createTables = [
  `CREATE TABLE meta (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    schema_version INTEGER NOT NULL,
    server_id TEXT,
    boot INTEGER NOT NULL
  )`,
  `CREATE TABLE hard_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    group_id TEXT,
    incarnation TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    vote TEXT,
    commit_seq INTEGER NOT NULL
  )`,
  `CREATE TABLE log (
    seq INTEGER PRIMARY KEY,
    epoch INTEGER NOT NULL,
    body TEXT NOT NULL
  )`,
  `CREATE TABLE checkpoint (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    seq INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    members TEXT NOT NULL,
    membership_seq INTEGER NOT NULL,
    state TEXT NOT NULL
  )`,
  createCheckpointPart,
  `CREATE TABLE auctions (
    auction INTEGER PRIMARY KEY,
    item TEXT NOT NULL,
    auctioneer INTEGER NOT NULL,
    status TEXT NOT NULL,
    winner INTEGER,
    amount INTEGER,
    totals TEXT NOT NULL,
    reason TEXT,
    rounds INTEGER NOT NULL,
    min_bid INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL
  )`
]
const tableNames = ["auctions", "checkpoint", "checkpoint_part", "hard_state", "log", "meta"]

const upsertHardState = `INSERT INTO hard_state (singleton, group_id, incarnation, epoch, vote, commit_seq)
  VALUES (1, ?, ?, ?, ?, ?)
  ON CONFLICT (singleton) DO UPDATE SET group_id = excluded.group_id, incarnation = excluded.incarnation,
    epoch = excluded.epoch, vote = excluded.vote, commit_seq = excluded.commit_seq`
const upsertPart = "INSERT OR REPLACE INTO checkpoint_part (key, value) VALUES (?, ?)"
const upsertCheckpoint = `INSERT INTO checkpoint (singleton, seq, epoch, members, membership_seq, state)
  VALUES (1, ?, ?, ?, ?, ?)
  ON CONFLICT (singleton) DO UPDATE SET seq = excluded.seq, epoch = excluded.epoch,
    members = excluded.members, membership_seq = excluded.membership_seq, state = excluded.state`

/**
 * Entries per INSERT statement: an append of n entries is cut into chunks of
 * 128, 64, ..., 1 rows, so at most 8 statement texts are ever prepared (the
 * client caches 200) and 100 entries take 3 statements. 128 rows are 384
 * parameters, far below SQLite's limit of 32766.
 */
const InsertRowsMax = 128
const insertTexts = new Map<number, string>()
const insertText = (rows: number): string => {
  let text = insertTexts.get(rows)
  if (text === undefined) {
    text = `INSERT INTO log (seq, epoch, body) VALUES ${Array.from({ length: rows }, () => "(?, ?, ?)").join(", ")}`
    insertTexts.set(rows, text)
  }
  return text
}

// ---------------------------------------------------------------------------
// Rows, validated when read

const MetaRow = Schema.Struct({
  schema_version: Schema.Literal(SchemaVersion),
  server_id: Schema.NullOr(ServerId),
  boot: Count
})
const HardStateRow = Schema.Struct({
  group_id: Schema.NullOr(GroupId),
  incarnation: Incarnation,
  epoch: Epoch,
  vote: Schema.NullOr(ServerId),
  commit_seq: Seq
})
const LogRow = Schema.Struct({ seq: Seq, epoch: Epoch, body: Schema.parseJson(EntryBody) })
const CheckpointRow = Schema.Struct({
  seq: Seq,
  epoch: Epoch,
  members: Schema.parseJson(Members),
  membership_seq: Seq,
  state: Schema.parseJson(Schema.Unknown)
})

const decodeMeta = Schema.decodeUnknownEither(MetaRow)
const decodeHardState = Schema.decodeUnknownEither(HardStateRow)
const decodeLogRow = Schema.decodeUnknownEither(LogRow)
const decodeCheckpoint = Schema.decodeUnknownEither(CheckpointRow)
const decodePart = Schema.decodeUnknownEither(
  Schema.Struct({ key: Schema.String, value: Schema.parseJson(Schema.Unknown) })
)

// ---------------------------------------------------------------------------
// Errors

/** better-sqlite3's error code (SQLITE_NOTADB, SQLITE_CORRUPT, SQLITE_BUSY, ...), if any. */
const sqliteCode = (cause: unknown): string | undefined =>
  typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string"
    ? cause.code
    : undefined

const describe = (cause: unknown): string => {
  const inner = cause instanceof SqlError ? cause.cause : cause
  const message = inner instanceof Error ? inner.message : String(inner)
  const code = sqliteCode(inner)
  return code === undefined || message.includes(code) ? message : `${message} (${code})`
}

const isCorruption = (cause: unknown): boolean => {
  const code = sqliteCode(cause instanceof SqlError ? cause.cause : cause)
  return code === "SQLITE_NOTADB" || code?.startsWith("SQLITE_CORRUPT") === true
}

const notAgoraStore = (file: string, what: string): StoreError =>
  new StoreError({
    message: `${file} is not an Agora store: ${what}; move it away to start afresh`
  })

/** A failure to open or read: corruption says so; anything else (permissions, a lock) says what it was. */
const openFailure =
  (file: string) =>
  (cause: unknown): StoreError =>
    isCorruption(cause)
      ? notAgoraStore(file, describe(cause))
      : new StoreError({ message: `cannot open store ${file}: ${describe(cause)}` })

/** What is wrong with a row, in a line: the first issues, each with its path and cut to a readable length. */
const badRow = (file: string, what: string, error: ParseResult.ParseError): StoreError => {
  const issues = ParseResult.ArrayFormatter.formatErrorSync(error)
  const described = issues.slice(0, 3).map((issue) => {
    const message = issue.message.length > 200 ? `${issue.message.slice(0, 200)}…` : issue.message
    return issue.path.length === 0 ? message : `${issue.path.join(".")}: ${message}`
  })
  return notAgoraStore(file, `${what} does not decode (${described.join("; ")})`)
}

// ---------------------------------------------------------------------------
// The store

/** Where the log is, as far as `write` must know: kept in memory, changed only by committed writes. */
interface Cursor {
  readonly startSeq: Seq
  readonly lastSeq: Seq
  /** The checkpoint's parts as last written (or read), by key; null: not read, so rewrite them all. */
  readonly parts: ReadonlyMap<string, unknown> | null
  /** Log rows up to here are deleted; those after it up to `startSeq` go a slice per write. */
  readonly trimmedSeq: Seq
}

/**
 * Log rows a write deletes of those a checkpoint covers: deleting all 5,000 at once made the
 * checkpoint's transaction two thirds of its stall.
 */
const TrimRowsMax = 500

interface Db {
  readonly conn: Connection
  cursor: Cursor
}

/** One statement on the store's connection; the client prepares it once and caches it. */
const exec = (db: Db, sql: string, params: ReadonlyArray<unknown> = []) =>
  db.conn.execute(sql, params, undefined)

/**
 * Runs `body` in one transaction: COMMIT if it succeeds, ROLLBACK if it fails,
 * dies or is interrupted. Uninterruptible: once started, a batch is either
 * committed or rolled back before anyone else touches the connection.
 */
const transaction = <A, E>(db: Db, body: Effect.Effect<A, E>): Effect.Effect<A, E | SqlError> =>
  Effect.uninterruptible(
    Effect.gen(function* () {
      // IMMEDIATE takes the write lock up front (a `sqlite3` reader never blocks it in WAL mode).
      yield* exec(db, "BEGIN IMMEDIATE")
      const exit = yield* Effect.exit(body)
      if (Exit.isSuccess(exit)) {
        const committed = yield* Effect.either(exec(db, "COMMIT"))
        if (Either.isRight(committed)) return exit.value
        yield* rollback(db)
        return yield* committed.left
      }
      yield* rollback(db)
      return yield* exit
    })
  )

/** SQLite may already have rolled back (after an I/O error, say): then ROLLBACK fails, harmlessly. */
const rollback = (db: Db) => Effect.ignore(exec(db, "ROLLBACK"))

/** Creates the tables in a new file, or checks that an existing one is an Agora store of this version. */
const ensureSchema = (db: Db, file: string): Effect.Effect<void, StoreError | SqlError> =>
  transaction(
    db,
    Effect.gen(function* () {
      const rows = yield* exec(db, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
      const tables = rows.map((row: { readonly name: unknown }) => String(row.name))
      if (tables.length === 0) {
        for (const statement of createTables) yield* exec(db, statement)
        yield* exec(
          db,
          "INSERT INTO meta (singleton, schema_version, server_id, boot) VALUES (1, ?, NULL, 0)",
          [SchemaVersion]
        )
        return
      }
      if (!tables.includes("meta"))
        return yield* notAgoraStore(file, `it holds tables (${tables.join(", ")}) but no meta table`)
      const meta = yield* exec(db, "SELECT * FROM meta")
      const row: { readonly schema_version?: unknown } | undefined = meta[0]
      if (meta.length !== 1 || row === undefined)
        return yield* notAgoraStore(file, `its meta table holds ${meta.length} rows, not 1`)
      if (row.schema_version === 1 && !tables.includes("checkpoint_part")) {
        // Version 1 kept the whole state in the checkpoint row; that row still reads as a root.
        yield* exec(db, createCheckpointPart)
        yield* exec(db, "UPDATE meta SET schema_version = ?", [SchemaVersion])
        tables.push("checkpoint_part")
      } else if (row.schema_version !== SchemaVersion)
        return yield* notAgoraStore(
          file,
          `schema version ${String(row.schema_version)} is unknown to this build, which reads version ${SchemaVersion}`
        )
      const missing = tableNames.filter((name) => !tables.includes(name))
      if (missing.length > 0) return yield* notAgoraStore(file, `tables missing: ${missing.join(", ")}`)
    })
  )

/** Reads the log's position for `write`: (start, last, trimmed). */
const readCursor = (db: Db): Effect.Effect<Cursor, SqlError> =>
  Effect.gen(function* () {
    const start = yield* exec(db, "SELECT seq FROM checkpoint")
    const startSeq = Number((start[0] as { readonly seq?: unknown } | undefined)?.seq ?? 0)
    const rows = yield* exec(db, "SELECT MIN(seq) AS first, MAX(seq) AS last FROM log")
    const { first, last } = (rows[0] ?? {}) as { readonly first?: unknown; readonly last?: unknown }
    const lastSeq = Math.max(startSeq, Number(last ?? startSeq))
    const trimmedSeq = Math.min(startSeq, Number(first ?? startSeq + 1) - 1)
    return { startSeq, lastSeq, parts: null, trimmedSeq }
  })

/**
 * Opens `<dataDir>/agora.db` in `scope` (its own child scope, closed at once
 * if the file is refused, so a refused file is not held open).
 */
const connect = (options: SqliteStoreOptions, file: string, scope: Scope.Scope) =>
  Effect.gen(function* () {
    yield* Effect.try({
      try: () => Fs.mkdirSync(options.dataDir, { recursive: true }),
      catch: (cause) =>
        new StoreError({ message: `cannot create data dir ${options.dataDir}: ${describe(cause)}` })
    })
    const child = yield* Scope.fork(scope, ExecutionStrategy.sequential)
    const opened = yield* Effect.exit(
      Effect.gen(function* () {
        // better-sqlite3 throws from the client's constructor (a defect there) when the file is not a
        // database: SqliteClient.make runs `PRAGMA journal_mode = WAL` on it at once.
        const context = yield* Layer.buildWithScope(SqliteClient.layer({ filename: file }), child).pipe(
          Effect.mapError(openFailure(file)),
          Effect.catchAllDefect((defect) => Effect.fail(openFailure(file)(defect)))
        )
        const sql = Context.get(context, SqliteClient.SqliteClient)
        // The store is the client's only user: it keeps the one connection for its whole life.
        const conn = yield* Scope.extend(sql.reserve, child)
        const db: Db = { conn, cursor: { startSeq: 0, lastSeq: 0, parts: null, trimmedSeq: 0 } }
        // Per connection, so set at every open, explicitly (better-sqlite3 is built with NORMAL for WAL).
        yield* exec(db, `PRAGMA synchronous = ${options.sync === "full" ? "FULL" : "NORMAL"}`)
        yield* ensureSchema(db, file)
        db.cursor = yield* readCursor(db)
        return db
      }).pipe(Effect.mapError((error) => (error instanceof StoreError ? error : openFailure(file)(error))))
    )
    if (Exit.isFailure(opened)) yield* Scope.close(child, opened)
    return yield* opened
  })

/** A random server id for a data dir started without `--id`: `server-` and 48 random bits in hex. */
const randomServerId = (): ServerId => ServerId.make(`server-${Crypto.randomBytes(6).toString("hex")}`)

const readMeta = (db: Db, file: string) =>
  Effect.gen(function* () {
    const rows = yield* exec(db, "SELECT schema_version, server_id, boot FROM meta")
    const meta = decodeMeta(rows[0])
    if (Either.isLeft(meta)) return yield* badRow(file, "the meta row", meta.left)
    return meta.right
  })

/** Reads everything `open` returns but the boot counter, validating every row. */
const readStored = (db: Db, file: string) =>
  Effect.gen(function* () {
    const hardRows = yield* exec(db, "SELECT group_id, incarnation, epoch, vote, commit_seq FROM hard_state")
    let hard: HardState | null = null
    if (hardRows.length > 0) {
      const row = decodeHardState(hardRows[0])
      if (Either.isLeft(row)) return yield* badRow(file, "the hard_state row", row.left)
      hard = {
        group: row.right.group_id,
        incarnation: row.right.incarnation,
        epoch: row.right.epoch,
        vote: row.right.vote,
        commitSeq: row.right.commit_seq
      }
    }

    const checkpointRows = yield* exec(
      db,
      "SELECT seq, epoch, members, membership_seq, state FROM checkpoint"
    )
    const parts = new Map<string, unknown>()
    for (const raw of yield* exec(db, "SELECT key, value FROM checkpoint_part")) {
      const row = decodePart(raw)
      if (Either.isLeft(row))
        return yield* badRow(
          file,
          `checkpoint_part row ${String((raw as { readonly key?: unknown }).key)}`,
          row.left
        )
      parts.set(row.right.key, row.right.value)
    }
    let checkpoint: Checkpoint | null = null
    if (checkpointRows.length > 0) {
      const row = decodeCheckpoint(checkpointRows[0])
      if (Either.isLeft(row)) return yield* badRow(file, "the checkpoint row", row.left)
      checkpoint = {
        seq: row.right.seq,
        epoch: row.right.epoch,
        members: row.right.members,
        membershipSeq: row.right.membership_seq,
        state: { root: row.right.state, parts }
      }
    } else if (parts.size > 0) {
      return yield* notAgoraStore(file, `checkpoint_part holds ${parts.size} rows but there is no checkpoint`)
    }
    const startSeq = checkpoint?.seq ?? 0

    // Rows up to the checkpoint are covered by it, waiting to be trimmed.
    const logRows = yield* exec(db, "SELECT seq, epoch, body FROM log WHERE seq > ? ORDER BY seq", [startSeq])
    const entries: Array<LogEntry> = []
    for (const raw of logRows) {
      const row = decodeLogRow(raw)
      if (Either.isLeft(row))
        return yield* badRow(file, `log row ${String((raw as { readonly seq?: unknown }).seq)}`, row.left)
      const expected = startSeq + entries.length + 1
      if (row.right.seq !== expected)
        return yield* notAgoraStore(
          file,
          `the log is not contiguous: seq ${row.right.seq} where ${expected} was expected (checkpoint at ${startSeq})`
        )
      entries.push(row.right)
    }
    return {
      hard,
      startSeq,
      startEpoch: checkpoint?.epoch ?? 0,
      checkpoint,
      entries,
      cursor: { ...(yield* readCursor(db)), parts }
    }
  })

/** The statements of one batch, on a copy of the cursor that becomes the store's only if it commits. */
const applyOps = (db: Db, ops: ReadonlyArray<StoreOp>): Effect.Effect<Cursor, SqlError> =>
  Effect.gen(function* () {
    let { startSeq, lastSeq, parts, trimmedSeq } = db.cursor
    for (const op of ops) {
      switch (op._tag) {
        case "Append": {
          const { entries } = op
          for (let i = 0; i < entries.length; ) {
            const remaining = entries.length - i
            let rows = InsertRowsMax
            while (rows > remaining) rows >>= 1
            const params: Array<unknown> = []
            for (let j = i; j < i + rows; j++) {
              const entry = entries[j] as LogEntry
              if (entry.seq !== lastSeq + 1)
                return yield* Effect.dieMessage(
                  `store append out of order: ${entry.seq}, expected ${lastSeq + 1}`
                )
              lastSeq = entry.seq
              // An entry body encodes to itself (plain structs, an App's data already JSON): the
              // envelope tests check JSON.stringify against the schema's encoding for every kind.
              // The schema's encode re-checked it at a third of a write's CPU (343 → 227 µs).
              params.push(entry.seq, entry.epoch, JSON.stringify(entry.body))
            }
            yield* exec(db, insertText(rows), params)
            i += rows
          }
          break
        }
        case "Truncate":
          yield* exec(db, "DELETE FROM log WHERE seq >= ?", [op.fromSeq])
          lastSeq = Math.max(startSeq, Math.min(lastSeq, op.fromSeq - 1))
          break
        case "PersistHardState":
          yield* exec(db, upsertHardState, hardStateParams(op.hard))
          break
        case "Checkpoint": {
          const { checkpoint } = op
          // As applyStoreOps: an older checkpoint than the one held changes nothing.
          if (checkpoint.seq < startSeq) break
          const state = JSON.stringify(checkpoint.state.root)
          if (state === undefined) return yield* Effect.dieMessage("checkpoint state is not a JSON value")
          yield* writeParts(db, parts, checkpoint.state.parts)
          parts = checkpoint.state.parts
          yield* exec(db, upsertCheckpoint, [
            checkpoint.seq,
            checkpoint.epoch,
            JSON.stringify(checkpoint.members),
            checkpoint.membershipSeq,
            state
          ])
          startSeq = checkpoint.seq
          lastSeq = Math.max(lastSeq, checkpoint.seq)
          break
        }
        case "ResetStore":
          yield* exec(db, "DELETE FROM log")
          yield* exec(db, "DELETE FROM checkpoint")
          yield* exec(db, "DELETE FROM checkpoint_part")
          yield* exec(db, upsertHardState, hardStateParams(op.hard))
          startSeq = 0
          lastSeq = 0
          parts = noParts
          trimmedSeq = 0
          break
      }
    }
    if (trimmedSeq < startSeq) {
      trimmedSeq = Math.min(startSeq, trimmedSeq + TrimRowsMax)
      yield* exec(db, "DELETE FROM log WHERE seq <= ?", [trimmedSeq])
    }
    return { startSeq, lastSeq, parts, trimmedSeq }
  })

/**
 * Brings checkpoint_part from `written` to `next`: a part is written only when it is not the
 * very object written (or read) for its key last time, so an unchanged part costs a lookup.
 */
const writeParts = (
  db: Db,
  written: ReadonlyMap<string, unknown> | null,
  next: ReadonlyMap<string, unknown>
): Effect.Effect<void, SqlError> =>
  Effect.gen(function* () {
    if (written === null) yield* exec(db, "DELETE FROM checkpoint_part")
    const before = written ?? noParts
    for (const [key, value] of next) {
      if (before.get(key) === value) continue
      const text = JSON.stringify(value)
      if (text === undefined) return yield* Effect.dieMessage(`checkpoint part ${key} is not a JSON value`)
      yield* exec(db, upsertPart, [key, text])
    }
    for (const key of before.keys()) {
      if (!next.has(key)) yield* exec(db, "DELETE FROM checkpoint_part WHERE key = ?", [key])
    }
  })

const hardStateParams = (hard: HardState): ReadonlyArray<unknown> => [
  hard.group,
  hard.incarnation,
  hard.epoch,
  hard.vote,
  hard.commitSeq
]

/**
 * Builds the store in the current scope. Nothing touches the disk until the
 * first `open`, `write` or `serverIdentity`, so a refused file is reported by
 * them as a `StoreError`; the connection then lives until the scope closes
 * (which closes the database and checkpoints its WAL).
 */
export const makeSqlite = (
  options: SqliteStoreOptions
): Effect.Effect<{ readonly store: LogStoreShape; readonly dataDir: DataDirShape }, never, Scope.Scope> =>
  Effect.gen(function* () {
    const file = Path.join(options.dataDir, StoreFileName)
    const scope = yield* Effect.scope
    // One open per layer; a refused file stays refused (the failure is memoized too).
    const database = yield* Effect.cached(connect(options, file, scope))
    // Every use of the connection in turn: a transaction must not interleave with another.
    const lock = yield* Effect.makeSemaphore(1)
    const withDb = <A>(f: (db: Db) => Effect.Effect<A, StoreError | SqlError>) =>
      lock.withPermits(1)(Effect.flatMap(database, f))

    const open: Effect.Effect<Stored, StoreError> = withDb((db) =>
      Effect.gen(function* () {
        const { cursor, ...stored } = yield* transaction(
          db,
          Effect.gen(function* () {
            const read = yield* readStored(db, file)
            // Raised and committed before open returns, i.e. before the server's first send (DESIGN §4).
            yield* exec(db, "UPDATE meta SET boot = boot + 1")
            const meta = yield* readMeta(db, file)
            return { ...read, boot: meta.boot }
          })
        )
        db.cursor = cursor
        yield* Effect.logDebug("store opened").pipe(
          Effect.annotateLogs({
            file,
            boot: stored.boot,
            startSeq: stored.startSeq,
            entries: stored.entries.length,
            sync: options.sync ?? "normal"
          })
        )
        return stored
      })
    ).pipe(Effect.mapError((error) => (error instanceof StoreError ? error : openFailure(file)(error))))

    const write = (ops: ReadonlyArray<StoreOp>): Effect.Effect<void, StoreError> =>
      withDb((db) =>
        Effect.map(transaction(db, applyOps(db, ops)), (cursor) => {
          db.cursor = cursor
        })
      ).pipe(
        Effect.mapError((error) =>
          error instanceof StoreError
            ? error
            : new StoreError({ message: `store ${file}: write failed: ${describe(error)}` })
        )
      )

    const claimIdentity = (requestedId?: ServerId): Effect.Effect<ServerId, StoreError> =>
      withDb((db) =>
        transaction(
          db,
          Effect.gen(function* () {
            const meta = yield* readMeta(db, file)
            if (meta.server_id !== null) {
              if (requestedId !== undefined && requestedId !== meta.server_id)
                return yield* new StoreError({
                  message: `data dir ${options.dataDir} belongs to server ${meta.server_id}, not ${requestedId}`
                })
              return meta.server_id
            }
            const id = requestedId ?? randomServerId()
            yield* exec(db, "UPDATE meta SET server_id = ?", [id])
            return id
          })
        )
      ).pipe(Effect.mapError((error) => (error instanceof StoreError ? error : openFailure(file)(error))))

    const synchronous = withDb((db) =>
      Effect.map(exec(db, "PRAGMA synchronous"), (rows) =>
        Number((rows[0] as { readonly synchronous?: unknown } | undefined)?.synchronous)
      )
    ).pipe(Effect.mapError((error) => (error instanceof StoreError ? error : openFailure(file)(error))))

    const recordEnded = (records: ReadonlyArray<EndedAuctionRecord>): Effect.Effect<void, StoreError> =>
      records.length === 0
        ? Effect.void
        : withDb((db) =>
            transaction(
              db,
              Effect.forEach(
                records,
                (r) =>
                  exec(
                    db,
                    `INSERT OR REPLACE INTO auctions
                      (auction, item, auctioneer, status, winner, amount, totals, reason, rounds, min_bid, created_at_ms)
                      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
                    [
                      r.auction,
                      r.item,
                      r.auctioneer,
                      r.status,
                      r.winner,
                      r.amount,
                      JSON.stringify(r.totals),
                      r.reason,
                      r.rounds,
                      r.minBid,
                      r.createdAtMs
                    ]
                  ),
                { discard: true }
              )
            )
          ).pipe(
            Effect.mapError((error) =>
              error instanceof StoreError
                ? error
                : new StoreError({
                    message: `store ${file}: recording finished auctions failed: ${describe(error)}`
                  })
            )
          )

    return {
      store: { open, write, recordEnded },
      dataDir: { dataDir: options.dataDir, file, serverIdentity: claimIdentity, synchronous }
    }
  })

/**
 * `LogStore` on `<dataDir>/agora.db`, and the `DataDir` it lives in (for the
 * server id). Closing the layer's scope closes the database.
 */
export const layerSqlite = (options: SqliteStoreOptions): Layer.Layer<LogStore | DataDir> =>
  Layer.scopedContext(
    Effect.map(makeSqlite(options), ({ store, dataDir }) =>
      Context.make(LogStore, store).pipe(Context.add(DataDir, dataDir))
    )
  )
