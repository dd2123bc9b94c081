/**
 * The cluster simulator (DESIGN §8, issue 9; TigerBeetle's VOPR, FoundationDB's
 * simulation): one seed → one whole run, deterministic, on virtual time.
 *
 * A run: N auction servers (3 or 5) on the simulated network and in-memory
 * stores, M clients; bootstrap; a fault phase in which the seed's fault plan
 * (Faults.ts) runs against the seed's workload (Workload.ts); then heal
 * (partition gone, links calm, every server restarted) and quiesce (clients
 * only finish what is under way) until every auction has ended or the bound
 * has passed; a short drain; then the checkers (Checkers.ts) read the history.
 *
 * Everything random comes from the seed: the configuration (sizes, timeouts,
 * checkpoint period), the plan, the workload (an `Rng` per client), and the
 * servers' `Random` (seeded by `simulate`). Same seed, same run, same trace
 * hash — the report prints it.
 *
 * `Breaks` are test-only ways to break the system on purpose (Breaks.ts), to
 * show that each checker can fail.
 */
import { Effect, Exit, Fiber, HashMap, Layer, Logger, LogLevel, Option, type Scope } from "effect"
import { agoraMachine } from "../../src/domain/agora/Agora.js"
import type { ClusterConfig } from "../../src/domain/cluster/Config.js"
import type { LogEntry } from "../../src/domain/cluster/Entry.js"
import { SimClock } from "../../src/layers/SimClock.js"
import { type SimEnding, simulate } from "../../src/layers/SimRuntime.js"
import { recordTrace } from "../../src/layers/SimTrace.js"
import { SimNetwork, type SimNetworkStats } from "../../src/layers/TransportSim.js"
import {
  type AuctionServerConfig,
  defaultAuctionServerConfig,
  makeAuctionServer
} from "../../src/services/AuctionServer.js"
import type { ClusterShape } from "../../src/services/Cluster.js"
import { LogStore, type LogStoreShape, type Stored } from "../../src/services/LogStore.js"
import { Transport, type TransportShape } from "../../src/services/Transport.js"
import {
  auctionOutcomes,
  type Bounds,
  type CheckerName,
  checkAll,
  decodeHistory,
  type Violation
} from "./Checkers.js"
import {
  calmLink,
  describePlan,
  type FaultPlan,
  type FaultStyle,
  injectFaults,
  planFaults
} from "./Faults.js"
import { canonicalJson, type History, makeHistory, type TimelineEvent } from "./History.js"
import { makeRng } from "./Rng.js"
import { makeServiceClient } from "./ServiceClient.js"
import { makeRecordingClient, type RecordingClientOptions, recordingClientDefaults } from "./SimClient.js"
import { makeSimCluster } from "./SimCluster.js"
import { runClient, type Shared } from "./Workload.js"

/** Everything a seed decides about a run (printed with a failure). */
export interface SimConfig {
  readonly seed: number
  readonly servers: ReadonlyArray<string>
  readonly clients: ReadonlyArray<string>
  /** Length of the fault phase. */
  readonly faultMs: number
  readonly faultStyle: FaultStyle
  readonly server: AuctionServerConfig
  readonly cluster: Partial<ClusterConfig>
  readonly client: RecordingClientOptions
  /**
   * "service": the real `Client` service drives the workload (what users get, checked as
   * delivered); "recording": the hand-written client, whose raw record shows what servers sent.
   */
  readonly clientKind: ClientKind
  readonly bounds: Bounds
  /** After the bound, notifications get this long to arrive before the final look. */
  readonly drainMs: number
  /** Period of the committed-log sampler. */
  readonly sampleMs: number
}

export type ClientKind = "service" | "recording"

/** What a caller may fix instead of letting the seed choose. */
export interface SimOverrides {
  readonly clientKind?: ClientKind | undefined
  readonly servers?: 3 | 5 | undefined
  readonly clients?: number | undefined
  readonly faultMs?: number | undefined
  readonly faultStyle?: FaultStyle | undefined
  readonly server?: Partial<AuctionServerConfig> | undefined
  readonly cluster?: Partial<ClusterConfig> | undefined
}

