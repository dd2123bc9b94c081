/**
 * Transport: how a node sends and receives envelopes. Two layers implement it:
 * `layerUdp` (node:dgram) and `layerSim` (the in-memory simulated network).
 * Both hand the subsystems only envelopes that passed the checks a datagram
 * can be put to without knowing the cluster: size, MAC, decoding, replay.
 * Everything else (group, membership, epoch) is checked by the cluster.
 */
import * as Chunk from "effect/Chunk"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import type * as Mailbox from "effect/Mailbox"
import * as Metric from "effect/Metric"
import * as Schema from "effect/Schema"
import type * as Stream from "effect/Stream"
import type { Body, Envelope } from "../domain/Envelope.js"
import type { Epoch, GroupId, Incarnation } from "../domain/Ids.js"
import type { Address } from "../domain/Schemas.js"

/** A decoded envelope and the address it came from (where replies go). */
export interface Incoming {
  readonly envelope: Envelope
  readonly source: Address
}

/** What the sender decides about an envelope; the transport adds origin, boot and n. */
export interface Outgoing {
  readonly body: Body
  readonly group?: GroupId | undefined
  readonly epoch?: Epoch | undefined
  /** A server's current incarnation, when it differs from the one the transport was built with. */
  readonly incarnation?: Incarnation | undefined
}

/** The message is larger than the most a message may be, even in fragments. */
export class MessageTooLarge extends Schema.TaggedError<MessageTooLarge>()("MessageTooLarge", {
  bytes: Schema.Number,
  limitBytes: Schema.Number
}) {}

/** The transport's sockets are closed (its scope ended). */
export class TransportClosed extends Schema.TaggedError<TransportClosed>()("TransportClosed", {}) {}

export type TransportError = MessageTooLarge | TransportClosed

export interface TransportShape {
  /** This node's unicast address (the bound port, never 0). */
  readonly address: Address
  /** Unicast. A message over the datagram limit is sent in fragments. */
  readonly send: (to: Address, message: Outgoing) => Effect.Effect<void, TransportError>
  /** To every node on the discovery port of this broadcast domain. */
  readonly broadcast: (message: Outgoing) => Effect.Effect<void, TransportError>
  /**
   * Envelopes that passed size, MAC, decode and replay checks, unicast and broadcast alike, in
   * chunks of everything queued (as `Stream.fromQueue`): one hand-over per batch, not per message.
   * A consumer that stops early (`Stream.runHead`, `Stream.take`) discards the rest of the chunk
   * it pulled; to take exactly one, use `receive`.
   */
  readonly incoming: Stream.Stream<Incoming>
  /** The next envelope, one at a time; `TransportClosed` once the transport closed and nothing is left. */
  readonly receive: Effect.Effect<Incoming, TransportClosed>
  /**
   * Every envelope waiting, in arrival order (at least one: it waits for one); `TransportClosed`
   * once the transport closed and nothing is left. The cheapest way to consume: a loop over it
   * costs one hand-over per batch and no stream machinery.
   */
  readonly receiveAll: Effect.Effect<ReadonlyArray<Incoming>, TransportClosed>
  /**
   * Whether nothing listens at `to` any more: true when its host answers that the port is
   * closed (ICMP port unreachable: the process is gone, the host is up) within
   * `ProbeWaitMs`; false otherwise, a live peer and a host that is down or cut off alike.
   * On UDP it sends one empty datagram, which a live peer drops and counts as "probe"; the
   * simulated network answers from its model of the hosts.
   */
  readonly probe: (to: Address) => Effect.Effect<boolean>
}

/** `receiveAll` over the mailbox a transport delivers into. */
export const takeAllFrom = (
  mailbox: Mailbox.ReadonlyMailbox<Incoming>
): Effect.Effect<ReadonlyArray<Incoming>, TransportClosed> =>
  Effect.flatMap(mailbox.takeAll, ([messages, done]) =>
    done && Chunk.isEmpty(messages)
      ? Effect.fail(new TransportClosed())
      : Effect.succeed(Chunk.toReadonlyArray(messages))
  )

/** Runs `handle` on every batch of `receiveAll` until the transport closes. */
export const forEachBatch = (
  transport: TransportShape,
  handle: (batch: ReadonlyArray<Incoming>) => Effect.Effect<void>
): Effect.Effect<void> =>
  Effect.catchTag(
    Effect.forever(Effect.flatMap(transport.receiveAll, handle)),
    "TransportClosed",
    () => Effect.void
  )

/** How long `probe` waits for the host's answer: ICMP comes back within a round trip. */
export const ProbeWaitMs = 50

export class Transport extends Context.Tag("agora/Transport")<Transport, TransportShape>() {}

/** Why a datagram was dropped before it reached any subsystem. */
export type DropReason =
  | "oversize"
  | "unsigned"
  | "bad-mac"
  | "undecodable"
  | "replay"
  | "fragment"
  | "overflow"
  /** Arrived before the transport could decode (the instant between bind and its codec). */
  | "unready"
  /** An empty datagram: another node's `probe`, not an error. */
  | "probe"
  | (string & {})

/** Datagrams dropped, by node and reason (DESIGN §1 promise 7: dropped and counted). */
export const datagramsDropped = Metric.counter("agora_datagrams_dropped", {
  description: "datagrams dropped before reaching a subsystem, by reason",
  incremental: true
})

/** Datagrams accepted, by node. */
export const datagramsReceived = Metric.counter("agora_datagrams_received", {
  description: "datagrams that passed every transport check",
  incremental: true
})

const droppedFor = (node: string, reason: DropReason) =>
  Metric.tagged(Metric.tagged(datagramsDropped, "node", node), "reason", reason)

/** Counts one dropped datagram of `node` for `reason`. */
export const countDrop = (node: string, reason: DropReason): Effect.Effect<void> =>
  Metric.increment(droppedFor(node, reason))

/** `countDrop` as plain code, for a receive path that runs outside a fiber (the simulated network's). */
export const unsafeCountDrop = (node: string, reason: DropReason): void =>
  droppedFor(node, reason).unsafeUpdate(1, [])

/** Reads how many datagrams `node` dropped for `reason` (tests, status). */
export const dropCount = (node: string, reason: DropReason): Effect.Effect<number> =>
  Effect.map(Metric.value(droppedFor(node, reason)), (state) => state.count)
