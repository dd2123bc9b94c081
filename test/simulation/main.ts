/**
 * The simulator's command line (`npm run sim -- …`), compiled by
 * tsconfig.sim.json into tmp/sim and run with node.
 *
 *   npm run sim -- --seed N           replay one seed: its checks, its trace hash, its timeline
 *   npm run sim -- --seeds K          run K seeds from --start (default 1), print a summary
 *
 * Options: --start S, --jobs J (worker processes for --seeds; default 1),
 * --servers 3|5, --clients M, --fault-ms MS, --client service|recording (fix what the seed would choose),
 * --trace K (with --seed: print the last K trace lines), --verbose (with
 * --seed: server logs at Info, the stats), --no-trace-datagrams (faster; the
 * hash then covers only the simulator's own lines, so compare like with like),
 * --break NAME (run with a test-only break of Breaks.ts, to watch a checker fail).
 * Exit status 1 when any seed fails.
 */
import { fork } from "node:child_process"
import { LogLevel } from "effect"
import * as B from "./Breaks.js"
import {
  type Breaks,
  describeFailure,
  type RunOptions,
  runSeed,
  type SeedReport,
  type SimOverrides
} from "./Simulator.js"

/** `--break NAME`: run with one of the test-only breaks (to watch a checker fail). */
const breaksByName: Readonly<Record<string, Breaks>> = {
  "lying-store": B.lyingStore(2_000),
  "forgetful-vote": B.forgetfulVote,
  "skip-notice": B.skipNotice(3),
  "wrong-bid-answer": B.wrongBidAnswer,
  "endless-rounds": B.endlessRounds,
  "failing-store": B.failingStore(200),
  "corrupt-winners": B.corruptWinners
}

interface Args {
  readonly seed: number | undefined
  readonly seeds: number | undefined
  readonly start: number
  readonly jobs: number
  readonly trace: number
  readonly verbose: boolean
  readonly worker: boolean
  readonly stride: number
  readonly traceDatagrams: boolean
  readonly overrides: SimOverrides
  readonly breakName: string | undefined
  readonly maxSteps: number | undefined
}

const usage = `usage: npm run sim -- (--seed N | --seeds K [--start S] [--jobs J]) [--servers 3|5] [--clients M] [--fault-ms MS] [--client service|recording] [--trace K] [--verbose] [--no-trace-datagrams] [--break NAME]`

const parseArgs = (argv: ReadonlyArray<string>): Args => {
  const values = new Map<string, string>()
  const flags = new Set<string>()
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index] ?? ""
    if (!arg.startsWith("--")) throw new Error(`unexpected argument ${arg}\n${usage}`)
    const name = arg.slice(2)
    if (["verbose", "worker", "no-trace-datagrams", "help"].includes(name)) {
      flags.add(name)
      continue
    }
    const value = argv[index + 1]
    if (value === undefined) throw new Error(`--${name} needs a value\n${usage}`)
    values.set(name, value)
    index += 1
  }
  if (flags.has("help")) {
    console.log(usage)
    process.exit(0)
  }
  const integer = (name: string, min: number): number | undefined => {
    const text = values.get(name)
    if (text === undefined) return undefined
    const value = Number(text)
    if (!Number.isSafeInteger(value) || value < min)
      throw new Error(`--${name} must be a whole number >= ${min}`)
    return value
  }
  const known = [
    "seed",
    "seeds",
    "start",
    "jobs",
    "servers",
    "clients",
    "fault-ms",
    "client",
    "trace",
    "stride",
    "break",
    "max-steps"
  ]
  const breakName = values.get("break")
  if (breakName !== undefined && breaksByName[breakName] === undefined) {
    throw new Error(`--break must be one of ${Object.keys(breaksByName).join(", ")}`)
  }
  for (const name of values.keys())
    if (!known.includes(name)) throw new Error(`unknown option --${name}\n${usage}`)
  const servers = integer("servers", 3)
  if (servers !== undefined && servers !== 3 && servers !== 5) throw new Error("--servers must be 3 or 5")
  const clientKind = values.get("client")
  if (clientKind !== undefined && clientKind !== "service" && clientKind !== "recording")
    throw new Error("--client must be service or recording")
  const seed = integer("seed", 0)
  const seeds = integer("seeds", 1)
  if ((seed === undefined) === (seeds === undefined)) throw new Error(`give --seed or --seeds\n${usage}`)
  return {
    seed,
    seeds,
    start: integer("start", 0) ?? 1,
    jobs: integer("jobs", 1) ?? 1,
    trace: integer("trace", 0) ?? 0,
    verbose: flags.has("verbose"),
    worker: flags.has("worker"),
    stride: integer("stride", 1) ?? 1,
    traceDatagrams: !flags.has("no-trace-datagrams"),
    breakName,
    maxSteps: integer("max-steps", 1),
    overrides: {
      servers: servers as 3 | 5 | undefined,
      clients: integer("clients", 1),
      faultMs: integer("fault-ms", 0),
      clientKind
    }
  }
}

