/**
 * Cluster: the loop around the pure replica (src/domain/cluster). One fiber
 * owns the replica; it takes a batch of inputs (datagrams, ticks, proposals),
 * steps the replica through them, then handles what came out, in the order
 * that makes the promises true (etcd's Ready):
 *
 *   1. persist — log changes and hard state, one transaction per batch;
 *   2. send — acks and votes leave only after what they promise is stored;
 *   3. hand back — applied entries, answers to proposals, role changes.
 *
 * Leader-only work of the application (deadline timers, notifiers) runs in a
 * leadership scope opened when the server starts leading and closed the
 * moment it stops (DESIGN §6).
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Config from "effect/Config"
import * as Context from "effect/Context"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as FiberHandle from "effect/FiberHandle"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import * as Scope from "effect/Scope"
import { type ClusterConfig, defaultClusterConfig } from "../domain/cluster/Config.js"
import type { LogEntry, Member } from "../domain/cluster/Entry.js"
import { MemoryLog } from "../domain/cluster/Log.js"
import type { Membership } from "../domain/cluster/Membership.js"
import {
  type CheckpointPoint,
  type Input,
  leaderInfo,
  type Outcome,
  type Output,
  type Replica,
  type Role
} from "../domain/cluster/Replica.js"
import { decodeStoredState, encodeStoredState, type StateMachine } from "../domain/cluster/StateMachine.js"
import { makeReplica, nextTickDueMs, step, stepBatch, takeReady } from "../domain/cluster/Step.js"
import type { Body } from "../domain/Envelope.js"
import type { Epoch, GroupId, Incarnation, Seq, ServerId } from "../domain/Ids.js"
import type { LeaderInfo } from "../domain/Messages.js"
import { LogStore, Opened, type Stored, type StoreOp } from "./LogStore.js"
import { serverSettings, setting } from "./Setting.js"
import { forEachBatch, type Incoming, Transport } from "./Transport.js"

/** Not the leader: the request may or may not have been applied; ask `leader` (if known). */
export class NotLeader extends Schema.TaggedError<NotLeader>()("NotLeader", {
  leader: Schema.NullOr(
    Schema.Struct({ id: Schema.String, host: Schema.String, port: Schema.Number, epoch: Schema.Number })
  )
}) {}

/** This group met another that also holds client data, and ranks below it: it serves nothing. */
export class SplitGroup extends Schema.TaggedError<SplitGroup>()("SplitGroup", {}) {}

/** A proposal's answer: committed at `seq`, with the committed state right after it. */
export interface Committed<S> {
  readonly seq: Seq
  readonly state: S
}

/** A snapshot of the replica for status and tests. */
export interface ClusterStatus {
  readonly id: ServerId
  readonly incarnation: Incarnation
  readonly role: Role
  readonly group: GroupId | null
  readonly epoch: Epoch
  readonly leader: ServerId | null
  /** Where the leader is, as this server knows it (its own unicast address when it leads). */
  readonly leaderInfo: LeaderInfo | null
  readonly lastSeq: Seq
  readonly commitSeq: Seq
  readonly appliedSeq: Seq
  readonly members: ReadonlyArray<Member>
  readonly splitGroup: boolean
}

/** How a proposal ended: committed and applied, or refused, not the leader, split group. */
export type ProposalResult<S, Err> = Either.Either<Committed<S>, Err | NotLeader | SplitGroup>

export interface ClusterShape<S, C, Err> {
  /** Completes when the command is committed and applied, or fails (refused, not leader, split group). */
  readonly propose: (command: C) => Effect.Effect<Committed<S>, Err | NotLeader | SplitGroup>
  /**
   * `propose` for a caller that does not wait: `then` runs on the replica's fiber with the
   * result once it is known, so keep it quick (a reply). No fiber and no wake-up per proposal:
   * a server answering many clients spent more CPU on those than on the proposal.
   */
  readonly proposeThen: (
    command: C,
    then: (result: ProposalResult<S, Err>) => Effect.Effect<void>
  ) => Effect.Effect<void>
  /** A read of committed state confirmed by a majority heartbeat round (DESIGN §5, Reads). */
  readonly read: Effect.Effect<S, NotLeader | SplitGroup>
  readonly status: Effect.Effect<ClusterStatus>
  /** Committed entries of this server's log in (afterSeq, toSeq], for checkers and catch-up. */
  readonly committedEntries: (afterSeq: Seq) => Effect.Effect<ReadonlyArray<LogEntry>>
}

