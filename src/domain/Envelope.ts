/**
 * The datagram format (DESIGN §4): one JSON `Envelope` per UDP datagram,
 * decoded with Schema, never with a bare `JSON.parse` whose result is trusted.
 * Encoding and decoding return `Either` and never throw, whatever the input.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { ClientId, Epoch, GroupId, Incarnation, ServerId } from "./Ids.js"
import * as M from "./Messages.js"
import { Count, Port, Positive } from "./Schemas.js"

/** The default datagram limit: one Ethernet frame without IP fragmentation. */
export const DatagramBytesDefault = 1400
/** The most `--max-datagram` allows (UDP's own limit is 65,507). */
export const DatagramBytesMax = 60 * 1024
/** The least `--max-datagram` allows: room for every fixed-size message. */
export const DatagramBytesMin = 512

/**
 * A piece of a message too big for one datagram: the inner envelope's JSON
 * text cut into parts. `id` names the message by its content, so a resent
 * copy completes a partly received one.
 */
export const Fragment = Schema.TaggedStruct("Fragment", {
  id: Schema.String.pipe(Schema.maxLength(32)),
  part: Count,
  parts: Positive,
  data: Schema.String
})

export const Body = Schema.Union(
  M.DiscoveryRequest,
  M.DiscoveryResponse,
  M.LeaderAnnouncement,
  M.JoinRequest,
  M.JoinAnswer,
  M.NotMember,
  M.Election,
  M.ElectionAnswer,
  M.Coordinator,
  M.CoordinatorAck,
  M.Heartbeat,
  M.HeartbeatAck,
  M.Replicate,
  M.ReplicateAck,
  M.SnapshotChunk,
  M.SnapshotAck,
  M.StatusRequest,
  M.StatusReply,
  M.Register,
  M.Registered,
  M.Request,
  M.Reply,
  M.NotLeader,
  M.Ping,
  M.Pong,
  M.LeaderChanged,
  M.Notify,
  M.NotifyAck,
  M.Subscribe,
  M.Subscribed,
  Fragment
)
export type Body = typeof Body.Type

/** A server's identity on every datagram it sends, incarnation included (the membership check needs it). */
export const ServerOrigin = Schema.Struct({
  role: Schema.Literal("server"),
  id: ServerId,
  incarnation: Incarnation,
  /** The sender's unicast port; replies still go to the datagram's source address. */
  port: Port
})
export const ClientOrigin = Schema.Struct({
  role: Schema.Literal("client"),
  id: ClientId,
  port: Port
})
export const Origin = Schema.Union(ServerOrigin, ClientOrigin)
export type Origin = typeof Origin.Type

export const Envelope = Schema.Struct({
  v: Schema.Literal(1),
  from: Origin,
  /** The sender's group, on every server message once a group exists. */
  group: Schema.optional(GroupId),
  /** The sender's epoch, on every server message once it has one. */
  epoch: Schema.optional(Epoch),
  /** Anti-replay (DESIGN §4): the sender's boot counter and its per-datagram number. */
  boot: Schema.optional(Count),
  n: Schema.optional(Count),
  body: Body
})
export type Envelope = typeof Envelope.Type

/** Why a datagram's bytes could not become an envelope. */
export class EnvelopeDecodeError extends Schema.TaggedError<EnvelopeDecodeError>()("EnvelopeDecodeError", {
  message: Schema.String
}) {}

/** An envelope whose encoding exceeds the datagram limit. */
export class Oversize extends Schema.TaggedError<Oversize>()("Oversize", {
  bytes: Schema.Number,
  limitBytes: Schema.Number
}) {}

const EnvelopeJson = Schema.parseJson(Envelope)
const decodeOptions = { errors: "first", onExcessProperty: "ignore" } as const
const encodeJson = Schema.encodeEither(EnvelopeJson)

/**
 * Decoding in two steps, the envelope around an unknown body and then the body by the one member
 * of the union its `_tag` names: the same checks as decoding the whole `Envelope`, at a fraction of
 * the cost (the union otherwise tries its members' shapes; decode was a third of a simulated
 * datagram's CPU).
 */
const decodeShell = Schema.decodeUnknownEither(
  Schema.Struct({ ...Envelope.fields, body: Schema.Unknown }),
  decodeOptions
)
const tagOf = (member: Schema.Schema.Any): string => {
  const ast = member.ast
  const tag =
    ast._tag === "TypeLiteral"
      ? ast.propertySignatures.find((property) => property.name === "_tag")?.type
      : undefined
  if (tag?._tag !== "Literal" || typeof tag.literal !== "string")
    throw new Error("a Body member without a literal _tag")
  return tag.literal
}
const bodyDecoders: ReadonlyMap<string, (input: unknown) => Either.Either<Body, ParseResult.ParseError>> =
  new Map(
    Body.members.map((member) => [
      tagOf(member),
      Schema.decodeUnknownEither(member as Schema.Schema<Body>, decodeOptions)
    ])
  )
