/**
 * The UDP transport on real sockets, on loopback only: unicast bound to
 * 127.0.0.1, broadcasts to 127.255.255.255, a random discovery port per test.
 */
import * as Dgram from "node:dgram"
import { describe, expect, it } from "@effect/vitest"
import {
  Chunk,
  ConfigProvider,
  Context,
  Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Option,
  Queue,
  Random,
  Redacted,
  Scope,
  Stream
} from "effect"
import type { Envelope } from "../../src/domain/Envelope.js"
import { ClientId, GroupId, Incarnation, ServerId } from "../../src/domain/Ids.js"
import type { Address } from "../../src/domain/Schemas.js"
import { type Identity, makeDatagramCodec } from "../../src/layers/Datagrams.js"
import {
  layerUdp,
  layerUdpConfig,
  makeUdp,
  sendFailureCount,
  type UdpBindError,
  type UdpOptions
} from "../../src/layers/TransportUdp.js"
import {
  dropCount,
  type Incoming,
  type Outgoing,
  ProbeWaitMs,
  Transport,
  type TransportShape
} from "../../src/services/Transport.js"

const loopback = "127.0.0.1"
const broadcastAddress = "127.255.255.255"
const receiveTimeout = Duration.seconds(3)

const serverIdentity = (name: string): Identity => ({
  role: "server",
  id: ServerId.make(name),
  incarnation: Incarnation.make(`${name}-inc`)
})
const clientIdentity = (name: string): Identity => ({ role: "client", id: ClientId.make(name) })

const group = GroupId.make("g1")
const clusterKey = Redacted.make("the cluster key")

/** A discovery port of its own for each test, away from the ephemeral range (32768+). */
const discoveryPort = Random.nextIntBetween(20_000, 30_000)

const node = (identity: Identity, options: Partial<UdpOptions> & { readonly discoveryPort: number }) =>
  makeUdp({
    identity,
    boot: 1,
    bindAddress: loopback,
    broadcastAddress,
    listenDiscovery: false,
    ...options
  })

/** The next message `transport` delivers, within the receive timeout. */
const receive = (transport: TransportShape): Effect.Effect<Incoming, unknown> =>
  transport.receive.pipe(Effect.timeout(receiveTimeout))

/** Nothing arrives within `ms`. */
const expectSilence = (transport: TransportShape, ms: number) =>
  Effect.map(transport.receive.pipe(Effect.timeout(Duration.millis(ms)), Effect.option), (got) =>
    expect(got).toEqual(Option.none())
  )

/** Waits until `read` reaches `expected` (counters are written by another fiber), then checks it is exact. */
const expectCount = (read: Effect.Effect<number>, expected: number) =>
  Effect.gen(function* () {
    for (let attempt = 0; attempt < 300; attempt++) {
      if ((yield* read) >= expected) break
      yield* Effect.sleep(Duration.millis(10))
    }
    // A little longer: a count above `expected` would show up now.
    yield* Effect.sleep(Duration.millis(20))
    expect(yield* read).toBe(expected)
  })

/** A plain socket, for sending what no transport would send and for capturing what one sends. */
const rawSocket = Effect.gen(function* () {
  const captured = yield* Queue.unbounded<Uint8Array>()
  const socket = yield* Effect.acquireRelease(
    Effect.async<Dgram.Socket>((resume) => {
      const socket = Dgram.createSocket({ type: "udp4" })
      socket.on("message", (message) => void captured.unsafeOffer(new Uint8Array(message)))
      socket.on("error", () => undefined)
      socket.bind({ address: loopback, port: 0 }, () => resume(Effect.succeed(socket)))
    }),
    (socket) =>
      Effect.async<void>((resume) => {
        socket.close(() => resume(Effect.void))
      })
  )
  const address: Address = { host: loopback, port: socket.address().port }
  return { socket, captured, address }
})

const rawSend = (socket: Dgram.Socket, bytes: Uint8Array, to: Address) =>
  Effect.async<void, Error>((resume) =>
    socket.send(bytes, to.port, to.host, (error) => resume(error ? Effect.fail(error) : Effect.void))
  )

