/**
 * The SQLite store (DESIGN §5, Checkpoints and recovery; §1 promises 1, 3, 8):
 * what a server wrote is what it reads after a restart, a batch is all or
 * nothing (also across kill -9), a damaged or foreign file is refused with a
 * clear error, and the data dir keeps the server's id.
 *
 * Every test works in its own temporary directory, removed afterwards. A
 * "server life" is one `layerSqlite` scope: provide the layer, use it, close.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { createRequire } from "node:module"
import * as Os from "node:os"
import * as Path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { describe, expect, it } from "@effect/vitest"
import { Cause, Data, Effect, Exit } from "effect"
import type { LogEntry, Member } from "../../src/domain/cluster/Entry.js"
import type { HardState } from "../../src/domain/cluster/Replica.js"
import { GroupId, Incarnation, ServerId } from "../../src/domain/Ids.js"
import {
  DataDir,
  layerSqlite,
  type SqliteStoreOptions,
  StoreFileName,
  serverIdentity
} from "../../src/layers/StoreSqlite.js"
import {
  applyStoreOps,
  type Checkpoint,
  LogStore,
  type MemoryStoreData,
  makeMemoryStoreData,
  type Stored,
  StoreError,
  type StoreOp
} from "../../src/services/LogStore.js"

// ---------------------------------------------------------------------------
// Helpers

/** A fresh temporary directory for the test, removed when its scope closes. */
const tempDir = Effect.acquireRelease(
  Effect.sync(() => Fs.mkdtempSync(Path.join(Os.tmpdir(), "agora-store-"))),
  (dir) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
)

/** One server life: the store is opened, `use`d, and closed with the layer's scope. */
const life = <A, E>(
  options: SqliteStoreOptions,
  use: Effect.Effect<A, E, LogStore | DataDir>
): Effect.Effect<A, E> => Effect.provide(use, layerSqlite(options))

const openStore = Effect.flatMap(LogStore, (store) => store.open)
const write = (...ops: ReadonlyArray<StoreOp>) => Effect.flatMap(LogStore, (store) => store.write(ops))

/** Opens the store in a life of its own (as a restarted server does) and returns what it read. */
const reopen = (options: SqliteStoreOptions): Effect.Effect<Stored, StoreError> => life(options, openStore)

/** Runs SQL on the file directly, as an operator with `sqlite3` would (the store must be closed). */
const rawSql = <A, E>(file: string, use: (sql: SqliteClient.SqliteClient) => Effect.Effect<A, E>) =>
  Effect.provide(Effect.flatMap(SqliteClient.SqliteClient, use), SqliteClient.layer({ filename: file }))

const app = (seq: number, epoch = 1): LogEntry => ({ epoch, seq, body: { _tag: "App", data: { n: seq } } })
const entries = (from: number, to: number, epoch = 1): Array<LogEntry> =>
  Array.from({ length: to - from + 1 }, (_, i) => app(from + i, epoch))
const append = (from: number, to: number, epoch = 1): StoreOp => ({
  _tag: "Append",
  entries: entries(from, to, epoch)
})

const hard = (commitSeq: number, epoch = 1): HardState => ({
  group: GroupId.make("g-1"),
  incarnation: Incarnation.make("inc-1"),
  epoch,
  vote: ServerId.make("s1"),
  commitSeq
})

const member = (id: string): Member => ({
  id: ServerId.make(id),
  incarnation: Incarnation.make(`${id}-inc`),
  voter: true,
  address: { host: "127.0.0.1", port: 4000 }
})

const checkpoint = (seq: number, epoch = 1): Checkpoint => ({
  seq,
  epoch,
  members: [member("s1"), member("s2"), member("s3")],
  membershipSeq: 1,
  state: { root: { auctions: [{ id: 1, bids: [["s1", "12.50"]] }], total: seq }, parts: new Map() }
})

const seqs = (stored: Stored) => stored.entries.map((entry) => entry.seq)
const withoutBoot = ({ boot: _boot, ...rest }: Stored) => rest

/** What failed, as a StoreError (the test fails if it was anything else). */
const storeError = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.flatMap(Effect.flip(effect), (error) =>
    error instanceof StoreError ? Effect.succeed(error) : Effect.dieMessage(`not a StoreError: ${error}`)
  )

// ---------------------------------------------------------------------------