if (bodyDecoders.size !== Body.members.length) throw new Error("two Body members share a _tag")
const utf8 = new TextEncoder()
const utf8Decoder = new TextDecoder("utf-8", { fatal: true })

/** Bytes of `value` as JSON on the wire (UTF-8): what counts against the datagram limit, not its length in chars. */
export const jsonBytes = (value: unknown): number => utf8.encode(JSON.stringify(value)).byteLength

/**
 * Encodes an envelope to its JSON text (no size check: fragmenting needs the full text).
 *
 * Every schema in the envelope encodes to its own type (branded primitives and
 * plain structs, no transformations), so `JSON.stringify` is the encoding; it
 * is several times cheaper than `Schema.encode`, which re-validates what this
 * node built itself. Receivers validate everything on decode. The round-trip
 * tests check that both give the same text.
 */
export const encodeEnvelopeText = (envelope: Envelope): Either.Either<string, EnvelopeDecodeError> => {
  try {
    return Either.right(JSON.stringify(envelope))
  } catch (error) {
    return Either.left(new EnvelopeDecodeError({ message: `not encodable: ${String(error)}` }))
  }
}

/** The schema's own encoding, for tests that check `encodeEnvelopeText` against it. */
export const encodeEnvelopeTextChecked = (envelope: Envelope): Either.Either<string, EnvelopeDecodeError> =>
  Either.mapLeft(
    encodeJson(envelope),
    (error) => new EnvelopeDecodeError({ message: ParseResult.TreeFormatter.formatErrorSync(error) })
  )

/** Encodes an envelope to datagram bytes, refusing anything over `limitBytes`. */
export const encodeEnvelope = (
  envelope: Envelope,
  limitBytes: number
): Either.Either<Uint8Array, EnvelopeDecodeError | Oversize> =>
  Either.flatMap(encodeEnvelopeText(envelope), (text) => {
    const bytes = utf8.encode(text)
    return bytes.byteLength > limitBytes
      ? Either.left(new Oversize({ bytes: bytes.byteLength, limitBytes }))
      : Either.right(bytes)
  })

/**
 * The first issue only, path and message, at most 500 characters. Not TreeFormatter: it
 * prints the whole Body union (12–37 KB) and took 250–900 µs per refused datagram, against
 * ~5 µs to accept a valid one, so garbage would have cost the receive loop 200 times more
 * than traffic.
 */
const describeDecodeError = (error: ParseResult.ParseError, under: ReadonlyArray<string> = []): string => {
  const [issue] = ParseResult.ArrayFormatter.formatErrorSync(error)
  const text =
    issue === undefined
      ? "invalid envelope"
      : `${[...under, ...issue.path].join(".") || "(root)"}: ${issue.message}`
  return text.length > 500 ? `${text.slice(0, 500)}…` : text
}

const refused = (message: string) => Either.left(new EnvelopeDecodeError({ message }))

/** Decodes envelope JSON text; anything that is not a valid envelope is a typed error. */
export const decodeEnvelopeText = (text: string): Either.Either<Envelope, EnvelopeDecodeError> => {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return refused("(root): not JSON")
  }
  const shell = decodeShell(json)
  if (Either.isLeft(shell)) return refused(describeDecodeError(shell.left))
  const body: unknown = shell.right.body
  const tag = typeof body === "object" && body !== null && "_tag" in body ? body._tag : undefined
  const decodeBody = typeof tag === "string" ? bodyDecoders.get(tag) : undefined
  if (decodeBody === undefined) return refused("body._tag: not a message this protocol has")
  const decoded = decodeBody(body)
  return Either.isLeft(decoded)
    ? refused(describeDecodeError(decoded.left, ["body"]))
    : Either.right({ ...shell.right, body: decoded.right })
}

/** Decodes datagram bytes: size first, then UTF-8, then JSON, then the schema. */
export const decodeEnvelope = (
  bytes: Uint8Array,
  limitBytes: number
): Either.Either<Envelope, EnvelopeDecodeError | Oversize> => {
  if (bytes.byteLength > limitBytes) {
    return Either.left(new Oversize({ bytes: bytes.byteLength, limitBytes }))
  }
  let text: string
  try {
    text = utf8Decoder.decode(bytes)
  } catch {
    return Either.left(new EnvelopeDecodeError({ message: "not UTF-8" }))
  }
  return decodeEnvelopeText(text)
}
