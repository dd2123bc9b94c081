/**
 * The datagram pipeline shared by every transport layer: envelope ⇄ bytes.
 *
 * Out: fill in origin, boot and n; encode; split into fragments when over the
 * datagram limit; sign server datagrams with HMAC-SHA256 when a cluster key is
 * set. In, in DESIGN §5's order: size → MAC over the raw bytes → decode →
 * replay window → reassembly. Every drop is counted by reason; nothing throws.
 */
import { createHash, createHmac, createSecretKey, type KeyObject, timingSafeEqual } from "node:crypto"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import { identity } from "effect/Function"
import * as Option from "effect/Option"
import * as Redacted from "effect/Redacted"
import {
  type Body,
  DatagramBytesDefault,
  decodeEnvelope,
  decodeEnvelopeText,
  type Envelope,
  encodeEnvelope,
  encodeEnvelopeText
} from "../domain/Envelope.js"
import type { ClientId, Incarnation, ServerId } from "../domain/Ids.js"
import { ReplayWindow } from "../domain/ReplayWindow.js"
import type { Address } from "../domain/Schemas.js"
import {
  countDrop,
  type DropReason,
  type Incoming,
  MessageTooLarge,
  type Outgoing
} from "../services/Transport.js"

/** Who this node is on the wire. */
export type Identity =
  | { readonly role: "server"; readonly id: ServerId; readonly incarnation: Incarnation }
  | { readonly role: "client"; readonly id: ClientId }

export interface DatagramOptions {
  readonly identity: Identity
  /** The node's bound unicast port, advertised in every envelope. */
  readonly port: number
  /** Raised at every start of a server before its first send (DESIGN §4). */
  readonly boot: number
  readonly maxDatagramBytes?: number | undefined
  /** HMAC-SHA256 key shared by the servers; clients never hold it. */
  readonly clusterKey?: Redacted.Redacted<string> | undefined
}

export interface DatagramCodec {
  /**
   * One envelope as one or more datagrams (fragments past the limit). Plain code: it throws
   * only on a bug (an envelope JSON cannot encode), which the caller's Effect turns into a defect.
   */
  readonly encode: (message: Outgoing) => Either.Either<ReadonlyArray<Uint8Array>, MessageTooLarge>
  /** A received datagram as an envelope, or nothing if it was dropped (and counted) or is an incomplete fragment. */
  readonly decode: (bytes: Uint8Array, source: Address) => Effect.Effect<Option.Option<Incoming>>
  /**
   * What `decode` does but count and log a drop, as plain code at time `nowMs`: for a
   * transport that decodes many datagrams in one step and reports drops itself.
   */
  readonly decodeAt: (bytes: Uint8Array, source: Address, nowMs: number) => Decoded
}

/** What a received datagram became. */
export type Decoded =
  | { readonly _tag: "Message"; readonly incoming: Incoming }
  /** A fragment, kept until its message is complete. */
  | { readonly _tag: "Held" }
  | { readonly _tag: "Dropped"; readonly reason: DropReason; readonly detail: string }

const held: Decoded = { _tag: "Held" }
const dropped = (reason: DropReason, detail: string): Decoded => ({ _tag: "Dropped", reason, detail })

/** The largest message, fragments and all: bounds reassembly memory per message. */
export const MessageBytesMax = 1024 * 1024
/** Messages being reassembled at once, over all senders. */
export const ReassembliesMax = 64
/** A partly received message is forgotten after this long. */
export const ReassemblyTimeoutMs = 10_000

/** The base64 text of the largest message: the most fragment data one reassembly may hold. */
const MessageBase64CharsMax = Math.ceil(MessageBytesMax / 3) * 4
/**
 * The fewest data characters a fragment carries: a DatagramBytesMin datagram, less its
 * MAC, less the widest fragment envelope (441 bytes with 64-character ids and the
 * largest numbers), leaves 36. The sender asserts it; the receiver bounds parts by it.
 */
