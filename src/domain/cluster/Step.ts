/**
 * The replica's entry points: `makeReplica` (from what a store holds),
 * `step` (one input at one instant) and `takeReady` (what to do now, in
 * order: persist, then send, then hand back — see services/Cluster.ts).
 *
 * `step` runs the datagram checks of DESIGN §5 that need the cluster, in
 * order — group and membership, then epoch, then log position — and drops
 * (and reports) what fails them.
 */
import type { Body } from "../Envelope.js"
import type { Incarnation, ServerId } from "../Ids.js"
import type { Address } from "../Schemas.js"
import {
  bootstrapTick,
  joinTick,
  onDiscoveryRequest,
  onDiscoveryResponse,
  onJoinAnswer,
  onJoinRequest,
  onLeaderAnnouncement,
  onNotMember,
  onStatusRequest
} from "./Bootstrap.js"
import type { ClusterConfig } from "./Config.js"
import {
  electionTick,
  nextProbeMs,
  onCoordinator,
  onCoordinatorAck,
  onElection,
  onElectionAnswer,
  onUnreachable
} from "./Election.js"
import { flushLeader, leaderTick, onPropose } from "./Leadership.js"
import type { MemoryLog } from "./Log.js"
import { findMember, type Membership, memberKey } from "./Membership.js"
import {
  drawCheckpointEvery,
  drawElectionTimeout,
  dropped,
  type HardState,
  type Input,
  type Meta,
  note,
  type Output,
  type Replica,
  send,
  setMembership
} from "./Replica.js"
import {
  acceptLeader,
  advanceCommit,
  applyCommitted,
  higherEpochSeen,
  membershipFromLog,
  onHeartbeat,
  onHeartbeatAck,
  onReplicate,
  onReplicateAck
} from "./Replication.js"
import { maybeCheckpoint, onSnapshotAck, onSnapshotChunk } from "./Snapshot.js"
import type { StateMachine } from "./StateMachine.js"

export interface ReplicaOptions<S, C, E, Err> {
  readonly machine: StateMachine<S, C, E, Err>
  readonly config: ClusterConfig
  readonly id: ServerId
  readonly selfAddress: Address
  /** Uniform [0, 1) from a seeded source. */
  readonly random: () => number
  /** What the store holds; null hard state: a new store. */
  readonly hard: HardState | null
  /** Incarnation for a new store (ignored when `hard` is given). */
  readonly incarnation: Incarnation
  /** The log after the snapshot point (entries already appended). */
  readonly log: MemoryLog
  /** Membership and state at the log's start (the checkpoint), if any. */
  readonly base?: { readonly membership: Membership; readonly app: S } | undefined
  readonly nowMs: number
}

/** A replica as a store left it: committed entries applied, everything else waiting for a leader. */
export const makeReplica = <S, C, E, Err>(options: ReplicaOptions<S, C, E, Err>): Replica<S, C, E, Err> => {
  const hard = options.hard
  const log = options.log
  const base = {
    seq: log.startSeq,
    epoch: log.startEpoch,
    ...(options.base ?? { membership: { members: [], seq: 0 }, app: options.machine.initial })
  }
  const group = hard?.group ?? null
  const commitSeq = Math.max(hard?.commitSeq ?? 0, log.startSeq)
  const replica: Replica<S, C, E, Err> = {
    machine: options.machine,
    config: options.config,
    id: options.id,
    log,
    random: options.random,
    selfAddress: options.selfAddress,
    group,
    incarnation: hard?.incarnation ?? options.incarnation,
    // On load, epoch = max(stored epoch, last log epoch) (DESIGN §5).
    epoch: Math.max(hard?.epoch ?? 0, log.lastEpoch),
    vote: hard?.vote ?? null,
    commitSeq: Math.min(commitSeq, log.lastSeq),
    role: group === null ? "bootstrapping" : "follower",
    leader: null,
    // A restarted server first listens for a whole timeout: it must not depose a healthy leader.
    leaderContactMs: options.nowMs,
    electionTimeoutMs: options.config.failureTimeoutMs,
    holdOffUntilMs: 0,
    nowMs: options.nowMs,
    membership: base.membership,
    addresses: new Map(),
    verifiedSeq: 0,
    persistedSeq: log.lastSeq,
    snapshotText: null,
    snapshotIn: null,
    lastCheckpointMs: options.nowMs,
    checkpointEvery: { entries: options.config.checkpointEntries, ms: options.config.checkpointIntervalMs },
    timersDueMs: Number.POSITIVE_INFINITY,
    appliedSeq: log.startSeq,
    app: base.app,
    appended: new WeakMap(),
    prevote: null,
    probedMs: null,
    candidacy: null,
    lead: null,
    base,
    bootstrap:
      group === null
        ? { startedMs: options.nowMs, heard: new Map(), heardGroup: false, nextBroadcastMs: options.nowMs }
        : null,
    join: null,
    splitGroup: false,
    ready: []
  }
  replica.electionTimeoutMs = drawElectionTimeout(replica)
  replica.checkpointEvery = drawCheckpointEvery(replica)
  setMembership(replica, membershipFromLog(replica))
  replica.verifiedSeq = replica.commitSeq
  applyCommitted(replica)
  return replica
}