const breaksOf = (args: Args): Breaks | undefined =>
  args.breakName === undefined ? undefined : breaksByName[args.breakName]

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`

const replay = (args: Args, seed: number): number => {
  const options: RunOptions = {
    overrides: args.overrides,
    breaks: breaksOf(args),
    maxSteps: args.maxSteps,
    traceDatagrams: args.traceDatagrams,
    logLevel: args.verbose ? LogLevel.Info : undefined,
    traceTailLines: Math.max(200, args.trace)
  }
  const report = runSeed(seed, options)
  const config = report.config
  console.log(
    `seed ${seed}: ${report.violations.length === 0 ? "ok" : "FAILED"}; trace hash ${report.traceHash} (${report.traceCount} lines); ` +
      `${seconds(report.virtualMs)} virtual in ${seconds(report.wallMs)} (${(report.virtualMs / report.wallMs).toFixed(1)}x), ${report.steps} steps`
  )
  console.log(
    `  ${config.servers.length} servers, ${config.clients.length} ${config.clientKind} clients, faults for ${seconds(config.faultMs)}; ` +
      `round ${config.server.roundTimeoutMs} ms, start ${config.server.startTimeoutMs} ms, request timeout ${config.client.requestTimeoutMs} ms`
  )
  const stats = report.stats
  console.log(
    `  ${stats.ops} ops (${stats.acknowledged} ok, ${stats.refused} refused, ${stats.timeouts} timed out, ${stats.inFlight} in flight), ` +
      `${stats.notices} notices, ${stats.committedEntries} entries, auctions ${JSON.stringify(stats.auctions)}, ` +
      `${stats.crashes} crashes (${stats.storesLost} stores lost), ${stats.partitions} partitions, ${stats.elections} elections`
  )
  if (args.verbose) {
    console.log(`  network: ${JSON.stringify(stats.network)}`)
    console.log("  plan:")
    for (const line of report.plan) console.log(`    ${line}`)
  }
  if (report.violations.length > 0) console.log(describeFailure(report, 200))
  else if (args.verbose) {
    console.log("  timeline:")
    for (const event of report.timeline) console.log(`    ${event.atMs} ms ${event.text}`)
  }
  if (args.trace > 0) {
    console.log(`  last ${args.trace} trace lines:`)
    for (const line of report.traceTail.slice(-args.trace)) console.log(`    ${line}`)
  }
  return report.violations.length === 0 ? 0 : 1
}

interface SeedResult {
  readonly seed: number
  readonly ok: boolean
  readonly virtualMs: number
  readonly wallMs: number
  readonly failure: string | null
  /** What the seed did, for the totals: faults injected and operations run. */
  readonly counts: Readonly<Record<string, number>>
}

const resultOf = (report: SeedReport): SeedResult => ({
  seed: report.seed,
  ok: report.violations.length === 0,
  virtualMs: report.virtualMs,
  wallMs: report.wallMs,
  failure: report.violations.length === 0 ? null : describeFailure(report),
  counts: {
    crashes: report.stats.crashes,
    "stores lost": report.stats.storesLost,
    partitions: report.stats.partitions,
    elections: report.stats.elections,
    ops: report.stats.acknowledged + report.stats.refused + report.stats.timeouts + report.stats.inFlight,
    "timed out": report.stats.timeouts,
    notices: report.stats.notices,
    auctions: Object.values(report.stats.auctions).reduce((sum, n) => sum + n, 0),
    [`${report.config.servers.length} servers`]: 1,
    [`${report.config.clientKind} clients`]: 1,
    [report.config.faultStyle]: 1
  }
})

/** Runs seeds start, start + stride, … (count of them) in this process, handing each result to `done`. */
const runRange = (
  args: Args,
  start: number,
  count: number,
  stride: number,
  done: (result: SeedResult) => void
) => {
  for (let index = 0; index < count; index++) {
    const seed = start + index * stride
    done(
      resultOf(
        runSeed(seed, {
          overrides: args.overrides,
          breaks: breaksOf(args),
          maxSteps: args.maxSteps,
          traceDatagrams: args.traceDatagrams
        })
      )
    )
  }
}

const many = async (args: Args, total: number): Promise<number> => {
  const wallStart = performance.now()
  const results: Array<SeedResult> = []
  const onResult = (result: SeedResult) => {
    results.push(result)
    if (result.failure !== null) console.log(result.failure)
    if (results.length % 50 === 0) {
      const failed = results.filter((r) => !r.ok).length
      console.log(
        `… ${results.length}/${total} seeds, ${failed} failed, ${seconds(performance.now() - wallStart)}`
      )
    }
  }
  const jobs = Math.min(args.jobs, total)
  if (jobs <= 1) {
    runRange(args, args.start, total, 1, onResult)
  } else {
    const script = process.argv[1] ?? ""
    const { servers, clients, faultMs, clientKind } = args.overrides
    const passOn = [
      ...(clientKind === undefined ? [] : ["--client", clientKind]),
      ...(servers === undefined ? [] : ["--servers", String(servers)]),
      ...(clients === undefined ? [] : ["--clients", String(clients)]),
      ...(faultMs === undefined ? [] : ["--fault-ms", String(faultMs)]),
      ...(args.traceDatagrams ? [] : ["--no-trace-datagrams"]),
      ...(args.breakName === undefined ? [] : ["--break", args.breakName]),
      ...(args.maxSteps === undefined ? [] : ["--max-steps", String(args.maxSteps)])
    ]
    /**
     * Worker `job` runs seeds start + job, start + job + jobs, … If it dies (out of memory, a
     * crash of node itself), the seed it was on is reported as failed and a new worker goes on
     * from the next one.
     */
    const runWorker = (job: number, first: number, count: number): Promise<void> =>
      new Promise<void>((resolve) => {
        if (count <= 0) return resolve()
        let done = 0
        const child = fork(
          script,
          [
            ...passOn,
            "--worker",
            "--seeds",
            String(count),
            "--start",
            String(first),
            "--stride",
            String(jobs)
          ],
          { stdio: ["ignore", "inherit", "inherit", "ipc"] }
        )
        child.on("message", (message) => {
          done += 1
          onResult(message as SeedResult)
        })
        child.on("exit", (code, signal) => {
          if (done >= count) return resolve()
          const seed = first + done * jobs
          onResult({
            seed,
            ok: false,
            virtualMs: 0,
            wallMs: 0,
            failure: `seed ${seed} FAILED (the worker process died: ${signal ?? `exit ${code}`}) — replay: npm run sim -- --seed ${seed}`,
            counts: {}
          })
          resolve(runWorker(job, seed + jobs, count - done - 1))
        })
      })
    await Promise.all(
      Array.from({ length: jobs }, (_, job) =>
        runWorker(job, args.start + job, Math.floor(total / jobs) + (job < total % jobs ? 1 : 0))
      )
    )
  }
  const wallMs = performance.now() - wallStart
  const failed = results.filter((r) => !r.ok).sort((a, b) => a.seed - b.seed)
  const virtualMs = results.reduce((sum, r) => sum + r.virtualMs, 0)
  const simWallMs = results.reduce((sum, r) => sum + r.wallMs, 0)
  console.log(
    `seeds ${args.start}..${args.start + total - 1}: ${results.length} run, ${failed.length} failed${failed.length === 0 ? "" : ` (seeds ${failed.map((r) => r.seed).join(", ")})`}`
  )
  console.log(
    `virtual time ${seconds(virtualMs)}, wall time ${seconds(wallMs)} on ${jobs} process${jobs === 1 ? "" : "es"}; ` +
      `simulated/wall ${(virtualMs / wallMs).toFixed(1)}x overall, ${(virtualMs / simWallMs).toFixed(1)}x per process`
  )
  const totals: Record<string, number> = {}
  for (const result of results) {
    for (const [name, count] of Object.entries(result.counts)) totals[name] = (totals[name] ?? 0) + count
  }
  console.log(
    `totals: ${Object.entries(totals)
      .map(([name, count]) => `${count} ${name}`)
      .join(", ")}`
  )
  return failed.length === 0 ? 0 : 1
}

const main = async () => {
  let args: Args
  try {
    args = parseArgs(process.argv.slice(2))
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error))
    return 2
  }
  if (args.seed !== undefined) return replay(args, args.seed)
  const total = args.seeds ?? 1
  if (args.worker) {
    runRange(args, args.start, total, args.stride, (result) => process.send?.(result))
    return 0
  }
  return many(args, total)
}

main().then(
  (code) => {
    process.exitCode = code
  },
  (error: unknown) => {
    console.error(error)
    process.exitCode = 2
  }
)
