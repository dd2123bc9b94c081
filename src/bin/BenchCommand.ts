/**
 * `agora bench`: a load generator (DESIGN §7). Concurrent auctions × bidders ×
 * rounds for a duration against a group — one it starts itself on loopback
 * (`--servers N`), or a running one found by broadcast like the client — and a
 * report of committed bids/s, acknowledgement latency percentiles (from a
 * log-bucketed histogram), notifications/s and errors by code, with a
 * progress line on stderr while it runs. With `--kill-leader-every S` (servers
 * it started) it kills the leader with SIGKILL every S seconds, restarts it
 * once a new leader committed a bid, and reports the failover times (kill →
 * first bid acknowledged under a newer epoch, as a client saw it).
 *
 * `--target etcd` drives an etcd cluster instead (the comparison of
 * `npm run bench`): as many clients as Agora has bidders, each putting
 * bid-sized values through etcd's HTTP/JSON gateway, one request in flight.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Command } from "@effect/cli"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import { makeAgoraLoad } from "./bench/AgoraLoad.js"
import { runEtcdLoad } from "./bench/EtcdLoad.js"
import { Histogram } from "./bench/Histogram.js"
import { freeUdpPort, loopback, loopbackBroadcast, startServerGroup } from "./bench/Servers.js"
import { type LatencySummaryMs, type LoadReport, reportOf, Stats, summarize } from "./bench/Stats.js"
import { withLogging } from "./Logging.js"
import { choice, flag, integer, network, requestTimeout, text } from "./Options.js"
import { collectStatus } from "./StatusCommand.js"
import { UsageError } from "./UsageError.js"

const options = {
  target: choice("target", ["agora", "etcd"], {
    default: "agora",
    description: "what to load: an Agora group, or an etcd cluster (--etcd-endpoints) for comparison"
  }),
  servers: integer("servers", {
    min: 0,
    max: 7,
    default: 0,
    description: "start this many `agora server` processes on loopback for the run (0: use the running group)"
  }),
  sync: choice("sync", ["normal", "full"], {
    default: "normal",
    description: "--sync of the servers the bench starts"
  }),
  auctions: integer("auctions", { min: 1, max: 5_000, default: 20, description: "concurrent auctions" }),
  bidders: integer("bidders", { min: 2, max: 1_000, default: 5, description: "bidders per auction" }),
  rounds: integer("rounds", { min: 1, max: 100, default: 10, description: "rounds per auction" }),
  duration: integer("duration", { min: 1, max: 86_400, default: 30, description: "seconds measured" }),
  warmup: integer("warmup", {
    min: 0,
    max: 3_600,
    default: 3,
    description: "seconds of load before measuring starts"
  }),
  rate: integer("rate", {
    min: 0,
    max: 10_000_000,
    default: 0,
    description: "target committed bids/s over all clients (0: as fast as the clients go)"
  }),
  killLeaderEvery: integer("kill-leader-every", {
    min: 0,
    max: 86_400,
    default: 0,
    description: "seconds between SIGKILLs of the leader (needs --servers 3 or more; 0: never)"
  }),
  stopAfterAuctions: integer("stop-after-auctions", {
    min: 0,
    max: 100_000_000,
    default: 0,
    description: "stop once this many auctions completed (0: run for the duration)"
  }),
  etcdEndpoints: text("etcd-endpoints", {
    default: "http://127.0.0.1:2379",
    description: "comma-separated etcd client URLs (--target etcd)"
  }),
  valueBytes: integer("value-bytes", {
    min: 1,
    max: 65_536,
    default: 200,
    description: "bytes of each etcd value (--target etcd): about an Agora bid entry"
  }),
  freshPorts: flag(
    "fresh-ports",
    "restart a killed server on a new unicast port (--port 0) instead of the one it had"
  ),
  keepDir: flag(
    "keep-dir",
    "keep the data dirs and logs of the servers the bench starts (the path is printed)"
  ),
  cpuProfDir: text("cpu-prof-dir", {
    default: "",
    description: "write `node --cpu-prof` profiles of the servers the bench starts into this directory"
  }),
  json: flag("json", "print the report as one JSON line on stdout"),
  reportFile: text("report-file", {
    default: "",
    description: "also write the JSON report to this file (written before exit, whole)"
  }),
  logFormat: choice("log-format", ["pretty", "json"], {
    default: "pretty",
    description: "log lines on stderr"
  }),
  requestTimeout,
  ...network
}

export interface Failover {
  readonly killedAtMs: number
  readonly killed: string
  readonly epoch: number
  /** Kill → first bid acknowledged under a newer epoch; null: none within the wait. */
  readonly failoverMs: number | null
}