/**
 * Test-only ways to break the system on purpose. None of them is reachable
 * from `src/`; they wrap what SimCluster hands each server.
 */
export interface Breaks {
  readonly name: string
  /** Wraps a server's store at each start (closure state dies with the server: a crash). */
  readonly store?: ((id: string, store: LogStoreShape) => LogStoreShape) | undefined
  /** Changes what a server read from its store at start. */
  readonly stored?: ((id: string, stored: Stored) => Stored) | undefined
  /** Wraps a server's transport at each start. */
  readonly serverTransport?: ((id: string, transport: TransportShape) => TransportShape) | undefined
  /** Server settings (e.g. timeouts too long for the termination bound). */
  readonly server?: Partial<AuctionServerConfig> | undefined
  /** Client options (e.g. a client that drops some notifications). */
  readonly client?: Partial<RecordingClientOptions> | undefined
  /** The faults the break needs to show (e.g. a crash storm for a store that loses its last writes). */
  readonly faultStyle?: FaultStyle | undefined
  /** The group size the break needs to show. */
  readonly servers?: 3 | 5 | undefined
  /** Changes the recorded history before the checkers read it (a corrupted checker input). */
  readonly history?: ((history: History) => void) | undefined
}

export interface RunOptions {
  readonly overrides?: SimOverrides | undefined
  readonly breaks?: Breaks | undefined
  /** Record every datagram in the trace (default true: the hash then covers every delivery). */
  readonly traceDatagrams?: boolean | undefined
  /** Print server logs at this level and above (default: none; errors are always recorded as defects). */
  readonly logLevel?: LogLevel.LogLevel | undefined
  /** Trace lines kept for the report. Default 200. */
  readonly traceTailLines?: number | undefined
  /**
   * Scheduler tasks the run may take (`simulate`'s `maxSteps`): a run that keeps the
   * servers busy without end (a retransmission storm) fails as "step-budget" instead of
   * running for hours. Default `stepsMaxDefault`.
   */
  readonly maxSteps?: number | undefined
}

/** About 20 times what a normal seed takes (50k–150k). */
export const stepsMaxDefault = 2_000_000

export interface SeedStats {
  readonly ops: number
  readonly acknowledged: number
  readonly refused: number
  readonly timeouts: number
  readonly inFlight: number
  readonly notices: number
  readonly committedEntries: number
  readonly auctions: Readonly<Record<string, number>>
  readonly crashes: number
  readonly storesLost: number
  readonly partitions: number
  readonly elections: number
  readonly network: SimNetworkStats | null
}

export interface SeedReport {
  readonly seed: number
  readonly config: SimConfig
  readonly plan: ReadonlyArray<string>
  readonly timeline: ReadonlyArray<TimelineEvent>
  readonly violations: ReadonlyArray<Violation>
  readonly ending: SimEnding
  readonly traceHash: string
  readonly traceCount: number
  readonly traceTail: ReadonlyArray<string>
  /** Virtual time the run covered. */
  readonly virtualMs: number
  readonly wallMs: number
  readonly steps: number
  readonly stats: SeedStats
}

const serverNames = (count: number) => Array.from({ length: count }, (_, i) => `s${i + 1}`)
const clientNames = (count: number) => Array.from({ length: count }, (_, i) => `c${i + 1}`)

/**
 * The configuration a seed chooses (the `Rng` stream 1; the plan uses 2, clients 100+). Every
 * value is drawn whatever the overrides, so fixing one (`--servers 5`) leaves the others as the
 * seed has them.
 */