describe("layerSqlite: open and restart (DESIGN §5, Checkpoints and recovery)", () => {
  it.scoped("a new data dir is created with its file; a new store holds nothing", () =>
    Effect.gen(function* () {
      const dir = Path.join(yield* tempDir, "not", "yet")
      const stored = yield* reopen({ dataDir: dir })
      expect(stored).toEqual({
        hard: null,
        startSeq: 0,
        startEpoch: 0,
        checkpoint: null,
        entries: [],
        boot: 1
      })
      expect(Fs.existsSync(Path.join(dir, StoreFileName))).toBe(true)
    })
  )

  it.scoped("a restart reads exactly what was written, and raises the boot counter by 1 each open", () =>
    Effect.gen(function* () {
      const options = { dataDir: yield* tempDir }
      const first = yield* life(
        options,
        Effect.gen(function* () {
          const stored = yield* openStore
          yield* write(append(1, 5), { _tag: "PersistHardState", hard: hard(3) })
          yield* write({ _tag: "Checkpoint", checkpoint: checkpoint(2) }, append(6, 7, 2))
          return stored
        })
      )
      expect(first.boot).toBe(1)
      const second = yield* reopen(options)
      const third = yield* reopen(options)
      expect(second.boot).toBe(2)
      expect(third.boot).toBe(3)
      expect(withoutBoot(second)).toEqual({
        hard: hard(3),
        startSeq: 2,
        startEpoch: 1,
        checkpoint: checkpoint(2),
        entries: [...entries(3, 5), ...entries(6, 7, 2)]
      })
      expect(withoutBoot(third)).toEqual(withoutBoot(second))
    })
  )

  it.scoped("the boot counter is raised durably by open itself, before any write", () =>
    Effect.gen(function* () {
      const options = { dataDir: yield* tempDir }
      for (let boot = 1; boot <= 4; boot++) expect((yield* reopen(options)).boot).toBe(boot)
      // Two opens in one life (the transport and the cluster may both open): still rising.
      const boots = yield* life(options, Effect.all([openStore, openStore]))
      expect(boots.map((stored) => stored.boot)).toEqual([5, 6])
    })
  )

  it.scoped("closing the layer's scope closes the database (its WAL is checkpointed and removed)", () =>
    Effect.gen(function* () {
      const options = { dataDir: yield* tempDir }
      const file = Path.join(options.dataDir, StoreFileName)
      yield* life(
        options,
        Effect.gen(function* () {
          yield* openStore
          yield* write(append(1, 3))
          expect(Fs.existsSync(`${file}-wal`)).toBe(true)
        })
      )
      expect(Fs.existsSync(`${file}-wal`)).toBe(false)
      const rows = yield* rawSql(file, (sql) => sql<{ readonly n: number }>`SELECT COUNT(*) AS n FROM log`)
      expect(rows[0]?.n).toBe(3)
    })
  )
})

