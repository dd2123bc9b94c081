/**
 * One server's view of the cluster, and the one function that moves it:
 * `step(replica, input, nowMs)`. Like etcd's `raft.Step`, it does no I/O and
 * reads no clock: time comes in as an argument, chance from `replica.random`,
 * and what the server must do comes out in `replica.ready` as data — state to
 * persist, entries to append, messages to send, results to hand back. The
 * service around it persists, then sends, then hands back (see
 * services/Cluster.ts), which is what makes "stored before acked" true.
 *
 * The replica is mutated in place by a single fiber; it is deterministic.
 */
import type * as Either from "effect/Either"
import type { Body } from "../Envelope.js"
import type { Epoch, GroupId, Incarnation, Seq, ServerId } from "../Ids.js"
import type { LeaderInfo, ServerRole } from "../Messages.js"
import type { Address } from "../Schemas.js"
import type { ClusterConfig } from "./Config.js"
import type { LogEntry, Member } from "./Entry.js"
import type { MemoryLog } from "./Log.js"
import type { Membership } from "./Membership.js"
import type { StateMachine, StoredState } from "./StateMachine.js"

/** What survives a restart besides the log (DESIGN §5, Checkpoints). */
export interface HardState {
  readonly group: GroupId | null
  readonly incarnation: Incarnation
  readonly epoch: Epoch
  /** The coordinator accepted in `epoch` (itself when it stood as candidate). */
  readonly vote: ServerId | null
  readonly commitSeq: Seq
}

/**
 * Where a checkpoint of the committed state at seq N stands (DESIGN §5, Checkpoints): the
 * (epoch, seq) of entry N and the membership as of N.
 */
export interface CheckpointPoint {
  readonly seq: Seq
  readonly epoch: Epoch
  readonly members: ReadonlyArray<Member>
  /** The seq of the membership entry in force at N. */
  readonly membershipSeq: Seq
}

/** A checkpoint as the store keeps it: its point and the state machine's state at N. */
export interface Checkpoint extends CheckpointPoint {
  readonly state: StoredState
}

export type Role = "bootstrapping" | "joining" | "follower" | "precandidate" | "candidate" | "leader"

/** How a proposal or read ended. */
export type Outcome<S, Err> =
  /** Committed and applied; `state` is the committed state right after `seq`. */
  | { readonly _tag: "Committed"; readonly seq: Seq; readonly state: S }
  /** Refused by `decide`, reported only once every entry it rests on is committed. */
  | { readonly _tag: "Refused"; readonly error: Err }
  /** A confirmed read of the committed state. */
  | { readonly _tag: "Read"; readonly state: S }
  /** Not (or no longer) the leader: it may or may not have been applied. */
  | { readonly _tag: "NotLeader"; readonly leader: LeaderInfo | null }
  /** This group stopped serving: it met another group that also holds client data. */
  | { readonly _tag: "SplitGroup" }

export type Output<S, E, Err> =
  | { readonly _tag: "PersistHardState"; readonly hard: HardState }
  | { readonly _tag: "Truncate"; readonly fromSeq: Seq }
  | { readonly _tag: "Append"; readonly entries: ReadonlyArray<LogEntry> }
  | { readonly _tag: "Send"; readonly to: Address; readonly message: Stamped }
  | { readonly _tag: "Broadcast"; readonly message: Stamped }
  | {
      readonly _tag: "Applied"
      readonly entry: LogEntry
      readonly events: ReadonlyArray<E>
      readonly state: S
    }
  | { readonly _tag: "Resolved"; readonly proposal: number; readonly outcome: Outcome<S, Err> }
  | {
      readonly _tag: "RoleChanged"
      readonly role: Role
      readonly leader: ServerId | null
      readonly epoch: Epoch
    }
  /**
   * Keep this checkpoint of `app`, installed from a leader's snapshot, and drop the log up to
   * its seq: the entries after it build on it, so it is written in order with them.
   */
  | { readonly _tag: "Checkpoint"; readonly at: CheckpointPoint; readonly app: S }
  /**
   * This server checkpointed its own committed state `app` (to be encoded with the machine's
   * `encodeStored`) at `at.seq`: drop the log up to there. It only compacts entries the store
   * already holds, so nothing sent waits on it; a large state takes long to encode and write,
   * which is why the state comes unencoded: the I/O edge writes it last.
   */
  | { readonly _tag: "CheckpointTaken"; readonly at: CheckpointPoint; readonly app: S }
  /** Wipe the store: it belongs to a group that no longer exists (decided by a leader's answer). */
  | { readonly _tag: "ResetStore"; readonly hard: HardState }
  | { readonly _tag: "Note"; readonly level: "debug" | "info" | "warning"; readonly message: string }
  | { readonly _tag: "Dropped"; readonly reason: string }
  /**
   * Ask the transport whether anything still listens at the silent leader's address; a "no"
   * (ICMP port unreachable: its process is gone) comes back as the input `Unreachable`.
   */
  | { readonly _tag: "Probe"; readonly server: ServerId; readonly address: Address }