export interface ClusterOptions<S, C, E, Err> {
  readonly id: ServerId
  readonly machine: StateMachine<S, C, E, Err>
  readonly config: ClusterConfig
  /** What the store held when the server opened it (the server's assembly opens it first: the transport needs its boot counter). */
  readonly stored: Stored
  /** This server's incarnation: the stored one, or a fresh one for a new store. */
  readonly incarnation: Incarnation
  /** The longest the replica goes without a timer input (its timers usually wake it sooner). */
  readonly tickMaxMs?: number | undefined
  /** Every applied entry, in log order, on the replica's fiber: keep it quick (offer to a queue). */
  readonly onApplied?:
    | ((entry: LogEntry, events: ReadonlyArray<E>, state: S) => Effect.Effect<void>)
    | undefined
  /** Every change of role or leader, on the replica's fiber. */
  readonly onRoleChanged?:
    | ((role: Role, epoch: Epoch, leader: ServerId | null) => Effect.Effect<void>)
    | undefined
  /** Started in the leadership scope each time this server starts leading; interrupted when it stops. */
  readonly whileLeader?: ((epoch: Epoch) => Effect.Effect<void, never, Scope.Scope>) | undefined
  /** Bodies for the application (client requests); the cluster drops what it does not handle. */
  readonly onClientMessage?: ((incoming: Incoming) => Effect.Effect<void>) | undefined
}

/** Bodies the cluster itself does not handle: they belong to the application (clients). */
const clientBodies: ReadonlySet<Body["_tag"]> = new Set([
  "Register",
  "Registered",
  "Request",
  "Reply",
  "NotLeader",
  "Ping",
  "Pong",
  "LeaderChanged",
  "Notify",
  "NotifyAck",
  "Subscribe",
  "Subscribed"
])

/** Inputs waiting for the replica's fiber; senders wait when it is full (backpressure). */
const InboxCapacity = 16_384
/** Inputs stepped before the batch is persisted and sent (group commit). */
const BatchInputsMax = 1_024

export const clusterDropped = Metric.counter("agora_cluster_dropped", {
  description: "server messages dropped by the cluster's checks, by reason",
  incremental: true
})
export const elections = Metric.counter("agora_elections", {
  description: "times this server became leader",
  incremental: true
})
export const commits = Metric.counter("agora_commits", { description: "entries applied", incremental: true })
export const commitLatency = Metric.timer("agora_commit_latency", "proposal to committed answer")

/** A small deterministic generator seeded from Effect's Random (seeded by the simulator). */
const seededUniform = (seed: number): (() => number) => {
  let state = seed >>> 0 || 0x9e3779b9
  return () => {
    // xorshift32: enough for jitter and random ids.
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    return state / 0x100000000
  }
}

/** The membership and state a store's checkpoint holds (none: the initial state). */
const baseOf = <S, C, E, Err>(
  machine: StateMachine<S, C, E, Err>,
  stored: Stored
): Effect.Effect<Option.Option<{ readonly membership: Membership; readonly app: S }>> => {
  const checkpoint = stored.checkpoint
  if (checkpoint === null) return Effect.succeedNone
  const state = decodeStoredState(machine, checkpoint.state)
  return state._tag === "Left"
    ? Effect.dieMessage(`the checkpoint at ${checkpoint.seq} does not decode: ${String(state.left)}`)
    : Effect.succeedSome({
        membership: { members: checkpoint.members, seq: checkpoint.membershipSeq },
        app: state.right
      })
}

/**
 * Builds the cluster service in the current scope: opens the store, starts the
 * replica's fiber, the ticker and the receive loop. Closing the scope stops
 * all of it (a crash, as far as the others can tell).
 */
