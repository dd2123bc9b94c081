/**
 * `npm run bench`: the benchmark suite (issue 10). Runs `agora bench` (from
 * dist/, built by the npm script) against groups it starts on loopback — 3
 * servers and 1 server, `--sync normal` and `--sync full`, with and without
 * leader kills — and the same load against a 3-member (and a 1-member) etcd
 * cluster from Debian's etcd-server, then writes bench/RESULTS.md and
 * bench/failover.svg.
 *
 *   node dist/bench/run.js [--quick] [--soak-minutes N] [--no-etcd] [--only NAME,NAME] [--reuse FILE]
 *
 * `--reuse FILE` (a previous invocation's agora-bench-runs.json, in the temp dir): keep its
 * runs and run again only those of `--only`; the report says which runs are earlier ones.
 *
 * `--quick`: short runs, to check the suite itself (figures are not worth
 * reporting). Loopback only: no traffic leaves the machine.
 */
import { execFileSync, spawn } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os"
import { join } from "node:path"
import { renderFailoverSvg, type Series } from "./Chart.js"
import { type EtcdCluster, ensureEtcd, etcdVersion, startEtcd } from "./Etcd.js"
import { type ProfileSummary, summarizeProfile } from "./Profile.js"

// ---------------------------------------------------------------------------
// What `agora bench --json` prints (the part the suite reads).

interface Latency {
  readonly count: number
  readonly mean: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly p999: number
  readonly max: number
}

interface BenchResult {
  readonly type: "bench"
  readonly target: "agora" | "etcd"
  readonly report: {
    readonly clients: number
    readonly startMs: number
    readonly endMs: number
    readonly acks: number
    readonly notifications: number
    readonly auctionsCompleted: number
    readonly errors: Record<string, number>
    readonly timeline: ReadonlyArray<readonly [number, number]>
    readonly firstAckByEpoch: ReadonlyArray<readonly [number, number]>
    readonly loadCpuMs: number
  }
  readonly windowMs: number
  readonly bidsPerSec: number
  readonly latencyMs: Latency
  readonly otherLatencyMs: Latency
  readonly notificationsPerSec: number
  readonly failovers: ReadonlyArray<{
    readonly killedAtMs: number
    readonly killed: string
    readonly epoch: number
    readonly failoverMs: number | null
  }>
  readonly servers: ReadonlyArray<{
    readonly id: string
    readonly pid: number
    readonly rssKb: number | null
    readonly cpuMs: number | null
  }>
  readonly serverCpuUsPerBid: number | null
  readonly serverDir?: string | null
  readonly elections: {
    readonly leaderStart: string | null
    readonly epochStart: number | null
    readonly leaderEnd: string | null
    readonly epochEnd: number | null
  }
}

interface Run {
  readonly name: string
  readonly what: string
  readonly command: string
  readonly result: BenchResult
  readonly loadBefore: ReadonlyArray<number>
  readonly loadAfter: ReadonlyArray<number>
  /** etcd runs: server figures sampled by the suite. */
  readonly etcdServers?: { readonly rssKb: ReadonlyArray<number>; readonly cpuUsPerPut: number | null }
  /** etcd failover runs: the kills the suite made and what followed. */
  readonly etcdKills?: ReadonlyArray<{ readonly killedAtMs: number; readonly failoverMs: number | null }>
}

// ---------------------------------------------------------------------------
// Settings

const argv = process.argv.slice(2)
const flagValue = (name: string): string | undefined => {
  const i = argv.indexOf(name)
  return i >= 0 ? argv[i + 1] : undefined
}
const quick = argv.includes("--quick")
const withEtcd = !argv.includes("--no-etcd")
const only = flagValue("--only")?.split(",")
/** Runs of an earlier invocation (its agora-bench-runs.json): kept, except those run again now. */
const reuse = flagValue("--reuse")
const soakMinutes = Number(flagValue("--soak-minutes") ?? (quick ? 0.25 : 5))
const durationS = quick ? 6 : 30
const warmupS = quick ? 2 : 5
const failoverS = quick ? 16 : 60
const killEveryS = 5
/** The load shape: auctions × bidders concurrent bidders (plus one auctioneer per auction for Agora). */
const shape = { auctions: 20, bidders: 5, rounds: 10 }
const benchDir = "bench"
const agoraJs = "dist/bin/agora.js"

