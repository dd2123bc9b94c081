/**
 * Checkpoints and snapshot transfer (DESIGN §5).
 *
 * Every server checkpoints its committed state every K applied entries or T
 * ms, then drops its log up to that point. A follower behind the leader's log
 * start (or new) gets the leader's checkpoint as a snapshot: its text in
 * chunks tagged (snapshot seq, snapshot epoch, offset, total, digest), each
 * within the datagram limit, acknowledged by the contiguous prefix received,
 * retransmitted from there, and resumable; installed atomically once the
 * digest matches, then the tail follows by normal replication.
 */
import type { Epoch, Seq } from "../Ids.js"
import { digestOf } from "./Digest.js"
import type { Member } from "./Entry.js"
import { isMembershipChange } from "./Entry.js"
import { applyMembershipEntry, type Membership } from "./Membership.js"
import {
  drawCheckpointEvery,
  dropped,
  emit,
  note,
  type Progress,
  persistHardState,
  type Replica,
  sendHeartbeatRound,
  sendToServer,
  setMembership
} from "./Replica.js"

/** What a snapshot's text holds: the membership as of its seq and the state machine's state. */
interface SnapshotBody {
  readonly members: ReadonlyArray<Member>
  readonly membershipSeq: Seq
  readonly state: unknown
}

/** The membership in force at `seq`: the base's, then every change in the log up to `seq`. */
const membershipAt = <S, C, E, Err>(replica: Replica<S, C, E, Err>, seq: Seq): Membership => {
  let membership = replica.base.membership
  for (const entry of replica.log.range(replica.base.seq, seq)) {
    if (isMembershipChange(entry.body)) membership = applyMembershipEntry(membership, entry.body, entry.seq)
  }
  return membership
}

/** Takes a checkpoint of the committed state if K entries or T ms went by since the last one. */
export const maybeCheckpoint = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  const pending = replica.appliedSeq - replica.base.seq
  const every = replica.checkpointEvery
  const due =
    pending >= every.entries || (pending > 0 && replica.nowMs - replica.lastCheckpointMs >= every.ms)
  if (!due) return
  const seq = replica.appliedSeq
  const epoch = replica.log.epochAt(seq)
  if (epoch === undefined) throw new Error(`invariant: applied entry ${seq} missing from the log`)
  const membership = membershipAt(replica, seq)
  // A follower a few entries behind would otherwise need the whole snapshot (seconds of chunks
  // for a state of megabytes): its next batch came just after this checkpoint.
  const keepFrom = Math.max(replica.log.startSeq, seq - replica.config.catchUpEntries)
  const keepFromEpoch = replica.log.epochAt(keepFrom)
  if (keepFromEpoch === undefined) throw new Error(`invariant: entry ${keepFrom} missing from the log`)
  replica.log.compactTo(keepFrom, keepFromEpoch)
  replica.base = { seq, epoch, membership, app: replica.app }
  replica.snapshotText = null
  replica.lastCheckpointMs = replica.nowMs
  replica.checkpointEvery = drawCheckpointEvery(replica)
  // Encoding and writing a large state stall the server: a leader's followers hear from it right
  // before (the service writes the checkpoint after the turn's sends), so a stall shorter than
  // the failure timeout is no election.
  if (replica.lead !== null) sendHeartbeatRound(replica, replica.lead)
  emit(replica, {
    _tag: "CheckpointTaken",
    at: { seq, epoch, members: membership.members, membershipSeq: membership.seq },
    app: replica.app
  })
}

/** The leader's snapshot text (its base, i.e. its last checkpoint), encoded once per snapshot point. */
const snapshotText = <S, C, E, Err>(replica: Replica<S, C, E, Err>) => {
  const seq = replica.base.seq
  if (replica.snapshotText?.seq !== seq) {
    const body: SnapshotBody = {
      members: replica.base.membership.members,
      membershipSeq: replica.base.membership.seq,
      state: replica.machine.encodeState(replica.base.app)
    }
    const text = JSON.stringify(body)
    replica.snapshotText = { seq, text, digest: digestOf(text) }
  }
  return replica.snapshotText
}

