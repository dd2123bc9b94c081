/**
 * `Transport` over node:dgram (DESIGN §4–5): the real network.
 *
 * Two IPv4 sockets:
 * - the unicast socket, at the bind address on its own port (0 = any). Every
 *   datagram this node sends leaves from it, broadcasts included, so answers
 *   come back to it;
 * - the discovery socket (servers), bound to the wildcard `0.0.0.0:<discovery
 *   port>` with `reuseAddr`, so several nodes on one host share the port and
 *   broadcasts reach all of them (a socket bound to 127.0.0.1 receives none).
 *   Clients and `agora status` leave it closed (`listenDiscovery: false`):
 *   they only broadcast requests and read the answers on their unicast port.
 *
 * Receive path: each socket's `"message"` listener runs the shared datagram
 * pipeline (Datagrams.ts: size → MAC → decode → replay → reassembly) as plain
 * code, as the simulated network does at each arrival, and puts what passes
 * into one bounded sliding `Mailbox`, which `incoming` and `receiveAll` drain.
 * No Effect runs inside the listener: drops are counted at once and their log
 * lines are handed to a reporting fiber. A fiber hand-over per datagram between
 * the socket and its consumer cost more CPU than decoding it. Nothing a peer
 * sends can break the listener: every failure is caught, counted and logged
 * (DESIGN §1, promise 7).
 *
 * A node's own broadcasts reach its own discovery socket like anyone else's;
 * the cluster, which knows its own id, ignores them.
 */
import * as Dgram from "node:dgram"
import * as Cause from "effect/Cause"
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Layer from "effect/Layer"
import * as Mailbox from "effect/Mailbox"
import * as Metric from "effect/Metric"
import * as Option from "effect/Option"
import type * as Redacted from "effect/Redacted"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { DatagramBytesDefault, DatagramBytesMax, DatagramBytesMin } from "../domain/Envelope.js"
import type { Address } from "../domain/Schemas.js"
import {
  datagramsDropped,
  datagramsReceived,
  type Incoming,
  type Outgoing,
  ProbeWaitMs,
  Transport,
  TransportClosed,
  type TransportError,
  type TransportShape,
  takeAllFrom,
  unsafeCountDrop
} from "../services/Transport.js"
import { type DatagramCodec, type Decoded, type Identity, logDrop, makeDatagramCodec } from "./Datagrams.js"

/** Where the unicast socket binds unless told (`--bind`). */
export const BindAddressDefault = "0.0.0.0"
/** The port every server's discovery socket shares (`--discovery-port`). */
export const DiscoveryPortDefault = 12345
/** Where broadcasts go unless told (`--broadcast`); on one host use 127.255.255.255. */
export const BroadcastAddressDefault = "255.255.255.255"
/**
 * Kernel socket buffers, both directions. The default (~208 KiB) lost 5–8 % of
 * datagrams at ~130k/s on loopback; 4 MiB (this kernel's cap) lost none at ~265k/s.
 */
export const SocketBufferBytes = 4 * 1024 * 1024
/**
 * Decoded messages waiting for their consumer: an extension of the socket buffer that absorbs
 * bursts while the consumer is busy. Past it the oldest is dropped (and counted as "overflow").
 */
export const ReceiveQueueCapacityDefault = 2048
/** Log lines (drops, send failures, socket errors) waiting for the reporting fiber; more are only counted. */
const ReportsKept = 64

export interface UdpOptions {
  /** Who this node is on the wire. */
  readonly identity: Identity
  /** Raised at every start of a server before its first send (DESIGN §4); clients may pass 0. */
  readonly boot: number
  /** The unicast socket's address. Default 0.0.0.0. */
  readonly bindAddress?: string | undefined
  /** The unicast socket's port; 0 (the default) lets the system pick one. */
  readonly port?: number | undefined
  /** Default 12345. */
  readonly discoveryPort?: number | undefined
  /** Default 255.255.255.255. Tests use 127.255.255.255. */
  readonly broadcastAddress?: string | undefined
  /** Default 1,400; between DatagramBytesMin and DatagramBytesMax. */
  readonly maxDatagramBytes?: number | undefined
  /** HMAC-SHA256 key of the servers; clients never hold it. */
  readonly clusterKey?: Redacted.Redacted<string> | undefined
  /**
   * Open the discovery socket (default true: servers). Clients and `agora
   * status` pass false: they broadcast from, and hear answers on, the unicast socket.
   */
  readonly listenDiscovery?: boolean | undefined
  /** Decoded messages waiting for the consumer. Default ReceiveQueueCapacityDefault. */
  readonly receiveQueueCapacity?: number | undefined
}

