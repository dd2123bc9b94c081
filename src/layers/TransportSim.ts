/**
 * `Transport` on the simulated network (SimNetwork.ts): one node's endpoint,
 * for the cluster simulator and for deterministic tests of anything that uses
 * `Transport`.
 *
 * It runs the same datagram pipeline as `layerUdp` (Datagrams.ts): a message
 * leaves as the codec's datagrams (size limit, fragments, HMAC, boot and n),
 * travels as bytes, and at arrival goes through size → MAC → decode → replay
 * → reassembly of the receiver's codec; drops are counted by reason in
 * `agora_datagrams_dropped` exactly as on UDP.
 *
 * Inbox: decoded messages wait in a bounded mailbox (`inboxCapacity`, default
 * 1,024, as UDP's decoded queue). When it is full the arriving message is
 * dropped, counted as "overflow" and recorded in the trace, as a full socket
 * buffer drops what arrives (the sender's retransmission covers it). The
 * network cannot wait for a slow consumer: its delivery timer serves every node.
 *
 * Closing the layer's scope (the simulator's crash) detaches the endpoint:
 * datagrams in flight to it are dropped as "closed" when they arrive,
 * `incoming` ends, and `send`/`broadcast` fail with `TransportClosed`.
 * Datagrams it already sent are on the wire and still arrive.
 *
 * Broadcasts reach every node that listens for discovery (default: yes),
 * including the sender itself, as on UDP; the cluster ignores its own.
 */
import * as Cause from "effect/Cause"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import * as Metric from "effect/Metric"
import type * as Redacted from "effect/Redacted"
import type * as Scope from "effect/Scope"
import { DatagramBytesDefault, DatagramBytesMax, DatagramBytesMin } from "../domain/Envelope.js"
import type { Address } from "../domain/Schemas.js"
import {
  datagramsReceived,
  type Incoming,
  type Outgoing,
  Transport,
  TransportClosed,
  type TransportError,
  type TransportShape,
  takeAllFrom,
  unsafeCountDrop
} from "../services/Transport.js"
import { type DatagramCodec, type Decoded, type Identity, logDrop, makeDatagramCodec } from "./Datagrams.js"
import { type SimBindError, SimNetwork, type SimReceipt } from "./SimNetwork.js"

export * from "./SimNetwork.js"

/** Decoded messages waiting for the consumer of `incoming` (as UDP's `IncomingQueueCapacity`). */
export const SimInboxCapacityDefault = 1024

export interface SimTransportOptions {
  /** Who this node is on the wire. */
  readonly identity: Identity
  /** Raised at every start of a server before its first send (DESIGN §4); clients may pass 0. */
  readonly boot: number
  /** Its name in the network's controls, stats and trace. Default: the identity's id. */
  readonly name?: string | undefined
  /** Default: its host from before, else the next free 10.0.x.y. */
  readonly host?: string | undefined
  /** Default: its port from before if free, else the first free from the network's base (7000). */
  readonly port?: number | undefined
  /** Receive broadcasts (servers). Default true; clients may pass false. */
  readonly listenDiscovery?: boolean | undefined
  /** Default 1,400; between DatagramBytesMin and DatagramBytesMax. */
  readonly maxDatagramBytes?: number | undefined
  /** HMAC-SHA256 key of the servers; clients never hold it. */
  readonly clusterKey?: Redacted.Redacted<string> | undefined
  /** Default SimInboxCapacityDefault. */
  readonly inboxCapacity?: number | undefined
}

const accepted: SimReceipt = { outcome: "accepted" }
const held: SimReceipt = { outcome: "filtered", detail: "fragment held" }
const unready: SimReceipt = { outcome: "filtered", detail: "not attached yet" }

/**
 * Builds the transport in the current scope, attached to the `SimNetwork`; the scope's end
 * detaches it, ends `incoming`, and makes every later `send`/`broadcast` fail with `TransportClosed`.
 */