/** Sends the next chunks of the leader's snapshot to a follower behind its log start. */
export const sendSnapshot = <S, C, E, Err>(replica: Replica<S, C, E, Err>, progress: Progress): void => {
  // Not to a member silent past the failure timeout (etcd's RecentActive): encoding and sending
  // megabytes to a process that is down only slows the leader. Its next answer resumes it.
  if (replica.nowMs - progress.heardMs > replica.config.failureTimeoutMs) return
  const { seq, text } = snapshotText(replica)
  if (progress.snapshot === null || progress.snapshot.seq !== seq) {
    progress.snapshot = { seq, acked: 0, sent: 0, sentMs: replica.nowMs, resentOffset: -1, resentMs: 0 }
    note(
      replica,
      "info",
      `${progress.member.id} is behind the log start: sending snapshot at ${seq} (${text.length} chars)`
    )
  }
  const snapshot = progress.snapshot
  const chunk = replica.config.snapshotChunkChars
  const window = chunk * replica.config.snapshotWindowChunks
  while (snapshot.sent < text.length && snapshot.sent - snapshot.acked < window) {
    sendChunk(replica, progress, snapshot.sent)
    snapshot.sent = Math.min(text.length, snapshot.sent + chunk)
    snapshot.sentMs = replica.nowMs
  }
}

/** Sends the chunk of the leader's snapshot text that starts at `offset`. */
const sendChunk = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  progress: Progress,
  offset: number
): void => {
  const { seq, text, digest } = snapshotText(replica)
  sendToServer(replica, progress.member.id, {
    _tag: "SnapshotChunk",
    snapshotSeq: seq,
    snapshotEpoch: replica.base.epoch,
    offset,
    total: text.length,
    digest,
    data: text.slice(offset, offset + replica.config.snapshotChunkChars)
  })
}

/** The follower has the snapshot's first `offset` chars: send on from there. */
export const onSnapshotAck = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  progress: Progress,
  body: { readonly snapshotSeq: Seq; readonly offset: number }
): void => {
  const snapshot = progress.snapshot
  if (snapshot === null || snapshot.seq !== body.snapshotSeq) return dropped(replica, "stale-snapshot-ack")
  if (body.offset <= snapshot.acked && snapshot.sent > snapshot.acked) {
    // The prefix did not move while later chunks arrive: the chunk at the prefix was lost.
    // Resend just that one (once per retransmit timeout), as TCP's fast retransmit does.
    if (
      snapshot.resentOffset !== snapshot.acked ||
      replica.nowMs - snapshot.resentMs >= replica.config.retransmitTimeoutMs
    ) {
      snapshot.resentOffset = snapshot.acked
      snapshot.resentMs = replica.nowMs
      sendChunk(replica, progress, snapshot.acked)
    }
    return
  }
  snapshot.acked = Math.max(snapshot.acked, body.offset)
  snapshot.sent = Math.max(snapshot.sent, snapshot.acked)
  sendSnapshot(replica, progress)
}

/** A snapshot unacknowledged past the retransmit timeout is resent from the acknowledged prefix. */
export const retransmitSnapshot = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  progress: Progress
): void => {
  const snapshot = progress.snapshot
  if (snapshot === null || replica.nowMs - snapshot.sentMs < replica.config.retransmitTimeoutMs) return
  snapshot.sent = snapshot.acked
  snapshot.sentMs = replica.nowMs
  sendSnapshot(replica, progress)
}

