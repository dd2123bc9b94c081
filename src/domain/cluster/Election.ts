/**
 * Election — Bully made safe (DESIGN §5), in two phases.
 *
 * 1. Pre-vote (`Election`): stores nothing. A voter grants when the proposed
 *    epoch is above its own and the candidate's rank (last log epoch, last log
 *    seq, id) is not below its own; a voter that outranks the candidate runs
 *    its own pre-vote (the bully's "I am bigger, I take over").
 * 2. Vote (`Coordinator`): with a majority of grants the candidate stores
 *    (epoch, vote = itself), then asks for votes; a voter accepts at most one
 *    coordinator per epoch, of rank not below its own, and stores (epoch, vote)
 *    before it acks (the service persists before it sends). A majority of acks
 *    makes a leader.
 * A server that heard its leader within the failure timeout ignores both, so
 * a restarted or isolated server cannot depose a healthy leader.
 */
import type { ServerId } from "../Ids.js"
import { becomeLeader } from "./Leadership.js"
import { isVoter, quorum, voters } from "./Membership.js"
import {
  adoptEpoch,
  broadcast,
  compareRank,
  drawElectionTimeout,
  dropped,
  emit,
  heardLeaderRecently,
  type Meta,
  note,
  ownRank,
  persistHardState,
  type Replica,
  sendToServer,
  setRole,
  voterSelf
} from "./Replica.js"

type ServerMeta = Extract<Meta["from"], { role: "server" }>

const rankOnWire = <S, C, E, Err>(replica: Replica<S, C, E, Err>) => ({
  lastEpoch: replica.log.lastEpoch,
  lastSeq: replica.log.lastSeq
})

/** The failure timeout fired: ask every voter whether it would vote for us. */
export const startPrevote = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  if (!voterSelf(replica)) return
  replica.electionTimeoutMs = drawElectionTimeout(replica)
  const nextEpoch = replica.epoch + 1
  replica.prevote = {
    nextEpoch,
    grants: new Set([replica.id]),
    startedMs: replica.nowMs,
    sentMs: replica.nowMs
  }
  replica.candidacy = null
  setRole(replica, "precandidate", null)
  note(replica, "info", `no word from a leader: pre-vote for epoch ${nextEpoch}`)
  // Broadcast, not unicast: after restarts on new ports, followers may not know where the
  // others are now (they only learn a peer's address from its datagrams); the answers tell.
  broadcast(replica, { _tag: "Election", nextEpoch, rank: rankOnWire(replica) })
  checkPrevote(replica)
}

const checkPrevote = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  if (replica.prevote === null || replica.prevote.grants.size < quorum(replica.membership)) return
  const epoch = replica.prevote.nextEpoch
  replica.prevote = null
  replica.epoch = epoch
  replica.vote = replica.id
  replica.verifiedSeq = replica.commitSeq
  persistHardState(replica)
  replica.candidacy = { acks: new Set([replica.id]), startedMs: replica.nowMs }
  setRole(replica, "candidate", null)
  note(replica, "info", `pre-vote granted by a majority: standing as coordinator of epoch ${epoch}`)
  for (const voter of voters(replica.membership)) {
    if (voter.id === replica.id) continue
    sendToServer(replica, voter.id, { _tag: "Coordinator", rank: rankOnWire(replica) })
  }
  checkCandidacy(replica)
}

const checkCandidacy = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  if (replica.candidacy === null || replica.candidacy.acks.size < quorum(replica.membership)) return
  replica.candidacy = null
  becomeLeader(replica)
}

export const onElection = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  from: ServerMeta,
  body: {
    readonly nextEpoch: number
    readonly rank: { readonly lastEpoch: number; readonly lastSeq: number }
  }
): void => {
  if (heardLeaderRecently(replica)) return dropped(replica, "leader-alive")
  if (!voterSelf(replica)) return dropped(replica, "not-a-voter")
  const theirs = { ...body.rank, id: from.id }
  const mine = ownRank(replica)
  const granted = body.nextEpoch > replica.epoch && compareRank(theirs, mine) >= 0
  sendToServer(replica, from.id, {
    _tag: "ElectionAnswer",
    nextEpoch: body.nextEpoch,
    granted,
    rank: rankOnWire(replica)
  })
  if (!granted && compareRank(mine, theirs) > 0 && replica.role === "follower") startPrevote(replica)
}

export const onElectionAnswer = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  from: ServerMeta,
  senderEpoch: number,
  body: {
    readonly nextEpoch: number
    readonly granted: boolean
    readonly rank: { readonly lastEpoch: number; readonly lastSeq: number }
  }
): void => {
  const prevote = replica.prevote
  if (replica.role !== "precandidate" || prevote === null || body.nextEpoch !== prevote.nextEpoch) {
    return dropped(replica, "stale-answer")
  }
  if (!isVoter(replica.membership, from.id, from.incarnation)) return dropped(replica, "not-a-voter")
  if (senderEpoch >= prevote.nextEpoch) {
    // We are behind: catch up, and try again later with a higher epoch.
    adoptEpoch(replica, senderEpoch, null)
    return backOff(replica)
  }
  if (body.granted) {
    prevote.grants.add(from.id)
    return checkPrevote(replica)
  }
  if (compareRank({ ...body.rank, id: from.id }, ownRank(replica)) > 0) {
    // Refused by a higher-ranked voter: wait one timeout for its Coordinator, then try again.
    note(replica, "info", `outranked by ${from.id}: waiting for its coordinator`)
    backOff(replica)
  }
}