export const configFor = (seed: number, overrides: SimOverrides = {}, breaks?: Breaks): SimConfig => {
  const rng = makeRng(seed, 1)
  const drawn = {
    servers: rng.chance(0.5) ? 3 : 5,
    clients: rng.int(3, 6),
    roundTimeoutMs: rng.int(2, 4) * 1_000,
    startTimeoutMs: rng.int(2, 4) * 1_000,
    checkpointEntries: rng.int(64, 400),
    checkpointIntervalMs: rng.int(2, 10) * 1_000,
    removalTimeoutMs: rng.int(4, 15) * 1_000,
    requestTimeoutMs: rng.pick([2_000, 5_000, 10_000]),
    faultMs: rng.int(10, 25) * 1_000,
    faultStyle: rng.weighted({ mixed: 70, "crash-storm": 15, churn: 15 }) as FaultStyle,
    clientKind: (rng.chance(0.5) ? "service" : "recording") as ClientKind,
    catchUpEntries: rng.int(0, 200)
  }
  const serverCount = overrides.servers ?? breaks?.servers ?? drawn.servers
  // What the workload is built for; a test-only break may change the servers' settings, never the bounds.
  const intended: AuctionServerConfig = {
    ...defaultAuctionServerConfig,
    roundTimeoutMs: drawn.roundTimeoutMs,
    startTimeoutMs: drawn.startTimeoutMs,
    // No session expires during a run: the checkers would have to tell expiry from loss.
    sessionTimeoutMs: 30 * 60_000,
    retentionMs: 60 * 60_000,
    ...overrides.server
  }
  const server: AuctionServerConfig = { ...intended, ...breaks?.server }
  const cluster: Partial<ClusterConfig> = {
    expect: serverCount,
    // Checkpoints (and so snapshot transfer to a server that lost its store) happen in every run.
    checkpointEntries: drawn.checkpointEntries,
    checkpointIntervalMs: drawn.checkpointIntervalMs,
    // Below the run's length, so followers behind the kept tail get snapshots.
    catchUpEntries: drawn.catchUpEntries,
    // In a group of 5, a server down long enough is removed (and rejoins): membership changes too.
    ...(serverCount === 5 ? { removalTimeoutMs: drawn.removalTimeoutMs } : {}),
    ...overrides.cluster
  }
  const client: RecordingClientOptions = {
    ...recordingClientDefaults,
    // Short request timeouts make clients give up during partitions: "timeout" outcomes get checked too.
    requestTimeoutMs: drawn.requestTimeoutMs,
    ...breaks?.client
  }
  const roundsMax = 3
  const leaderAfterHealMs = 10_000
  return {
    seed,
    servers: serverNames(serverCount),
    clients: clientNames(overrides.clients ?? drawn.clients),
    faultMs: overrides.faultMs ?? drawn.faultMs,
    faultStyle: overrides.faultStyle ?? breaks?.faultStyle ?? drawn.faultStyle,
    server,
    cluster,
    client,
    // A break that changes client options is a break of the recording client.
    clientKind: overrides.clientKind ?? (breaks?.client === undefined ? drawn.clientKind : "recording"),
    bounds: {
      leaderAfterHealMs,
      // A leader, a client's list-and-cancel (one request timeout), the start timeout, every round.
      terminalAfterHealMs:
        leaderAfterHealMs +
        client.requestTimeoutMs +
        intended.startTimeoutMs +
        roundsMax * intended.roundTimeoutMs +
        3_000
    },
    drainMs: 3_000,
    sampleMs: 100
  }
}

/** The plan of a seed (the `Rng` stream 2). */
export const planFor = (config: SimConfig): FaultPlan =>
  planFaults(makeRng(config.seed, 2), config.faultMs, config.servers, config.clients, config.faultStyle)

const entryText = (entry: LogEntry) => JSON.stringify(entry)