const wanted = (name: string) => only === undefined || only.includes(name)
const log = (line: string) => process.stderr.write(`\n=== ${line}\n`)
const round = (x: number, digits = 0) => Number(x.toFixed(digits))
const fmtLoad = (load: ReadonlyArray<number>) => load.map((x) => x.toFixed(2)).join(" / ")

// ---------------------------------------------------------------------------
// Running `agora bench`

const runBench = (
  name: string,
  what: string,
  args: ReadonlyArray<string>,
  during?: (startedMs: number, done: Promise<void>) => Promise<void>
): Promise<{ run: Run; during: Promise<void> }> =>
  new Promise((resolve, reject) => {
    log(`${name}: ${what}`)
    const command = `node ${agoraJs} bench ${args.join(" ")}`
    process.stderr.write(`$ ${command}\n`)
    const loadBefore = loadavg()
    // The report goes to a file: stdout through a pipe may be cut short when the process exits.
    const reportFile = join(tmpdir(), `agora-bench-${process.pid}-${name}.json`)
    rmSync(reportFile, { force: true })
    const child = spawn(process.execPath, [agoraJs, "bench", ...args, "--report-file", reportFile], {
      stdio: ["ignore", "inherit", "inherit"]
    })
    let finish: () => void = () => undefined
    const done = new Promise<void>((r) => {
      finish = r
    })
    const duringPromise = during === undefined ? Promise.resolve() : during(Date.now(), done)
    child.on("exit", (code) => {
      finish()
      let line: string
      try {
        line = readFileSync(reportFile, "utf8")
        rmSync(reportFile, { force: true })
      } catch {
        return reject(new Error(`${name}: agora bench exited ${code} without a report`))
      }
      const result = JSON.parse(line) as BenchResult
      resolve({
        run: { name, what, command, result, loadBefore, loadAfter: loadavg() },
        during: duringPromise
      })
    })
  })

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** /proc figures of a process: VmRSS (KiB) and utime+stime (ms). */
const sample = (pid: number): { rssKb: number; cpuMs: number } | null => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    return {
      rssKb: Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? 0),
      cpuMs: (Number(fields[11]) + Number(fields[12])) * 10
    }
  } catch {
    return null
  }
}

/** Samples the etcd members every 250 ms while `done` is pending. */
const sampleEtcd = async (cluster: EtcdCluster, done: Promise<void>) => {
  const samples: Array<{ atMs: number; cpuMs: number; rssKb: ReadonlyArray<number>; complete: boolean }> = []
  let finished = false
  void done.then(() => {
    finished = true
  })
  while (!finished) {
    const figures = cluster.members.map((m) => {
      const pid = cluster.pidOf(m.name)
      return pid === null ? null : sample(pid)
    })
    samples.push({
      atMs: Date.now(),
      cpuMs: figures.reduce((total, f) => total + (f?.cpuMs ?? 0), 0),
      rssKb: figures.map((f) => f?.rssKb ?? 0),
      complete: figures.every((f) => f !== null)
    })
    await sleep(250)
  }
  return samples
}

const etcdFigures = (
  samples: Awaited<ReturnType<typeof sampleEtcd>>,
  result: BenchResult
): NonNullable<Run["etcdServers"]> => {
  const nearest = (ms: number) =>
    samples.reduce<(typeof samples)[number] | undefined>(
      (best, s) => (best === undefined || Math.abs(s.atMs - ms) < Math.abs(best.atMs - ms) ? s : best),
      undefined
    )
  const start = nearest(result.report.startMs)
  const end = nearest(result.report.endMs)
  const cpuUsPerPut =
    start !== undefined && end !== undefined && start.complete && end.complete && result.report.acks > 0
      ? ((end.cpuMs - start.cpuMs) * 1000) / result.report.acks
      : null
  return { rssKb: end?.rssKb ?? [], cpuUsPerPut }
}

// ---------------------------------------------------------------------------
// The scenarios

const common = (duration: number, extra: ReadonlyArray<string> = []) => [
  "--auctions",
  String(shape.auctions),
  "--bidders",
  String(shape.bidders),
  "--rounds",
  String(shape.rounds),
  "--duration",
  String(duration),
  "--warmup",
  String(warmupS),
  ...extra
]