describe("layerSqlite: writes (same semantics as applyStoreOps)", () => {
  it.scoped("truncation then append, over several batches, leaves exactly the expected log", () =>
    Effect.gen(function* () {
      const options = { dataDir: yield* tempDir }
      yield* life(
        options,
        Effect.gen(function* () {
          yield* openStore
          yield* write(append(1, 5))
          // A follower meets a new leader whose entries differ from seq 3 on.
          yield* write({ _tag: "Truncate", fromSeq: 3 }, append(3, 4, 2), {
            _tag: "PersistHardState",
            hard: hard(2, 2)
          })
          yield* write(append(5, 6, 2))
          // Truncating past the end changes nothing; truncating everything empties the log.
          yield* write({ _tag: "Truncate", fromSeq: 10 })
        })
      )
      const stored = yield* reopen(options)
      expect(stored.entries).toEqual([...entries(1, 2), ...entries(3, 6, 2)])
      expect(stored.hard).toEqual(hard(2, 2))

      yield* life(
        options,
        Effect.gen(function* () {
          yield* openStore
          yield* write({ _tag: "Truncate", fromSeq: 1 }, append(1, 1, 3))
        })
      )
      expect((yield* reopen(options)).entries).toEqual([app(1, 3)])
    })
  )

  it.scoped("a checkpoint drops the log up to its seq; the log continues after it", () =>
    Effect.gen(function* () {
      const options = { dataDir: yield* tempDir }
      yield* life(
        options,
        Effect.gen(function* () {
          yield* openStore
          yield* write(append(1, 10))
          yield* write({ _tag: "Checkpoint", checkpoint: checkpoint(6) })
          // An older checkpoint than the one held changes nothing.
          yield* write({ _tag: "Checkpoint", checkpoint: checkpoint(4) })
          yield* write(append(11, 11))
        })
      )
      const stored = yield* reopen(options)
      expect(stored.startSeq).toBe(6)
      expect(stored.startEpoch).toBe(1)
      expect(stored.checkpoint).toEqual(checkpoint(6))
      expect(seqs(stored)).toEqual([7, 8, 9, 10, 11])

      // A checkpoint past the end of the log (an installed snapshot) empties it; appends go on from it.
      yield* life(
        options,
        Effect.gen(function* () {
          yield* openStore
          yield* write({ _tag: "Checkpoint", checkpoint: checkpoint(20, 3) }, append(21, 22, 3))
        })
      )
      const after = yield* reopen(options)
      expect([after.startSeq, after.startEpoch]).toEqual([20, 3])
      expect(after.checkpoint).toEqual(checkpoint(20, 3))
      expect(after.entries).toEqual(entries(21, 22, 3))
    })
  )

  it.scoped("the rows a checkpoint covers are deleted 500 per write after it, and never read", () =>
    Effect.gen(function* () {
      const options = { dataDir: yield* tempDir }
      const file = Path.join(options.dataDir, StoreFileName)
      const rowCount = Effect.map(
        rawSql(file, (sql) => sql<{ readonly n: number }>`SELECT COUNT(*) AS n FROM log`),
        (rows) => rows[0]?.n
      )
      yield* life(
        options,
        Effect.zipRight(
          openStore,
          write(append(1, 1_200), { _tag: "Checkpoint", checkpoint: checkpoint(1_100) })
        )
      )
      expect(yield* rowCount).toBe(700)
      expect(seqs(yield* reopen(options))).toEqual(entries(1_101, 1_200).map((entry) => entry.seq))
      // The next writes, in a later life too, go on deleting them.
      yield* life(options, Effect.zipRight(openStore, write(append(1_201, 1_201))))
      expect(yield* rowCount).toBe(201)
      yield* life(options, Effect.zipRight(openStore, write(append(1_202, 1_202))))
      expect(yield* rowCount).toBe(102)
    })
  )

  it.scoped("ResetStore wipes the log and the checkpoint and writes the given hard state", () =>
    Effect.gen(function* () {
      const options = { dataDir: yield* tempDir }
      const fresh: HardState = {
        group: null,
        incarnation: Incarnation.make("inc-2"),
        epoch: 0,
        vote: null,
        commitSeq: 0
      }
      yield* life(
        options,
        Effect.gen(function* () {
          yield* openStore
          yield* write(append(1, 8), { _tag: "PersistHardState", hard: hard(8) })
          yield* write({ _tag: "Checkpoint", checkpoint: checkpoint(5) })
          yield* write({ _tag: "ResetStore", hard: fresh })
        })
      )
      const stored = yield* reopen(options)
      expect(withoutBoot(stored)).toEqual({
        hard: fresh,
        startSeq: 0,
        startEpoch: 0,
        checkpoint: null,
        entries: []
      })
      // A wiped store starts again at seq 1.
      yield* life(options, Effect.zipRight(openStore, write(append(1, 2, 4))))
      expect((yield* reopen(options)).entries).toEqual(entries(1, 2, 4))
    })
  )

  it.scoped("an append that does not continue the log is a defect, and the whole batch is rolled back", () =>
    Effect.gen(function* () {
      const options = { dataDir: yield* tempDir }
      yield* life(
        options,
        Effect.gen(function* () {
          yield* openStore
          yield* write(append(1, 3), { _tag: "PersistHardState", hard: hard(3) })
          // A batch that fails midway, after some of its rows are in: entries 4-6 and a hard state,
          // then a gap (seq 9).
          const exit = yield* Effect.exit(
            write(append(4, 6), { _tag: "PersistHardState", hard: hard(6, 2) }, append(9, 9))
          )
          expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
          if (Exit.isFailure(exit))
            expect(Cause.pretty(exit.cause)).toContain("store append out of order: 9, expected 7")
          // The store goes on from the committed prefix: the next append is 4 again.
          const gap = yield* Effect.exit(write(append(5, 5)))
          expect(Exit.isFailure(gap) && Cause.isDie(gap.cause)).toBe(true)
          yield* write(append(4, 4, 3))
        })
      )
      const stored = yield* reopen(options)
      expect(stored.entries).toEqual([...entries(1, 3), app(4, 3)])
      expect(stored.hard).toEqual(hard(3))
    })
  )

  it.scoped("random batches: the SQLite store reads back exactly what applyStoreOps keeps in memory", () =>
    Effect.gen(function* () {
      const options = { dataDir: yield* tempDir }
      const memory = makeMemoryStoreData()
      let seed = 20240611
      /** Deterministic: mulberry32. */
      const random = (): number => {
        seed = (seed + 0x6d2b79f5) | 0
        let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
        t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296
      }
      const int = (min: number, max: number) => min + Math.floor(random() * (max - min + 1))
      let epoch = 1
      const nextOp = (data: MemoryStoreData): StoreOp => {
        const last = data.startSeq + data.entries.length
        const roll = random()
        if (roll < 0.5) {
          if (random() < 0.3) epoch += 1
          return append(last + 1, last + int(1, 150), epoch)
        }
        if (roll < 0.65) return { _tag: "Truncate", fromSeq: int(Math.max(0, data.startSeq - 2), last + 2) }
        if (roll < 0.85) return { _tag: "PersistHardState", hard: hard(int(0, last), epoch) }
        if (roll < 0.98) {
          // Often at or near the checkpoint held (older ones change nothing, an equal one replaces it).
          const seq =
            random() < 0.4
              ? int(Math.max(0, data.startSeq - 2), data.startSeq + 2)
              : int(data.startSeq, last + 3)
          return { _tag: "Checkpoint", checkpoint: checkpoint(seq, epoch) }
        }
        return { _tag: "ResetStore", hard: hard(0, epoch) }
      }
      const expectSame = (stored: Stored) => {
        expect(stored).toEqual({
          hard: memory.hard,
          startSeq: memory.startSeq,
          startEpoch: memory.startEpoch,
          checkpoint: memory.checkpoint,
          entries: memory.entries,
          boot: memory.boot
        })
      }
      for (let lifeNo = 0; lifeNo < 8; lifeNo++) {
        yield* life(
          options,
          Effect.gen(function* () {
            memory.boot += 1
            expectSame(yield* openStore)
            for (let batch = 0; batch < 25; batch++) {
              const ops: Array<StoreOp> = []
              for (let n = int(1, 4); n > 0; n--) {
                const op = nextOp(memory)
                // Applied one op at a time, so the next op is generated against the state it will meet.
                applyStoreOps(memory, [op])
                ops.push(op)
              }
              yield* write(...ops)
              // Every few batches, read it back without a restart too (open may be called again).
              if (batch % 5 === 4) {
                memory.boot += 1
                expectSame(yield* openStore)
              }
            }
          })
        )
      }
      memory.boot += 1
      expectSame(yield* reopen(options))
    })
  )
})