/**
 * When the replica next needs a `Tick`: its earliest timer (election,
 * heartbeat, retransmission, discovery…), never later than `capMs` from now,
 * so a timer that moved earlier is noticed within the cap.
 */
export const nextTickDueMs = <S, C, E, Err>(replica: Replica<S, C, E, Err>, capMs: number): number => {
  const now = replica.nowMs
  const config = replica.config
  let due = now + capMs
  const at = (ms: number) => {
    if (ms < due) due = ms
  }
  at(replica.lastCheckpointMs + replica.checkpointEvery.ms)
  switch (replica.role) {
    case "bootstrapping":
      if (replica.bootstrap !== null) {
        at(replica.bootstrap.nextBroadcastMs)
        at(replica.bootstrap.startedMs + config.discoveryWindowMs)
      }
      break
    case "joining":
      if (replica.join !== null) at(replica.join.nextRequestMs)
      break
    case "follower": {
      at(Math.max(replica.leaderContactMs + replica.electionTimeoutMs, replica.holdOffUntilMs))
      const probeMs = nextProbeMs(replica)
      if (probeMs !== null) at(probeMs)
      break
    }
    case "precandidate":
      if (replica.prevote !== null) {
        at(replica.prevote.startedMs + replica.electionTimeoutMs)
        at(replica.prevote.sentMs + config.heartbeatIntervalMs)
      }
      break
    case "candidate":
      if (replica.candidacy !== null) at(replica.candidacy.startedMs + replica.electionTimeoutMs)
      break
    case "leader": {
      const lead = replica.lead
      if (lead === null) break
      at(lead.nextHeartbeatMs)
      at(lead.nextAnnounceMs)
      for (const progress of lead.progress.values()) {
        const oldest = progress.inflight[0]
        if (oldest !== undefined) at(oldest.sentMs + config.retransmitTimeoutMs)
        if (progress.snapshot !== null) at(progress.snapshot.sentMs + config.retransmitTimeoutMs)
        // Step-down is judged against the failure timeout since each voter was last heard.
        at(progress.heardMs + config.failureTimeoutMs)
      }
      break
    }
  }
  return Math.max(now + 1, due)
}

/** Takes the outputs produced so far, in the order they were produced. */
export const takeReady = <S, C, E, Err>(replica: Replica<S, C, E, Err>): Array<Output<S, E, Err>> =>
  replica.ready.splice(0, replica.ready.length)

export const step = <S, C, E, Err>(replica: Replica<S, C, E, Err>, input: Input<C>, nowMs: number): void => {
  replica.nowMs = Math.max(replica.nowMs, nowMs)
  switch (input._tag) {
    case "Tick":
      tick(replica)
      return maybeCheckpoint(replica)
    case "Receive":
      return receive(replica, input.body, input.meta, input.source)
    case "Persisted":
      replica.persistedSeq = Math.max(replica.persistedSeq, Math.min(input.lastSeq, replica.log.lastSeq))
      return advanceCommit(replica)
    case "Propose":
    case "Read":
      return onPropose(replica, input)
    case "Flush":
      return flushLeader(replica)
    case "Unreachable":
      return onUnreachable(replica, input.server)
  }
}

/**
 * Steps the inputs that arrived together as one turn of the server's loop: messages and
 * proposals in order, then the timers once, then a flush. A server that stalled (a checkpoint,
 * a GC pause, a suspended VM) judges its peers by the time it was listening, not by its own
 * silence: what they sent meanwhile counts before its timers run, and the time its timers ran
 * late is not counted as their silence. Otherwise a leader would find no ack within the
 * failure timeout though the acks wait in its inbox, and servers that stalled together (they
 * checkpoint at the same seq) would all time out on each other. `timerCapMs` is the longest
 * the service lets the replica go without a timer input: a turn later than that past its
 * earliest timer ran late.
 */
