/**
 * What only a leader does (DESIGN §5, §6): its no-op, heartbeats with rising
 * rounds, stepping down without a majority (CheckQuorum), deciding proposals
 * on its pending state, confirming reads and refusals with a heartbeat round
 * that started after they arrived (ReadIndex), and one membership change at a
 * time. Everything here ends the moment the leadership does: `stepDown`
 * answers every waiting proposal `NotLeader`.
 */
import type { GroupId, Seq } from "../Ids.js"
import { type EntryBody, isMembershipChange, type LogEntry, type Member } from "./Entry.js"
import { applyMembershipEntry, findMember, majorityMatch, memberKey, quorum, voters } from "./Membership.js"
import {
  broadcast,
  drawElectionTimeout,
  emit,
  eventsOf,
  type Input,
  type LeaderState,
  leaderInfo,
  note,
  type Progress,
  type Replica,
  sendHeartbeatRound,
  setMembership,
  setRole
} from "./Replica.js"
import { advanceCommit, resolveCommitWaiters, sendReplication } from "./Replication.js"
import { retransmitSnapshot } from "./Snapshot.js"
import { evolveAll } from "./StateMachine.js"

/** Proposals and reads held until the no-op commits; past this, they are turned away. */
export const QueuedMax = 100_000

const isSelf = <S, C, E, Err>(replica: Replica<S, C, E, Err>, member: Member): boolean =>
  member.id === replica.id && member.incarnation === replica.incarnation

/**
 * A member this leader has not heard from yet starts probed at the end of the log (etcd's probe
 * state): its retransmissions repeat that probe, and only its own answer can send the leader
 * further back. Starting from `matchSeq + 1` sent a member that never answered, e.g. the leader
 * just killed, the whole snapshot as the new leader's first work (1.6 MB with 12,000 entries).
 */
const newProgress = <S, C, E, Err>(replica: Replica<S, C, E, Err>, member: Member): Progress => ({
  member,
  matchSeq: 0,
  nextSeq: replica.log.lastSeq + 1,
  inflight: [],
  probeSeq: replica.log.lastSeq + 1,
  heardMs: replica.nowMs,
  ackedRound: 0,
  snapshot: null
})

/** Appends an entry of this epoch to the leader's log (the service persists it before any send). */
export const appendEntry = <S, C, E, Err>(replica: Replica<S, C, E, Err>, body: EntryBody): Seq => {
  const entry: LogEntry = { epoch: replica.epoch, seq: replica.log.lastSeq + 1, body }
  replica.log.append(entry)
  emit(replica, { _tag: "Append", entries: [entry] })
  if (isMembershipChange(body)) {
    setMembership(replica, applyMembershipEntry(replica.membership, body, entry.seq))
    syncProgress(replica)
  }
  return entry.seq
}

/** One progress record per member other than itself, no more, no less. */
const syncProgress = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  const lead = replica.lead
  if (lead === null) return
  const keys = new Set<string>()
  for (const member of replica.membership.members) {
    if (isSelf(replica, member)) continue
    const key = memberKey(member)
    keys.add(key)
    if (!lead.progress.has(key)) lead.progress.set(key, newProgress(replica, member))
  }
  for (const key of lead.progress.keys()) if (!keys.has(key)) lead.progress.delete(key)
}

export const becomeLeader = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  let pending = replica.app
  for (const entry of replica.log.range(replica.appliedSeq, replica.log.lastSeq)) {
    if (entry.body._tag !== "App") continue
    pending = evolveAll(replica.machine, pending, eventsOf(replica, entry.seq, entry.body.data))
  }
  const lead: LeaderState<S, C, Err> = {
    pending,
    noopSeq: replica.log.lastSeq + 1,
    progress: new Map(),
    heartbeatRound: 0,
    nextHeartbeatMs: replica.nowMs,
    heartbeatWanted: true,
    nextAnnounceMs: replica.nowMs,
    commitWaiters: [],
    confirmWaiters: [],
    queued: [],
    joinRequests: new Map(),
    dissolving: false
  }
  replica.lead = lead
  replica.prevote = null
  replica.candidacy = null
  replica.holdOffUntilMs = 0
  syncProgress(replica)
  setRole(replica, "leader", replica.id)
  note(replica, "info", `leading epoch ${replica.epoch}`)
  appendEntry(replica, { _tag: "LeaderElected", leader: replica.id })
  advanceCommit(replica)
}