export interface ServerFigures {
  readonly id: string
  readonly pid: number
  readonly rssKb: number | null
  readonly cpuMs: number | null
}

/** Everything `--json` prints. */
export interface BenchResult {
  readonly type: "bench"
  readonly argv: ReadonlyArray<string>
  readonly target: "agora" | "etcd"
  readonly settings: Record<string, string | number | boolean>
  readonly report: LoadReport
  readonly windowMs: number
  readonly bidsPerSec: number
  readonly latencyMs: LatencySummaryMs
  readonly otherLatencyMs: LatencySummaryMs
  readonly notificationsPerSec: number
  readonly failovers: ReadonlyArray<Failover>
  readonly failoverMs: LatencySummaryMs | null
  readonly servers: ReadonlyArray<ServerFigures>
  /** Server CPU (all servers alive over the whole window) per committed bid, µs. */
  readonly serverCpuUsPerBid: number | null
  /** With --keep-dir: where the servers' data dirs and logs are. */
  readonly serverDir: string | null
  readonly elections: {
    readonly leaderStart: string | null
    readonly epochStart: number | null
    readonly leaderEnd: string | null
    readonly epochEnd: number | null
  }
}

const formatMs = (s: LatencySummaryMs) =>
  `p50 ${s.p50} ms, p90 ${s.p90} ms, p99 ${s.p99} ms, p99.9 ${s.p999} ms, max ${s.max} ms (n=${s.count})`

const describe = (r: BenchResult): string => {
  const lines = [
    `target ${r.target}: ${r.report.clients} clients, ${(r.windowMs / 1000).toFixed(1)} s measured`,
    `committed bids: ${r.report.acks} (${r.bidsPerSec.toFixed(0)}/s)`,
    `ack latency: ${formatMs(r.latencyMs)}`,
    `other requests: ${formatMs(r.otherLatencyMs)}`,
    `notifications: ${r.report.notifications} (${r.notificationsPerSec.toFixed(0)}/s); auctions completed: ${r.report.auctionsCompleted}`,
    `errors: ${Object.keys(r.report.errors).length === 0 ? "none" : JSON.stringify(r.report.errors)}`
  ]
  if (r.failovers.length > 0) {
    lines.push(
      `failovers: ${r.failovers.map((f) => (f.failoverMs === null ? "none" : `${f.failoverMs} ms`)).join(", ")}`
    )
    if (r.failoverMs !== null) lines.push(`failover: ${formatMs(r.failoverMs)}`)
  }
  for (const s of r.servers) {
    lines.push(
      `server ${s.id} (pid ${s.pid}): RSS ${s.rssKb === null ? "?" : (s.rssKb / 1024).toFixed(1)} MiB, CPU ${s.cpuMs ?? "?"} ms`
    )
  }
  if (r.serverCpuUsPerBid !== null)
    lines.push(`server CPU per committed bid: ${r.serverCpuUsPerBid.toFixed(0)} µs`)
  const e = r.elections
  if (e.epochStart !== null)
    lines.push(`leader ${e.leaderStart} epoch ${e.epochStart} → leader ${e.leaderEnd} epoch ${e.epochEnd}`)
  return lines.join("\n")
}

