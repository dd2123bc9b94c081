/**
 * A whole cluster in one process: N servers on the simulated network, each
 * in a scope of its own (closing it is a crash), each on an in-memory store
 * that survives the crash or is lost with it. Runs inside `simulate`.
 *
 * It records what the checkers need: every change of role with its epoch
 * (one leader per epoch) and every server's committed log (one history).
 */
import { Clock, Effect, Exit, Random, Scope } from "effect"
import { type ClusterConfig, defaultClusterConfig } from "../../src/domain/cluster/Config.js"
import type { LogEntry } from "../../src/domain/cluster/Entry.js"
import type { Role } from "../../src/domain/cluster/Replica.js"
import type { StateMachine } from "../../src/domain/cluster/StateMachine.js"
import type { Incarnation, ServerId } from "../../src/domain/Ids.js"
import { makeSim, SimNetwork } from "../../src/layers/TransportSim.js"
import {
  type ClusterShape,
  type ClusterStatus,
  type Committed,
  makeCluster,
  NotLeader,
  SplitGroup
} from "../../src/services/Cluster.js"
import {
  LogStore,
  type MemoryStoreData,
  makeMemory,
  makeMemoryStoreData,
  type Stored
} from "../../src/services/LogStore.js"
import { Transport } from "../../src/services/Transport.js"

export interface RoleEvent {
  readonly atMs: number
  readonly id: string
  readonly role: Role
  readonly epoch: number
  readonly leader: string | null
}

interface ServerSlot<S, C, Err> {
  readonly id: ServerId
  data: MemoryStoreData
  running: { readonly scope: Scope.CloseableScope; readonly cluster: ClusterShape<S, C, Err> } | null
}

/** A message a server sent, for checks on what a deposed leader still says. */
export interface SendEvent {
  readonly atMs: number
  readonly id: string
  readonly tag: string
  readonly epoch: number | undefined
  /** The body's JSON size: what the datagram carries besides the envelope's fixed fields. */
  readonly bodyBytes: number
}

/** What a server is built from; the default builds a bare cluster of `machine`. */
export interface ServerContext {
  readonly id: ServerId
  readonly config: ClusterConfig
  readonly stored: Stored
  readonly incarnation: Incarnation
  readonly onRoleChanged: (role: Role, epoch: number, leader: ServerId | null) => Effect.Effect<void>
}

export interface SimClusterOptions<S, C, E, Err> {
  readonly ids: ReadonlyArray<string>
  /** Builds one server's service on its transport and store (default: `makeCluster` of `machine`). */
  readonly makeServer?: (
    context: ServerContext
  ) => Effect.Effect<ClusterShape<S, C, Err>, never, Transport | LogStore | Scope.Scope>
  /** Record every message each server sends (memory grows with the run). */
  readonly recordSends?: boolean
  readonly machine: StateMachine<S, C, E, Err>
  readonly config?: Partial<ClusterConfig>
}

export interface SimCluster<S, C, Err> {
  readonly ids: ReadonlyArray<ServerId>
  /** Starts (or restarts) a server; `port` moves it to a new unicast port, as `--port 0` does on a restart. */
  readonly start: (id: string, options?: { readonly port?: number }) => Effect.Effect<void>
  /** Interrupts the server's scope; with `loseStore` its data dir is gone too. */
  readonly crash: (id: string, options?: { readonly loseStore?: boolean }) => Effect.Effect<void>
  readonly cluster: (id: string) => ClusterShape<S, C, Err> | undefined
  /** The in-memory store of a server (it survives the server's crashes unless lost). */
  readonly store: (id: string) => MemoryStoreData
  readonly statuses: Effect.Effect<ReadonlyArray<ClusterStatus>>
  /** The running servers that consider themselves leader. */
  readonly leaders: Effect.Effect<ReadonlyArray<ClusterStatus>>
  /** Waits (in virtual time) until exactly one of `among` (default: all running) leads and all the others follow it. */
  readonly awaitLeader: (timeoutMs: number, among?: ReadonlyArray<string>) => Effect.Effect<ServerId>
  /** Proposes through whichever server leads, retrying across failover until `timeoutMs`. */
  readonly propose: (command: C, timeoutMs?: number) => Effect.Effect<Committed<S>, Err | "timeout">
  readonly roleEvents: ReadonlyArray<RoleEvent>
  readonly sendEvents: ReadonlyArray<SendEvent>
  /** The committed entries of every running server, by id. */
  readonly committedLogs: Effect.Effect<ReadonlyMap<string, ReadonlyArray<LogEntry>>>
}