/** A socket could not be bound (address in use, address not local, …). */
export class UdpBindError extends Schema.TaggedError<UdpBindError>()("UdpBindError", {
  socket: Schema.Literal("unicast", "discovery"),
  address: Schema.String,
  port: Schema.Number,
  message: Schema.String
}) {}

/** Datagrams the kernel refused to send (EMSGSIZE, ENETUNREACH, …), by node and error code. */
export const datagramsSendFailed = Metric.counter("agora_datagrams_send_failed", {
  description: "datagrams the socket failed to send, by error code",
  incremental: true
})

const sendFailedFor = (node: string, code: string) =>
  Metric.tagged(Metric.tagged(datagramsSendFailed, "node", node), "code", code)

/** Reads how many datagrams `node` failed to send with error `code` (tests, status). */
export const sendFailureCount = (node: string, code: string): Effect.Effect<number> =>
  Effect.map(Metric.value(sendFailedFor(node, code)), (state) => state.count)

type SocketName = "unicast" | "discovery"

interface SocketSpec {
  readonly name: SocketName
  readonly address: string
  readonly port: number
  readonly reuseAddr: boolean
  readonly onMessage: (message: Buffer, remote: Dgram.RemoteInfo) => void
  /** Errors after the bind; they are handed to the reporting fiber to be logged. */
  readonly onError: (error: Error) => void
}

const errorCode = (error: unknown): string =>
  typeof error === "object" && error !== null && "code" in error && typeof error.code === "string"
    ? error.code
    : "unknown"

const asError = (error: unknown): Error => (error instanceof Error ? error : new Error(String(error)))

/**
 * Binds a socket inside the scope; the scope's end closes it and waits until it is closed, so
 * the port is free again. The listeners are attached before the bind and stay for the
 * socket's life: a datagram is never missed, and an `"error"` event is never unhandled
 * (Node throws an unhandled one).
 */
const openSocket = (spec: SocketSpec): Effect.Effect<Dgram.Socket, UdpBindError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.async<Dgram.Socket, UdpBindError>((resume) => {
      const socket = Dgram.createSocket({
        type: "udp4",
        reuseAddr: spec.reuseAddr,
        recvBufferSize: SocketBufferBytes,
        sendBufferSize: SocketBufferBytes
      })
      let settled = false
      const fail = (error: unknown) => {
        settled = true
        closeQuietly(socket)
        resume(
          Effect.fail(
            new UdpBindError({
              socket: spec.name,
              address: spec.address,
              port: spec.port,
              message: asError(error).message
            })
          )
        )
      }
      socket.on("message", spec.onMessage)
      socket.on("error", (error) => {
        if (settled) spec.onError(error)
        else fail(error)
      })
      try {
        socket.bind({ address: spec.address, port: spec.port }, () => {
          if (settled) return
          try {
            // Unicast: broadcasts leave from it. Discovery: as the design asks; harmless on receive.
            socket.setBroadcast(true)
          } catch (error) {
            fail(error)
            return
          }
          settled = true
          resume(Effect.succeed(socket))
        })
      } catch (error) {
        fail(error)
      }
      // Interrupted while binding: close what was opened.
      return Effect.sync(() => {
        settled = true
        closeQuietly(socket)
      })
    }),
    (socket) =>
      Effect.async<void>((resume) => {
        try {
          socket.close(() => resume(Effect.void))
        } catch {
          // Already closed.
          resume(Effect.void)
        }
      })
  )

const closeQuietly = (socket: Dgram.Socket): void => {
  try {
    socket.close()
  } catch {
    // Already closed.
  }
}

const checkPort = (name: string, port: number, min: number): Effect.Effect<void> =>
  Number.isInteger(port) && port >= min && port <= 65535
    ? Effect.void
    : Effect.dieMessage(`${name} must be an integer between ${min} and 65535, got ${port}`)