const runs: Array<Run> = []
let profile: { readonly leader: ProfileSummary; readonly follower: ProfileSummary | null } | null = null
const startedAt = new Date()
const loadAtStart = loadavg()

const agoraScenarios = async () => {
  let maxRate = 0
  if (wanted("agora3-normal")) {
    const { run } = await runBench("agora3-normal", "3 servers, --sync normal, full load", [
      "--servers",
      "3",
      "--sync",
      "normal",
      ...common(durationS)
    ])
    runs.push(run)
    maxRate = run.result.bidsPerSec
  }
  if (wanted("agora3-full")) {
    const { run } = await runBench("agora3-full", "3 servers, --sync full (fsync per batch), full load", [
      "--servers",
      "3",
      "--sync",
      "full",
      ...common(durationS)
    ])
    runs.push(run)
  }
  if (wanted("agora3-half") && maxRate > 0) {
    const rate = Math.max(1, Math.floor(maxRate / 2))
    const { run } = await runBench(
      "agora3-half",
      `3 servers, --sync normal, half of the maximum (${rate} bids/s)`,
      ["--servers", "3", "--sync", "normal", "--rate", String(rate), ...common(durationS)]
    )
    runs.push(run)
  }
  if (wanted("agora1-normal")) {
    const { run } = await runBench("agora1-normal", "1 server, --sync normal, full load", [
      "--servers",
      "1",
      "--sync",
      "normal",
      ...common(durationS)
    ])
    runs.push(run)
  }
  if (wanted("agora3-failover")) {
    const { run } = await runBench(
      "agora3-failover",
      `3 servers, default timings, leader killed (kill -9) every ${killEveryS} s and restarted`,
      [
        "--servers",
        "3",
        "--sync",
        "normal",
        "--kill-leader-every",
        String(killEveryS),
        "--keep-dir",
        ...common(failoverS)
      ]
    )
    runs.push(run)
  }
  if (wanted("agora3-soak")) {
    const { run } = await runBench("agora3-soak", `3 servers, full load for ${soakMinutes} min, no faults`, [
      "--servers",
      "3",
      "--sync",
      "normal",
      "--keep-dir",
      ...common(Math.round(soakMinutes * 60))
    ])
    runs.push(run)
  }
  if (wanted("agora3-memory")) {
    const total = quick ? 500 : 10_000
    const { run } = await runBench(
      "agora3-memory",
      `3 servers, ${total.toLocaleString("en")} auctions completed (2 bidders, 1 round each), then RSS`,
      [
        "--servers",
        "3",
        "--auctions",
        "50",
        "--bidders",
        "2",
        "--rounds",
        "1",
        "--stop-after-auctions",
        String(total),
        "--keep-dir",
        "--duration",
        "3600",
        "--warmup",
        "0"
      ]
    )
    runs.push(run)
  }
  if (wanted("agora3-profile")) {
    const dir = mkdtempSync(join(tmpdir(), "agora-prof-"))
    const { run } = await runBench("agora3-profile", "3 servers under full load with node --cpu-prof", [
      "--servers",
      "3",
      "--cpu-prof-dir",
      dir,
      ...common(quick ? 6 : 20)
    ])
    runs.push(run)
    const summaries = readdirSync(dir)
      .filter((f) => f.endsWith(".cpuprofile"))
      .map((f) => summarizeProfile(join(dir, f), 20))
      .sort((a, b) => b.busyMs - a.busyMs)
    const leader = summaries[0]
    if (leader !== undefined) profile = { leader, follower: summaries[1] ?? null }
    rmSync(dir, { recursive: true, force: true })
  }
}

