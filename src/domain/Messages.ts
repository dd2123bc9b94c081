/**
 * Every message body Agora sends, as tagged schemas (DESIGN §4–5). One UDP
 * datagram carries one `Envelope` (see Envelope.ts) whose `body` is one of
 * these. The README maps these names to the original's.
 */
import * as Schema from "effect/Schema"
import { Notice } from "./auction/Notifications.js"
import { LogEntry, Member, MembersMax } from "./cluster/Entry.js"
import { AuctionId, Epoch, GroupId, RequestId, Seq, ServerId, SessionId, SessionToken } from "./Ids.js"
import { Address, Count, Positive, Text } from "./Schemas.js"

// ---------------------------------------------------------------------------
// Discovery and bootstrap

/** Broadcast by any node (server, client, `agora status`) until it knows the leader. */
export const DiscoveryRequest = Schema.TaggedStruct("DiscoveryRequest", {})

/** A known leader: its id, its unicast address as the answering server sees it, and its epoch. */
export const LeaderInfo = Schema.Struct({ id: ServerId, address: Address, epoch: Epoch })
export type LeaderInfo = typeof LeaderInfo.Type

/** A server's answer to a discovery request (unicast to the request's source). */
export const DiscoveryResponse = Schema.TaggedStruct("DiscoveryResponse", {
  /** null: this server belongs to no group yet (it is bootstrapping). */
  group: Schema.NullOr(GroupId),
  leader: Schema.NullOr(LeaderInfo),
  /** The answering server's bootstrap state, so group-less servers can agree on who forms. */
  bootstrapping: Schema.Boolean
})

/** How groups compare when two meet (DESIGN §5, Bootstrap). */
export const GroupRank = Schema.Struct({ holdsClientEntry: Schema.Boolean, commitSeq: Seq })
export type GroupRank = typeof GroupRank.Type

/** Broadcast by a leader every few seconds, so groups that formed apart find each other. */
export const LeaderAnnouncement = Schema.TaggedStruct("LeaderAnnouncement", {
  rank: GroupRank
})

/** A server asks the leader to be let into the group (it sends its incarnation in the envelope). */
export const JoinRequest = Schema.TaggedStruct("JoinRequest", {
  /** The group its store belongs to, if any: the leader decides whether that group still exists. */
  storeGroup: Schema.NullOr(GroupId),
  /** Set when the store's group dissolved into the group it asks to join (committed GroupDissolved). */
  dissolvedInto: Schema.NullOr(GroupId),
  lastSeq: Seq,
  lastEpoch: Epoch
})

/** The leader's answer to a join request. */
export const JoinAnswer = Schema.TaggedStruct("JoinAnswer", {
  outcome: Schema.Literal(
    /** You are a member with this incarnation: follow me. */
    "Member",
    /** Your join is being committed: ask again shortly. */
    "Pending",
    /** Your store belongs to a group that no longer exists: reset it, then ask again. */
    "ResetStore",
    /** Refused: see reason (e.g. your store holds another live group). */
    "Refused"
  ),
  reason: Text,
  /**
   * With "Member": the group's first entry (GroupFormed), if the answering server
   * still holds it, so a founding member whose log is still empty can vote before
   * any leader replicated to it (the group's leader may have stepped down before
   * the founders joined). It is the same entry in every log of the group.
   */
  firstEntry: Schema.NullOr(LogEntry)
})

/** Sent to a server that is not (or no longer) a member with the incarnation it sent. */
export const NotMember = Schema.TaggedStruct("NotMember", {})

// ---------------------------------------------------------------------------
// Election (Bully made safe: pre-vote, then vote)

/** Bully rank: the most up-to-date log wins, ties broken by server id (in the envelope). */
export const Rank = Schema.Struct({ lastEpoch: Epoch, lastSeq: Seq })
export type Rank = typeof Rank.Type

/** Pre-vote: stores nothing. */
export const Election = Schema.TaggedStruct("Election", {
  nextEpoch: Epoch,
  rank: Rank
})

/** A voter's answer to a pre-vote, with its own epoch and rank so a candidate that is behind catches up. */
export const ElectionAnswer = Schema.TaggedStruct("ElectionAnswer", {
  nextEpoch: Epoch,
  granted: Schema.Boolean,
  rank: Rank
})

/** Vote request: the candidate has stored (epoch, vote = itself); epoch is in the envelope. */
export const Coordinator = Schema.TaggedStruct("Coordinator", {
  rank: Rank
})