describe("layerSqlite: finished auctions are kept for good in the auctions table", () => {
  it.scoped(
    "recorded auctions are readable with plain SQL, and recording again replaces, never duplicates",
    () =>
      Effect.gen(function* () {
        const options = { dataDir: yield* tempDir }
        const record = (winner: number) => ({
          auction: 7,
          item: "Vase",
          auctioneer: 1,
          status: "closed" as const,
          winner,
          amount: 45,
          totals: [
            { bidder: 2, amount: 30 },
            { bidder: 3, amount: 45 }
          ],
          reason: null,
          rounds: 2,
          minBid: 10,
          createdAtMs: 1_700_000_000_000
        })
        yield* life(
          options,
          Effect.gen(function* () {
            yield* openStore
            const store = yield* LogStore
            yield* store.recordEnded([record(3)])
            // A restarted server replays its log and records the same auction again.
            yield* store.recordEnded([record(3)])
          })
        )
        const rows = yield* rawSql(Path.join(options.dataDir, "agora.db"), (sql) =>
          sql.unsafe("SELECT auction, item, status, winner, amount, totals FROM auctions")
        )
        expect(rows).toEqual([
          {
            auction: 7,
            item: "Vase",
            status: "closed",
            winner: 3,
            amount: 45,
            totals: '[{"bidder":2,"amount":30},{"bidder":3,"amount":45}]'
          }
        ])
      })
  )
})