/** The whole run as one Effect, for `simulate`; fills `history` as it goes. */
const program = (
  config: SimConfig,
  plan: FaultPlan,
  history: History,
  breaks: Breaks | undefined,
  networkStats: { value: SimNetworkStats | null }
): Effect.Effect<void, never, SimNetwork | SimClock | Scope.Scope> =>
  Effect.gen(function* () {
    const network = yield* SimNetwork
    const clock = yield* SimClock
    const startMs = clock.unsafeCurrentTimeMillis()
    const elapsed = () => clock.unsafeCurrentTimeMillis() - startMs
    const note = (text: string) =>
      Effect.suspend(() => {
        history.timeline.push({ atMs: elapsed(), text })
        return recordTrace(`sim ${text}`)
      })
    const ids = config.servers
    /**
     * Per running server, every entry its replica wrote to its store (a checkpoint drops nothing
     * here): the sampler reads committed entries from it, so a checkpoint that compacts the log
     * right after a commit cannot hide an entry from the checkers.
     */
    const shadows = new Map<string, Map<number, LogEntry>>()

    const cluster = yield* makeSimCluster({
      ids,
      machine: agoraMachine,
      config: config.cluster,
      makeServer: (context) =>
        Effect.gen(function* () {
          const store = yield* LogStore
          const transport = yield* Transport
          // The stored hook first: a break may prepare its store wrapper from what it changed.
          const stored = breaks?.stored?.(context.id, context.stored) ?? context.stored
          // Outermost, so it sees what the replica wrote, whatever a test-only store then does with it.
          const shadow = new Map<number, LogEntry>(stored.entries.map((entry) => [entry.seq, entry]))
          shadows.set(context.id, shadow)
          const inner = breaks?.store?.(context.id, store) ?? store
          const watched: LogStoreShape = {
            ...inner,
            write: (ops) =>
              Effect.suspend(() => {
                for (const op of ops) {
                  if (op._tag === "Append") for (const entry of op.entries) shadow.set(entry.seq, entry)
                  else if (op._tag === "Truncate") {
                    for (const seq of [...shadow.keys()]) if (seq >= op.fromSeq) shadow.delete(seq)
                  } else if (op._tag === "ResetStore") shadow.clear()
                  else if (op._tag === "Checkpoint") {
                    // Its own checkpoint, or a snapshot whose entry at its seq matches ours, keeps our
                    // entries (log matching); a snapshot that replaced a diverging log drops them.
                    const { epoch, seq } = op.checkpoint
                    if (shadow.get(seq)?.epoch !== epoch) {
                      for (const kept of [...shadow.keys()]) if (kept <= seq) shadow.delete(kept)
                    }
                  }
                }
                return inner.write(ops)
              })
          }
          return yield* makeAuctionServer({
            id: context.id,
            cluster: context.config,
            server: config.server,
            stored,
            incarnation: context.incarnation,
            onRoleChanged: context.onRoleChanged
          }).pipe(
            Effect.provideService(LogStore, watched),
            Effect.provideService(Transport, breaks?.serverTransport?.(context.id, transport) ?? transport)
          )
        })
    })
    history.roleEvents = cluster.roleEvents

    // -- the sampler: every committed entry any server shows, checked against all seen before ----------
    const instances = new Map<
      string,
      { readonly cluster: ClusterShape<unknown, unknown, unknown>; checked: number }
    >()
    const openAuctions = new Set<number>()
    const violation = (text: string) => {
      if (history.samplerViolations.length < 50) history.samplerViolations.push(`${elapsed()} ms: ${text}`)
    }
    const remember = (id: string, entry: LogEntry) => {
      const seen = history.committed.get(entry.seq)
      if (seen !== undefined) {
        const text = entryText(entry)
        if (seen.text !== text && canonicalJson(seen.entry) !== canonicalJson(entry)) {
          violation(`seq ${entry.seq}: ${id} has ${text}, ${seen.server} had ${seen.text} at ${seen.atMs} ms`)
        }
        return
      }
      history.committed.set(entry.seq, { entry, text: entryText(entry), server: id, atMs: elapsed() })
      if (entry.body._tag !== "App") return
      const decoded = agoraMachine.decodeEvents(entry.body.data)
      if (decoded._tag === "Left") return
      for (const event of decoded.right) {
        if (event._tag !== "AuctionHappened") continue
        const inner = event.event
        if (inner._tag === "AuctionCreated") openAuctions.add(inner.auction)
        if (inner._tag === "AuctionClosed" || inner._tag === "AuctionCancelled") {
          openAuctions.delete(inner.auction)
          if (!history.terminalAtMs.has(inner.auction)) history.terminalAtMs.set(inner.auction, elapsed())
        }
      }
    }
    const sample = Effect.forEach(
      ids,
      (id) =>
        Effect.gen(function* () {
          const running = cluster.cluster(id) as ClusterShape<unknown, unknown, unknown> | undefined
          if (running === undefined) {
            instances.delete(id)
            return
          }
          let instance = instances.get(id)
          if (instance === undefined || instance.cluster !== running) {
            instance = { cluster: running, checked: 0 }
            instances.set(id, instance)
          }
          const status = yield* running.status
          if (status.commitSeq > history.commitSeqMax) history.commitSeqMax = status.commitSeq
          if (status.commitSeq < instance.checked) {
            violation(`${id}'s commit seq went back from ${instance.checked} to ${status.commitSeq}`)
          }
          const shadow = shadows.get(id)
          if (shadow === undefined) return
          // The last entry checked again (still the same?), then everything up to the commit point.
          for (let seq = Math.max(1, instance.checked); seq <= status.commitSeq; seq++) {
            const entry = shadow.get(seq)
            if (entry !== undefined) remember(id, entry)
          }
          instance.checked = Math.max(instance.checked, status.commitSeq)
        }),
      { discard: true }
    )
    yield* Effect.forkScoped(Effect.forever(Effect.zipRight(Effect.sleep(config.sampleMs), sample)))

    /** The one leader all running servers follow in its epoch, its log committed; else null. */
    const settledLeader = Effect.map(cluster.statuses, (all) => {
      const leading = all.filter((status) => status.role === "leader")
      const leader = leading[0]
      return leading.length === 1 &&
        leader !== undefined &&
        leader.commitSeq >= leader.lastSeq &&
        all.every(
          (status) =>
            status.id === leader.id || (status.leader === leader.id && status.epoch === leader.epoch)
        )
        ? leader.id
        : null
    })
    const awaitSettled = (timeoutMs: number) =>
      Effect.gen(function* () {
        const deadline = elapsed() + timeoutMs
        while (elapsed() < deadline) {
          const leader = yield* settledLeader
          if (leader !== null) return leader
          yield* Effect.sleep(20)
        }
        return null
      })

    // -- bootstrap ------------------------------------------------------------------------------------
    yield* note(`start ${ids.length} servers, ${config.clients.length} clients`)
    for (const id of ids) yield* cluster.start(id)
    const first = yield* awaitSettled(20_000)
    yield* note(first === null ? "no leader after bootstrap" : `leader ${first}`)

    // -- clients --------------------------------------------------------------------------------------
    const shared: Shared = { known: new Map(), sessions: new Map(), phase: "faults", startMs }
    const clients = yield* Effect.forEach(config.clients, (name) =>
      config.clientKind === "service"
        ? makeServiceClient(name, config.client)
        : makeRecordingClient(name, config.client)
    )
    const fibers = yield* Effect.forEach(clients, (client, index) =>
      Effect.forkScoped(runClient(client, makeRng(config.seed, 100 + index), shared, history))
    )

    // -- faults ---------------------------------------------------------------------------------------
    yield* injectFaults(
      plan,
      config.faultMs,
      {
        servers: ids,
        network,
        leader: Effect.map(cluster.leaders, (leaders) =>
          leaders.length === 1 ? (leaders[0]?.id ?? null) : null
        ),
        isRunning: (id) => cluster.cluster(id) !== undefined,
        crash: (id, loseStore) => cluster.crash(id, { loseStore }),
        start: (id) => cluster.start(id),
        wholeGroup: Effect.gen(function* () {
          const statuses = yield* cluster.statuses
          const leaders = statuses.filter((status) => status.role === "leader")
          const leader = leaders[0]
          if (statuses.length !== ids.length || leaders.length !== 1 || leader === undefined) return false
          return (
            leader.members.length === ids.length &&
            statuses.every((status) =>
              leader.members.some(
                (member) =>
                  member.id === status.id && member.incarnation === status.incarnation && member.voter
              )
            )
          )
        }),
        note
      },
      makeRng(config.seed, 3)
    )

    // -- heal and quiesce -----------------------------------------------------------------------------
    yield* network.heal
    yield* network.resetConditions
    for (const name of [...ids, ...config.clients]) yield* network.up(name)
    for (const id of ids) {
      if (cluster.cluster(id) === undefined) yield* cluster.start(id)
    }
    shared.phase = "quiesce"
    history.healedAtMs = elapsed()
    yield* note("healed: network calm, every server up; quiescing")
    const leader = yield* awaitSettled(config.bounds.leaderAfterHealMs + 5_000)
    if (leader !== null) history.leaderAfterHealMs = elapsed()
    yield* note(leader === null ? "no single leader after healing" : `leader ${leader} after healing`)
    // Until every auction has ended and no request is in flight, at least a few list-and-cancel passes.
    const quiesceEndMs = (history.healedAtMs ?? 0) + config.bounds.terminalAfterHealMs
    const quietFromMs = (history.healedAtMs ?? 0) + 5_000
    while (elapsed() < quiesceEndMs) {
      const idle = history.ops.every((op) => op.endMs !== null)
      if (elapsed() >= quietFromMs && openAuctions.size === 0 && idle) break
      yield* Effect.sleep(100)
    }
    yield* note(`quiesced with ${openAuctions.size} auctions open; draining`)
    yield* Effect.sleep(config.drainMs)
    shared.phase = "done"
    yield* sample
    history.endedAtMs = elapsed()
    for (const [index, client] of clients.entries()) {
      const record = history.clients.find((c) => c.name === client.name)
      if (record !== undefined) record.deliveries = client.deliveries()
      const fiber = fibers[index]
      if (fiber !== undefined) yield* Fiber.interrupt(fiber)
    }
    history.final = yield* Effect.forEach(ids, (id) =>
      Effect.gen(function* () {
        const running = cluster.cluster(id)
        if (running === undefined) {
          return { id, running: false, role: "down", epoch: 0, commitSeq: 0, entries: [] }
        }
        const status = yield* running.status
        return {
          id,
          running: true,
          role: status.role,
          epoch: status.epoch,
          commitSeq: status.commitSeq,
          entries: yield* running.committedEntries(0)
        }
      })
    )
    networkStats.value = yield* network.stats
    yield* note("end")
  })