export const makeCluster = <S, C, E, Err>(
  options: ClusterOptions<S, C, E, Err>
): Effect.Effect<ClusterShape<S, C, Err>, never, Transport | LogStore | Scope.Scope> =>
  Effect.gen(function* () {
    const transport = yield* Transport
    const store = yield* LogStore
    const serviceScope = yield* Effect.scope
    const stored = options.stored
    const nowMs = yield* Clock.currentTimeMillis
    const seed = yield* Random.nextIntBetween(0, 0x7fffffff)
    const random = seededUniform(seed)
    const log = new MemoryLog(stored.startSeq, stored.startEpoch)
    for (const entry of stored.entries) log.append(entry)
    const base = yield* baseOf(options.machine, stored)
    const replica: Replica<S, C, E, Err> = makeReplica({
      machine: options.machine,
      config: options.config,
      id: options.id,
      selfAddress: transport.address,
      random,
      hard: stored.hard,
      incarnation: options.incarnation,
      log,
      base: Option.getOrUndefined(base),
      nowMs
    })
    const node = options.id
    const inbox = yield* Queue.bounded<Input<C>>(InboxCapacity)
    /** What to do with each proposal's outcome, by proposal number (run on the replica's fiber). */
    const waiting = new Map<number, (outcome: Outcome<S, Err>) => Effect.Effect<void>>()
    let nextProposal = 1
    let leadership: Scope.CloseableScope | null = null

    type CheckpointTaken = Extract<Output<S, E, Err>, { _tag: "CheckpointTaken" }>
    const persist = (ops: Array<StoreOp>) =>
      ops.length === 0 ? Effect.void : Effect.orDie(store.write(ops.splice(0, ops.length)))

    /**
     * Handles the replica's outputs: persist, then send, then hand back, then encode and write the
     * checkpoints it took (they compact what the store holds, commute with every write but a
     * reset, and would hold back the turn's heartbeats, acks and replies by as long as they take).
     */
    const handleReady = Effect.gen(function* () {
      const ops: Array<StoreOp> = []
      const taken: Array<CheckpointTaken> = []
      const sends: Array<Output<S, E, Err>> = []
      const rest: Array<Output<S, E, Err>> = []
      let outputs = takeReady(replica)
      while (outputs.length > 0) {
        for (const output of outputs) {
          switch (output._tag) {
            case "CheckpointTaken":
              taken.push(output)
              break
            case "ResetStore":
              taken.length = 0
              ops.push(output)
              break
            case "Checkpoint":
              ops.push(checkpointOp(output))
              break
            case "Append":
            case "Truncate":
            case "PersistHardState":
              ops.push(output)
              break
            case "Send":
            case "Broadcast":
              sends.push(output)
              break
            default:
              rest.push(output)
          }
        }
        if (ops.length === 0) break
        yield* persist(ops)
        // The leader counts itself only now that its own store holds the entries.
        step(replica, { _tag: "Persisted", lastSeq: replica.log.lastSeq }, yield* Clock.currentTimeMillis)
        outputs = takeReady(replica)
      }
      for (const output of sends) {
        if (output._tag === "Send") {
          yield* transport.send(output.to, output.message).pipe(Effect.catchAll(logSendError))
        } else if (output._tag === "Broadcast") {
          yield* transport.broadcast(output.message).pipe(Effect.catchAll(logSendError))
        }
      }
      for (const output of rest) yield* handBack(output)
      if (taken.length > 0) yield* writeTaken(taken)
    })

    const checkpointOp = ({ at, app }: { readonly at: CheckpointPoint; readonly app: S }): StoreOp => ({
      _tag: "Checkpoint",
      checkpoint: { ...at, state: encodeStoredState(options.machine, app) }
    })

    /** Encodes and writes the checkpoints this server took, and logs how long each part stalled it. */
    const writeTaken = (taken: ReadonlyArray<CheckpointTaken>) =>
      Effect.gen(function* () {
        const startedMs = yield* Clock.currentTimeMillis
        const ops: Array<StoreOp> = taken.map(checkpointOp)
        const encodedMs = yield* Clock.currentTimeMillis
        yield* persist(ops)
        const writtenMs = yield* Clock.currentTimeMillis
        yield* Effect.logInfo(
          `checkpoint at seq ${taken.at(-1)?.at.seq}: encoded in ${encodedMs - startedMs} ms, written in ${writtenMs - encodedMs} ms`
        )
      })

    const logSendError = (error: unknown) =>
      Effect.logWarning("send failed").pipe(Effect.annotateLogs({ error: String(error) }))

    const handBack = (output: Output<S, E, Err>): Effect.Effect<void> => {
      switch (output._tag) {
        case "Applied":
          return Effect.zipRight(
            Metric.increment(commits),
            options.onApplied === undefined
              ? Effect.void
              : options.onApplied(output.entry, output.events, output.state)
          )
        case "Resolved": {
          const resolve = waiting.get(output.proposal)
          if (resolve === undefined) return Effect.void
          waiting.delete(output.proposal)
          return resolve(output.outcome)
        }
        case "RoleChanged":
          return Effect.zipRight(
            Effect.logInfo(`role ${output.role}`).pipe(
              Effect.annotateLogs({ epoch: output.epoch, leader: output.leader ?? "none" })
            ),
            Effect.zipRight(
              changeLeadership(output.role, output.epoch),
              options.onRoleChanged === undefined
                ? Effect.void
                : options.onRoleChanged(output.role, output.epoch, output.leader)
            )
          )
        case "Note":
          return output.level === "warning"
            ? Effect.logWarning(output.message)
            : output.level === "info"
              ? Effect.logInfo(output.message)
              : Effect.logDebug(output.message)
        case "Probe":
          // Answered within ProbeWaitMs; the replica loop does not wait for it.
          return Effect.asVoid(
            Effect.forkIn(
              Effect.flatMap(transport.probe(output.address), (gone) =>
                gone ? Queue.offer(inbox, { _tag: "Unreachable", server: output.server }) : Effect.void
              ),
              serviceScope
            )
          )
        case "Dropped":
          return Metric.increment(
            Metric.tagged(Metric.tagged(clusterDropped, "node", node), "reason", output.reason)
          )
        default:
          return Effect.void
      }
    }

    /** Opens the leadership scope when leading starts, closes it the moment it ends. */
    const changeLeadership = (role: Role, epoch: Epoch): Effect.Effect<void> =>
      Effect.gen(function* () {
        if (role === "leader" && leadership === null) {
          yield* Metric.increment(elections)
          const scope = yield* Scope.make()
          leadership = scope
          if (options.whileLeader !== undefined) {
            yield* Effect.forkIn(Scope.extend(options.whileLeader(epoch), scope), scope)
          }
        } else if (role !== "leader" && leadership !== null) {
          const scope = leadership
          leadership = null
          yield* Scope.close(scope, Exit.void)
        }
      })

    const tickMaxMs = options.tickMaxMs ?? options.config.heartbeatIntervalMs

    // The timer input: woken at the replica's earliest timer rather than on a fixed beat, so an
    // idle server (and a simulated cluster) does little work between heartbeats.
    const timer = yield* FiberHandle.make<never>()
    /** When the sleeping timer wakes, in the replica's time. */
    let wakeMs = Number.POSITIVE_INFINITY
    const ticks = Effect.forever(
      Effect.gen(function* () {
        const base = Math.max(yield* Clock.currentTimeMillis, replica.nowMs)
        const sleepMs = Math.max(1, nextTickDueMs(replica, tickMaxMs) - base)
        wakeMs = base + sleepMs
        yield* Effect.sleep(sleepMs)
        yield* Queue.offer(inbox, { _tag: "Tick" })
      })
    )

    const runBatch = Effect.gen(function* () {
      const first = yield* Queue.take(inbox)
      const more = yield* Queue.takeUpTo(inbox, BatchInputsMax - 1)
      const now = yield* Clock.currentTimeMillis
      stepBatch(replica, [first, ...more], now, tickMaxMs)
      yield* handleReady
      // A turn that brought a timer forward starts the sleep over: a follower that finds its
      // leader gone stands after its random delay, not at the next beat (~50 ms later).
      if (nextTickDueMs(replica, tickMaxMs) < wakeMs) yield* FiberHandle.run(timer, ticks)
    })

    // Apply what the store held before anything else runs (nothing to persist or send yet).
    yield* handleReady
    yield* Effect.addFinalizer(() =>
      Effect.suspend(() => {
        const scope = leadership
        leadership = null
        return scope === null ? Effect.void : Scope.close(scope, Exit.void)
      })
    )

    const loop = runBatch.pipe(
      Effect.forever,
      Effect.annotateLogs({ node }),
      Effect.tapErrorCause((cause) =>
        Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logError("replica loop died", cause)
      )
    )
    yield* Effect.forkScoped(loop)
    yield* FiberHandle.run(timer, ticks)

    /** A batch of datagrams: the cluster's go to the replica in one offer, the application's to it in order. */
    const receive = (batch: ReadonlyArray<Incoming>): Effect.Effect<void> =>
      Effect.suspend(() => {
        const inputs: Array<Input<C>> = []
        const forClients: Array<Incoming> = []
        for (const incoming of batch) {
          const { envelope, source } = incoming
          if (clientBodies.has(envelope.body._tag)) {
            forClients.push(incoming)
            continue
          }
          inputs.push({
            _tag: "Receive",
            body: envelope.body,
            meta: { from: envelope.from, group: envelope.group, epoch: envelope.epoch },
            source
          })
        }
        const toReplica = inputs.length === 0 ? Effect.void : Queue.offerAll(inbox, inputs)
        const onClient = options.onClientMessage
        return onClient === undefined || forClients.length === 0
          ? toReplica
          : Effect.zipRight(toReplica, Effect.forEach(forClients, onClient, { discard: true }))
      })
    yield* Effect.forkScoped(forEachBatch(transport, receive))

    /** Hands the replica an input that carries a new proposal number; `resolve` gets its outcome. */
    const submitThen = (
      makeInput: (proposal: number) => Input<C>,
      resolve: (outcome: Outcome<S, Err>) => Effect.Effect<void>
    ): Effect.Effect<void> =>
      Effect.suspend(() => {
        const proposal = nextProposal++
        waiting.set(proposal, resolve)
        return Queue.offer(inbox, makeInput(proposal))
      })

    const submit = (makeInput: (proposal: number) => Input<C>): Effect.Effect<Outcome<S, Err>> =>
      Effect.gen(function* () {
        const deferred = yield* Deferred.make<Outcome<S, Err>>()
        yield* submitThen(makeInput, (outcome) => Deferred.succeed(deferred, outcome))
        return yield* Deferred.await(deferred)
      }).pipe(Effect.onInterrupt(() => Effect.void))

    const leaderError = (leader: LeaderInfo | null): NotLeader =>
      new NotLeader({
        leader:
          leader === null
            ? null
            : { id: leader.id, host: leader.address.host, port: leader.address.port, epoch: leader.epoch }
      })

    const resultOf = (outcome: Outcome<S, Err>): ProposalResult<S, Err> => {
      switch (outcome._tag) {
        case "Committed":
          return Either.right({ seq: outcome.seq, state: outcome.state })
        case "Read":
          return Either.right({ seq: replica.appliedSeq, state: outcome.state })
        case "Refused":
          return Either.left(outcome.error)
        case "NotLeader":
          return Either.left(leaderError(outcome.leader))
        case "SplitGroup":
          return Either.left(new SplitGroup())
      }
    }

    const propose = (command: C): Effect.Effect<Committed<S>, Err | NotLeader | SplitGroup> =>
      Effect.flatMap(
        submit((proposal) => ({ _tag: "Propose", proposal, command })),
        resultOf
      ).pipe(Metric.trackDuration(commitLatency))

    const proposeThen = (
      command: C,
      then: (result: ProposalResult<S, Err>) => Effect.Effect<void>
    ): Effect.Effect<void> =>
      Effect.flatMap(Clock.currentTimeNanos, (startNs) =>
        submitThen(
          (proposal) => ({ _tag: "Propose", proposal, command }),
          (outcome) =>
            Effect.zipRight(
              Effect.flatMap(Clock.currentTimeNanos, (nowNs) =>
                Metric.update(commitLatency, Duration.nanos(nowNs - startNs))
              ),
              then(resultOf(outcome))
            )
        )
      )

    const read: Effect.Effect<S, NotLeader | SplitGroup> = Effect.flatMap(
      submit((proposal) => ({ _tag: "Read", proposal })),
      (outcome): Effect.Effect<S, NotLeader | SplitGroup> => {
        switch (outcome._tag) {
          case "Read":
          case "Committed":
            return Effect.succeed(outcome.state)
          case "NotLeader":
            return Effect.fail(leaderError(outcome.leader))
          case "SplitGroup":
            return Effect.fail(new SplitGroup())
          case "Refused":
            return Effect.die(new Error("invariant: a read was refused"))
        }
      }
    )

    const status = Effect.sync(
      (): ClusterStatus => ({
        id: replica.id,
        incarnation: replica.incarnation,
        role: replica.role,
        group: replica.group,
        epoch: replica.epoch,
        leader: replica.leader,
        leaderInfo: leaderInfo(replica),
        lastSeq: replica.log.lastSeq,
        commitSeq: replica.commitSeq,
        appliedSeq: replica.appliedSeq,
        members: replica.membership.members,
        splitGroup: replica.splitGroup
      })
    )

    const committedEntries = (afterSeq: Seq) =>
      Effect.sync(() => replica.log.range(Math.max(afterSeq, replica.log.startSeq), replica.commitSeq))

    return { propose, proposeThen, read, status, committedEntries } satisfies ClusterShape<S, C, Err>
  })