describe("layerSqlite: a checkpoint's parts are written once (DESIGN §5, Checkpoints)", () => {
  const withParts = (seq: number, parts: ReadonlyArray<readonly [string, unknown]>): StoreOp => ({
    _tag: "Checkpoint",
    checkpoint: { ...checkpoint(seq), state: { root: { at: seq }, parts: new Map(parts) } }
  })
  const partsOf = (stored: Stored) => Object.fromEntries(stored.checkpoint?.state.parts ?? [])

  it.scoped(
    "a part is written only when it is a new object for its key; a part whose key is gone is deleted",
    () =>
      Effect.gen(function* () {
        const options = { dataDir: yield* tempDir }
        const a = { n: 1 }
        yield* life(
          options,
          Effect.gen(function* () {
            yield* openStore
            yield* write(
              withParts(2, [
                ["a", a],
                ["b", { n: 2 }]
              ])
            )
            // Changed in place (which a state machine must never do): the same object is not written again...
            a.n = 10
            yield* write(
              withParts(3, [
                ["a", a],
                ["c", { n: 3 }]
              ])
            )
          })
        )
        const third = yield* reopen(options)
        expect(third.checkpoint?.state.root).toEqual({ at: 3 })
        expect(partsOf(third)).toEqual({ a: { n: 1 }, c: { n: 3 } })
        // ...and a new object for the key is.
        yield* life(options, Effect.zipRight(openStore, write(withParts(4, [["a", { n: 10 }]]))))
        expect(partsOf(yield* reopen(options))).toEqual({ a: { n: 10 } })
      })
  )

  it.scoped(
    "after a restart the parts it read are not written again; a write before open rewrites them all",
    () =>
      Effect.gen(function* () {
        const options = { dataDir: yield* tempDir }
        yield* life(options, Effect.zipRight(openStore, write(withParts(2, [["a", { n: 1 }]]))))
        yield* life(
          options,
          Effect.gen(function* () {
            const stored = yield* openStore
            const read = stored.checkpoint?.state.parts.get("a") as { n: number }
            read.n = 99
            yield* write(
              withParts(3, [
                ["a", read],
                ["b", { n: 2 }]
              ])
            )
          })
        )
        expect(partsOf(yield* reopen(options))).toEqual({ a: { n: 1 }, b: { n: 2 } })
        // Not opened: the store does not know what it holds, so it replaces every part.
        yield* life(options, write(withParts(4, [["c", { n: 3 }]])))
        expect(partsOf(yield* reopen(options))).toEqual({ c: { n: 3 } })
      })
  )

  it.scoped("ResetStore drops the parts with the checkpoint", () =>
    Effect.gen(function* () {
      const options = { dataDir: yield* tempDir }
      yield* life(
        options,
        Effect.gen(function* () {
          yield* openStore
          yield* write(withParts(2, [["a", { n: 1 }]]))
          yield* write({ _tag: "ResetStore", hard: hard(0) }, withParts(1, [["b", { n: 2 }]]))
        })
      )
      expect(partsOf(yield* reopen(options))).toEqual({ b: { n: 2 } })
    })
  )

  it.scoped("a version-1 store (no checkpoint_part) is migrated and keeps its checkpoint as the root", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const file = Path.join(dataDir, StoreFileName)
      yield* life(
        { dataDir },
        Effect.zipRight(openStore, write({ _tag: "Checkpoint", checkpoint: checkpoint(2) }))
      )
      yield* rawSql(file, (sql) =>
        Effect.zipRight(sql`DROP TABLE checkpoint_part`, sql`UPDATE meta SET schema_version = 1`)
      )
      expect((yield* reopen({ dataDir })).checkpoint).toEqual(checkpoint(2))
      const meta = yield* rawSql(
        file,
        (sql) => sql<{ readonly schema_version: number }>`SELECT schema_version FROM meta`
      )
      expect(meta).toEqual([{ schema_version: 2 }])
    })
  )

  it.scoped("a part that is not JSON, or parts without a checkpoint, are refused", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const file = Path.join(dataDir, StoreFileName)
      yield* life({ dataDir }, Effect.zipRight(openStore, write(withParts(2, [["a", { n: 1 }]]))))
      yield* rawSql(file, (sql) => sql`UPDATE checkpoint_part SET value = 'not json' WHERE key = 'a'`)
      expect((yield* storeError(reopen({ dataDir }))).message).toContain("checkpoint_part row a")
      yield* rawSql(file, (sql) =>
        Effect.zipRight(sql`UPDATE checkpoint_part SET value = '{}'`, sql`DELETE FROM checkpoint`)
      )
      expect((yield* storeError(reopen({ dataDir }))).message).toContain(
        "checkpoint_part holds 1 rows but there is no checkpoint"
      )
    })
  )
})