const etcdScenarios = async (version: string) => {
  const clients = shape.auctions * shape.bidders
  const withCluster = async (
    count: number,
    basePort: number,
    body: (cluster: EtcdCluster) => Promise<void>
  ) => {
    const dir = mkdtempSync(join(tmpdir(), "etcd-bench-"))
    const cluster = startEtcd({ count, dir, basePort })
    try {
      await cluster.waitHealthy(30_000)
      await body(cluster)
    } finally {
      await cluster.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
  const etcdArgs = (cluster: EtcdCluster, duration: number, extra: ReadonlyArray<string> = []) => [
    "--target",
    "etcd",
    "--etcd-endpoints",
    cluster.endpoints,
    ...common(duration, extra)
  ]
  let maxRate = 0
  await withCluster(3, 32300, async (cluster) => {
    if (wanted("etcd3")) {
      let samples: Awaited<ReturnType<typeof sampleEtcd>> = []
      const { run, during } = await runBench(
        "etcd3",
        `etcd ${version}, 3 members, ${clients} clients, full load`,
        etcdArgs(cluster, durationS),
        async (_, done) => {
          samples = await sampleEtcd(cluster, done)
        }
      )
      await during
      runs.push({ ...run, etcdServers: etcdFigures(samples, run.result) })
      maxRate = run.result.bidsPerSec
    }
    if (wanted("etcd3-half") && maxRate > 0) {
      const rate = Math.max(1, Math.floor(maxRate / 2))
      const { run } = await runBench(
        "etcd3-half",
        `etcd, 3 members, half of the maximum (${rate} puts/s)`,
        etcdArgs(cluster, durationS, ["--rate", String(rate)])
      )
      runs.push(run)
    }
    if (wanted("etcd3-failover")) {
      const kills: Array<{ killedAtMs: number; term: number }> = []
      const { run, during } = await runBench(
        "etcd3-failover",
        `etcd, 3 members, default timings, leader killed (kill -9) every ${killEveryS} s and restarted`,
        etcdArgs(cluster, failoverS),
        async (startedMs, done) => {
          let finished = false
          void done.then(() => {
            finished = true
          })
          // The bench connects at once and measures after the warm-up: kill from then on.
          const windowStartMs = startedMs + warmupS * 1000 + 500
          for (let k = 1; !finished; k++) {
            const dueMs = windowStartMs + k * killEveryS * 1000
            while (!finished && Date.now() < dueMs) await sleep(20)
            if (finished || Date.now() > windowStartMs + failoverS * 1000 - 3_000) break
            const leader = await cluster.leader()
            if (leader === null) continue
            const killedAtMs = Date.now()
            cluster.kill(leader.name)
            kills.push({ killedAtMs, term: leader.term })
            process.stderr.write(`\nbench suite: killed etcd leader ${leader.name} (term ${leader.term})\n`)
            // Restart it once a new leader is there (as the Agora bench does after its failover).
            const deadline = Date.now() + 20_000
            while (Date.now() < deadline) {
              const next = await cluster.leader()
              if (next !== null && next.term > leader.term) break
              await sleep(20)
            }
            cluster.restart(leader.name)
          }
        }
      )
      await during
      const epochs = run.result.report.firstAckByEpoch
      const etcdKills = kills.map(({ killedAtMs, term }) => {
        const after = epochs.filter(([e, ms]) => e > term && ms >= killedAtMs).map(([, ms]) => ms)
        return { killedAtMs, failoverMs: after.length === 0 ? null : Math.min(...after) - killedAtMs }
      })
      runs.push({ ...run, etcdKills })
      await cluster.waitHealthy(30_000)
    }
  })
  if (wanted("etcd1")) {
    await withCluster(1, 32500, async (cluster) => {
      const { run } = await runBench(
        "etcd1",
        `etcd, 1 member, ${clients} clients, full load`,
        etcdArgs(cluster, durationS)
      )
      runs.push(run)
    })
  }
}

// ---------------------------------------------------------------------------
// The report

const quantile = (values: ReadonlyArray<number>, q: number): number | null => {
  if (values.length === 0) return null
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? null
}

const failoversOf = (run: Run | undefined): Array<number> => {
  if (run === undefined) return []
  const list =
    run.etcdKills !== undefined
      ? run.etcdKills.map((k) => k.failoverMs)
      : run.result.failovers.map((f) => f.failoverMs)
  return list.filter((ms): ms is number => ms !== null)
}

const seriesOf = (run: Run, title: string): Series => {
  const startMs = run.result.report.startMs
  const endMs = run.result.report.endMs
  const counts = new Map(run.result.report.timeline)
  const points: Array<readonly [number, number]> = []
  for (let bucket = Math.floor(startMs / 100); bucket * 100 < endMs; bucket++) {
    points.push([round((bucket * 100 - startMs) / 1000, 1), counts.get(bucket) ?? 0])
  }
  const killTimes =
    run.etcdKills !== undefined
      ? run.etcdKills.map((k) => k.killedAtMs)
      : run.result.failovers.map((f) => f.killedAtMs)
  return {
    title,
    points,
    kills: killTimes.map((ms) => round((ms - startMs) / 1000, 2)),
    failoversMs: failoversOf(run)
  }
}

const versionOf = (pkg: string): string => {
  try {
    return (
      JSON.parse(readFileSync(join("node_modules", pkg, "package.json"), "utf8")) as { version: string }
    ).version
  } catch {
    return "?"
  }
}

const gitRev = (): string => {
  try {
    const rev = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim()
    const dirty = execFileSync("git", ["status", "--porcelain", "src"], { encoding: "utf8" }).trim() !== ""
    return dirty ? `${rev} + uncommitted changes in src/` : rev
  } catch {
    return "?"
  }
}

const ms = (x: number | null | undefined) =>
  x === null || x === undefined ? "–" : `${round(x, x < 10 ? 2 : 0)} ms`
const perSec = (x: number) => `${round(x).toLocaleString("en")}/s`
const ratio = (a: number | null | undefined, b: number | null | undefined) =>
  a === null || a === undefined || b === null || b === undefined || b === 0 ? "–" : `${(a / b).toFixed(2)}`
const mib = (kb: number | null | undefined) =>
  kb === null || kb === undefined ? "–" : `${(kb / 1024).toFixed(0)} MiB`

const writeReport = async (etcdVersionText: string | null) => {
  const byName = new Map(runs.map((r) => [r.name, r]))
  const a3 = byName.get("agora3-normal")
  const a3full = byName.get("agora3-full")
  const a3half = byName.get("agora3-half")
  const aFail = byName.get("agora3-failover")
  const soak = byName.get("agora3-soak")
  const memory = byName.get("agora3-memory")
  const e3 = byName.get("etcd3")
  const e3half = byName.get("etcd3-half")
  const eFail = byName.get("etcd3-failover")
  const agoraFailovers = failoversOf(aFail)
  const etcdFailovers = failoversOf(eFail)
  const stuck = (run: Run | undefined) =>
    run === undefined
      ? 0
      : (run.etcdKills ?? run.result.failovers).filter((k) => k.failoverMs === null).length
  const aMedian = quantile(agoraFailovers, 0.5)
  const eMedian = quantile(etcdFailovers, 0.5)
  const maxRss = (run: Run | undefined) =>
    run === undefined ? null : Math.max(0, ...run.result.servers.map((s) => s.rssKb ?? 0))
  const elections = (run: Run | undefined) => {
    const e = run?.result.elections
    return e === undefined || e.epochStart === null || e.epochEnd === null ? null : e.epochEnd - e.epochStart
  }
  const met = (ok: boolean | null) => (ok === null ? "–" : ok ? "yes" : "**no**")

  const lines: Array<string> = []
  const p = (line = "") => lines.push(line)
  p("# Agora benchmarks")
  p()
  p(
    `Written by \`npm run bench\` (bench/run.ts) on ${startedAt.toISOString()}${quick ? " — **quick mode: runs too short to quote**" : ""}.`
  )
  p(
    reuse === undefined
      ? "Every figure below comes from this one run of the suite; loopback only."
      : "Runs marked (earlier invocation) come from an earlier invocation of the suite on the same machine (its load " +
          "is in the row); the others, from this one. Loopback only."
  )
  p()
  p("## Machine and versions")
  p()
  p(
    `- ${cpus().length} CPUs (\`nproc\`): ${cpus()[0]?.model ?? "?"}; ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Linux ${release()}`
  )
  p(
    `- load average (1/5/15 min) at the start: ${fmtLoad(loadAtStart)}; at the end: ${fmtLoad(loadavg())}. ` +
      "The machine is shared with other engineers' test runs: every process here (servers, load generator, etcd) " +
      "competes with them for 2 cores, so figures are noisy and low; the load average of each run is in its table row."
  )
  p(
    `- node ${process.version}; agora 0.1.0 at ${gitRev()}; effect ${versionOf("effect")}; ` +
      `@effect/sql-sqlite-node ${versionOf("@effect/sql-sqlite-node")}; etcd ${etcdVersionText ?? "not run"}; ` +
      `vega ${versionOf("vega")}, vega-lite ${versionOf("vega-lite")}`
  )
  p()
  p("## Where we stand against the targets (issue 10)")
  p()
  p("| target | Agora | etcd | Agora/etcd | met |")
  p("| --- | --- | --- | --- | --- |")
  p(
    `| committed bids/s (3 servers, --sync normal) ≥ etcd writes/s, aim 20,000/s | ${a3 ? perSec(a3.result.bidsPerSec) : "–"} | ${e3 ? perSec(e3.result.bidsPerSec) : "–"} | ${ratio(a3?.result.bidsPerSec, e3?.result.bidsPerSec)} | ${met(a3 && e3 ? a3.result.bidsPerSec >= e3.result.bidsPerSec : null)} |`
  )
  p(
    `| same with --sync full (an fsync per batch, as etcd always does) | ${a3full ? perSec(a3full.result.bidsPerSec) : "–"} | ${e3 ? perSec(e3.result.bidsPerSec) : "–"} | ${ratio(a3full?.result.bidsPerSec, e3?.result.bidsPerSec)} | ${met(a3full && e3 ? a3full.result.bidsPerSec >= e3.result.bidsPerSec : null)} |`
  )
  const e3cpu = e3?.etcdServers?.cpuUsPerPut ?? null
  p(
    `| (not a target) server CPU per committed write, all servers, µs | ${a3?.result.serverCpuUsPerBid ? round(a3.result.serverCpuUsPerBid).toLocaleString("en") : "–"} | ${e3cpu === null ? "–" : round(e3cpu).toLocaleString("en")} | ${ratio(a3?.result.serverCpuUsPerBid, e3cpu)} | |`
  )
  p(
    `| ack p99 ≤ 10 ms at half of the maximum throughput | ${ms(a3half?.result.latencyMs.p99)} | ${ms(e3half?.result.latencyMs.p99)} | ${ratio(a3half?.result.latencyMs.p99, e3half?.result.latencyMs.p99)} | ${met(a3half ? a3half.result.latencyMs.p99 <= 10 : null)} |`
  )
  p(
    `| failover median ≤ 500 ms (aim 300), faster than etcd | ${ms(aMedian)} (n=${agoraFailovers.length}${stuck(aFail) > 0 ? `; ${stuck(aFail)} kill(s) with no commit within 30 s` : ""}) | ${ms(eMedian)} (n=${etcdFailovers.length}${stuck(eFail) > 0 ? `; ${stuck(eFail)} with none` : ""}) | ${ratio(aMedian, eMedian)} | ${met(aMedian !== null ? aMedian <= 500 && (eMedian === null || aMedian < eMedian) : null)} |`
  )
  p(
    `| no election during ${soakMinutes} min of full load | ${soak ? `${elections(soak) ?? "?"} elections (epoch ${soak.result.elections.epochStart} → ${soak.result.elections.epochEnd})` : "–"} | | | ${met(soak ? elections(soak) === 0 : null)} |`
  )
  p(
    `| server RSS ≤ 150 MB with ${memory ? memory.result.report.auctionsCompleted.toLocaleString("en") : "10,000"} completed auctions | ${mib(maxRss(memory))} (largest of the 3) | | | ${met(memory ? (maxRss(memory) ?? 0) * 1024 <= 150e6 : null)} |`
  )
  p()
  if (soakMinutes !== 5) p(`The soak ran ${soakMinutes} min, not the 5 min the issue asks for.`)
  p()
  p("## Runs")
  p()
  p(
    `Load: ${shape.auctions} concurrent auctions × ${shape.bidders} bidders × ${shape.rounds} rounds for Agora ` +
      `(plus one auctioneer client per auction), ${shape.auctions * shape.bidders} concurrent clients for etcd; ` +
      `every client has one request in flight. ${warmupS} s of warm-up before each measured window.`
  )
  p()
  p(
    "| run | what | committed/s | ack p50 | p90 | p99 | p99.9 | max | notifications/s | errors | server RSS | server CPU per bid | load generator CPU | load avg before → after |"
  )
  p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
  for (const run of runs) {
    const r = run.result
    const rss =
      run.etcdServers !== undefined
        ? run.etcdServers.rssKb.map((kb) => mib(kb)).join(", ")
        : r.servers.map((s) => mib(s.rssKb)).join(", ")
    const cpu = run.etcdServers !== undefined ? run.etcdServers.cpuUsPerPut : r.serverCpuUsPerBid
    const errors = Object.entries(r.report.errors)
      .map(([code, n]) => `${code} ${n}`)
      .join(", ")
    p(
      `| ${run.name} | ${run.what} | ${perSec(r.bidsPerSec)} | ${ms(r.latencyMs.p50)} | ${ms(r.latencyMs.p90)} | ${ms(r.latencyMs.p99)} | ${ms(r.latencyMs.p999)} | ${ms(r.latencyMs.max)} | ${r.target === "agora" ? perSec(r.notificationsPerSec) : "–"} | ${errors === "" ? "none" : errors} | ${rss || "–"} | ${cpu === null ? "–" : `${round(cpu).toLocaleString("en")} µs`} | ${round((100 * r.report.loadCpuMs) / r.windowMs)} % of a core | ${fmtLoad(run.loadBefore.slice(0, 1))} → ${fmtLoad(run.loadAfter.slice(0, 1))} |`
    )
  }
  p()
  p(
    "Server CPU per bid: utime+stime of every server process (from /proc/PID/stat) over the measured window, " +
      "divided by the bids committed in it; it includes the idle cost of heartbeats and timers. " +
      "Server RSS: VmRSS from /proc/PID/status at the end of the window. Not given for runs with kills."
  )
  p()
  p("## Failover")
  p()
  p(
    "Kill → first committed write under the new leader as a client saw it: the leader process gets SIGKILL, " +
      "and the failover time is the wall time from the kill to the first acknowledgement of a write answered " +
      "under a higher epoch (Agora: the epoch of the leader the acknowledging client follows; etcd: `header.raft_term` " +
      "of the put's answer). The killed process is restarted on its data dir once a new leader is there."
  )
  p()
  p("| | kills | no commit within 30 s | min | p50 | p90 | max | each kill, in order (ms) |")
  p("| --- | --- | --- | --- | --- | --- | --- | --- |")
  for (const [label, list, run] of [
    ["Agora (heartbeat 50 ms, failure timeout 300 ms + 0–150 ms)", agoraFailovers, aFail],
    ["etcd (heartbeat 100 ms, election timeout 1,000 ms)", etcdFailovers, eFail]
  ] as const) {
    const each = (run?.etcdKills ?? run?.result.failovers ?? []).map((k) =>
      k.failoverMs === null ? "none" : String(round(k.failoverMs))
    )
    p(
      `| ${label} | ${each.length} | ${stuck(run)} | ${ms(quantile(list, 0))} | ${ms(quantile(list, 0.5))} | ${ms(quantile(list, 0.9))} | ${ms(quantile(list, 1))} | ${each.join(", ")} |`
    )
  }
  p()
  const kept = runs.filter((r) => r.result.serverDir)
  if (kept.length > 0) {
    p(
      `Server data dirs and logs kept (on the machine that ran the suite): ${kept.map((r) => `${r.name} \`${r.result.serverDir}\``).join(", ")}.`
    )
  }
  p()
  p("![Committed writes per 100 ms, leader kills marked](failover.svg)")
  p()
  p("[failover.svg](failover.svg): committed writes per 100 ms over the failover runs, Agora above etcd.")
  p()
  if (profile !== null) {
    const table = (title: string, rows: ReadonlyArray<{ name: string; percent: number }>) => {
      p(`${title}:`)
      p()
      p("| % of busy time | function |")
      p("| --- | --- |")
      for (const row of rows) p(`| ${row.percent.toFixed(1)} | \`${row.name}\` |`)
      p()
    }
    p("## Profile of the leader under load (`node --cpu-prof`)")
    p()
    p(
      `The busiest server of the agora3-profile run (its leader): ${round(profile.leader.busyMs)} ms busy, ` +
        `${round(profile.leader.idleMs)} ms idle over its life (start-up included).`
    )
    p()
    table("By area (self time; the first column names the area)", profile.leader.byArea)
    table("Top functions by self time", profile.leader.self)
    table("Agora's own functions by inclusive time", profile.leader.ownInclusive)
    if (profile.follower !== null) {
      table(`A follower, by area (${round(profile.follower.busyMs)} ms busy)`, profile.follower.byArea)
    }
  }
  p("## How the comparison is made")
  p()
  p(
    "- Same machine, same run, same number of concurrent clients with one request in flight each, loopback only. " +
      "Both load generators are `agora bench` (one Node process), with the same histogram and timeline."
  )
  p(
    "- An Agora bid is acknowledged once the leader has it stored by a majority (its own SQLite store plus one follower's). " +
      "An etcd put is answered once a majority persisted it in the WAL (fsync) and the leader applied it. etcd 3.4 " +
      "always fsyncs; Agora's default `--sync normal` does not (it survives kill -9, not power loss), `--sync full` does."
  )
  p(
    `- etcd puts carry ${200}-byte values (about an Agora bid entry) through the v3 HTTP/JSON gateway ` +
      "(`POST /v3/kv/put`) over keep-alive HTTP/1.1 connections; each client talks to one member (spread round-robin) " +
      "and moves to the next on an error, as clientv3 does. The gateway costs etcd some CPU over gRPC."
  )
  p(
    "- Agora does more per bid than etcd per put: the auction state machine decides the bid, and every bid fans out " +
      `a \`BidReceived\` notification to every participant of its auction (${shape.bidders + 1} here), each acknowledged; ` +
      "bidders also wait for every round to complete before bidding again, while etcd clients never wait for each other."
  )
  p()
  p("## Commands")
  p()
  p("```sh")
  p(`npm run bench${argv.length > 0 ? ` -- ${argv.join(" ")}` : ""}   # builds, then runs:`)
  for (const run of runs) p(run.command)
  p("```")
  p()
  try {
    const notes = readFileSync(join(benchDir, "NOTES.md"), "utf8")
    p(notes.trim())
    p()
  } catch {
    // No hand-written notes.
  }
  writeFileSync(join(benchDir, "RESULTS.md"), `${lines.join("\n")}\n`)
  try {
    // Aligned tables, as `npm run check` (biome) wants them.
    execFileSync(join("node_modules", ".bin", "biome"), ["format", "--write", join(benchDir, "RESULTS.md")], {
      stdio: "ignore"
    })
  } catch {
    process.stderr.write("bench: biome could not format bench/RESULTS.md\n")
  }

  const panels: Array<Series> = []
  if (aFail !== undefined) panels.push(seriesOf(aFail, "Agora: 3 servers, --sync normal"))
  if (eFail !== undefined) panels.push(seriesOf(eFail, `etcd ${etcdVersionText ?? ""}: 3 members`))
  if (panels.length > 0) writeFileSync(join(benchDir, "failover.svg"), await renderFailoverSvg(panels))
  writeFileSync(join(tmpdir(), "agora-bench-runs.json"), JSON.stringify({ runs, profile }))
}

