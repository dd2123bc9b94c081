/**
 * Log entries: what the leader sequences and every server stores in the same
 * order. The cluster's own entries (group formation, leader no-ops,
 * membership) sit beside `App` entries, whose data is the encoded events of
 * the state machine the cluster was given (the auctions, or a test's counter).
 */
import * as Schema from "effect/Schema"
import { Epoch, GroupId, Incarnation, Seq, ServerId } from "../Ids.js"
import { Address } from "../Schemas.js"

/** A member of the group: a server's id and the incarnation of its data dir. */
export const Member = Schema.Struct({
  id: ServerId,
  incarnation: Incarnation,
  /** Learners receive entries but are not counted for elections or commits. */
  voter: Schema.Boolean,
  /** Where it was when it joined; servers also learn newer addresses from datagrams. */
  address: Address
})
export type Member = typeof Member.Type

/** At most this many members: bounds every per-member table and fits a membership entry in a datagram. */
export const MembersMax = 15

export const Members = Schema.Array(Member).pipe(Schema.maxItems(MembersMax))

/** The first entry of a group: its random id and its founding voters. */
export const GroupFormed = Schema.TaggedStruct("GroupFormed", {
  group: GroupId,
  members: Members
})

/** The no-op a new leader commits before it decides anything (Raft §8). */
export const LeaderElected = Schema.TaggedStruct("LeaderElected", {
  leader: ServerId
})

/** A server joins as a learner. */
export const ServerJoined = Schema.TaggedStruct("ServerJoined", {
  member: Member
})

/** A caught-up learner becomes a voter. */
export const ServerPromoted = Schema.TaggedStruct("ServerPromoted", {
  id: ServerId,
  incarnation: Incarnation
})

/** A member leaves: dead past the removal timeout, or an old incarnation replaced. */
export const ServerLeft = Schema.TaggedStruct("ServerLeft", {
  id: ServerId,
  incarnation: Incarnation
})

/** This group holds no client entry and met a higher-ranked group: it dissolves into it. */
export const GroupDissolved = Schema.TaggedStruct("GroupDissolved", {
  into: GroupId
})

/** The state machine's events, encoded with its own schema. */
export const App = Schema.TaggedStruct("App", {
  data: Schema.Unknown
})

export const EntryBody = Schema.Union(
  GroupFormed,
  LeaderElected,
  ServerJoined,
  ServerPromoted,
  ServerLeft,
  GroupDissolved,
  App
)
export type EntryBody = typeof EntryBody.Type

/** One sequenced entry: (epoch, seq, body). */
export const LogEntry = Schema.Struct({
  epoch: Epoch,
  seq: Seq,
  body: EntryBody
})
export type LogEntry = typeof LogEntry.Type

/** Whether an entry changes the membership (one such change at a time). */
export const isMembershipChange = (body: EntryBody): boolean =>
  body._tag === "GroupFormed" ||
  body._tag === "ServerJoined" ||
  body._tag === "ServerPromoted" ||
  body._tag === "ServerLeft"
