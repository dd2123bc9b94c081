/**
 * Finding and forming groups (DESIGN §5, Bootstrap and Membership): never two
 * groups. A server without a group listens for a discovery window; if it
 * hears a leader it asks to join; otherwise, once it heard `expect` group-less
 * servers (itself included), only the highest-ranked of them forms the group.
 * Leaders announce themselves, so groups that formed apart meet: one without
 * client data dissolves into the other; two with client data both keep their
 * data and the lower-ranked stops serving (SplitGroup).
 */
import type { GroupId, Incarnation, ServerId } from "../Ids.js"
import type { Address } from "../Schemas.js"
import type { LogEntry, Member } from "./Entry.js"
import { appendEntry, becomeLeader } from "./Leadership.js"
import { applyMembershipEntry, emptyMembership, findMember, memberKey } from "./Membership.js"
import {
  adoptEpoch,
  broadcast,
  drawElectionTimeout,
  dropped,
  emit,
  hardState,
  leaderInfo,
  type Meta,
  note,
  persistHardState,
  type Replica,
  roleOnWire,
  send,
  setMembership,
  setRole
} from "./Replica.js"

type ServerMeta = Extract<Meta["from"], { role: "server" }>

/** Join requests unanswered before the joiner looks for the leader again. */
const JoinAttemptsMax = 5

/** A random id of 16 hex digits from the replica's seeded source. */
export const randomId = <S, C, E, Err>(replica: Replica<S, C, E, Err>): string => {
  let id = ""
  for (let i = 0; i < 4; i++)
    id += Math.floor(replica.random() * 0x10000)
      .toString(16)
      .padStart(4, "0")
  return id
}

export const onDiscoveryRequest = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  meta: Meta,
  source: Address
): void => {
  if (meta.from.role === "server" && meta.from.id === replica.id) return
  send(replica, source, {
    _tag: "DiscoveryResponse",
    group: replica.group,
    leader: leaderInfo(replica),
    bootstrapping: replica.role === "bootstrapping"
  })
}

export const onStatusRequest = <S, C, E, Err>(replica: Replica<S, C, E, Err>, source: Address): void =>
  send(replica, source, {
    _tag: "StatusReply",
    id: replica.id,
    role: roleOnWire(replica.role),
    group: replica.group,
    epoch: replica.epoch,
    lastSeq: replica.log.lastSeq,
    commitSeq: replica.commitSeq,
    leader: replica.leader,
    members: replica.membership.members,
    splitGroup: replica.splitGroup
  })

/** The target group a joiner looks for: the one its store dissolved into, its own, or any. */
const wantsGroup = <S, C, E, Err>(replica: Replica<S, C, E, Err>, group: GroupId | null): boolean => {
  if (group === null) return false
  const dissolvedInto = replica.join?.dissolvedInto ?? null
  if (dissolvedInto !== null) return group === dissolvedInto
  return replica.group === null || replica.group === group
}

export const onDiscoveryResponse = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  from: ServerMeta,
  body: {
    readonly group: GroupId | null
    readonly leader: { readonly id: ServerId; readonly address: Address } | null
    readonly bootstrapping: boolean
  },
  source: Address
): void => {
  // The answering server is reached at the datagram's source, whatever it thinks its address is.
  const leader =
    body.leader === null ? null : body.leader.id === from.id ? { id: from.id, address: source } : body.leader
  // Ask the leader; without one, ask the server itself: it lets in a member it already lists
  // (a founder of a group whose leader stepped down before the founders joined).
  const target = leader ?? { id: from.id, address: source }
  const boot = replica.bootstrap
  if (replica.role === "bootstrapping" && boot !== null) {
    if (body.bootstrapping) {
      boot.heard.set(from.id, { id: from.id, incarnation: from.incarnation, voter: true, address: source })
    } else if (body.group !== null) {
      boot.heardGroup = true
      startJoining(replica, target)
    }
    return
  }
  const join = replica.join
  if (
    replica.role === "joining" &&
    join !== null &&
    join.target === null &&
    wantsGroup(replica, body.group)
  ) {
    join.target = target
    join.nextRequestMs = replica.nowMs
  }
}