export const makeSimCluster = <S, C, E, Err>(
  options: SimClusterOptions<S, C, E, Err>
): Effect.Effect<SimCluster<S, C, Err>, never, SimNetwork | Scope.Scope> =>
  Effect.gen(function* () {
    const network = yield* SimNetwork
    const config: ClusterConfig = { ...defaultClusterConfig, ...options.config }
    const slots = new Map<string, ServerSlot<S, C, Err>>(
      options.ids.map((id) => [id, { id: id as ServerId, data: makeMemoryStoreData(), running: null }])
    )
    const roleEvents: Array<RoleEvent> = []
    const sendEvents: Array<SendEvent> = []

    const slotOf = (id: string): ServerSlot<S, C, Err> => {
      const slot = slots.get(id)
      if (slot === undefined) throw new Error(`no server ${id}`)
      return slot
    }

    const start = (id: string, startOptions?: { readonly port?: number }): Effect.Effect<void> =>
      Effect.gen(function* () {
        const slot = slotOf(id)
        if (slot.running !== null) return
        const scope = yield* Scope.make()
        const store = makeMemory(slot.data)
        const stored = yield* Effect.orDie(store.open)
        const incarnation =
          stored.hard?.incarnation ??
          (`${id}-${(yield* Random.nextIntBetween(0, 0x7fffffff)).toString(16)}` as Incarnation)
        const transport = yield* makeSim({
          identity: { role: "server", id: slot.id, incarnation },
          boot: stored.boot,
          name: id,
          port: startOptions?.port
        }).pipe(Effect.orDie, Scope.extend(scope), Effect.provideService(SimNetwork, network))
        const tapped =
          options.recordSends === true
            ? Transport.of({
                ...transport,
                send: (to, message) =>
                  Effect.zipRight(
                    Effect.map(Clock.currentTimeMillis, (atMs) => {
                      sendEvents.push({
                        atMs,
                        id,
                        tag: message.body._tag,
                        epoch: message.epoch,
                        bodyBytes: JSON.stringify(message.body).length
                      })
                    }),
                    transport.send(to, message)
                  )
              })
            : transport
        const context: ServerContext = {
          id: slot.id,
          config,
          stored,
          incarnation,
          onRoleChanged: (role, epoch, leader) =>
            Effect.map(Clock.currentTimeMillis, (atMs) => {
              roleEvents.push({ atMs, id, role, epoch, leader })
            })
        }
        const build = options.makeServer?.(context) ?? makeCluster({ ...context, machine: options.machine })
        const cluster = yield* build.pipe(
          Scope.extend(scope),
          Effect.provideService(Transport, tapped),
          Effect.provideService(LogStore, store),
          Effect.annotateLogs({ node: id })
        )
        slot.running = { scope, cluster }
      })

    const crash = (id: string, crashOptions?: { readonly loseStore?: boolean }): Effect.Effect<void> =>
      Effect.gen(function* () {
        const slot = slotOf(id)
        const running = slot.running
        slot.running = null
        if (running !== null) yield* Scope.close(running.scope, Exit.void)
        if (crashOptions?.loseStore === true) slot.data = makeMemoryStoreData()
      })

    const runningClusters = () =>
      [...slots.values()].flatMap((slot) => (slot.running === null ? [] : [slot.running.cluster]))

    const currentStatuses: Effect.Effect<ReadonlyArray<ClusterStatus>> = Effect.suspend(() =>
      Effect.forEach(runningClusters(), (cluster) => cluster.status)
    )

    const leaders = Effect.map(currentStatuses, (all) => all.filter((status) => status.role === "leader"))

    const awaitLeader = (timeoutMs: number, among?: ReadonlyArray<string>): Effect.Effect<ServerId> =>
      Effect.gen(function* () {
        const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
        while ((yield* Clock.currentTimeMillis) < deadline) {
          const all = (yield* currentStatuses).filter(
            (status) => among === undefined || among.includes(status.id)
          )
          const leading = all.filter((status) => status.role === "leader")
          const leader = leading[0]
          const settled =
            leading.length === 1 &&
            leader !== undefined &&
            leader.commitSeq >= leader.lastSeq &&
            all.every(
              (status) =>
                status.id === leader.id || (status.leader === leader.id && status.epoch === leader.epoch)
            )
          if (settled) return leader.id
          yield* Effect.sleep(10)
        }
        return yield* Effect.dieMessage(`no single leader within ${timeoutMs} ms`)
      })

    const propose = (command: C, timeoutMs = 10_000): Effect.Effect<Committed<S>, Err | "timeout"> =>
      Effect.gen(function* () {
        const deadline = (yield* Clock.currentTimeMillis) + timeoutMs
        while ((yield* Clock.currentTimeMillis) < deadline) {
          const leading = yield* leaders
          const target = leading[0] === undefined ? undefined : slotOf(leading[0].id).running?.cluster
          if (target === undefined) {
            yield* Effect.sleep(20)
            continue
          }
          const result = yield* Effect.either(target.propose(command))
          if (result._tag === "Right") return result.right
          const error = result.left
          if (error instanceof NotLeader || error instanceof SplitGroup) {
            yield* Effect.sleep(20)
            continue
          }
          return yield* Effect.fail(error)
        }
        return yield* Effect.fail("timeout" as const)
      })

    const committedLogs = Effect.suspend(() =>
      Effect.map(
        Effect.forEach(
          [...slots.values()].filter((slot) => slot.running !== null),
          (slot) =>
            Effect.map(
              slot.running?.cluster.committedEntries(0) ?? Effect.succeed([]),
              (entries) => [slot.id, entries] as const
            )
        ),
        (pairs) => new Map<string, ReadonlyArray<LogEntry>>(pairs)
      )
    )

    yield* Effect.addFinalizer(() => Effect.forEach([...slots.keys()], (id) => crash(id), { discard: true }))

    return {
      ids: [...slots.values()].map((slot) => slot.id),
      start,
      crash,
      cluster: (id) => slotOf(id).running?.cluster,
      store: (id) => slotOf(id).data,
      statuses: currentStatuses,
      leaders,
      awaitLeader,
      propose,
      roleEvents,
      sendEvents,
      committedLogs
    }
  })