/** A follower receives a chunk (the leader's epoch was already checked and followed). */
export const onSnapshotChunk = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  leader: string,
  body: {
    readonly snapshotSeq: Seq
    readonly snapshotEpoch: Epoch
    readonly offset: number
    readonly total: number
    readonly digest: string
    readonly data: string
  }
): void => {
  const leaderId = leader as Parameters<typeof sendToServer>[1]
  // A snapshot at or below what this server already committed is of no use (DESIGN §5).
  if (body.snapshotSeq <= replica.commitSeq) {
    return sendToServer(replica, leaderId, {
      _tag: "ReplicateAck",
      success: true,
      matchSeq: Math.max(replica.verifiedSeq, replica.commitSeq),
      hintSeq: replica.log.lastSeq
    })
  }
  let incoming = replica.snapshotIn
  const same =
    incoming !== null &&
    incoming.seq === body.snapshotSeq &&
    incoming.epoch === body.snapshotEpoch &&
    incoming.digest === body.digest &&
    incoming.total === body.total
  if (!same) {
    incoming = {
      seq: body.snapshotSeq,
      epoch: body.snapshotEpoch,
      digest: body.digest,
      total: body.total,
      parts: [],
      received: 0,
      ahead: new Map()
    }
    replica.snapshotIn = incoming
  }
  if (incoming === null) return
  const windowChars = replica.config.snapshotChunkChars * replica.config.snapshotWindowChunks * 2
  if (body.offset > incoming.received && body.offset - incoming.received <= windowChars) {
    incoming.ahead.set(body.offset, body.data)
  } else if (body.offset === incoming.received && body.data.length > 0) {
    incoming.parts.push(body.data)
    incoming.received += body.data.length
    let next = incoming.ahead.get(incoming.received)
    while (next !== undefined) {
      incoming.ahead.delete(incoming.received)
      incoming.parts.push(next)
      incoming.received += next.length
      next = incoming.ahead.get(incoming.received)
    }
  }
  sendToServer(replica, leaderId, {
    _tag: "SnapshotAck",
    snapshotSeq: incoming.seq,
    offset: incoming.received
  })
  if (incoming.received >= incoming.total) install(replica, leaderId, incoming)
}

const install = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  leader: Parameters<typeof sendToServer>[1],
  incoming: NonNullable<Replica<S, C, E, Err>["snapshotIn"]>
): void => {
  replica.snapshotIn = null
  const text = incoming.parts.join("")
  if (text.length !== incoming.total || digestOf(text) !== incoming.digest) {
    note(replica, "warning", `snapshot at ${incoming.seq} failed its digest check: discarded`)
    return dropped(replica, "snapshot-digest")
  }
  let body: SnapshotBody
  try {
    body = JSON.parse(text) as SnapshotBody
  } catch {
    return dropped(replica, "snapshot-undecodable")
  }
  const state = replica.machine.decodeState(body.state)
  if (state._tag === "Left" || !Array.isArray(body.members)) return dropped(replica, "snapshot-undecodable")
  const { seq, epoch } = incoming
  const log = replica.log
  // Keep the log after the snapshot where the entry at its seq matches it; otherwise the log goes.
  if (log.epochAt(seq) === epoch) {
    log.compactTo(seq, epoch)
  } else {
    log.resetTo(seq, epoch)
    emit(replica, { _tag: "Truncate", fromSeq: seq + 1 })
  }
  const membership: Membership = { members: body.members, seq: body.membershipSeq }
  replica.app = state.right
  replica.base = { seq, epoch, membership, app: state.right }
  replica.appliedSeq = seq
  replica.commitSeq = seq
  replica.verifiedSeq = Math.max(replica.verifiedSeq, seq)
  replica.persistedSeq = Math.max(replica.persistedSeq, seq)
  replica.snapshotText = null
  replica.lastCheckpointMs = replica.nowMs
  setMembership(replica, membershipAt(replica, log.lastSeq))
  emit(replica, {
    _tag: "Checkpoint",
    at: { seq, epoch, members: body.members, membershipSeq: body.membershipSeq },
    app: state.right
  })
  persistHardState(replica)
  note(replica, "info", `installed snapshot at ${seq} (${text.length} chars)`)
  sendToServer(replica, leader, {
    _tag: "ReplicateAck",
    success: true,
    matchSeq: replica.verifiedSeq,
    hintSeq: log.lastSeq
  })
}