export const stepBatch = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  inputs: ReadonlyArray<Input<C>>,
  nowMs: number,
  timerCapMs: number
): void => {
  const lateMs = nowMs - replica.timersDueMs
  if (lateMs > timerCapMs) overlookStall(replica, lateMs)
  let ticked = false
  for (const input of inputs) {
    if (input._tag === "Tick") ticked = true
    else step(replica, input, nowMs)
  }
  if (ticked) step(replica, { _tag: "Tick" }, nowMs)
  step(replica, { _tag: "Flush" }, nowMs)
  replica.timersDueMs = nextTickDueMs(replica, timerCapMs)
}

/** Moves the times it last heard its leader or followers on by `stallMs`, as if it had heard them at the stall's start. */
const overlookStall = <S, C, E, Err>(replica: Replica<S, C, E, Err>, stallMs: number): void => {
  replica.leaderContactMs += stallMs
  if (replica.lead !== null)
    for (const progress of replica.lead.progress.values()) progress.heardMs += stallMs
  // A stall as long as the failure timeout would have cost an election: worth an operator's look.
  const level = stallMs >= replica.config.failureTimeoutMs ? "warning" : "debug"
  note(replica, level, `its timers ran ${stallMs} ms late: that silence is not counted against its peers`)
}

const tick = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  switch (replica.role) {
    case "bootstrapping":
      return bootstrapTick(replica)
    case "joining":
      return joinTick(replica)
    case "leader":
      return leaderTick(replica)
    default:
      return electionTick(replica)
  }
}

const receive = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  body: Body,
  meta: Meta,
  source: Address
): void => {
  switch (body._tag) {
    case "DiscoveryRequest":
      return onDiscoveryRequest(replica, meta, source)
    case "StatusRequest":
      return onStatusRequest(replica, source)
  }
  const from = meta.from
  if (from.role !== "server") return dropped(replica, "client-message")
  if (from.id === replica.id) return dropped(replica, "own-message")
  switch (body._tag) {
    case "DiscoveryResponse":
      return onDiscoveryResponse(replica, from, body, source)
    case "LeaderAnnouncement":
      return onLeaderAnnouncement(replica, from, meta, body, source)
    case "JoinRequest":
      return onJoinRequest(replica, from, body, source)
    case "JoinAnswer":
      return onJoinAnswer(replica, from, meta, body, source)
  }

  // Group: a server takes nothing from another group, and never adopts its epochs.
  if (replica.group === null || meta.group !== replica.group) return dropped(replica, "other-group")
  const epoch = meta.epoch ?? 0

  // Leader messages pass without membership: only a legitimately elected leader holds an
  // epoch this high, and a server whose log is behind may not know its leader yet.
  switch (body._tag) {
    case "Heartbeat":
    case "Replicate": {
      const stale = () =>
        body._tag === "Heartbeat"
          ? send(replica, source, { _tag: "HeartbeatAck", round: body.round, matchSeq: 0 })
          : send(replica, source, {
              _tag: "ReplicateAck",
              success: false,
              matchSeq: 0,
              hintSeq: replica.log.lastSeq
            })
      if (!acceptLeader(replica, from, epoch, source, stale)) return
      return body._tag === "Heartbeat" ? onHeartbeat(replica, from, body) : onReplicate(replica, from, body)
    }
    case "NotMember":
      return onNotMember(replica, from, epoch, source)
    case "SnapshotChunk":
      if (!acceptLeader(replica, from, epoch, source, () => undefined)) return
      return onSnapshotChunk(replica, from.id, body)
  }

  // Membership: votes and acks count only from members with the listed incarnation.
  if (findMember(replica.membership, from.id, from.incarnation) === undefined) {
    if (replica.role === "leader") send(replica, source, { _tag: "NotMember" })
    return dropped(replica, "not-member")
  }
  replica.addresses.set(from.id, source)

  switch (body._tag) {
    case "Election":
      return onElection(replica, from, body)
    case "ElectionAnswer":
      return onElectionAnswer(replica, from, epoch, body)
    case "Coordinator":
      return onCoordinator(replica, from, epoch, body)
  }

  // Epoch: answers of a higher epoch depose us; answers of a lower one are stale.
  if (epoch > replica.epoch) return higherEpochSeen(replica, epoch)
  if (epoch < replica.epoch) return dropped(replica, "stale-epoch")
  switch (body._tag) {
    case "CoordinatorAck":
      return onCoordinatorAck(replica, from)
    case "HeartbeatAck":
      return onHeartbeatAck(replica, from, body)
    case "ReplicateAck":
      return onReplicateAck(replica, from, body)
    case "SnapshotAck": {
      const progress = replica.lead?.progress.get(memberKey(from))
      if (replica.role !== "leader" || progress === undefined) return dropped(replica, "not-leading")
      progress.heardMs = replica.nowMs
      return onSnapshotAck(replica, progress, body)
    }
    default:
      return dropped(replica, "unexpected-message")
  }
}