export type Input<C> =
  | { readonly _tag: "Tick" }
  /** A datagram that passed the transport's checks. */
  | { readonly _tag: "Receive"; readonly body: Body; readonly meta: Meta; readonly source: Address }
  /** The store holds every entry up to `lastSeq`. */
  | { readonly _tag: "Persisted"; readonly lastSeq: Seq }
  | { readonly _tag: "Propose"; readonly proposal: number; readonly command: C }
  | { readonly _tag: "Read"; readonly proposal: number }
  /** End of a batch of inputs: send what the batch produced (group commit). */
  | { readonly _tag: "Flush" }
  /** The answer to a `Probe`: nothing listens at `server`'s address any more. */
  | { readonly _tag: "Unreachable"; readonly server: ServerId }

/** A body with the group and epoch it was decided in (stamped when decided, not when sent). */
export interface Stamped {
  readonly body: Body
  readonly group: GroupId | undefined
  readonly epoch: Epoch | undefined
  readonly incarnation: Incarnation
}

/** The envelope fields the cluster checks. */
export interface Meta {
  readonly from:
    | {
        readonly role: "server"
        readonly id: ServerId
        readonly incarnation: Incarnation
        readonly port: number
      }
    | { readonly role: "client"; readonly id: string; readonly port: number }
  readonly group?: GroupId | undefined
  readonly epoch?: Epoch | undefined
}

/** The leader's view of one member's log. */
export interface Progress {
  readonly member: Member
  /** The highest seq verified to match this leader's log (DESIGN §5). */
  matchSeq: Seq
  /** The next seq to send. */
  nextSeq: Seq
  /** Last seq of each batch in flight, with when it was sent. */
  inflight: Array<{ readonly lastSeq: Seq; readonly sentMs: number }>
  /**
   * After a rejection: the seq its one probe batch starts at, until an answer shows where the
   * logs match (etcd's probe state). Every batch of a window is rejected, and each rejection
   * refilling the window would multiply the batches.
   */
  probeSeq: Seq | null
  /** Last time any message came from it (removal, step-down). */
  heardMs: number
  /** The highest heartbeat round it acknowledged (read confirmation). */
  ackedRound: number
  /** A snapshot being sent to it: chars acknowledged and sent of the snapshot text at `seq`. */
  snapshot: {
    readonly seq: Seq
    acked: number
    sent: number
    sentMs: number
    /** The last chunk resent on a stalled prefix, and when (one fast retransmit per timeout). */
    resentOffset: number
    resentMs: number
  } | null
}

export interface Waiter<Err> {
  readonly proposal: number
  /** Resolved once commitSeq reaches it. */
  readonly seq: Seq
  /** Resolved once a majority acked a heartbeat round ≥ this (0: no confirmation needed). */
  readonly round: number
  readonly kind: "commit" | "refusal" | "read"
  readonly refusal?: Err
}