/** A voter accepted the coordinator and stored (epoch, vote) first; its log position helps the new leader. */
export const CoordinatorAck = Schema.TaggedStruct("CoordinatorAck", {
  lastSeq: Seq,
  lastEpoch: Epoch
})

// ---------------------------------------------------------------------------
// Failure detection and replication (epoch in the envelope)

export const Heartbeat = Schema.TaggedStruct("Heartbeat", {
  /** Rises per heartbeat: acks echo it, so a read can be confirmed by a round that started after it. */
  round: Count,
  commitSeq: Seq
})

export const HeartbeatAck = Schema.TaggedStruct("HeartbeatAck", {
  round: Count,
  /** The highest seq this follower verified against this leader's log in this epoch. */
  matchSeq: Seq
})

/** At most this many entries in one Replicate; the datagram limit usually binds first. */
export const ReplicateEntriesMax = 1024

export const Replicate = Schema.TaggedStruct("Replicate", {
  prevSeq: Seq,
  prevEpoch: Epoch,
  entries: Schema.Array(LogEntry).pipe(Schema.maxItems(ReplicateEntriesMax)),
  commitSeq: Seq
})

export const ReplicateAck = Schema.TaggedStruct("ReplicateAck", {
  /** false: the follower lacks prevSeq, or its entry there has another epoch. */
  success: Schema.Boolean,
  matchSeq: Seq,
  /** On refusal: the seq the leader should resend after (the follower's suggestion). */
  hintSeq: Seq
})

/** A piece of a snapshot (DESIGN §5, Snapshot transfer); the leader's epoch is in the envelope. */
export const SnapshotChunk = Schema.TaggedStruct("SnapshotChunk", {
  snapshotSeq: Seq,
  snapshotEpoch: Epoch,
  offset: Count,
  total: Count,
  /** Digest of the whole snapshot, checked before it is installed. */
  digest: Schema.String.pipe(Schema.maxLength(128)),
  data: Schema.String
})

/** The follower has every byte below `offset` of that snapshot. */
export const SnapshotAck = Schema.TaggedStruct("SnapshotAck", {
  snapshotSeq: Seq,
  offset: Count
})

// ---------------------------------------------------------------------------
// Status (answered by every server, for `agora status`)

export const StatusRequest = Schema.TaggedStruct("StatusRequest", {})

export const ServerRole = Schema.Literal(
  "leader",
  "follower",
  "candidate",
  "joining",
  "bootstrapping",
  "stopped"
)
export type ServerRole = typeof ServerRole.Type

export const StatusReply = Schema.TaggedStruct("StatusReply", {
  id: ServerId,
  role: ServerRole,
  group: Schema.NullOr(GroupId),
  epoch: Epoch,
  lastSeq: Seq,
  commitSeq: Seq,
  leader: Schema.NullOr(ServerId),
  members: Schema.Array(Member).pipe(Schema.maxItems(MembersMax)),
  /** Set when this group met another group that also holds client entries (code SplitGroup). */
  splitGroup: Schema.Boolean
})

// ---------------------------------------------------------------------------
// Clients

/** Open a session with the leader (the client id is in the envelope). */
export const Register = Schema.TaggedStruct("Register", {
  /** Rises per registration attempt of this process, so a retry is recognised. */
  nonce: Positive
})

export const Registered = Schema.TaggedStruct("Registered", {
  nonce: Positive,
  session: SessionId,
  token: SessionToken,
  leader: ServerId
})

/** Item names are bounded on the wire as in the rules (DESIGN §3). */
const Item = Schema.String.pipe(Schema.maxLength(200))
const Money = Count

/** What a client asks of the auctions. Fields are validated again by the rules. */
export const CreateOp = Schema.TaggedStruct("Create", {
  item: Item,
  minBid: Money,
  minRounds: Count,
  minBidders: Count
})
export const ListOp = Schema.TaggedStruct("List", {
  /** Pages keep every reply within the datagram limit. */
  page: Count
})
export const JoinOp = Schema.TaggedStruct("Join", { auction: AuctionId })
export const StartOp = Schema.TaggedStruct("Start", { auction: AuctionId })
export const CancelOp = Schema.TaggedStruct("Cancel", { auction: AuctionId })
export const BidOp = Schema.TaggedStruct("Bid", { auction: AuctionId, round: Positive, amount: Money })

export const ClientOp = Schema.Union(CreateOp, ListOp, JoinOp, StartOp, CancelOp, BidOp)
export type ClientOp = typeof ClientOp.Type