// ---------------------------------------------------------------------------
// Checkers (DESIGN §1 promises 2 and 4)

/** Every epoch had at most one leader. Returns the violations. */
export const leadersPerEpochViolations = (events: ReadonlyArray<RoleEvent>): ReadonlyArray<string> => {
  const byEpoch = new Map<number, Set<string>>()
  for (const event of events) {
    if (event.role !== "leader") continue
    const leaders = byEpoch.get(event.epoch) ?? new Set<string>()
    leaders.add(event.id)
    byEpoch.set(event.epoch, leaders)
  }
  return [...byEpoch]
    .filter(([, ids]) => ids.size > 1)
    .map(([epoch, ids]) => `epoch ${epoch}: ${[...ids].join(", ")}`)
}

/** Every committed log is a prefix of the longest one (same entry at every seq). Returns the violations. */
export const committedPrefixViolations = (
  logs: ReadonlyMap<string, ReadonlyArray<LogEntry>>
): ReadonlyArray<string> => {
  const bySeq = new Map<number, { readonly id: string; readonly text: string }>()
  const violations: Array<string> = []
  for (const [id, log] of logs) {
    for (const entry of log) {
      const text = JSON.stringify(entry)
      const other = bySeq.get(entry.seq)
      if (other === undefined) bySeq.set(entry.seq, { id, text })
      else if (other.text !== text)
        violations.push(`seq ${entry.seq}: ${id} has ${text}, ${other.id} has ${other.text}`)
    }
  }
  return violations
}