/**
 * Builds the transport in the current scope: binds its sockets, forks its reporting fiber; the
 * scope's end stops the fiber, closes the sockets (their ports are free once it is done),
 * ends `incoming`, and makes every later `send`/`broadcast` fail with `TransportClosed`.
 */
export const makeUdp = (options: UdpOptions): Effect.Effect<TransportShape, UdpBindError, Scope.Scope> =>
  Effect.gen(function* () {
    const node = options.identity.id
    const bindAddress = options.bindAddress ?? BindAddressDefault
    const discoveryPort = options.discoveryPort ?? DiscoveryPortDefault
    const broadcastAddress = options.broadcastAddress ?? BroadcastAddressDefault
    const limitBytes = options.maxDatagramBytes ?? DatagramBytesDefault
    const receiveCapacity = options.receiveQueueCapacity ?? ReceiveQueueCapacityDefault
    yield* checkPort("port", options.port ?? 0, 0)
    yield* checkPort("discoveryPort", discoveryPort, 1)
    if (!(Number.isInteger(limitBytes) && limitBytes >= DatagramBytesMin && limitBytes <= DatagramBytesMax)) {
      return yield* Effect.dieMessage(
        `maxDatagramBytes must be between ${DatagramBytesMin} and ${DatagramBytesMax}, got ${limitBytes}`
      )
    }
    if (!(Number.isInteger(receiveCapacity) && receiveCapacity >= 1)) {
      return yield* Effect.dieMessage(
        `receiveQueueCapacity must be a positive integer, got ${receiveCapacity}`
      )
    }

    // Sliding, not dropping: when the consumer falls behind, the oldest message goes. The newest
    // carry the freshest protocol state (the current epoch's heartbeats, cumulative acks that
    // subsume older ones, clients' latest retries), and whatever is lost is retransmitted.
    const delivered = yield* Mailbox.make<Incoming>({ capacity: receiveCapacity, strategy: "sliding" })
    // Log lines of what happened in the listeners and send callbacks, where no Effect runs.
    const reports = yield* Mailbox.make<Effect.Effect<void>>({ capacity: ReportsKept, strategy: "dropping" })
    // Finalizers run last-added first: these two run after the sockets are closed.
    yield* Effect.addFinalizer(() => delivered.end)
    yield* Effect.addFinalizer(() => reports.shutdown)

    const overflowCounter = Metric.tagged(Metric.tagged(datagramsDropped, "node", node), "reason", "overflow")
    const receivedCounter = Metric.tagged(datagramsReceived, "node", node)
    // Overflow is counted at once, in the listener: metrics are global, so this needs no fiber
    // and loses no context. One warning covers every overflow until it is logged.
    let overflowUnlogged = 0
    const logOverflow = Effect.suspend(() => {
      const count = overflowUnlogged
      overflowUnlogged = 0
      return Effect.logWarning("receive queue full: oldest datagrams dropped").pipe(
        Effect.annotateLogs({ dropped: count })
      )
    })
    const deliverNow = (incoming: Incoming): void => {
      const size = delivered.unsafeSize()
      // Full: the sliding mailbox drops its oldest message to take this one.
      if (Option.isSome(size) && size.value >= receiveCapacity) {
        overflowCounter.unsafeUpdate(1, [])
        overflowUnlogged += 1
        // With the reports full, the next overflow tries again.
        if (overflowUnlogged === 1 && !reports.unsafeOffer(logOverflow)) overflowUnlogged = 0
      }
      delivered.unsafeOffer(incoming)
      receivedCounter.unsafeUpdate(1, [])
    }
    // Node runs the microtasks, and so the woken consumer's fiber, after every datagram's
    // listener. Handing over in the check phase instead, once per turn of the event loop, gives
    // the consumer everything the socket held at once (a batch, and one group commit), not one
    // datagram per wake-up: measured, every batch of the replica loop held a single input.
    let arrived: Array<Incoming> = []
    const handOver = (): void => {
      const batch = arrived
      arrived = []
      for (const incoming of batch) deliverNow(incoming)
    }
    const deliver = (incoming: Incoming): void => {
      if (arrived.length === 0) setImmediate(handOver)
      arrived.push(incoming)
    }

    // The codec needs the bound port, which exists only once the socket is bound; a datagram
    // that comes before it (a broadcast, in that instant) is dropped, as a full buffer would.
    let codec: DatagramCodec | undefined
    const onMessage = (message: Buffer, remote: Dgram.RemoteInfo): void => {
      const source: Address = { host: remote.address, port: remote.port }
      if (codec === undefined) {
        unsafeCountDrop(node, "unready")
        return
      }
      let decoded: Decoded
      try {
        decoded = codec.decodeAt(message, source, Date.now())
      } catch (defect) {
        // Whatever a datagram causes, defects of the pipeline included, stays with it.
        unsafeCountDrop(node, "defect")
        reports.unsafeOffer(Effect.logError("datagram handling failed", Cause.die(defect)))
        return
      }
      if (decoded._tag === "Message") deliver(decoded.incoming)
      else if (decoded._tag === "Dropped") {
        unsafeCountDrop(node, decoded.reason)
        reports.unsafeOffer(logDrop(node, decoded, source))
      }
    }
    const onErrorOf =
      (socket: SocketName) =>
      (error: Error): void => {
        reports.unsafeOffer(
          Effect.logWarning("socket error").pipe(
            Effect.annotateLogs({ socket, code: errorCode(error), error: error.message })
          )
        )
      }

    const unicast = yield* openSocket({
      name: "unicast",
      address: bindAddress,
      port: options.port ?? 0,
      reuseAddr: false,
      onMessage,
      onError: onErrorOf("unicast")
    })
    if (options.listenDiscovery ?? true) {
      yield* openSocket({
        name: "discovery",
        address: "0.0.0.0",
        port: discoveryPort,
        reuseAddr: true,
        onMessage,
        onError: onErrorOf("discovery")
      })
    }
    const bound = unicast.address()
    const address: Address = { host: bound.address, port: bound.port }

    const sendingCodec = makeDatagramCodec({
      identity: options.identity,
      port: bound.port,
      boot: options.boot,
      maxDatagramBytes: limitBytes,
      clusterKey: options.clusterKey
    })
    codec = sendingCodec

    // Reports are logged in the layer's fiber context (its log annotations), in the order made.
    yield* Effect.forkScoped(
      Effect.gen(function* () {
        while (true) {
          const [logs, done] = yield* reports.takeAll
          for (const log of logs) yield* log
          if (done) return
        }
      })
    )

    // Set first thing when the scope closes (this finalizer was added last).
    let closed = false
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        closed = true
      })
    )

    /** A failed send is counted at once and logged by the reporting fiber (no Effect runs in a socket callback). */
    const onSendFailure = (to: Address, body: string, error: unknown): void => {
      sendFailedFor(node, errorCode(error)).unsafeUpdate(1, [])
      // Not fatal: UDP promises nothing, and every protocol step retransmits.
      reports.unsafeOffer(
        Effect.logWarning("datagram send failed").pipe(
          Effect.annotateLogs({
            to: `${to.host}:${to.port}`,
            body,
            code: errorCode(error),
            error: asError(error).message
          })
        )
      )
    }

    /**
     * Hands every datagram to the socket without waiting for the kernel's answer: a sender
     * never suspends on a send (a wait per datagram cost a fiber suspension and resumption
     * each, most of a send's CPU). Failures are counted and logged as they are reported.
     */
    const sendAll = (datagrams: ReadonlyArray<Uint8Array>, to: Address, body: string): void => {
      for (const bytes of datagrams) {
        try {
          unicast.send(bytes, to.port, to.host, (error) => {
            if (error !== null && error !== undefined) onSendFailure(to, body, error)
          })
        } catch (error) {
          // Thrown synchronously: bad port or address, or the socket is closed.
          onSendFailure(to, body, error)
        }
      }
    }

    const sendTo = (to: Address, message: Outgoing): Effect.Effect<void, TransportError> =>
      Effect.suspend((): Effect.Effect<void, TransportError> => {
        if (closed) return Effect.fail(new TransportClosed())
        const datagrams = sendingCodec.encode(message)
        if (Either.isLeft(datagrams)) return datagrams
        sendAll(datagrams.right, to, message.body._tag)
        return Effect.void
      })

    const broadcastTo: Address = { host: broadcastAddress, port: discoveryPort }

    // A socket of its own, connected to `to`: only a connected UDP socket hears of the ICMP
    // port-unreachable answer (as an ECONNREFUSED error event, a few ms after the send).
    const probe = (to: Address): Effect.Effect<boolean> =>
      Effect.async<boolean>((resume) => {
        const socket = Dgram.createSocket(to.host.includes(":") ? "udp6" : "udp4")
        let open = true
        /** Closes the socket once; false if it already was (answered, timed out or interrupted). */
        const close = (): boolean => {
          if (!open) return false
          open = false
          clearTimeout(timer)
          socket.close()
          return true
        }
        const settle = (gone: boolean): void => {
          if (close()) resume(Effect.succeed(gone))
        }
        const timer = setTimeout(() => settle(false), ProbeWaitMs)
        socket.on("error", (error) => settle(errorCode(error) === "ECONNREFUSED"))
        socket.bind({ address: bindAddress, port: 0 }, () =>
          socket.connect(to.port, to.host, () => socket.send(new Uint8Array(0)))
        )
        return Effect.sync(() => void close())
      })

    yield* Effect.logDebug("udp transport open").pipe(
      Effect.annotateLogs({
        address: `${address.host}:${address.port}`,
        discoveryPort: (options.listenDiscovery ?? true) ? discoveryPort : "closed",
        broadcast: `${broadcastAddress}:${discoveryPort}`,
        recvBufferBytes: unicast.getRecvBufferSize()
      })
    )

    return Transport.of({
      address,
      send: sendTo,
      broadcast: (message) => sendTo(broadcastTo, message),
      incoming: Mailbox.toStream(delivered),
      receive: Effect.mapError(delivered.take, () => new TransportClosed()),
      receiveAll: takeAllFrom(delivered),
      probe
    })
  }).pipe(Effect.annotateLogs({ node: options.identity.id }))