describe("layerSqlite: crashes (DESIGN §1, promise 3)", () => {
  /**
   * The child runs this repo's TypeScript directly, in CI and locally alike,
   * without a build and without tsx: a module-loader hook (node:module
   * `register`, Node ≥ 20.6) transpiles `.ts` files with the project's own
   * `typescript` and maps `./x.js` imports to `./x.ts`. Only `src` and `test`
   * files go through it; packages load as usual.
   */
  const writeTsLoader = (dir: string): string => {
    const require = createRequire(import.meta.url)
    const typescriptUrl = pathToFileURL(require.resolve("typescript")).href
    Fs.writeFileSync(
      Path.join(dir, "hooks.mjs"),
      `import { readFile } from "node:fs/promises"
import { fileURLToPath } from "node:url"
import ts from ${JSON.stringify(typescriptUrl)}
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context)
  } catch (error) {
    if (specifier.endsWith(".js") && (specifier.startsWith(".") || specifier.startsWith("file:")))
      return next(specifier.slice(0, -3) + ".ts", context)
    throw error
  }
}
export async function load(url, context, next) {
  if (!url.endsWith(".ts")) return next(url, context)
  const source = await readFile(fileURLToPath(url), "utf8")
  const { outputText } = ts.transpileModule(source, {
    fileName: fileURLToPath(url),
    compilerOptions: {
      module: ts.ModuleKind.ESNext,
      target: ts.ScriptTarget.ES2022,
      verbatimModuleSyntax: true
    }
  })
  return { format: "module", source: outputText, shortCircuit: true }
}
`
    )
    const register = Path.join(dir, "register.mjs")
    Fs.writeFileSync(
      register,
      `import { register } from "node:module"\nregister("./hooks.mjs", import.meta.url)\n`
    )
    return register
  }

  class ChildFailed extends Data.TaggedError("ChildFailed")<{ readonly message: string }> {}

  const childScript = fileURLToPath(new URL("./StoreSqlite.child.ts", import.meta.url))

  /**
   * Starts the child writer on `dataDir`, lets it commit at least `minSeq`
   * more entries, then kills it with SIGKILL while it is writing. Returns the
   * last seq it reported committed.
   */
  const runAndKill = (register: string, dataDir: string, sync: "normal" | "full", minSeq: number) =>
    Effect.async<{ readonly boot: number; readonly reported: number }, ChildFailed>((resume) => {
      const child = ChildProcess.spawn(process.execPath, ["--import", register, childScript, dataDir, sync], {
        stdio: ["ignore", "pipe", "pipe"]
      })
      let buffered = ""
      let stderr = ""
      let boot = -1
      let firstSeq = -1
      let reported = -1
      let killAt = -1
      child.stdout.setEncoding("utf8")
      child.stdout.on("data", (chunk: string) => {
        buffered += chunk
        const lines = buffered.split("\n")
        buffered = lines.pop() ?? ""
        for (const line of lines) {
          const open = /^open (\d+) (\d+)$/.exec(line)
          if (open !== null) {
            boot = Number(open[1])
            firstSeq = Number(open[2])
            killAt = firstSeq + minSeq
          } else if (/^\d+$/.test(line)) reported = Number(line)
        }
        // Killed at a point the test does not choose: after the first chunk past the target.
        if (killAt >= 0 && reported >= killAt && child.exitCode === null) child.kill("SIGKILL")
      })
      child.stderr.setEncoding("utf8")
      child.stderr.on("data", (chunk: string) => {
        stderr += chunk
      })
      child.on("exit", (code, signal) => {
        if (signal === "SIGKILL" && reported >= 0) resume(Effect.succeed({ boot, reported }))
        else
          resume(
            Effect.fail(
              new ChildFailed({ message: `child exited (code ${code}, signal ${signal}): ${stderr}` })
            )
          )
      })
      return Effect.sync(() => {
        child.kill("SIGKILL")
      })
    })

  it.scopedLive(
    "kill -9 while writing: every reported batch survives, no half batch is visible",
    () =>
      Effect.gen(function* () {
        const dir = yield* tempDir
        const register = writeTsLoader(dir)
        const dataDir = Path.join(dir, "data")
        let lastBoot = 0
        for (const [round, sync] of (["normal", "full", "normal"] as const).entries()) {
          const { boot, reported } = yield* runAndKill(register, dataDir, sync, 1500).pipe(
            Effect.timeoutFail({
              duration: "20 seconds",
              onTimeout: () =>
                new ChildFailed({ message: `round ${round}: the child did not report in time` })
            })
          )
          expect(boot).toBe(lastBoot + 1)
          lastBoot = boot
          const stored = yield* reopen({ dataDir })
          lastBoot = stored.boot
          const lastSeq = stored.startSeq + stored.entries.length
          // Nothing reported lost; the log is contiguous from 1; each entry is the one written.
          expect(lastSeq).toBeGreaterThanOrEqual(reported)
          expect(seqs(stored)).toEqual(Array.from({ length: lastSeq }, (_, i) => i + 1))
          for (const entry of stored.entries)
            expect(entry.body).toEqual({ _tag: "App", data: { n: entry.seq } })
          // The hard state of a batch was committed with its entries: all of the batch or none of it.
          expect(stored.hard?.commitSeq).toBe(lastSeq)
        }
      }),
    60_000
  )
})