const main = async () => {
  mkdirSync(benchDir, { recursive: true })
  await agoraScenarios()
  let etcdVersionText: string | null = null
  if (withEtcd && (only === undefined || only.some((n) => n.startsWith("etcd")))) {
    etcdVersionText = ensureEtcd()
    await etcdScenarios(etcdVersionText.replace(/^etcd Version:\s*/, ""))
  }
  if (reuse !== undefined) {
    const saved = JSON.parse(readFileSync(reuse, "utf8")) as
      | Array<Run>
      | { runs: Array<Run>; profile: typeof profile }
    const earlier = Array.isArray(saved) ? { runs: saved, profile: null } : saved
    const fresh = new Map(runs.map((r) => [r.name, r]))
    const merged = earlier.runs.map(
      (r) => fresh.get(r.name) ?? { ...r, what: `${r.what} (earlier invocation)` }
    )
    for (const r of runs) if (!earlier.runs.some((e) => e.name === r.name)) merged.push(r)
    runs.splice(0, runs.length, ...merged)
    if (profile === null) profile = earlier.profile
    etcdVersionText ??= etcdVersion()
  }
  await writeReport(etcdVersionText?.replace(/^etcd Version:\s*/, "") ?? null)
  process.stderr.write(`\nwrote ${join(benchDir, "RESULTS.md")} and ${join(benchDir, "failover.svg")}\n`)
}

main().catch((error: unknown) => {
  process.stderr.write(
    `bench suite failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`
  )
  process.exitCode = 1
})