export const onCoordinator = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  from: ServerMeta,
  epoch: number,
  body: { readonly rank: { readonly lastEpoch: number; readonly lastSeq: number } }
): void => {
  const alreadyAccepted = epoch === replica.epoch && replica.vote === from.id && replica.role !== "leader"
  if (!alreadyAccepted) {
    if (heardLeaderRecently(replica)) return dropped(replica, "leader-alive")
    if (epoch < replica.epoch) return dropped(replica, "stale-epoch")
    if (!voterSelf(replica)) return dropped(replica, "not-a-voter")
    if (epoch === replica.epoch && replica.vote !== null) return dropped(replica, "already-voted")
    if (compareRank({ ...body.rank, id: from.id }, ownRank(replica)) < 0) return dropped(replica, "outranked")
    if (epoch > replica.epoch) replica.verifiedSeq = replica.commitSeq
    replica.epoch = epoch
    replica.vote = from.id
    // Stored before the ack below: the service persists a batch before it sends anything.
    persistHardState(replica)
    replica.prevote = null
    replica.candidacy = null
    setRole(replica, "follower", null)
    note(replica, "info", `accepted ${from.id} as coordinator of epoch ${epoch}`)
  }
  replica.leaderContactMs = replica.nowMs
  replica.electionTimeoutMs = drawElectionTimeout(replica)
  sendToServer(replica, from.id, {
    _tag: "CoordinatorAck",
    lastSeq: replica.log.lastSeq,
    lastEpoch: replica.log.lastEpoch
  })
}

/**
 * The transport says nothing listens at the leader's address (ICMP port unreachable): its
 * process is gone, whatever the failure timeout says. The follower stops counting the leader
 * as heard, so it grants pre-votes at once, and stands itself within a heartbeat interval.
 * Every follower probes on its own, so a majority sees the leader gone, as the pre-vote rule
 * needs. Ignored when the leader was heard since the probe (it restarted on its port).
 */
export const onUnreachable = <S, C, E, Err>(replica: Replica<S, C, E, Err>, server: ServerId): void => {
  if (replica.role !== "follower" || replica.leader !== server) return dropped(replica, "stale-answer")
  if (replica.probedMs === null || replica.leaderContactMs > replica.probedMs) {
    return dropped(replica, "leader-alive")
  }
  const { failureTimeoutMs, heartbeatIntervalMs } = replica.config
  replica.leaderContactMs = replica.nowMs - failureTimeoutMs
  replica.electionTimeoutMs = failureTimeoutMs + Math.floor(replica.random() * heartbeatIntervalMs)
  note(replica, "info", `leader ${server} is gone (nothing listens at its address): failure detected early`)
}

export const onCoordinatorAck = <S, C, E, Err>(replica: Replica<S, C, E, Err>, from: ServerMeta): void => {
  if (replica.role !== "candidate" || replica.candidacy === null) return dropped(replica, "stale-answer")
  if (!isVoter(replica.membership, from.id, from.incarnation)) return dropped(replica, "not-a-voter")
  replica.candidacy.acks.add(from.id)
  checkCandidacy(replica)
}

/** Back to follower, and no pre-vote of our own for one election timeout. */
const backOff = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  replica.prevote = null
  replica.candidacy = null
  replica.electionTimeoutMs = drawElectionTimeout(replica)
  replica.holdOffUntilMs = replica.nowMs + replica.electionTimeoutMs
  setRole(replica, "follower", null)
}

/**
 * When a follower next asks whether its silent leader's process is still there: after one and
 * a half heartbeat intervals without a word (a beat late by half an interval; a probe of a live
 * process only costs a datagram), then every interval until the election timeout.
 * Null when it has no leader to ask about, or could not stand anyway.
 */
export const nextProbeMs = <S, C, E, Err>(replica: Replica<S, C, E, Err>): number | null => {
  if (replica.role !== "follower" || replica.leader === null || !voterSelf(replica)) return null
  const firstMs = replica.leaderContactMs + 1.5 * replica.config.heartbeatIntervalMs
  const probedMs = replica.probedMs
  return probedMs === null || probedMs < replica.leaderContactMs
    ? firstMs
    : Math.max(firstMs, probedMs + replica.config.heartbeatIntervalMs)
}

/**
 * Failure detection for non-leaders: start a pre-vote when the leader has been silent too long,
 * and probe it before that (a process that is gone is known at once, see `onUnreachable`).
 */
export const electionTick = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  const now = replica.nowMs
  switch (replica.role) {
    case "follower": {
      const dueMs = Math.max(replica.leaderContactMs + replica.electionTimeoutMs, replica.holdOffUntilMs)
      if (now >= dueMs && voterSelf(replica)) return startPrevote(replica)
      const probeMs = nextProbeMs(replica)
      const leader = replica.leader
      const address = leader === null ? undefined : replica.addresses.get(leader)
      if (probeMs !== null && now >= probeMs && leader !== null && address !== undefined) {
        replica.probedMs = now
        emit(replica, { _tag: "Probe", server: leader, address })
      }
      return
    }
    case "precandidate": {
      const prevote = replica.prevote
      if (prevote === null) return
      if (now >= prevote.startedMs + replica.electionTimeoutMs) return backOff(replica)
      // Repeated until answered: a lost Election, or a voter that had not yet seen the leader
      // go, would otherwise cost a whole election timeout.
      if (now >= prevote.sentMs + replica.config.heartbeatIntervalMs) {
        prevote.sentMs = now
        broadcast(replica, { _tag: "Election", nextEpoch: prevote.nextEpoch, rank: rankOnWire(replica) })
      }
      return
    }
    case "candidate":
      if (replica.candidacy !== null && now >= replica.candidacy.startedMs + replica.electionTimeoutMs) {
        note(replica, "info", `no majority for epoch ${replica.epoch}: backing off`)
        backOff(replica)
      }
      return
    default:
      return
  }
}