/** The leader the servers report (the highest epoch's); busy servers may take a while to answer. */
const statusOf = (
  network: { bind: string; discoveryPort: number; broadcast: string; maxDatagram: number },
  waitMs = 300
) =>
  Effect.map(collectStatus({ ...network, waitMs }), (seen) => {
    const leaders = seen
      .filter((s) => s.reply.role === "leader")
      .sort((a, b) => b.reply.epoch - a.reply.epoch)
    const leader = leaders[0]?.reply
    return leader === undefined ? null : { id: leader.id as string, epoch: leader.epoch as number }
  })

export const benchCommand = Command.make("bench", options, (o) =>
  Effect.gen(function* () {
    if (o.killLeaderEvery > 0 && (o.target !== "agora" || o.servers < 3)) {
      return yield* new UsageError({
        message:
          "--kill-leader-every needs --target agora and --servers 3 or more (the bench kills what it started)"
      })
    }
    const stats = new Stats()
    const say = (line: string) => Effect.sync(() => process.stderr.write(`${line}\n`))

    // --- the group
    let serverDir: string | null = null
    let net = {
      bind: o.bind,
      discoveryPort: o.discoveryPort,
      broadcast: o.broadcast,
      maxDatagram: o.maxDatagram
    }
    const group =
      o.target === "agora" && o.servers > 0
        ? yield* Effect.gen(function* () {
            const dir = mkdtempSync(join(tmpdir(), "agora-bench-"))
            serverDir = dir
            yield* Effect.addFinalizer(() =>
              o.keepDir
                ? say(`bench: server data dirs and logs kept in ${dir}`)
                : Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
            )
            net = { ...net, bind: loopback, broadcast: loopbackBroadcast, discoveryPort: yield* freeUdpPort }
            const servers = yield* startServerGroup({
              count: o.servers,
              dir,
              discoveryPort: net.discoveryPort,
              sync: o.sync,
              maxDatagram: o.maxDatagram,
              cpuProfDir: o.cpuProfDir === "" ? undefined : o.cpuProfDir,
              freshPorts: o.freshPorts
            })
            yield* say(
              `bench: started ${o.servers} servers (--sync ${o.sync}) in ${dir}, discovery port ${net.discoveryPort}`
            )
            return servers
          })
        : null
    if (o.target === "agora") {
      const deadline = (yield* Clock.currentTimeMillis) + 30_000
      while ((yield* statusOf(net)) === null) {
        if ((yield* Clock.currentTimeMillis) > deadline)
          return yield* new UsageError({ message: "no leader answered within 30 s (is a group running?)" })
      }
    }

    // --- the load, connected
    const pace =
      o.rate <= 0
        ? Effect.void
        : (() => {
            let nextMs = 0
            const gapMs = 1000 / o.rate
            return Effect.suspend(() => {
              const now = performance.now()
              const slot = Math.max(now, nextMs)
              nextMs = slot + gapMs
              const waitMs = slot - now
              return waitMs >= 1 ? Effect.sleep(Math.floor(waitMs)) : Effect.void
            })
          })()
    const clients = o.auctions * o.bidders
    let leaderNow: Effect.Effect<Option.Option<{ readonly id: string; readonly epoch: number }>> =
      Effect.succeed(Option.none())
    let load: Effect.Effect<void>
    if (o.target === "agora") {
      yield* say(`bench: connecting ${o.auctions * (o.bidders + 1)} clients…`)
      const agora = yield* makeAgoraLoad(
        {
          idPrefix: `bench${process.pid}`,
          auctions: o.auctions,
          bidders: o.bidders,
          rounds: o.rounds,
          bind: net.bind,
          discoveryPort: net.discoveryPort,
          broadcast: net.broadcast,
          maxDatagram: net.maxDatagram,
          requestTimeoutMs: o.requestTimeout * 1000,
          noticeTimeoutMs: Math.max(15_000, o.requestTimeout * 1000),
          connectConcurrency: 64
        },
        stats
      )
      leaderNow = agora.leader
      load = agora.run({ pace, stopAfterAuctions: o.stopAfterAuctions })
    } else {
      const endpoints = o.etcdEndpoints
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s.length > 0)
      load = runEtcdLoad(
        { endpoints, clients, valueBytes: o.valueBytes, requestTimeoutMs: o.requestTimeout * 1000 },
        stats,
        pace
      )
      leaderNow = Effect.sync(() => {
        const last = [...stats.firstAckByEpoch.keys()].sort((a, b) => b - a)[0]
        return last === undefined ? Option.none() : Option.some({ id: "etcd", epoch: last })
      })
    }
    const loadFiber = yield* Effect.forkScoped(load)

    // --- progress, on stderr
    const startedMs = Date.now()
    let phase = " (warm-up)"
    const progress = Effect.gen(function* () {
      const tty = process.stderr.isTTY === true
      let lastAcks = 0
      let lastMs = Date.now()
      let lastPrintMs = 0
      for (;;) {
        yield* Effect.sleep(1_000)
        const now = Date.now()
        const rate = ((stats.acksAll - lastAcks) * 1000) / (now - lastMs)
        lastAcks = stats.acksAll
        lastMs = now
        if (!tty && now - lastPrintMs < 5_000) continue
        lastPrintMs = now
        const leader = yield* leaderNow
        const errors = [...stats.errors.values()].reduce((a, b) => a + b, 0)
        const line =
          `bench ${((now - startedMs) / 1000).toFixed(0)}s${phase}: ` +
          `${rate.toFixed(0)} bids/s now, ${stats.acks} measured, p99 ${(stats.latencyUs.quantile(0.99) / 1000).toFixed(1)} ms, ` +
          `${stats.notifications} notices, ${errors} errors, ${stats.auctionsCompletedAll} auctions done` +
          (Option.isSome(leader) ? `, leader ${leader.value.id} epoch ${leader.value.epoch}` : "")
        process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`)
      }
    })
    const progressFiber = yield* Effect.forkScoped(progress)

    yield* Effect.sleep(o.warmup * 1000)
    const statusStart = o.target === "agora" ? yield* statusOf(net, 1_000) : null
    // By pid: a server killed and restarted is another process, whose CPU is not comparable.
    const cpuStart = new Map((group?.sample() ?? []).map((s) => [s.pid, s.cpuMs]))
    const loadCpuStart = process.cpuUsage()
    const windowStartMs = Date.now()
    stats.measuring = true
    phase = ""

    // --- leader kills
    const failovers: Array<Failover> = []
    const killer =
      group === null || o.killLeaderEvery <= 0
        ? Effect.void
        : Effect.gen(function* () {
            // No kill in the last second of the window; a failover under way when it ends is awaited.
            const lastKillMs = windowStartMs + o.duration * 1000 - 1000
            for (let k = 1; ; k++) {
              const dueMs = windowStartMs + k * o.killLeaderEvery * 1000
              if (dueMs > lastKillMs) return
              yield* Effect.sleep(Math.max(0, dueMs - Date.now()))
              if (!stats.measuring) return
              // The servers' word, else (servers too busy to answer in time) what the clients follow.
              const leader = (yield* statusOf(net, 500)) ?? Option.getOrNull(yield* leaderNow)
              if (leader === null) continue
              const killedAtMs = Date.now()
              group.kill(leader.id)
              let firstMs: number | null = null
              while (Date.now() - killedAtMs < 30_000) {
                firstMs = stats.firstAckAfter(leader.epoch, killedAtMs)
                if (firstMs !== null) break
                yield* Effect.sleep(5)
              }
              const failover = {
                killedAtMs,
                killed: leader.id,
                epoch: leader.epoch,
                failoverMs: firstMs === null ? null : firstMs - killedAtMs
              }
              failovers.push(failover)
              yield* say(
                `\nbench: killed leader ${leader.id} (epoch ${leader.epoch}); ` +
                  (firstMs === null
                    ? "no bid committed within 30 s"
                    : `first bid committed after ${firstMs - killedAtMs} ms`)
              )
              group.restart(leader.id)
            }
          })
    const killerFiber = yield* Effect.forkScoped(killer)

    // --- the window
    const stopped = o.stopAfterAuctions > 0 ? Fiber.join(loadFiber) : Effect.never
    yield* Effect.raceFirst(Effect.sleep(o.duration * 1000), stopped)
    stats.measuring = false
    phase = " (window over)"
    const windowEndMs = Date.now()
    const loadCpu = process.cpuUsage(loadCpuStart)
    // A failover still under way is measured to its end (the load goes on meanwhile, unmeasured).
    yield* Fiber.join(killerFiber).pipe(Effect.timeout(35_000), Effect.ignore)
    yield* Fiber.interrupt(killerFiber)
    const samples = group?.sample() ?? []
    const statusEnd = o.target === "agora" ? yield* statusOf(net, 1_000) : null
    yield* Fiber.interrupt(progressFiber)
    yield* Fiber.interrupt(loadFiber)
    if (process.stderr.isTTY === true) process.stderr.write("\n")

    // --- the report
    const report = reportOf(
      stats,
      o.target,
      o.target === "agora" ? o.auctions * (o.bidders + 1) : clients,
      windowStartMs,
      windowEndMs,
      (loadCpu.user + loadCpu.system) / 1000
    )
    const windowMs = windowEndMs - windowStartMs
    const servers: Array<ServerFigures> = samples.map((s) => ({
      id: s.id,
      pid: s.pid,
      rssKb: s.rssKb,
      cpuMs: s.cpuMs === null ? null : s.cpuMs - (cpuStart.get(s.pid) ?? s.cpuMs)
    }))
    // Only meaningful when every server lived through the whole window (no kills).
    const cpuComplete = failovers.length === 0 && servers.length > 0 && servers.every((s) => s.cpuMs !== null)
    const serverCpuMs = servers.reduce((total, s) => total + (s.cpuMs ?? 0), 0)
    const failoverHistogram = new Histogram()
    for (const f of failovers) if (f.failoverMs !== null) failoverHistogram.record(f.failoverMs * 1000)
    const result: BenchResult = {
      type: "bench",
      argv: process.argv.slice(2),
      target: o.target,
      settings: {
        servers: o.servers,
        sync: o.sync,
        auctions: o.auctions,
        bidders: o.bidders,
        rounds: o.rounds,
        duration: o.duration,
        warmup: o.warmup,
        rate: o.rate,
        killLeaderEvery: o.killLeaderEvery,
        valueBytes: o.valueBytes
      },
      report,
      windowMs,
      bidsPerSec: (report.acks * 1000) / windowMs,
      latencyMs: summarize(stats.latencyUs),
      otherLatencyMs: summarize(stats.otherLatencyUs),
      notificationsPerSec: (report.notifications * 1000) / windowMs,
      failovers,
      failoverMs: failoverHistogram.total === 0 ? null : summarize(failoverHistogram),
      servers,
      serverCpuUsPerBid: cpuComplete && report.acks > 0 ? (serverCpuMs * 1000) / report.acks : null,
      serverDir: o.keepDir ? serverDir : null,
      elections: {
        leaderStart: statusStart?.id ?? null,
        epochStart: statusStart?.epoch ?? null,
        leaderEnd: statusEnd?.id ?? null,
        epochEnd: statusEnd?.epoch ?? null
      }
    }
    if (o.reportFile !== "") writeFileSync(o.reportFile, `${JSON.stringify(result)}\n`)
    if (o.json) yield* Console.log(JSON.stringify(result))
    else yield* Console.log(describe(result))
    return Option.none()
  }).pipe(
    Effect.catchTags({
      NotConnected: (error) =>
        new UsageError({ message: `a bench client could not connect: ${error.message}` })
    }),
    Effect.scoped,
    withLogging(o.logFormat, LogLevel.Warning)
  )
).pipe(
  Command.withDescription(
    "Load an Agora group (or, for comparison, an etcd cluster) with concurrent auctions × bidders × rounds and " +
      "report committed bids/s, ack latency percentiles, notifications/s, errors by code and, with " +
      "--kill-leader-every, failover times.\n" +
      "Example: agora bench --servers 3 --auctions 20 --bidders 5 --rounds 10 --duration 30"
  )
)