describe("layerSqlite: damaged and foreign files are refused, never reset", () => {
  const refused = (error: StoreError, file: string) => {
    expect(error.message.startsWith(`${file} is not an Agora store: `)).toBe(true)
    expect(error.message.endsWith("; move it away to start afresh")).toBe(true)
  }

  it.scoped("a file of random bytes", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const file = Path.join(dataDir, StoreFileName)
      const bytes = Buffer.alloc(8192)
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919 + 13) % 251
      Fs.writeFileSync(file, bytes)
      const error = yield* storeError(reopen({ dataDir }))
      refused(error, file)
      expect(error.message).toContain("file is not a database")
      // serverIdentity says the same; the file is left as it was.
      refused(yield* storeError(life({ dataDir }, serverIdentity())), file)
      expect(Fs.readFileSync(file).equals(bytes)).toBe(true)
    })
  )

  it.scoped("a damaged SQLite file: every page after the first overwritten", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const file = Path.join(dataDir, StoreFileName)
      yield* life({ dataDir }, Effect.zipRight(openStore, write(append(1, 500))))
      const bytes = Fs.readFileSync(file)
      expect(bytes.length).toBeGreaterThan(3 * 4096)
      for (let i = 4096; i < bytes.length; i++) bytes[i] = (i * 31 + 7) % 256
      Fs.writeFileSync(file, bytes)
      const error = yield* storeError(reopen({ dataDir }))
      refused(error, file)
      expect(error.message).toContain("malformed")
    })
  )

  it.scoped("another application's SQLite database", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const file = Path.join(dataDir, StoreFileName)
      yield* rawSql(file, (sql) => sql`CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)`)
      const error = yield* storeError(reopen({ dataDir }))
      refused(error, file)
      expect(error.message).toContain("customers")
    })
  )

  it.scoped("an unknown schema version", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const file = Path.join(dataDir, StoreFileName)
      yield* reopen({ dataDir })
      yield* rawSql(file, (sql) => sql`UPDATE meta SET schema_version = 99`)
      const error = yield* storeError(reopen({ dataDir }))
      refused(error, file)
      expect(error.message).toContain("schema version 99")
    })
  )

  it.scoped("rows that do not decode: a log body that is not an entry, a bad hard state", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const file = Path.join(dataDir, StoreFileName)
      yield* life(
        { dataDir },
        Effect.zipRight(openStore, write(append(1, 3), { _tag: "PersistHardState", hard: hard(1) }))
      )

      yield* rawSql(file, (sql) => sql`UPDATE log SET body = '{"_tag":"Nonsense"}' WHERE seq = 2`)
      const badBody = yield* storeError(reopen({ dataDir }))
      refused(badBody, file)
      expect(badBody.message).toContain("log row 2")
      yield* rawSql(file, (sql) => sql`UPDATE log SET body = 'not json' WHERE seq = 2`)
      refused(yield* storeError(reopen({ dataDir })), file)

      yield* rawSql(file, (sql) => sql`UPDATE log SET body = ${JSON.stringify(app(2).body)} WHERE seq = 2`)
      expect(seqs(yield* reopen({ dataDir }))).toEqual([1, 2, 3])

      yield* rawSql(file, (sql) => sql`UPDATE hard_state SET epoch = -1`)
      const badHard = yield* storeError(reopen({ dataDir }))
      refused(badHard, file)
      expect(badHard.message).toContain("hard_state")
      yield* rawSql(file, (sql) => sql`UPDATE hard_state SET epoch = 1`)

      // A gap in the log is damage too.
      yield* rawSql(file, (sql) => sql`DELETE FROM log WHERE seq = 2`)
      const gap = yield* storeError(reopen({ dataDir }))
      refused(gap, file)
      expect(gap.message).toContain("not contiguous")
    })
  )

  it.scoped("a refused store is not modified: its boot counter is not raised", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const file = Path.join(dataDir, StoreFileName)
      yield* life({ dataDir }, Effect.zipRight(openStore, write(append(1, 2))))
      yield* rawSql(file, (sql) => sql`UPDATE log SET epoch = 'x' WHERE seq = 1`)
      yield* storeError(reopen({ dataDir }))
      const boot = yield* rawSql(file, (sql) => sql<{ readonly boot: number }>`SELECT boot FROM meta`)
      expect(boot[0]?.boot).toBe(1)
    })
  )
})