/** A logger that records every error a server logs (a defect the checkers report). */
const defectLogger = (history: History, startMs: () => number, echo: boolean) =>
  Logger.make(({ annotations, cause, date, logLevel, message }) => {
    const node = Option.getOrElse(HashMap.get(annotations, "node"), () => "?")
    const text = `${Array.isArray(message) ? message.map(String).join(" ") : String(message)}${cause._tag === "Empty" ? "" : ` ${String(cause)}`}`
    if (LogLevel.greaterThanEqual(logLevel, LogLevel.Error)) {
      history.defects.push({ atMs: date.getTime() - startMs(), node: String(node), message: text })
    }
    if (echo) console.error(`${date.getTime() - startMs()}ms [${logLevel.label}] ${String(node)}: ${text}`)
  })

/** Runs one seed and checks it. Synchronous and deterministic (but `wallMs`). */
export const runSeed = (seed: number, options: RunOptions = {}): SeedReport => {
  const breaks = options.breaks
  const config = configFor(seed, options.overrides, breaks)
  const plan = planFor(config)
  const history = makeHistory()
  const networkStats: { value: SimNetworkStats | null } = { value: null }
  let startMs = 0
  const whole = Effect.gen(function* () {
    startMs = (yield* SimClock).unsafeCurrentTimeMillis()
    yield* program(config, plan, history, breaks, networkStats)
  }).pipe(
    Effect.scoped,
    Effect.provide(
      Layer.merge(
        SimNetwork.layer({ link: calmLink, traceDatagrams: options.traceDatagrams ?? true }),
        Logger.replace(
          Logger.defaultLogger,
          defectLogger(history, () => startMs, options.logLevel !== undefined)
        )
      )
    ),
    Logger.withMinimumLogLevel(options.logLevel ?? LogLevel.Error)
  )
  const maxTimeMs =
    20_000 + config.faultMs + config.bounds.leaderAfterHealMs + config.bounds.terminalAfterHealMs + 30_000
  const result = simulate(whole, {
    seed,
    maxTimeMs,
    maxSteps: options.maxSteps ?? stepsMaxDefault,
    traceLinesMax: options.traceTailLines ?? 200
  })

  breaks?.history?.(history)
  const runProblems: Array<Violation> = []
  if (!Exit.isSuccess(result.exit) || result.ending !== "completed") {
    runProblems.push({
      checker: "run" as CheckerName,
      message: `the simulation ended ${result.ending}: ${Exit.isSuccess(result.exit) ? "ok" : String(result.exit.cause)}`
    })
  }
  const violations = [...runProblems, ...checkAll(history, config.bounds)]
  const decoded = decodeHistory(history)
  const ops = history.ops
  const answered = ops.filter((op) => op.result !== null && op.result !== "timeout")
  const stats: SeedStats = {
    ops: ops.length,
    acknowledged: answered.filter(
      (op) => op.result !== null && op.result !== "timeout" && op.result._tag !== "Failed"
    ).length,
    refused: answered.filter(
      (op) => op.result !== null && op.result !== "timeout" && op.result._tag === "Failed"
    ).length,
    timeouts: ops.filter((op) => op.result === "timeout").length,
    inFlight: ops.filter((op) => op.result === null).length,
    notices: history.clients.reduce((sum, client) => sum + client.deliveries.length, 0),
    committedEntries: history.committed.size,
    auctions: auctionOutcomes(decoded),
    crashes: history.timeline.filter((event) => event.text.startsWith("crash ")).length,
    storesLost: history.timeline.filter((event) => event.text.includes("(store lost)")).length,
    partitions: history.timeline.filter((event) => / partition \[|bridge|pulled/.test(event.text)).length,
    elections: history.roleEvents.filter((event) => event.role === "leader").length,
    network: networkStats.value
  }
  return {
    seed,
    config,
    plan: describePlan(plan),
    timeline: history.timeline,
    violations,
    ending: result.ending,
    traceHash: result.trace.hash,
    traceCount: result.trace.count,
    traceTail: result.trace.lines,
    virtualMs: result.elapsedMs,
    wallMs: result.wallMs,
    steps: result.steps,
    stats
  }
}

/** A failure as a few readable lines: the seed, how to replay it, what broke, and the faults. */
export const describeFailure = (report: SeedReport, timelineMax = 40): string => {
  const byChecker = new Map<string, Array<string>>()
  for (const v of report.violations) {
    const list = byChecker.get(v.checker) ?? []
    list.push(v.message)
    byChecker.set(v.checker, list)
  }
  const lines = [
    `seed ${report.seed} FAILED (${[...byChecker.keys()].join(", ")}) — replay: npm run sim -- --seed ${report.seed}`,
    `  trace hash ${report.traceHash}, ${report.virtualMs} ms virtual, ${report.config.servers.length} servers, ${report.config.clients.length} ${report.config.clientKind} clients, faults for ${report.config.faultMs} ms`
  ]
  for (const [checker, messages] of byChecker) {
    lines.push(`  ${checker}:`)
    for (const message of messages.slice(0, 8)) lines.push(`    ${message}`)
    if (messages.length > 8) lines.push(`    … and ${messages.length - 8} more`)
  }
  lines.push("  timeline:")
  const timeline = report.timeline
  const shown =
    timeline.length > timelineMax
      ? [...timeline.slice(0, timelineMax / 2), null, ...timeline.slice(-timelineMax / 2)]
      : timeline
  for (const event of shown) {
    lines.push(event === null ? "    …" : `    ${event.atMs} ms ${event.text}`)
  }
  return lines.join("\n")
}