export interface LeaderState<S, C, Err> {
  /** Committed state plus every entry appended but not yet committed: what `decide` sees. */
  pending: S
  /** The seq of this epoch's no-op: nothing is decided before it commits. */
  readonly noopSeq: Seq
  readonly progress: Map<string, Progress>
  heartbeatRound: number
  nextHeartbeatMs: number
  /** A read or refusal is waiting for a round: send one at the end of this batch. */
  heartbeatWanted: boolean
  nextAnnounceMs: number
  /** Waiting for commit, in seq order. */
  readonly commitWaiters: Array<Waiter<Err>>
  /** Waiting for a confirmed round (and commit), in arrival order. */
  readonly confirmWaiters: Array<Waiter<Err>>
  /** Proposals and reads that arrived before the no-op committed. */
  readonly queued: Array<Input<C>>
  /** Servers asking to join, by member key (at most MembersMax). */
  readonly joinRequests: Map<string, Member>
  /** GroupDissolved was appended: decide nothing more. */
  dissolving: boolean
}

export interface Replica<S, C, E, Err> {
  readonly machine: StateMachine<S, C, E, Err>
  readonly config: ClusterConfig
  readonly id: ServerId
  readonly log: MemoryLog
  /** Uniform [0, 1), from the seeded Random of the service: jitter and random ids. */
  readonly random: () => number

  // Hard state (persisted through PersistHardState before anything that depends on it is sent).
  group: GroupId | null
  incarnation: Incarnation
  epoch: Epoch
  vote: ServerId | null
  commitSeq: Seq

  role: Role
  leader: ServerId | null
  /** Last time it heard its leader, or accepted a coordinator (failure detection). */
  leaderContactMs: number
  /** The failure timeout plus this term's random jitter. */
  electionTimeoutMs: number
  /** A higher-ranked voter refused us: wait for its Coordinator until then. */
  holdOffUntilMs: number
  nowMs: number
  /** When its timers were next due as of its last turn (`stepBatch`): a turn far later ran late. */
  timersDueMs: number

  membership: Membership
  /** The latest address of every server it heard from. */
  readonly addresses: Map<ServerId, Address>
  /** Its own unicast address (peers reply to the datagram source anyway). */
  readonly selfAddress: Address

  /** The highest seq verified against the current leader in this epoch. */
  verifiedSeq: Seq
  /** The last seq its store holds: a leader counts itself only after its own store write. */
  persistedSeq: Seq
  appliedSeq: Seq
  /** The committed state of the state machine, applied up to appliedSeq. */
  app: S
  /**
   * The events of the `App` entries this replica appended itself, by their data (weakly): a
   * leader applies what `decide` gave it instead of decoding its own encoding (the Agora
   * leader spent ~4 % of its time encoding and decoding again). See `eventsOf`.
   */
  readonly appended: WeakMap<object, ReadonlyArray<E>>

  prevote: {
    readonly nextEpoch: Epoch
    readonly grants: Set<ServerId>
    readonly startedMs: number
    /** When `Election` was last broadcast: it is repeated every heartbeat interval until answered. */
    sentMs: number
  } | null
  /** When the silent leader was last probed (`Probe`), if it has been since it was last heard. */
  probedMs: number | null
  candidacy: { readonly acks: Set<ServerId>; readonly startedMs: number } | null
  lead: LeaderState<S, C, Err> | null

  /**
   * Membership and state machine state at the last checkpoint, entry `seq` of `epoch` (the
   * snapshot point). The log may start before it: a checkpoint keeps `catchUpEntries` of the
   * entries it covers, for followers a little behind.
   */
  base: { readonly seq: Seq; readonly epoch: Epoch; readonly membership: Membership; readonly app: S }
  /** The snapshot a leader sends from: the base as text, encoded once per snapshot point. */
  snapshotText: { readonly seq: Seq; readonly text: string; readonly digest: string } | null
  /** A snapshot being received from a leader. */
  snapshotIn: {
    readonly seq: Seq
    readonly epoch: Epoch
    readonly digest: string
    readonly total: number
    /** The contiguous prefix received so far. */
    readonly parts: Array<string>
    received: number
    /** Chunks that arrived ahead of the prefix, by offset (bounded by the window). */
    readonly ahead: Map<number, string>
  } | null
  lastCheckpointMs: number
  /**
   * The next checkpoint comes after this many applied entries or ms: the configured
   * `checkpointEntries` and `checkpointIntervalMs` stretched by a random 0–50 %, drawn after each.
   * Servers that started together would otherwise checkpoint at the same seq, and a leader whose
   * followers all stall at once hears no majority meanwhile.
   */
  checkpointEvery: { readonly entries: number; readonly ms: number }