describe("layerSqlite: the data dir keeps the server's id (DESIGN §5, Identity)", () => {
  it.scoped("--id is stored on first start and must match afterwards", () =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      const s1 = ServerId.make("s1")
      expect(yield* life({ dataDir }, serverIdentity(s1))).toBe(s1)
      expect(yield* life({ dataDir }, serverIdentity(s1))).toBe(s1)
      // Without --id, the stored id.
      expect(yield* life({ dataDir }, serverIdentity())).toBe(s1)
      const error = yield* storeError(life({ dataDir }, serverIdentity(ServerId.make("s2"))))
      expect(error.message).toBe(`data dir ${dataDir} belongs to server s1, not s2`)
    })
  )

  it.scoped("without --id a random id is generated once and kept", () =>
    Effect.gen(function* () {
      const first = yield* life({ dataDir: yield* tempDir }, serverIdentity())
      const dataDir = yield* tempDir
      const generated = yield* life({ dataDir }, serverIdentity())
      expect(generated).toMatch(/^server-[0-9a-f]{12}$/)
      expect(generated).not.toBe(first)
      expect(yield* life({ dataDir }, serverIdentity())).toBe(generated)
      // The store of that data dir is unaffected by the claim, and vice versa.
      const stored = yield* life({ dataDir }, openStore)
      expect(stored.hard).toBeNull()
      expect(yield* life({ dataDir }, serverIdentity(generated))).toBe(generated)
    })
  )
})

describe("layerSqlite: --sync", () => {
  it.scoped("full sets PRAGMA synchronous = FULL (2); normal, the default, NORMAL (1)", () =>
    Effect.gen(function* () {
      const synchronous = Effect.flatMap(DataDir, (dataDir) => dataDir.synchronous)
      expect(yield* life({ dataDir: yield* tempDir, sync: "full" }, synchronous)).toBe(2)
      expect(yield* life({ dataDir: yield* tempDir, sync: "normal" }, synchronous)).toBe(1)
      expect(yield* life({ dataDir: yield* tempDir }, synchronous)).toBe(1)
      // On a store already in use, too.
      const dataDir = yield* tempDir
      yield* reopen({ dataDir })
      expect(yield* life({ dataDir, sync: "full" }, Effect.zipRight(openStore, synchronous))).toBe(2)
    })
  )
})

/**
 * Write rates, on demand (they take a while and depend on the disk):
 * `AGORA_STORE_BENCH=1 npx vitest run test/layers/StoreSqlite.test.ts -t "write rate"`.
 */
describe.runIf(process.env.AGORA_STORE_BENCH !== undefined)("layerSqlite: write rate", () => {
  /** A bid event as the auctions encode it: ~150 bytes of JSON with the entry around it. */
  const bid = (seq: number) => ({
    _tag: "BidPlaced",
    auction: 12,
    round: 2,
    session: 1000 + (seq % 500),
    request: seq,
    amount: "1234.50",
    at: 1718000000000 + seq
  })

  const measure = (sync: "normal" | "full", batchEntries: number, batches: number) =>
    Effect.gen(function* () {
      const dataDir = yield* tempDir
      return yield* life(
        { dataDir, sync },
        Effect.gen(function* () {
          const store = yield* LogStore
          yield* store.open
          const started = performance.now()
          for (let batch = 0; batch < batches; batch++) {
            const from = batch * batchEntries + 1
            const entries = Array.from(
              { length: batchEntries },
              (_, i): LogEntry => ({
                epoch: 1,
                seq: from + i,
                body: { _tag: "App", data: bid(from + i) }
              })
            )
            yield* store.write([
              { _tag: "Append", entries },
              { _tag: "PersistHardState", hard: hard(from - 1) }
            ])
          }
          const seconds = (performance.now() - started) / 1000
          const rows = batchEntries * batches
          const line = `sync=${sync} batch=${batchEntries}: ${Math.round(rows / seconds)} entries/s, ${Math.round(
            batches / seconds
          )} batches/s (${Math.round((seconds / batches) * 1e6)} µs a batch)`
          yield* Effect.sync(() => console.log(line))
        })
      )
    })

  it.scoped(
    "write rate: single-entry and 100-entry batches, sync normal and full",
    () =>
      Effect.gen(function* () {
        yield* measure("normal", 1, 10_000)
        yield* measure("normal", 100, 1_000)
        yield* measure("full", 1, 2_000)
        yield* measure("full", 100, 500)
      }),
    300_000
  )
})