const FragmentDataCharsMin = 32
/** The most fragments a message can take, whatever datagram limit its sender has. */
export const FragmentsMax = Math.ceil(MessageBase64CharsMax / FragmentDataCharsMin)

const MAC_BYTES = 32

const utf8 = new TextEncoder()

/** Names a message by its content, so a resent copy completes a partly received one. */
const contentId = (text: string): string => createHash("sha256").update(text).digest("base64url").slice(0, 24)

interface Reassembly {
  readonly parts: Array<string | undefined>
  received: number
  /** Data characters held so far: bounds memory whatever `parts` claims. */
  chars: number
  readonly startedMs: number
}

export const makeDatagramCodec = (options: DatagramOptions): DatagramCodec => {
  const limitBytes = options.maxDatagramBytes ?? DatagramBytesDefault
  const node = options.identity.id
  // Imported once: a KeyObject spares every MAC the key's import (about a fifth of its cost).
  const key =
    options.clusterKey === undefined
      ? undefined
      : createSecretKey(Buffer.from(Redacted.value(options.clusterKey), "utf8"))
  const sign = key === undefined ? undefined : (bytes: Uint8Array) => hmac(key, bytes)
  const replay = new ReplayWindow()
  const reassemblies = new Map<string, Reassembly>()
  let n = 0

  const origin: Envelope["from"] =
    options.identity.role === "server"
      ? {
          role: "server",
          id: options.identity.id,
          incarnation: options.identity.incarnation,
          port: options.port
        }
      : { role: "client", id: options.identity.id, port: options.port }

  /**
   * The envelope around `body`; `numbered` gives a server's datagram the (boot, n) of the
   * receivers' replay windows (n rises per datagram). Its fields are added one by one, never by
   * a spread: in V8 (Node 20) a spread followed by new fields gives every object a hidden class
   * of its own, and this runs for every datagram sent.
   */
  const envelopeOf = (body: Body, message: Omit<Outgoing, "body">, numbered: boolean): Envelope => {
    // A server's incarnation changes when it rejoins: the cluster names the current one.
    const from =
      origin.role === "server" && message.incarnation !== undefined
        ? { ...origin, incarnation: message.incarnation }
        : origin
    const envelope: { -readonly [K in keyof Envelope]: Envelope[K] } = { v: 1, from, body }
    if (message.group !== undefined) envelope.group = message.group
    if (message.epoch !== undefined) envelope.epoch = message.epoch
    if (numbered && origin.role === "server") {
      n += 1
      envelope.boot = options.boot
      envelope.n = n
    }
    return envelope
  }

  const seal = (bytes: Uint8Array): Uint8Array => {
    if (sign === undefined || origin.role !== "server") return bytes
    const sealed = new Uint8Array(MAC_BYTES + bytes.byteLength)
    sealed.set(sign(bytes), 0)
    sealed.set(bytes, MAC_BYTES)
    return sealed
  }

  const payloadLimit = sign !== undefined && origin.role === "server" ? limitBytes - MAC_BYTES : limitBytes

  /** The bytes of a fragment envelope around its data, with the widest part numbers a message can have. */
  const fragmentOverheadBytes = (message: Outgoing): number => {
    const widest = envelopeOf(
      { _tag: "Fragment", id: "x".repeat(24), part: 999_999, parts: 999_999, data: "" },
      message,
      false
    )
    const numbered = { ...widest, boot: Number.MAX_SAFE_INTEGER, n: Number.MAX_SAFE_INTEGER }
    return Either.match(encodeEnvelopeText(numbered), {
      onLeft: () => payloadLimit,
      onRight: (text) => utf8.encode(text).byteLength
    })
  }

  const encode = (message: Outgoing): Either.Either<ReadonlyArray<Uint8Array>, MessageTooLarge> => {
    const whole = encodeEnvelope(envelopeOf(message.body, message, true), payloadLimit)
    if (Either.isRight(whole)) return Either.right([seal(whole.right)])
    if (whole.left._tag === "EnvelopeDecodeError") throw whole.left
    // Too big for one datagram: send the inner envelope's text in fragments.
    // The inner envelope is not stamped: fragments carry (boot, n), and an unstamped copy
    // encodes the same every time, so a resent message completes a partly received one.
    const text = Either.getOrThrowWith(encodeEnvelopeText(envelopeOf(message.body, message, false)), identity)
    const size = utf8.encode(text).byteLength
    if (size > MessageBytesMax)
      return Either.left(new MessageTooLarge({ bytes: size, limitBytes: MessageBytesMax }))
    const data = Buffer.from(text, "utf8").toString("base64")
    const step = Math.floor((payloadLimit - fragmentOverheadBytes(message)) / 4) * 4
    if (step < FragmentDataCharsMin) throw new Error(`fragment data of ${step} chars`)
    const parts = Math.ceil(data.length / step)
    const id = contentId(text)
    const datagrams: Array<Uint8Array> = []
    for (let part = 0; part < parts; part++) {
      const fragment = envelopeOf(
        { _tag: "Fragment", id, part, parts, data: data.slice(part * step, (part + 1) * step) },
        message,
        true
      )
      datagrams.push(seal(Either.getOrThrowWith(encodeEnvelope(fragment, payloadLimit), identity)))
    }
    return Either.right(datagrams)
  }

  /** Checks the MAC, when a key is set: server datagrams must carry a valid one, client datagrams none. */
  const unseal = (bytes: Uint8Array): Either.Either<{ payload: Uint8Array; signed: boolean }, DropReason> => {
    if (sign === undefined) {
      // No key (a client): a keyed server's datagram still starts with its MAC, which this node
      // cannot check; skip it, or no client could ever read a server of a keyed cluster.
      // Every envelope this codec encodes starts with `{"v":`; a MAC does so once in 2^40.
      const macFirst =
        bytes.byteLength > MAC_BYTES && bytes[MAC_BYTES] === 0x7b && !startsWith(bytes, envelopeStart)
      return Either.right({ payload: macFirst ? bytes.subarray(MAC_BYTES) : bytes, signed: false })
    }
    if (bytes.byteLength > MAC_BYTES) {
      const payload = bytes.subarray(MAC_BYTES)
      if (timingSafeEqual(sign(payload), bytes.subarray(0, MAC_BYTES)))
        return Either.right({ payload, signed: true })
    }
    // Only a client datagram may come without a MAC; it starts with the envelope's "{".
    return bytes[0] === 0x7b ? Either.right({ payload: bytes, signed: false }) : Either.left("bad-mac")
  }

  const admit = (envelope: Envelope, signed: boolean, source: Address, nowMs: number): Decoded => {
    if (envelope.from.role === "server" && sign !== undefined) {
      if (!signed) return dropped("unsigned", envelope.body._tag)
      const { boot, n: number } = envelope
      if (boot === undefined || number === undefined) return dropped("replay", "no boot or n")
      if (!replay.accept(`${envelope.from.id}/${envelope.from.incarnation}`, boot, number)) {
        return dropped("replay", `boot ${boot} n ${number}`)
      }
    }
    if (envelope.body._tag !== "Fragment") return { _tag: "Message", incoming: { envelope, source } }
    return reassemble(envelope, envelope.body, source, nowMs)
  }

  const reassemble = (
    outer: Envelope,
    fragment: Extract<Body, { _tag: "Fragment" }>,
    source: Address,
    nowMs: number
  ): Decoded => {
    const { id, part, parts, data } = fragment
    // Bounded by what any sender may produce, not by this node's own limit: a sender with a
    // smaller datagram limit needs more parts for the same message.
    if (part >= parts || parts > FragmentsMax) {
      return dropped("fragment", `part ${part} of ${parts}`)
    }
    for (const [key, entry] of reassemblies) {
      if (nowMs - entry.startedMs > ReassemblyTimeoutMs) reassemblies.delete(key)
    }
    const key = `${outer.from.role}/${outer.from.id}/${id}`
    let entry = reassemblies.get(key)
    if (entry === undefined || entry.parts.length !== parts) {
      if (reassemblies.size >= ReassembliesMax) return dropped("overflow", "too many partial messages")
      entry = {
        parts: new Array<string | undefined>(parts).fill(undefined),
        received: 0,
        chars: 0,
        startedMs: nowMs
      }
      reassemblies.set(key, entry)
    }
    if (entry.parts[part] === undefined) {
      entry.chars += data.length
      if (entry.chars > MessageBase64CharsMax) {
        reassemblies.delete(key)
        return dropped("fragment", `more than ${MessageBase64CharsMax} chars of fragments`)
      }
      entry.parts[part] = data
      entry.received += 1
    }
    if (entry.received < parts) return held
    reassemblies.delete(key)
    const text = Buffer.from(entry.parts.join(""), "base64").toString("utf8")
    const inner = decodeEnvelopeText(text)
    if (Either.isLeft(inner)) return dropped("undecodable", inner.left.message)
    // The inner envelope travelled inside authenticated fragments of the same sender. Its whole
    // origin must match theirs: an unsigned client's fragments must not carry a server envelope.
    if (!sameOrigin(inner.right.from, outer.from) || inner.right.body._tag === "Fragment") {
      return dropped("fragment", "inner envelope does not match its fragments")
    }
    return { _tag: "Message", incoming: { envelope: inner.right, source } }
  }

  const decodeAt = (bytes: Uint8Array, source: Address, nowMs: number): Decoded => {
    if (bytes.byteLength === 0) return dropped("probe", "an empty datagram: a peer checking that we are here")
    if (bytes.byteLength > limitBytes) return dropped("oversize", `${bytes.byteLength} bytes`)
    const unsealed = unseal(bytes)
    if (Either.isLeft(unsealed)) return dropped(unsealed.left, `${bytes.byteLength} bytes`)
    const decoded = decodeEnvelope(unsealed.right.payload, limitBytes)
    if (Either.isLeft(decoded)) return dropped("undecodable", decoded.left.message)
    return admit(decoded.right, unsealed.right.signed, source, nowMs)
  }

  const decode = (bytes: Uint8Array, source: Address): Effect.Effect<Option.Option<Incoming>> =>
    Effect.clockWith((clock) => {
      const decoded = decodeAt(bytes, source, clock.unsafeCurrentTimeMillis())
      if (decoded._tag === "Message") return Effect.succeed(Option.some(decoded.incoming))
      if (decoded._tag === "Held") return Effect.succeedNone
      return Effect.as(
        Effect.zipRight(countDrop(node, decoded.reason), logDrop(node, decoded, source)),
        Option.none()
      )
    })

  return { encode, decode, decodeAt }
}

/** Logs a dropped datagram of `node` at debug level (counting it is the caller's). */
export const logDrop = (
  node: string,
  drop: Extract<Decoded, { _tag: "Dropped" }>,
  source: Address
): Effect.Effect<void> =>
  Effect.logDebug("datagram dropped").pipe(
    Effect.annotateLogs({
      node,
      reason: drop.reason,
      source: `${source.host}:${source.port}`,
      detail: drop.detail
    })
  )

/** How every encoded envelope begins (`v` is its first field). */
const envelopeStart = utf8.encode('{"v":')

const startsWith = (bytes: Uint8Array, prefix: Uint8Array): boolean =>
  bytes.byteLength >= prefix.byteLength && prefix.every((byte, i) => bytes[i] === byte)

const sameOrigin = (a: Envelope["from"], b: Envelope["from"]): boolean =>
  a.role === "server"
    ? b.role === "server" && a.id === b.id && a.incarnation === b.incarnation
    : b.role === "client" && a.id === b.id

const hmac = (key: KeyObject, bytes: Uint8Array): Uint8Array =>
  createHmac("sha256", key).update(bytes).digest()