/** Ends the leadership: every waiting proposal and read learns it may not have been applied. */
export const stepDown = <S, C, E, Err>(replica: Replica<S, C, E, Err>, reason: string): void => {
  const lead = replica.lead
  if (lead === null) return
  replica.lead = null
  note(replica, "warning", `stepping down from epoch ${replica.epoch}: ${reason}`)
  const proposals = [
    ...lead.commitWaiters.map((w) => w.proposal),
    ...lead.confirmWaiters.map((w) => w.proposal),
    ...lead.queued.flatMap((input) =>
      input._tag === "Propose" || input._tag === "Read" ? [input.proposal] : []
    )
  ]
  // The leader that follows is unknown yet; clients rediscover it.
  for (const proposal of proposals) {
    emit(replica, { _tag: "Resolved", proposal, outcome: { _tag: "NotLeader", leader: null } })
  }
  // It can vote at once, but waits a full timeout before standing itself.
  replica.leaderContactMs = replica.nowMs - replica.config.failureTimeoutMs
  replica.electionTimeoutMs = drawElectionTimeout(replica)
  replica.holdOffUntilMs = replica.nowMs + replica.electionTimeoutMs
  setRole(replica, "follower", null)
}

export const sendHeartbeats = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  const lead = replica.lead
  if (lead === null) return
  sendHeartbeatRound(replica, lead)
  afterCommit(replica)
}

export const leaderTick = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  const lead = replica.lead
  if (lead === null) return
  const now = replica.nowMs
  const config = replica.config
  const recent = voters(replica.membership).filter(
    (member) =>
      isSelf(replica, member) ||
      (lead.progress.get(memberKey(member))?.heardMs ?? Number.NEGATIVE_INFINITY) >
        now - config.failureTimeoutMs
  ).length
  if (recent < quorum(replica.membership)) {
    return stepDown(replica, "no majority acknowledged within the failure timeout")
  }
  if (now >= lead.nextHeartbeatMs) sendHeartbeats(replica)
  for (const progress of lead.progress.values()) {
    if (progress.snapshot !== null) {
      retransmitSnapshot(replica, progress)
      continue
    }
    const oldest = progress.inflight[0]
    if (oldest !== undefined && now - oldest.sentMs >= config.retransmitTimeoutMs) {
      progress.inflight = []
      progress.nextSeq = progress.probeSeq ?? progress.matchSeq + 1
      sendReplication(replica, progress)
    }
  }
  if (now >= lead.nextAnnounceMs) {
    lead.nextAnnounceMs = now + config.announceIntervalMs
    broadcast(replica, {
      _tag: "LeaderAnnouncement",
      rank: { holdsClientEntry: replica.machine.holdsClientData(replica.app), commitSeq: replica.commitSeq }
    })
  }
  maintainMembership(replica)
}

/** End of a batch: send the batch's new entries to everyone, and a heartbeat round if one is wanted. */
export const flushLeader = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  const lead = replica.lead
  if (lead === null) return
  for (const progress of lead.progress.values()) sendReplication(replica, progress)
  if (lead.heartbeatWanted) sendHeartbeats(replica)
}

// ---------------------------------------------------------------------------
// Proposals and reads

export const onPropose = <S, C, E, Err>(replica: Replica<S, C, E, Err>, input: Input<C>): void => {
  if (input._tag !== "Propose" && input._tag !== "Read") return
  const lead = replica.lead
  if (lead === null || replica.role !== "leader" || lead.dissolving) {
    return emit(replica, {
      _tag: "Resolved",
      proposal: input.proposal,
      outcome: { _tag: "NotLeader", leader: lead?.dissolving === true ? null : leaderInfo(replica) }
    })
  }
  if (replica.splitGroup) {
    return emit(replica, { _tag: "Resolved", proposal: input.proposal, outcome: { _tag: "SplitGroup" } })
  }
  if (replica.commitSeq < lead.noopSeq) {
    if (lead.queued.length >= QueuedMax) {
      return emit(replica, {
        _tag: "Resolved",
        proposal: input.proposal,
        outcome: { _tag: "NotLeader", leader: null }
      })
    }
    lead.queued.push(input)
    return
  }
  if (input._tag === "Read") {
    lead.confirmWaiters.push({
      proposal: input.proposal,
      seq: replica.commitSeq,
      round: lead.heartbeatRound + 1,
      kind: "read"
    })
    lead.heartbeatWanted = true
    return
  }
  const decision = replica.machine.decide(lead.pending, input.command, replica.nowMs)
  if (decision._tag === "Left") {
    // A refusal rests on every pending entry: answer once they are committed and we still lead.
    lead.confirmWaiters.push({
      proposal: input.proposal,
      seq: replica.log.lastSeq,
      round: lead.heartbeatRound + 1,
      kind: "refusal",
      refusal: decision.left
    })
    lead.heartbeatWanted = true
    return
  }
  const events = decision.right
  if (events.length === 0) {
    // Nothing new (e.g. a retry): answer from committed state once everything it may rest on is committed.
    lead.commitWaiters.push({ proposal: input.proposal, seq: replica.log.lastSeq, round: 0, kind: "commit" })
    return resolveCommitWaiters(replica)
  }
  const data = replica.machine.encodeEvents(events)
  if (typeof data === "object" && data !== null) replica.appended.set(data, events)
  const seq = appendEntry(replica, { _tag: "App", data })
  lead.pending = evolveAll(replica.machine, lead.pending, events)
  lead.commitWaiters.push({ proposal: input.proposal, seq, round: 0, kind: "commit" })
}