/** Binds a plain socket without reuseAddr and closes it: fails if anything else holds the port. */
const bindExclusively = (address: string, port: number) =>
  Effect.async<void, Error>((resume) => {
    const socket = Dgram.createSocket({ type: "udp4", reuseAddr: false })
    socket.once("error", (error) => {
      socket.close()
      resume(Effect.fail(error))
    })
    socket.bind({ address, port }, () => socket.close(() => resume(Effect.void)))
  })

const heartbeat = (round: number): Outgoing => ({
  body: { _tag: "Heartbeat", round, commitSeq: 7 },
  group,
  epoch: 3
})

const origin = (identity: Identity, port: number): Envelope["from"] =>
  identity.role === "server"
    ? { role: "server", id: identity.id, incarnation: identity.incarnation, port }
    : { role: "client", id: identity.id, port }

describe("layerUdp (DESIGN §4–5: one envelope per datagram, on real sockets)", () => {
  it.scopedLive(
    "probe: a closed port on loopback answers at once (ICMP port unreachable); a live peer drops the empty datagram as a probe",
    () =>
      Effect.gen(function* () {
        const port = yield* discoveryPort
        const a = yield* node(serverIdentity("probe-a"), { discoveryPort: port })
        const bId = serverIdentity("probe-b")
        const b = yield* node(bId, { discoveryPort: port })
        expect(yield* a.probe(b.address)).toBe(false)
        yield* expectCount(dropCount(bId.id, "probe"), 1)
        // A port nothing listens on: bound a moment ago, then closed.
        const gone = yield* Effect.scoped(Effect.map(rawSocket, (raw) => raw.address))
        const startedMs = Date.now()
        expect(yield* a.probe(gone)).toBe(true)
        expect(Date.now() - startedMs).toBeLessThan(ProbeWaitMs)
        // Traffic is unaffected.
        yield* a.send(b.address, heartbeat(1))
        expect((yield* receive(b)).envelope.body).toEqual({ _tag: "Heartbeat", round: 1, commitSeq: 7 })
      })
  )

  it.scopedLive("two nodes exchange unicast both ways; the source is the other's unicast address", () =>
    Effect.gen(function* () {
      const port = yield* discoveryPort
      const aId = serverIdentity("uni-a")
      const bId = serverIdentity("uni-b")
      const a = yield* node(aId, { discoveryPort: port })
      const b = yield* node(bId, { discoveryPort: port })
      expect(a.address.host).toBe(loopback)
      expect(a.address.port).toBeGreaterThan(0)
      expect(a.address.port).not.toBe(b.address.port)

      yield* a.send(b.address, heartbeat(1))
      const atB = yield* receive(b)
      expect(atB.source).toEqual(a.address)
      expect(atB.envelope).toEqual({
        v: 1,
        from: origin(aId, a.address.port),
        group,
        epoch: 3,
        boot: 1,
        n: 1,
        body: { _tag: "Heartbeat", round: 1, commitSeq: 7 }
      })

      yield* b.send(atB.source, { body: { _tag: "HeartbeatAck", round: 1, matchSeq: 7 }, group, epoch: 3 })
      const atA = yield* receive(a)
      expect(atA.source).toEqual(b.address)
      expect(atA.envelope.from).toEqual(origin(bId, b.address.port))
      expect(atA.envelope.body).toEqual({ _tag: "HeartbeatAck", round: 1, matchSeq: 7 })
    })
  )

  it.scopedLive(
    "a broadcast reaches every discovery socket sharing the port, and the answer comes back by unicast",
    () =>
      Effect.gen(function* () {
        const port = yield* discoveryPort
        const s1 = yield* node(serverIdentity("bc-s1"), { discoveryPort: port, listenDiscovery: true })
        const s2 = yield* node(serverIdentity("bc-s2"), { discoveryPort: port, listenDiscovery: true })
        const clientId = clientIdentity("bc-c")
        const client = yield* node(clientId, { discoveryPort: port })

        yield* client.broadcast({ body: { _tag: "DiscoveryRequest" } })
        const [at1, at2] = yield* Effect.all([receive(s1), receive(s2)], { concurrency: 2 })
        for (const got of [at1, at2]) {
          expect(got.source).toEqual(client.address)
          expect(got.envelope).toEqual({
            v: 1,
            from: origin(clientId, client.address.port),
            body: { _tag: "DiscoveryRequest" }
          })
        }
        // The client has no discovery socket: its own broadcast does not come back to it.
        yield* expectSilence(client, 200)

        const answer: Outgoing = {
          body: { _tag: "DiscoveryResponse", group, leader: null, bootstrapping: false },
          group,
          epoch: 2
        }
        yield* s1.send(at1.source, answer)
        const reply = yield* receive(client)
        expect(reply.source).toEqual(s1.address)
        expect(reply.envelope.body).toEqual(answer.body)
      })
  )

  it.scopedLive(
    "garbage and oversized datagrams are dropped and counted by reason; valid traffic keeps flowing (promise 7)",
    () =>
      Effect.gen(function* () {
        const port = yield* discoveryPort
        const targetId = serverIdentity("junk-target")
        const target = yield* node(targetId, { discoveryPort: port })
        const raw = yield* rawSocket

        const garbage: Array<Uint8Array> = [
          new TextEncoder().encode("{"),
          new TextEncoder().encode('{"v":1}'),
          new TextEncoder().encode(
            '{"v":2,"from":{"role":"client","id":"x","port":1},"body":{"_tag":"Ping"}}'
          ),
          new TextEncoder().encode("[]"),
          new Uint8Array([0xff, 0xfe, 0xfd])
        ]
        for (let i = 0; i < 20; i++) {
          const length = yield* Random.nextIntBetween(1, 1400)
          const bytes = new Uint8Array(length)
          for (let j = 0; j < length; j++) bytes[j] = yield* Random.nextIntBetween(0, 256)
          garbage.push(bytes)
        }
        for (const bytes of garbage) yield* rawSend(raw.socket, bytes, target.address)
        // Empty: another node's probe, counted apart from garbage.
        yield* rawSend(raw.socket, new Uint8Array(0), target.address)
        yield* rawSend(raw.socket, new Uint8Array(1401).fill(0x7b), target.address)
        yield* rawSend(raw.socket, new Uint8Array(60_000).fill(0x20), target.address)

        // A valid datagram after all of it, from the same socket, arrives.
        const clientId = clientIdentity("junk-client")
        const codec = makeDatagramCodec({ identity: clientId, port: raw.address.port, boot: 0 })
        const [valid] = yield* codec.encode({ body: { _tag: "DiscoveryRequest" } })
        if (valid === undefined) return expect.unreachable()
        yield* rawSend(raw.socket, valid, target.address)
        const got = yield* receive(target)
        expect(got.envelope.from).toEqual(origin(clientId, raw.address.port))
        expect(got.source).toEqual(raw.address)

        yield* expectCount(dropCount(targetId.id, "undecodable"), garbage.length)
        yield* expectCount(dropCount(targetId.id, "probe"), 1)
        yield* expectCount(dropCount(targetId.id, "oversize"), 2)

        // And so does a transport's.
        const peer = yield* node(serverIdentity("junk-peer"), { discoveryPort: port })
        yield* peer.send(target.address, heartbeat(9))
        expect((yield* receive(target)).envelope.body).toEqual(heartbeat(9).body)
      })
  )

  it.scopedLive(
    "with a cluster key: bad MACs, unsigned server datagrams and replays are dropped; clients pass",
    () =>
      Effect.gen(function* () {
        const port = yield* discoveryPort
        const aId = serverIdentity("key-a")
        const bId = serverIdentity("key-b")
        const a = yield* node(aId, { discoveryPort: port, clusterKey })
        const b = yield* node(bId, { discoveryPort: port, clusterKey })
        const raw = yield* rawSocket
        const bName = "key-b"

        // A MAC made with another key, and a valid datagram with its MAC zeroed.
        const forger = makeDatagramCodec({
          identity: aId,
          port: a.address.port,
          boot: 1,
          clusterKey: Redacted.make("not the key")
        })
        const [forged] = yield* forger.encode(heartbeat(1))
        if (forged === undefined) return expect.unreachable()
        // Never "{": that would make it look like an unsigned client datagram.
        if (forged[0] === 0x7b) forged[0] = 0
        yield* rawSend(raw.socket, forged, b.address)
        const signer = makeDatagramCodec({ identity: aId, port: a.address.port, boot: 1, clusterKey })
        const [zeroed] = yield* signer.encode(heartbeat(2))
        if (zeroed === undefined) return expect.unreachable()
        zeroed.fill(0, 0, 32)
        yield* rawSend(raw.socket, zeroed, b.address)
        yield* expectCount(dropCount(bName, "bad-mac"), 2)

        // A server datagram without a MAC.
        const unsigned = makeDatagramCodec({ identity: aId, port: a.address.port, boot: 1 })
        const [plain] = yield* unsigned.encode(heartbeat(3))
        if (plain === undefined) return expect.unreachable()
        yield* rawSend(raw.socket, plain, b.address)
        yield* expectCount(dropCount(bName, "unsigned"), 1)
        yield* expectSilence(b, 100)

        // Replay: capture what a sends, pass it on to b once (accepted), then again (dropped).
        yield* a.send(raw.address, heartbeat(4))
        const captured = yield* Queue.take(raw.captured).pipe(Effect.timeout(receiveTimeout))
        yield* rawSend(raw.socket, captured, b.address)
        const first = yield* receive(b)
        expect(first.envelope.from).toEqual(origin(aId, a.address.port))
        expect(first.envelope.body).toEqual(heartbeat(4).body)
        yield* rawSend(raw.socket, captured, b.address)
        yield* expectCount(dropCount(bName, "replay"), 1)
        yield* expectSilence(b, 100)

        // a's own traffic to b still flows.
        yield* a.send(b.address, heartbeat(5))
        const fresh = yield* receive(b)
        expect(fresh.envelope.body).toEqual(heartbeat(5).body)
        expect(fresh.source).toEqual(a.address)

        // Clients hold no key; their datagrams pass.
        const clientId = clientIdentity("key-client")
        const client = yield* node(clientId, { discoveryPort: port })
        yield* client.send(b.address, { body: { _tag: "Register", nonce: 1 } })
        const fromClient = yield* receive(b)
        expect(fromClient.envelope).toEqual({
          v: 1,
          from: origin(clientId, client.address.port),
          body: { _tag: "Register", nonce: 1 }
        })
        // And b's answer to the client passes the client's checks (the client has no key).
        yield* b.send(client.address, { body: { _tag: "Pong", leader: ServerId.make("key-b"), epoch: 1 } })
        expect((yield* receive(client)).envelope.body).toEqual({ _tag: "Pong", leader: "key-b", epoch: 1 })

        expect(yield* dropCount(bName, "bad-mac")).toBe(2)
        expect(yield* dropCount(bName, "unsigned")).toBe(1)
        expect(yield* dropCount(bName, "replay")).toBe(1)
      })
  )

  it.scopedLive(
    "a message larger than the datagram limit arrives whole, in fragments (signed, and unsigned)",
    () =>
      Effect.gen(function* () {
        const port = yield* discoveryPort
        const a = yield* node(serverIdentity("frag-a"), { discoveryPort: port, clusterKey })
        const b = yield* node(serverIdentity("frag-b"), { discoveryPort: port, clusterKey })
        const entries = Array.from({ length: 400 }, (_, i) => ({
          epoch: 2,
          seq: 100 + i,
          body: { _tag: "App" as const, data: { bid: i, note: `entry ${i} ${"x".repeat(150)}` } }
        }))
        const replicate: Outgoing = {
          body: { _tag: "Replicate", prevSeq: 99, prevEpoch: 2, entries, commitSeq: 99 },
          group,
          epoch: 2
        }
        yield* a.send(b.address, replicate)
        const got = yield* receive(b)
        expect(got.envelope.body).toEqual(replicate.body)
        expect(got.envelope.group).toBe(group)
        expect(got.source).toEqual(a.address)

        // A StatusReply with every member, from a server with no key to a client.
        const s = yield* node(serverIdentity("frag-s"), { discoveryPort: port })
        const c = yield* node(clientIdentity("frag-c"), { discoveryPort: port })
        const long = (prefix: string, i: number) => `${prefix}${i}-${"m".repeat(60)}`.slice(0, 64)
        const members = Array.from({ length: 15 }, (_, i) => ({
          id: ServerId.make(long("s", i)),
          incarnation: Incarnation.make(long("i", i)),
          voter: i % 2 === 0,
          address: { host: "127.0.0.1", port: 40_000 + i }
        }))
        const status: Outgoing = {
          body: {
            _tag: "StatusReply",
            id: ServerId.make("frag-s"),
            role: "leader",
            group,
            epoch: 4,
            lastSeq: 10,
            commitSeq: 9,
            leader: ServerId.make("frag-s"),
            members,
            splitGroup: false
          },
          group,
          epoch: 4
        }
        yield* s.send(c.address, status)
        expect((yield* receive(c)).envelope.body).toEqual(status.body)
        expect(yield* dropCount("frag-b", "fragment")).toBe(0)
        expect(yield* dropCount("frag-c", "fragment")).toBe(0)
      })
  )

  it.scopedLive(
    "datagrams that arrived together reach a waiting consumer as one batch (group commit needs it)",
    () =>
      Effect.gen(function* () {
        const port = yield* discoveryPort
        const target = yield* node(serverIdentity("batch-target"), { discoveryPort: port })
        const sender = yield* node(clientIdentity("batch-client"), { discoveryPort: port })
        const waiting = yield* Effect.fork(target.receiveAll)
        yield* Effect.yieldNow()
        // Sent in one synchronous stretch: all are in the target's socket before its next read.
        for (let i = 1; i <= 20; i++)
          yield* sender.send(target.address, { body: { _tag: "Register", nonce: i } })
        const batch = yield* Fiber.join(waiting).pipe(Effect.timeout(receiveTimeout))
        expect(batch.map((m) => (m.envelope.body._tag === "Register" ? m.envelope.body.nonce : 0))).toEqual(
          Array.from({ length: 20 }, (_, i) => i + 1)
        )
      })
  )

  it.scopedLive("a full receive queue drops (and counts) the oldest datagrams; nothing else is lost", () =>
    Effect.gen(function* () {
      const port = yield* discoveryPort
      const targetId = serverIdentity("flood-target")
      // Nobody reads `incoming` while the flood arrives: the receive queue (8) fills, then slides.
      const target = yield* node(targetId, { discoveryPort: port, receiveQueueCapacity: 8 })
      const sender = yield* node(clientIdentity("flood-client"), { discoveryPort: port })
      const sent = 1500
      for (let i = 1; i <= sent; i++)
        yield* sender.send(target.address, { body: { _tag: "Register", nonce: i } })
      // Counted as they happen, though nobody reads yet (the process may be slow to read its socket):
      // every datagram but the queue's 8 is dropped once all arrived (the socket buffer holds them).
      for (
        let attempt = 0;
        attempt < 500 && (yield* dropCount(targetId.id, "overflow")) < sent - 8;
        attempt++
      ) {
        yield* Effect.sleep(Duration.millis(10))
      }
      const delivered = yield* Stream.runCollect(target.incoming.pipe(Stream.timeout(Duration.seconds(1))))
      const overflow = yield* dropCount(targetId.id, "overflow")
      expect(overflow).toBeGreaterThan(0)
      expect(Chunk.size(delivered) + overflow).toBe(sent)
      // In order, oldest first; the last one sent is never the one dropped.
      const nonces = Chunk.toReadonlyArray(delivered).map((m) =>
        m.envelope.body._tag === "Register" ? m.envelope.body.nonce : 0
      )
      expect(nonces).toEqual([...nonces].sort((x, y) => x - y))
      expect(nonces).toEqual(Array.from({ length: 8 }, (_, i) => sent - 7 + i))
    })
  )

  it.scopedLive("a failed send is counted and logged, not fatal", () =>
    Effect.gen(function* () {
      const port = yield* discoveryPort
      const aId = serverIdentity("sendfail-a")
      const a = yield* node(aId, { discoveryPort: port })
      const b = yield* node(serverIdentity("sendfail-b"), { discoveryPort: port })
      yield* a.send({ host: loopback, port: 0 }, heartbeat(1))
      expect(yield* sendFailureCount(aId.id, "ERR_SOCKET_BAD_PORT")).toBe(1)
      yield* a.send(b.address, heartbeat(2))
      expect((yield* receive(b)).envelope.body).toEqual(heartbeat(2).body)
    })
  )

  it.live("closing the scope closes both sockets: ports free, sends refused, incoming ended", () =>
    Effect.gen(function* () {
      const port = yield* discoveryPort
      const identity = serverIdentity("close-a")
      const scope = yield* Scope.make()
      const a = yield* node(identity, { discoveryPort: port, listenDiscovery: true }).pipe(
        Scope.extend(scope)
      )
      const unicastPort = a.address.port
      // While open, both ports are taken.
      expect(Exit.isFailure(yield* Effect.exit(bindExclusively(loopback, unicastPort)))).toBe(true)
      expect(Exit.isFailure(yield* Effect.exit(bindExclusively("0.0.0.0", port)))).toBe(true)

      yield* Scope.close(scope, Exit.void)
      yield* bindExclusively(loopback, unicastPort)
      yield* bindExclusively("0.0.0.0", port)
      const refused = yield* Effect.flip(a.send({ host: loopback, port: 9 }, heartbeat(1)))
      expect(refused._tag).toBe("TransportClosed")
      expect(Chunk.toReadonlyArray(yield* Stream.runCollect(a.incoming))).toEqual([])

      // The same ports again, through the layer this time.
      const again = yield* Effect.scoped(
        Effect.map(
          Layer.build(
            layerUdp({
              identity,
              boot: 2,
              bindAddress: loopback,
              port: unicastPort,
              discoveryPort: port,
              broadcastAddress
            })
          ),
          (context) => Context.get(context, Transport).address
        )
      )
      expect(again).toEqual({ host: loopback, port: unicastPort })
    })
  )

  it.scopedLive("layerUdpConfig reads the AGORA_* settings, and refuses a bad one", () =>
    Effect.gen(function* () {
      const port = yield* discoveryPort
      const settings = (extra: Record<string, string>) =>
        ConfigProvider.fromMap(
          new Map(
            Object.entries({
              AGORA_BIND: loopback,
              AGORA_DISCOVERY_PORT: String(port),
              AGORA_BROADCAST: broadcastAddress,
              AGORA_CLUSTER_KEY: "k",
              ...extra
            })
          )
        )
      const build = (extra: Record<string, string>) =>
        Layer.build(
          layerUdpConfig({ identity: serverIdentity("config-a"), boot: 1 }).pipe(
            Layer.provide(Layer.setConfigProvider(settings(extra)))
          )
        )
      const transport = Context.get(yield* build({ AGORA_MAX_DATAGRAM: "9000" }), Transport)
      expect(transport.address.host).toBe(loopback)
      expect(transport.address.port).toBeGreaterThan(0)
      const bad = yield* Effect.flip(build({ AGORA_MAX_DATAGRAM: "100000" }))
      expect(bad._tag).not.toBe("UdpBindError")
      expect(String(bad)).toContain("AGORA_MAX_DATAGRAM must be between 512 and 61440")
    })
  )

  it.scopedLive("a port in use is a typed bind error", () =>
    Effect.gen(function* () {
      const port = yield* discoveryPort
      const a = yield* node(serverIdentity("busy-a"), { discoveryPort: port })
      const error: UdpBindError = yield* Effect.flip(
        node(serverIdentity("busy-b"), { discoveryPort: port, port: a.address.port })
      )
      expect(error._tag).toBe("UdpBindError")
      expect(error.socket).toBe("unicast")
      expect(error.port).toBe(a.address.port)
    })
  )
})