const startJoining = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  target: { readonly id: ServerId; readonly address: Address }
): void => {
  replica.bootstrap = null
  replica.join = { target, dissolvedInto: null, nextRequestMs: replica.nowMs, unanswered: 0 }
  note(replica, "info", `found a group at ${target.id}: asking to join`)
  setRole(replica, "joining", null)
}

export const bootstrapTick = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  const boot = replica.bootstrap
  if (boot === null) return
  const now = replica.nowMs
  const config = replica.config
  if (now >= boot.nextBroadcastMs) {
    boot.nextBroadcastMs = now + config.discoveryIntervalMs
    broadcast(replica, { _tag: "DiscoveryRequest" })
  }
  if (now < boot.startedMs + config.discoveryWindowMs || boot.heardGroup) return
  if (boot.heard.size + 1 < config.expect) return
  // Only the highest-ranked group-less server forms the group; the others join its leader.
  // Their logs are empty, so rank is the id.
  for (const id of boot.heard.keys()) if (id > replica.id) return
  formGroup(replica, [...boot.heard.values()])
}

const formGroup = <S, C, E, Err>(replica: Replica<S, C, E, Err>, others: ReadonlyArray<Member>): void => {
  const group = randomId(replica) as GroupId
  const self: Member = {
    id: replica.id,
    incarnation: replica.incarnation,
    voter: true,
    address: replica.selfAddress
  }
  const members = [self, ...others].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  replica.bootstrap = null
  replica.group = group
  replica.epoch = 1
  replica.vote = replica.id
  persistHardState(replica)
  const entry = {
    epoch: 1,
    seq: replica.log.lastSeq + 1,
    body: { _tag: "GroupFormed" as const, group, members }
  }
  replica.log.append(entry)
  emit(replica, { _tag: "Append", entries: [entry] })
  setMembership(replica, applyMembershipEntry(replica.membership, entry.body, entry.seq))
  for (const member of others) replica.addresses.set(member.id, member.address)
  note(replica, "info", `formed group ${group} with ${members.map((m) => m.id).join(", ")}`)
  becomeLeader(replica)
}

export const joinTick = <S, C, E, Err>(replica: Replica<S, C, E, Err>): void => {
  const join = replica.join
  if (join === null || replica.nowMs < join.nextRequestMs) return
  join.nextRequestMs = replica.nowMs + replica.config.discoveryIntervalMs
  if (join.target === null || join.unanswered >= JoinAttemptsMax) {
    join.target = null
    join.unanswered = 0
    broadcast(replica, { _tag: "DiscoveryRequest" })
    return
  }
  join.unanswered += 1
  send(replica, join.target.address, {
    _tag: "JoinRequest",
    storeGroup: replica.group,
    dissolvedInto: join.dissolvedInto,
    lastSeq: replica.log.lastSeq,
    lastEpoch: replica.log.lastEpoch
  })
}

/**
 * A join (DESIGN §5, Membership). Any member of the group lets in a server it
 * already lists (with that incarnation); only the leader adds a new one.
 */