/** `Transport` over node:dgram, with options given in code. */
export const layerUdp = (options: UdpOptions): Layer.Layer<Transport, UdpBindError> =>
  Layer.scoped(Transport, makeUdp(options))

/** The network settings `Config` can give (`AGORA_*`, DESIGN §7). */
export interface UdpNetworkSettings {
  readonly bindAddress: string
  readonly port: number
  readonly discoveryPort: number
  readonly broadcastAddress: string
  readonly maxDatagramBytes: number
  readonly clusterKey: Redacted.Redacted<string> | undefined
}

/** AGORA_BIND, AGORA_PORT, AGORA_DISCOVERY_PORT, AGORA_BROADCAST, AGORA_MAX_DATAGRAM, AGORA_CLUSTER_KEY. */
export const UdpNetworkConfig: Config.Config<UdpNetworkSettings> = Config.all({
  bindAddress: Config.string("AGORA_BIND").pipe(Config.withDefault(BindAddressDefault)),
  port: Config.integer("AGORA_PORT").pipe(
    Config.validate({
      message: "AGORA_PORT must be between 0 and 65535",
      validation: (port) => port >= 0 && port <= 65535
    }),
    Config.withDefault(0)
  ),
  discoveryPort: Config.port("AGORA_DISCOVERY_PORT").pipe(Config.withDefault(DiscoveryPortDefault)),
  broadcastAddress: Config.string("AGORA_BROADCAST").pipe(Config.withDefault(BroadcastAddressDefault)),
  maxDatagramBytes: Config.integer("AGORA_MAX_DATAGRAM").pipe(
    Config.validate({
      message: `AGORA_MAX_DATAGRAM must be between ${DatagramBytesMin} and ${DatagramBytesMax}`,
      validation: (bytes) => bytes >= DatagramBytesMin && bytes <= DatagramBytesMax
    }),
    Config.withDefault(DatagramBytesDefault)
  ),
  clusterKey: Config.option(Config.redacted("AGORA_CLUSTER_KEY")).pipe(Config.map(Option.getOrUndefined))
})

/**
 * `Transport` over node:dgram, with the network settings read from `Config`; who the node is
 * (identity, boot) comes from its data dir or process, not from configuration.
 */
export const layerUdpConfig = (node: {
  readonly identity: Identity
  readonly boot: number
  readonly listenDiscovery?: boolean | undefined
}): Layer.Layer<Transport, UdpBindError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(UdpNetworkConfig, (settings) => layerUdp({ ...node, ...settings })))
