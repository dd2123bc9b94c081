/**
 * Identifiers. Every id that crosses the wire is a branded schema, so a
 * server id can never be passed where a client id is expected, and every
 * decoded id has already been checked for shape and size.
 */
import * as Schema from "effect/Schema"

/** Printable, bounded names: they end up in logs, tables and file names. */
const Name = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, {
    message: () =>
      "an id is 1-64 characters of letters, digits, '_', '.', '-', starting with a letter or digit"
  })
)

/** A positive safe integer: ids handed out by the replicated log. */
const PositiveId = Schema.Int.pipe(
  Schema.greaterThanOrEqualTo(1),
  Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER)
)

/** A server's stable id (`--id`, or generated once and kept in its data dir). */
export const ServerId = Name.pipe(Schema.brand("ServerId"))
export type ServerId = typeof ServerId.Type

/** A client process's id: generated per process unless given. */
export const ClientId = Name.pipe(Schema.brand("ClientId"))
export type ClientId = typeof ClientId.Type

/** A client session: the seq of the committed entry that opened it. */
export const SessionId = PositiveId.pipe(Schema.brand("SessionId"))
export type SessionId = typeof SessionId.Type

/** An auction, numbered by the replicated state in creation order. */
export const AuctionId = PositiveId.pipe(Schema.brand("AuctionId"))
export type AuctionId = typeof AuctionId.Type

/** A request id: rises strictly within a session. */
export const RequestId = PositiveId.pipe(Schema.brand("RequestId"))
export type RequestId = typeof RequestId.Type

/** The random id a group gets in its first entry; two groups never share one. */
export const GroupId = Name.pipe(Schema.brand("GroupId"))
export type GroupId = typeof GroupId.Type

/** The random id a data dir gets when it is created: a lost disk comes back as a new incarnation. */
export const Incarnation = Name.pipe(Schema.brand("Incarnation"))
export type Incarnation = typeof Incarnation.Type

/** A session's bearer token, handed out at registration. */
export const SessionToken = Name.pipe(Schema.brand("SessionToken"))
export type SessionToken = typeof SessionToken.Type

/** Leader epochs (a.k.a. terms) and log sequence numbers: non-negative safe integers. */
export const Epoch = Schema.Int.pipe(
  Schema.greaterThanOrEqualTo(0),
  Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER)
)
export type Epoch = number
export const Seq = Epoch
export type Seq = number