export const onJoinRequest = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  from: ServerMeta,
  body: { readonly storeGroup: GroupId | null; readonly dissolvedInto: GroupId | null },
  source: Address
): void => {
  if (replica.group === null) return dropped(replica, "no-group")
  const answer = (outcome: "Member" | "Pending" | "ResetStore" | "Refused", reason: string) =>
    send(replica, source, {
      _tag: "JoinAnswer",
      outcome,
      reason,
      firstEntry: outcome === "Member" ? (replica.log.entry(1) ?? null) : null
    })
  const listed = findMember(replica.membership, from.id, from.incarnation) !== undefined
  const sameStore = body.storeGroup === null || body.storeGroup === replica.group
  if (listed && sameStore) {
    replica.addresses.set(from.id, source)
    return answer("Member", "")
  }
  const lead = replica.lead
  if (replica.role !== "leader" || lead === null) {
    return answer("Refused", `${replica.id} is not the leader; ask ${replica.leader ?? "the leader"}`)
  }
  if (lead.dissolving) return answer("Refused", "this group is dissolving")
  if (!sameStore) {
    return body.dissolvedInto === replica.group
      ? answer("ResetStore", `group ${body.storeGroup} dissolved into ${replica.group}`)
      : answer("Refused", `your store belongs to group ${body.storeGroup}, which still exists`)
  }
  replica.addresses.set(from.id, source)
  const member: Member = { id: from.id, incarnation: from.incarnation, voter: false, address: source }
  if (lead.joinRequests.size < 16 || lead.joinRequests.has(memberKey(member))) {
    lead.joinRequests.set(memberKey(member), member)
  }
  answer("Pending", "your join is being committed")
}

export const onJoinAnswer = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  from: ServerMeta,
  meta: Meta,
  body: {
    readonly outcome: "Member" | "Pending" | "ResetStore" | "Refused"
    readonly reason: string
    readonly firstEntry: LogEntry | null
  },
  source: Address
): void => {
  const join = replica.join
  if (replica.role !== "joining" || join === null || join.target?.id !== from.id) {
    return dropped(replica, "unexpected-join-answer")
  }
  join.unanswered = 0
  switch (body.outcome) {
    case "Pending":
      return
    case "Refused":
      note(replica, "warning", `join refused by ${from.id}: ${body.reason}`)
      join.target = null
      return
    case "ResetStore":
      return resetStore(replica, body.reason)
    case "Member": {
      if (meta.group === undefined) return dropped(replica, "no-group")
      if (replica.group === null) {
        replica.group = meta.group
        persistHardState(replica)
      }
      if (replica.group !== meta.group) return dropped(replica, "other-group")
      const first = body.firstEntry
      if (
        replica.log.lastSeq === 0 &&
        first !== null &&
        first.seq === 1 &&
        first.body._tag === "GroupFormed" &&
        first.body.group === replica.group
      ) {
        // A founder with an empty log takes the group's first entry now: it knows the members
        // and can vote before a leader replicates to it (its incarnation is listed, so it never
        // voted in this group), and no candidate without that entry can win it over.
        replica.log.append(first)
        emit(replica, { _tag: "Append", entries: [first] })
        setMembership(replica, applyMembershipEntry(replica.membership, first.body, first.seq))
      }
      adoptEpoch(replica, meta.epoch ?? 0, null)
      replica.addresses.set(from.id, source)
      replica.join = null
      replica.leaderContactMs = replica.nowMs
      replica.electionTimeoutMs = drawElectionTimeout(replica)
      note(replica, "info", `joined group ${replica.group} led by ${from.id}`)
      setRole(replica, "follower", null)
      return
    }
  }
}

/** A leader said our store's group no longer exists: start afresh as a new incarnation. */
const resetStore = <S, C, E, Err>(replica: Replica<S, C, E, Err>, reason: string): void => {
  note(replica, "warning", `RESETTING STORE of group ${replica.group}: ${reason}`)
  replica.log.resetTo(0, 0)
  replica.group = null
  replica.epoch = 0
  replica.vote = null
  replica.commitSeq = 0
  replica.appliedSeq = 0
  replica.verifiedSeq = 0
  replica.persistedSeq = 0
  replica.incarnation = randomId(replica) as Incarnation
  replica.app = replica.machine.initial
  replica.base = { seq: 0, epoch: 0, membership: emptyMembership, app: replica.machine.initial }
  setMembership(replica, emptyMembership)
  if (replica.join !== null)
    replica.join = { ...replica.join, dissolvedInto: null, nextRequestMs: replica.nowMs }
  emit(replica, { _tag: "ResetStore", hard: hardState(replica) })
}

