/**
 * Run by StoreSqlite.test.ts in a child process, which it kills with SIGKILL:
 * `node --import <ts loader> StoreSqlite.child.ts DATA_DIR normal|full`.
 *
 * Opens the store, then writes batches forever (1 to 50 entries and the hard
 * state, commitSeq = the batch's last seq, in one write) and prints the last
 * seq of each batch once `write` has returned, i.e. once it is committed. The
 * parent checks that every printed seq survived the kill, and that the log and
 * the hard state agree (no half batch).
 */
import { Cause, Effect } from "effect"
import type { LogEntry } from "../../src/domain/cluster/Entry.js"
import { Incarnation } from "../../src/domain/Ids.js"
import { layerSqlite } from "../../src/layers/StoreSqlite.js"
import { LogStore } from "../../src/services/LogStore.js"

const dataDir = process.argv[2]
const sync = process.argv[3] === "full" ? "full" : "normal"
if (dataDir === undefined) throw new Error("usage: StoreSqlite.child.ts DATA_DIR normal|full")

const BatchEntriesMax = 50

const program = Effect.gen(function* () {
  const store = yield* LogStore
  const stored = yield* store.open
  let lastSeq = stored.startSeq + stored.entries.length
  process.stdout.write(`open ${stored.boot} ${lastSeq}\n`)
  for (let batch = 0; ; batch++) {
    const size = 1 + (batch % BatchEntriesMax)
    const entries: Array<LogEntry> = Array.from({ length: size }, (_, i) => ({
      epoch: stored.boot,
      seq: lastSeq + 1 + i,
      body: { _tag: "App", data: { n: lastSeq + 1 + i } }
    }))
    yield* store.write([
      { _tag: "Append", entries },
      {
        _tag: "PersistHardState",
        hard: {
          group: null,
          incarnation: Incarnation.make("child"),
          epoch: stored.boot,
          vote: null,
          commitSeq: lastSeq + size
        }
      }
    ])
    lastSeq += size
    process.stdout.write(`${lastSeq}\n`)
  }
})

Effect.runFork(
  program.pipe(
    Effect.provide(layerSqlite({ dataDir, sync })),
    Effect.catchAllCause((cause) =>
      Effect.sync(() => {
        process.stderr.write(`${Cause.pretty(cause)}\n`)
        process.exitCode = 1
      })
    )
  )
)