/**
 * After the commit point or the confirmed round moved: answer the refusals and
 * reads whose conditions hold, and decide what waited for the no-op.
 */
export const afterCommit = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  const lead = replica.lead
  if (lead === null) return
  const confirmedRound = majorityMatch(replica.membership, (member) =>
    isSelf(replica, member) ? lead.heartbeatRound : (lead.progress.get(memberKey(member))?.ackedRound ?? 0)
  )
  while (lead.confirmWaiters.length > 0) {
    const waiter = lead.confirmWaiters[0]
    if (waiter === undefined || waiter.round > confirmedRound || waiter.seq > replica.appliedSeq) break
    lead.confirmWaiters.shift()
    emit(replica, {
      _tag: "Resolved",
      proposal: waiter.proposal,
      outcome:
        waiter.kind === "read" || waiter.refusal === undefined
          ? { _tag: "Read", state: replica.app }
          : { _tag: "Refused", error: waiter.refusal }
    })
  }
  if (lead.queued.length > 0 && replica.commitSeq >= lead.noopSeq) {
    const queued = lead.queued.splice(0, lead.queued.length)
    for (const input of queued) onPropose(replica, input)
  }
}

// ---------------------------------------------------------------------------
// Membership changes: one at a time, only after this epoch's no-op committed.

const maintainMembership = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  const lead = replica.lead
  if (lead === null || lead.dissolving) return
  if (replica.commitSeq < lead.noopSeq || replica.membership.seq > replica.commitSeq) return
  const config = replica.config
  const members = replica.membership.members

  for (const [key, member] of lead.joinRequests) {
    lead.joinRequests.delete(key)
    if (findMember(replica.membership, member.id, member.incarnation) !== undefined) continue
    note(replica, "info", `${member.id} (incarnation ${member.incarnation}) joins as a learner`)
    appendEntry(replica, { _tag: "ServerJoined", member: { ...member, voter: false } })
    return
  }

  for (const learner of members) {
    if (learner.voter) continue
    const progress = lead.progress.get(memberKey(learner))
    if (progress === undefined || progress.matchSeq < replica.commitSeq) continue
    // A lost disk came back: remove the old incarnation before the new one may vote.
    const old = members.find((m) => m.id === learner.id && m.incarnation !== learner.incarnation)
    if (old !== undefined) {
      note(replica, "info", `${old.id}: removing old incarnation ${old.incarnation}`)
      appendEntry(replica, { _tag: "ServerLeft", id: old.id, incarnation: old.incarnation })
      return
    }
    note(replica, "info", `${learner.id} caught up: promoted to voter`)
    appendEntry(replica, { _tag: "ServerPromoted", id: learner.id, incarnation: learner.incarnation })
    return
  }

  const voterCount = voters(replica.membership).length
  for (const member of members) {
    if (isSelf(replica, member)) continue
    const progress = lead.progress.get(memberKey(member))
    if (progress === undefined || replica.nowMs - progress.heardMs < config.removalTimeoutMs) continue
    if (member.voter && voterCount - 1 < config.minServers) continue
    note(replica, "warning", `${member.id} silent for ${config.removalTimeoutMs} ms: removed`)
    appendEntry(replica, { _tag: "ServerLeft", id: member.id, incarnation: member.incarnation })
    return
  }
}

/** A committed GroupDissolved: this group accepts nothing more; its servers go and join the other. */
export const onGroupDissolved = <S, C, E, Err>(replica: Replica<S, C, E, Err>, into: GroupId): void => {
  if (replica.lead !== null) {
    // Its followers learn of the commit from this round; without it they would wait for a leader that left.
    sendHeartbeatRound(replica, replica.lead)
    stepDown(replica, `group dissolved into ${into}`)
  }
  note(replica, "warning", `group ${replica.group} dissolved into ${into}: joining it`)
  replica.join = { target: null, dissolvedInto: into, nextRequestMs: replica.nowMs, unanswered: 0 }
  setRole(replica, "joining", null)
}