/** The leader of our group no longer lists us (DESIGN §5): rejoin as a new incarnation, keeping the log. */
export const onNotMember = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  from: ServerMeta,
  epoch: number,
  source: Address
): void => {
  if (epoch < replica.epoch || replica.role === "leader") return dropped(replica, "stale-epoch")
  // Only a leader sends NotMember: at our own epoch we know who leads, and it must be them.
  if (epoch === replica.epoch && replica.leader !== null && replica.leader !== from.id)
    return dropped(replica, "not-leader")
  if (replica.role === "joining") return
  replica.incarnation = randomId(replica) as Incarnation
  persistHardState(replica)
  replica.join = {
    target: { id: from.id, address: source },
    dissolvedInto: null,
    nextRequestMs: replica.nowMs,
    unanswered: 0
  }
  note(
    replica,
    "warning",
    `${from.id} (leader of epoch ${epoch}) no longer lists us: rejoining as ${replica.incarnation}`
  )
  setRole(replica, "joining", null)
}

/** Group rank (DESIGN §5): (holds a client entry, commit seq, group id). */
const compareGroups = (
  a: { readonly holds: boolean; readonly commitSeq: number; readonly group: string },
  b: { readonly holds: boolean; readonly commitSeq: number; readonly group: string }
): number =>
  a.holds !== b.holds
    ? a.holds
      ? 1
      : -1
    : a.commitSeq !== b.commitSeq
      ? a.commitSeq - b.commitSeq
      : a.group < b.group
        ? -1
        : a.group > b.group
          ? 1
          : 0

export const onLeaderAnnouncement = <S, C, E, Err>(
  replica: Replica<S, C, E, Err>,
  from: ServerMeta,
  meta: Meta,
  body: { readonly rank: { readonly holdsClientEntry: boolean; readonly commitSeq: number } },
  source: Address
): void => {
  const group = meta.group
  if (group === undefined) return dropped(replica, "no-group")
  if (replica.role === "bootstrapping") {
    if (replica.bootstrap !== null) replica.bootstrap.heardGroup = true
    return startJoining(replica, { id: from.id, address: source })
  }
  const join = replica.join
  if (replica.role === "joining" && join !== null && join.target === null && wantsGroup(replica, group)) {
    join.target = { id: from.id, address: source }
    join.nextRequestMs = replica.nowMs
    return
  }
  const lead = replica.lead
  if (replica.role !== "leader" || lead === null || replica.group === null || group === replica.group) return
  const mine = {
    holds: replica.machine.holdsClientData(replica.app),
    commitSeq: replica.commitSeq,
    group: replica.group
  }
  const theirs = { holds: body.rank.holdsClientEntry, commitSeq: body.rank.commitSeq, group }
  if (!mine.holds) {
    const dissolve = theirs.holds || mine.group < theirs.group
    if (dissolve && !lead.dissolving && replica.commitSeq >= lead.noopSeq) {
      note(
        replica,
        "warning",
        `met group ${group} (leader ${from.id}): this group holds no client data and dissolves into it`
      )
      lead.dissolving = true
      appendEntry(replica, { _tag: "GroupDissolved", into: group })
    }
    return
  }
  if (!theirs.holds) return
  if (compareGroups(mine, theirs) < 0) {
    if (!replica.splitGroup) {
      note(
        replica,
        "warning",
        `SPLIT GROUP: met group ${group} (leader ${from.id}) that also holds client data and ranks higher; this group stops serving (SplitGroup) — merge by hand`
      )
    }
    replica.splitGroup = true
  } else {
    note(
      replica,
      "warning",
      `SPLIT GROUP: met group ${group} (leader ${from.id}) that also holds client data; it ranks lower and stops serving`
    )
  }
}