/**
 * The cluster is generic in its state machine, so each deployment names its own Tag:
 * `const Counters = clusterTag<Counters, Add, string>("my-app/Cluster")`.
 */
export const clusterTag = <S, C, Err>(
  key: string
): Context.Tag<ClusterShape<S, C, Err>, ClusterShape<S, C, Err>> =>
  Context.GenericTag<ClusterShape<S, C, Err>>(key)

/** The cluster as a layer, over the transport and the store in context, as the store was opened. */
export const layer = <S, C, E, Err>(
  tag: Context.Tag<ClusterShape<S, C, Err>, ClusterShape<S, C, Err>>,
  options: Omit<ClusterOptions<S, C, E, Err>, "id" | "stored" | "incarnation">
): Layer.Layer<ClusterShape<S, C, Err>, never, Transport | LogStore | Opened> =>
  Layer.scoped(
    tag,
    Effect.flatMap(Opened, (opened) => makeCluster({ ...options, ...opened }))
  )

/**
 * The settings of DESIGN §7 from the environment (AGORA_EXPECT, AGORA_MIN_SERVERS,
 * AGORA_HEARTBEAT_INTERVAL ms, AGORA_FAILURE_TIMEOUT ms, AGORA_REMOVAL_TIMEOUT s), the rest
 * as `defaultClusterConfig`; the same names and ranges as `agora server`.
 */
export const clusterConfigFromEnv: Config.Config<ClusterConfig> = Config.all({
  expect: setting(serverSettings.expect, defaultClusterConfig.expect),
  minServers: setting(serverSettings.minServers, defaultClusterConfig.minServers),
  heartbeatIntervalMs: setting(serverSettings.heartbeatInterval, defaultClusterConfig.heartbeatIntervalMs),
  failureTimeoutMs: setting(serverSettings.failureTimeout, defaultClusterConfig.failureTimeoutMs),
  removalTimeoutMs: setting(serverSettings.removalTimeout, defaultClusterConfig.removalTimeoutMs)
}).pipe(Config.map((settings) => ({ ...defaultClusterConfig, ...settings })))