  bootstrap: {
    readonly startedMs: number
    /** Group-less servers heard, with their incarnation and address. */
    readonly heard: Map<ServerId, Member>
    /** It heard a server that belongs to a group: it must not form one. */
    heardGroup: boolean
    nextBroadcastMs: number
  } | null
  join: {
    target: { readonly id: ServerId; readonly address: Address } | null
    /** The group its store dissolved into: the leader of that group resets it. */
    readonly dissolvedInto: GroupId | null
    nextRequestMs: number
    /** Join requests sent since the last answer: past a few, look for the leader again. */
    unanswered: number
  } | null
  /** It met another group that also holds client data and ranks below it: serve nothing. */
  splitGroup: boolean

  readonly ready: Array<Output<S, E, Err>>
}

/** The result type of decide, for the modules that call it. */
export type Decision<E, Err> = Either.Either<ReadonlyArray<E>, Err>

export const roleOnWire = (role: Role): ServerRole =>
  role === "precandidate" ? "candidate" : role === "bootstrapping" ? "bootstrapping" : role

// ---------------------------------------------------------------------------
// Small operations every part of the protocol uses.

export type AnyReplica = Replica<unknown, unknown, unknown, unknown>

export const emit = <S, C, E, Err>(replica: Replica<S, C, E, Err>, output: Output<S, E, Err>): void => {
  replica.ready.push(output)
}

export const note = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  level: "debug" | "info" | "warning",
  message: string
): void => emit(replica, { _tag: "Note", level, message })

export const dropped = <S, C, E, Err>(replica: Replica<S, C, E, Err>, reason: string): void =>
  emit(replica, { _tag: "Dropped", reason })

export const hardState = <S, C, E, Err>(replica: Replica<S, C, E, Err>): HardState => ({
  group: replica.group,
  incarnation: replica.incarnation,
  epoch: replica.epoch,
  vote: replica.vote,
  commitSeq: replica.commitSeq
})

/** Persists the hard state; the service writes it before it sends anything of the same batch. */
export const persistHardState = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void =>
  emit(replica, { _tag: "PersistHardState", hard: hardState(replica) })

const stamp = <S, C, E, Err>(replica: Replica<S, C, E, Err>, body: Body): Stamped => ({
  body,
  group: replica.group ?? undefined,
  epoch: replica.group === null ? undefined : replica.epoch,
  incarnation: replica.incarnation
})

export const send = <S, C, E, Err>(replica: Replica<S, C, E, Err>, to: Address, body: Body): void =>
  emit(replica, { _tag: "Send", to, message: stamp(replica, body) })

export const broadcast = <S, C, E, Err>(replica: Replica<S, C, E, Err>, body: Body): void =>
  emit(replica, { _tag: "Broadcast", message: stamp(replica, body) })

/** Sends to a server by id, at the address it was last heard from (or joined with). */
export const sendToServer = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  id: ServerId,
  body: Body
): void => {
  const address = replica.addresses.get(id)
  if (address === undefined) {
    dropped(replica, "no-address")
    return
  }
  send(replica, address, body)
}

/** Bully rank, compared lexicographically: (last log epoch, last log seq, id). */
export interface FullRank {
  readonly lastEpoch: Epoch
  readonly lastSeq: Seq
  readonly id: ServerId
}

export const ownRank = <S, C, E, Err>(replica: Replica<S, C, E, Err>): FullRank => ({
  lastEpoch: replica.log.lastEpoch,
  lastSeq: replica.log.lastSeq,
  id: replica.id
})

export const compareRank = (a: FullRank, b: FullRank): number =>
  a.lastEpoch !== b.lastEpoch
    ? a.lastEpoch - b.lastEpoch
    : a.lastSeq !== b.lastSeq
      ? a.lastSeq - b.lastSeq
      : a.id < b.id
        ? -1
        : a.id > b.id
          ? 1
          : 0