export const Request = Schema.TaggedStruct("Request", {
  session: SessionId,
  token: SessionToken,
  requestId: RequestId,
  op: ClientOp
})

/** One row of the auction list. */
export const AuctionSummary = Schema.Struct({
  auction: AuctionId,
  item: Item,
  minBid: Money,
  minRounds: Count,
  minBidders: Count,
  bidders: Count,
  status: Schema.Literal("waiting", "running", "closed", "cancelled"),
  auctioneer: SessionId
})
export type AuctionSummary = typeof AuctionSummary.Type

/** Error codes a reply can carry (DESIGN §7); `Timeout` is only ever produced by the client. */
export const ErrorCode = Schema.Literal(
  "InvalidRequest",
  "AuctionNotFound",
  "NotAuctioneer",
  "NotInAuction",
  "AlreadyJoined",
  "AuctioneerCannotBid",
  "AuctionFull",
  "NotEnoughBidders",
  "WrongPhase",
  "WrongRound",
  "BidTooLow",
  "BidTooHigh",
  "AlreadyBid",
  "SessionExpired",
  "BadToken",
  "SplitGroup",
  "Timeout"
)
export type ErrorCode = typeof ErrorCode.Type

export const Created = Schema.TaggedStruct("Created", { auction: AuctionId })
export const Auctions = Schema.TaggedStruct("Auctions", {
  auctions: Schema.Array(AuctionSummary),
  /** The next page to ask for, or null on the last page. */
  nextPage: Schema.NullOr(Count)
})
export const Joined = Schema.TaggedStruct("Joined", { auction: AuctionId })
export const Started = Schema.TaggedStruct("Started", { auction: AuctionId })
export const Cancelled = Schema.TaggedStruct("Cancelled", { auction: AuctionId })
export const BidAccepted = Schema.TaggedStruct("BidAccepted", {
  auction: AuctionId,
  round: Positive,
  amount: Money
})
export const Failed = Schema.TaggedStruct("Failed", { code: ErrorCode, message: Text })

export const ReplyResult = Schema.Union(Created, Auctions, Joined, Started, Cancelled, BidAccepted, Failed)
export type ReplyResult = typeof ReplyResult.Type

export const Reply = Schema.TaggedStruct("Reply", {
  requestId: RequestId,
  result: ReplyResult
})

/** A non-leader's answer to a client: where to go instead, if it knows. */
export const NotLeader = Schema.TaggedStruct("NotLeader", {
  leader: Schema.NullOr(LeaderInfo)
})

/** Keep-alive from a client; the leader answers with `Pong`. */
export const Ping = Schema.TaggedStruct("Ping", { session: SessionId, token: SessionToken })
export const Pong = Schema.TaggedStruct("Pong", { leader: ServerId, epoch: Epoch })

/** A new leader tells the clients of open sessions where it is. */
export const LeaderChanged = Schema.TaggedStruct("LeaderChanged", { leader: LeaderInfo })

/** Notifications a server sends in one datagram at most (it also stays within the datagram limit). */
export const NoticesPerNotifyMax = 64

/**
 * Consecutive notifications of an auction to this client: `notices[i]` is the
 * (seq + i)-th (DESIGN §5, Notifications and order). Several in one datagram
 * when several are due, so a busy auction costs fewer datagrams and acks.
 */
export const Notify = Schema.TaggedStruct("Notify", {
  auction: AuctionId,
  seq: Positive,
  notices: Schema.Array(Notice).pipe(Schema.minItems(1), Schema.maxItems(NoticesPerNotifyMax))
})

/** A client acknowledges every notification of an auction up to `seq`. */
export const NotifyAck = Schema.TaggedStruct("NotifyAck", {
  session: SessionId,
  token: SessionToken,
  auction: AuctionId,
  seq: Count
})

/** A client asks for the notifications of an auction from `fromSeq` on (a gap, or after a failover). */
export const Subscribe = Schema.TaggedStruct("Subscribe", {
  session: SessionId,
  token: SessionToken,
  auction: AuctionId,
  fromSeq: Positive
})

/**
 * The leader took a `Subscribe`: the stream has `lastSeq` notices now, and those from the asked
 * number on follow as `Notify` (resent until acknowledged). Without it a client could not tell a
 * lost `Subscribe` from a quiet stream, and would wait forever for an ended auction's result.
 */
export const Subscribed = Schema.TaggedStruct("Subscribed", {
  auction: AuctionId,
  lastSeq: Count
})