export const makeSim = (
  options: SimTransportOptions
): Effect.Effect<TransportShape, SimBindError, SimNetwork | Scope.Scope> =>
  Effect.gen(function* () {
    const network = yield* SimNetwork
    const node = options.identity.id
    const limitBytes = options.maxDatagramBytes ?? DatagramBytesDefault
    const inboxCapacity = options.inboxCapacity ?? SimInboxCapacityDefault
    if (!(Number.isInteger(limitBytes) && limitBytes >= DatagramBytesMin && limitBytes <= DatagramBytesMax)) {
      return yield* Effect.dieMessage(
        `maxDatagramBytes must be between ${DatagramBytesMin} and ${DatagramBytesMax}, got ${limitBytes}`
      )
    }
    if (!(Number.isInteger(inboxCapacity) && inboxCapacity >= 1)) {
      return yield* Effect.dieMessage(`inboxCapacity must be a positive integer, got ${inboxCapacity}`)
    }

    // Dropping, not suspending: the network's delivery timer must never wait on one node.
    const inbox = yield* Mailbox.make<Incoming>({ capacity: inboxCapacity, strategy: "dropping" })
    // Finalizers run last-added first: this one runs after the endpoint is detached.
    yield* Effect.addFinalizer(() => inbox.end)

    // The codec needs the port before it exists: it is fixed by attach, which needs `receive`.
    let codec: DatagramCodec | undefined
    const receivedCounter = Metric.tagged(datagramsReceived, "node", node)
    const overflow: SimReceipt = { outcome: "overflow", detail: "inbox full" }

    // Plain code, run by the network at each arrival: decode, and hand over to the inbox.
    const receive = (bytes: Uint8Array, source: Address, nowMs: number): SimReceipt => {
      if (codec === undefined) return unready
      let decoded: Decoded
      try {
        decoded = codec.decodeAt(bytes, source, nowMs)
      } catch (defect) {
        // Whatever a datagram causes, defects of the pipeline included, stays with it.
        unsafeCountDrop(node, "defect")
        return {
          outcome: "filtered",
          detail: "defect",
          report: Effect.logError("datagram handling failed", Cause.die(defect)).pipe(
            Effect.annotateLogs({ node })
          )
        }
      }
      if (decoded._tag === "Held") return held
      if (decoded._tag === "Dropped") {
        unsafeCountDrop(node, decoded.reason)
        return { outcome: "filtered", detail: decoded.reason, report: logDrop(node, decoded, source) }
      }
      if (!inbox.unsafeOffer(decoded.incoming)) {
        unsafeCountDrop(node, "overflow")
        return overflow
      }
      receivedCounter.unsafeUpdate(1, [])
      return accepted
    }

    const attachment = yield* network.attach({
      name: options.name ?? node,
      host: options.host,
      port: options.port,
      listenDiscovery: options.listenDiscovery ?? true,
      receive
    })
    const sendingCodec = makeDatagramCodec({
      identity: options.identity,
      port: attachment.address.port,
      boot: options.boot,
      maxDatagramBytes: limitBytes,
      clusterKey: options.clusterKey
    })
    codec = sendingCodec

    // Set first thing when the scope closes (this finalizer was added last).
    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
      })
    )

    const deliver = (to: Address, message: Outgoing): Effect.Effect<void, TransportError> =>
      Effect.suspend((): Effect.Effect<void, TransportError> => {
        if (closed) return Effect.fail(new TransportClosed())
        const datagrams = sendingCodec.encode(message)
        return Either.isLeft(datagrams) ? datagrams : attachment.send(to, datagrams.right, message.body._tag)
      })

    return Transport.of({
      address: attachment.address,
      send: deliver,
      broadcast: (message) => deliver(network.broadcastAddress, message),
      incoming: Mailbox.toStream(inbox),
      receive: Effect.mapError(inbox.take, () => new TransportClosed()),
      receiveAll: takeAllFrom(inbox),
      probe: (to) => (closed ? Effect.succeed(false) : attachment.probe(to))
    })
  }).pipe(Effect.annotateLogs({ node: options.identity.id }))

/** `Transport` for one node on the `SimNetwork` in context. */
export const layerSim = (options: SimTransportOptions): Layer.Layer<Transport, SimBindError, SimNetwork> =>
  Layer.scoped(Transport, makeSim(options))