/** A fresh `checkpointEvery`. */
export const drawCheckpointEvery = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>
): { readonly entries: number; readonly ms: number } => {
  const stretch = 1 + replica.random() / 2
  return {
    entries: Math.ceil(replica.config.checkpointEntries * stretch),
    ms: Math.ceil(replica.config.checkpointIntervalMs * stretch)
  }
}

/** The failure timeout plus fresh random jitter from the seeded source. */
export const drawElectionTimeout = <S, C, E, Err>(replica: Replica<S, C, E, Err>): number =>
  replica.config.failureTimeoutMs + Math.floor(replica.random() * replica.config.failureJitterMs)

/**
 * It heard its leader (or accepted a coordinator) within the failure timeout,
 * or it leads: then Election and Coordinator are ignored (PreVote + CheckQuorum).
 */
export const heardLeaderRecently = <S, C, E, Err>(replica: Replica<S, C, E, Err>): boolean =>
  replica.role === "leader" || replica.nowMs - replica.leaderContactMs < replica.config.failureTimeoutMs

export const setRole = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  role: Role,
  leader: ServerId | null
): void => {
  const changed = replica.role !== role || replica.leader !== leader
  replica.role = role
  replica.leader = leader
  if (changed) emit(replica, { _tag: "RoleChanged", role, leader, epoch: replica.epoch })
}

/** Adopts a higher epoch of its group: vote is the server that leads it, if known. */
export const adoptEpoch = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  epoch: Epoch,
  vote: ServerId | null
): void => {
  if (epoch <= replica.epoch) return
  replica.epoch = epoch
  replica.vote = vote
  // Entries up to the commit point are in every later leader's log (Raft's Leader
  // Completeness), so they need no verification against the new leader.
  replica.verifiedSeq = replica.commitSeq
  persistHardState(replica)
}

/**
 * The events of an `App` entry: those this replica appended itself as `decide` gave them,
 * anything else decoded (an entry that does not decode breaks an invariant: it was committed).
 */
export const eventsOf = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  seq: Seq,
  data: unknown
): ReadonlyArray<E> => {
  const appended = typeof data === "object" && data !== null ? replica.appended.get(data) : undefined
  if (appended !== undefined) return appended
  const decoded = replica.machine.decodeEvents(data)
  if (decoded._tag === "Left") throw new Error(`invariant: entry ${seq} holds undecodable events`)
  return decoded.right
}

export const leaderInfo = <S, C, E, Err>(replica: Replica<S, C, E, Err>): LeaderInfo | null => {
  if (replica.leader === null) return null
  const address = replica.leader === replica.id ? replica.selfAddress : replica.addresses.get(replica.leader)
  return address === undefined ? null : { id: replica.leader, address, epoch: replica.epoch }
}

export const voterSelf = <S, C, E, Err>(replica: Replica<S, C, E, Err>): boolean =>
  replica.membership.members.some(
    (m) => m.id === replica.id && m.incarnation === replica.incarnation && m.voter
  )

/** Sets the membership in force; members it cannot reach yet are reached at the address they joined with. */
export const setMembership = <S, C, E, Err>(replica: Replica<S, C, E, Err>, membership: Membership): void => {
  replica.membership = membership
  for (const member of membership.members) {
    if (member.id !== replica.id && !replica.addresses.has(member.id))
      replica.addresses.set(member.id, member.address)
  }
}

/** One heartbeat round to every follower, carrying the commit seq. */
export const sendHeartbeatRound = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  lead: LeaderState<S, C, Err>
): void => {
  lead.heartbeatRound += 1
  lead.nextHeartbeatMs = replica.nowMs + replica.config.heartbeatIntervalMs
  lead.heartbeatWanted = false
  for (const progress of lead.progress.values()) {
    sendToServer(replica, progress.member.id, {
      _tag: "Heartbeat",
      round: lead.heartbeatRound,
      commitSeq: replica.commitSeq
    })
  }
}
