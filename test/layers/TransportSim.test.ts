import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Effect, Exit, Fiber, Option, Redacted, Scope, Stream, TestClock } from "effect"
import { Incarnation, ServerId } from "../../src/domain/Ids.js"
import type { Address } from "../../src/domain/Schemas.js"
import type { Identity } from "../../src/layers/Datagrams.js"
import { type SimResult, simulate } from "../../src/layers/SimRuntime.js"
import {
  layerSim,
  makeSim,
  type SimBindError,
  SimNetwork,
  type SimNetworkOptions,
  type SimNetworkStats,
  type SimTransportOptions
} from "../../src/layers/TransportSim.js"
import { type Incoming, type Outgoing, Transport, type TransportShape } from "../../src/services/Transport.js"
import { heartbeatAllToAll } from "../support/Heartbeating.js"

const clusterKey = Redacted.make("test cluster key")

const server = (id: string): Identity => ({
  role: "server",
  id: ServerId.make(id),
  incarnation: Incarnation.make(`${id}-inc`)
})

const heartbeat = (round: number): Outgoing => ({
  body: { _tag: "Heartbeat", round, commitSeq: 0 },
  epoch: 1
})

const discovery: Outgoing = { body: { _tag: "DiscoveryRequest" } }

const roundOf = (incoming: Incoming): number =>
  incoming.envelope.body._tag === "Heartbeat" ? incoming.envelope.body.round : -1

interface TestNode {
  readonly transport: TransportShape
  /** Everything its `incoming` produced, in order. */
  readonly got: Array<Incoming>
}

/** A transport on the network in context, with a fiber collecting what it receives. */
const node = (
  id: string,
  options: Partial<SimTransportOptions> = {}
): Effect.Effect<TestNode, SimBindError, SimNetwork | Scope.Scope> =>
  Effect.gen(function* () {
    const transport = yield* makeSim({ identity: server(id), boot: 1, ...options })
    const got: Array<Incoming> = []
    yield* Effect.forkScoped(
      Stream.runForEach(transport.incoming, (incoming) => Effect.sync(() => void got.push(incoming)))
    )
    return { transport, got }
  })

/** Runs `program` on a fresh network under `simulate`; transports close before the network. */
const run = <A, E>(
  program: Effect.Effect<A, E, SimNetwork | Scope.Scope>,
  seed: number,
  options: SimNetworkOptions = {}
): SimResult<A, E> =>
  simulate(Effect.provide(Effect.scoped(program), SimNetwork.layer(options)), {
    seed,
    maxTimeMs: 24 * 3_600_000
  })

/** The program's value; a failure shows its cause and the end of the trace. */
const resultOf = <A, E>(result: SimResult<A, E>): A => {
  if (Exit.isSuccess(result.exit)) return result.exit.value
  throw new Error(
    `simulation ended ${result.ending}: ${Cause.pretty(result.exit.cause)}\n` +
      result.trace.lines.slice(-30).join("\n")
  )
}

/** The accounting every run must satisfy: nothing appears or vanishes on the wire. */
const expectBalanced = (stats: SimNetworkStats): void => {
  const { overflow: _overflow, ...wireDrops } = stats.dropped
  const droppedCount = Object.values(wireDrops).reduce((sum, count) => sum + count, 0)
  expect(stats.sent + stats.duplicated).toBe(stats.delivered + droppedCount + stats.inFlight)
  expect(stats.delivered).toBe(stats.accepted + stats.filtered + stats.dropped.overflow)
}

const network = SimNetwork

describe("SimNetwork: delivery", () => {
  it("two nodes exchange unicast, from their assigned addresses, after the link delay", () => {
    const result = run(
      Effect.gen(function* () {
        const a = yield* node("a")
        const b = yield* node("b")
        yield* a.transport.send(b.transport.address, heartbeat(1))
        yield* b.transport.send(a.transport.address, heartbeat(2))
        yield* Effect.sleep("10 millis")
        const net = yield* network
        return {
          addresses: [a.transport.address, b.transport.address],
          atA: a.got.map(
            (incoming) => [incoming.envelope.from.id, roundOf(incoming), incoming.source] as const
          ),
          atB: b.got.map(
            (incoming) => [incoming.envelope.from.id, roundOf(incoming), incoming.source] as const
          ),
          stats: yield* net.stats,
          addressOfB: yield* net.addressOf("b")
        }
      }),
      1,
      { link: { delayMsMin: 3, delayMsMax: 3 } }
    )
    const { addresses, atA, atB, stats, addressOfB } = resultOf(result)
    const [addressA, addressB] = addresses
    expect(addressA).toEqual({ host: "10.0.0.1", port: 7000 })
    expect(addressB).toEqual({ host: "10.0.0.2", port: 7000 })
    expect(addressOfB).toEqual(Option.some(addressB))
    expect(atB).toEqual([["a", 1, addressA]])
    expect(atA).toEqual([["b", 2, addressB]])
    expect(stats).toMatchObject({ sent: 2, delivered: 2, accepted: 2, inFlight: 0 })
    expectBalanced(stats)
    expect(result.trace.lines.filter((line) => line.includes(" net #"))).toEqual([
      "0ms net #1 a>b Heartbeat sent +3ms",
      "0ms net #2 b>a Heartbeat sent +3ms",
      "3ms net #1 a>b Heartbeat delivered",
      "3ms net #2 b>a Heartbeat delivered"
    ])
  })

  it("layerSim provides Transport for one node on the network in context", () => {
    const result = run(
      Effect.gen(function* () {
        const peer = yield* node("peer")
        const address = yield* Effect.provide(
          Effect.gen(function* () {
            const transport = yield* Transport
            yield* transport.send(peer.transport.address, heartbeat(7))
            return transport.address
          }),
          layerSim({ identity: server("s1"), boot: 1, host: "192.168.1.5", port: 4000 })
        )
        // The layer's scope closed when the provided effect ended; what it sent is on the wire.
        yield* Effect.sleep("5 millis")
        return { address, got: peer.got.map((incoming) => incoming.source) }
      }),
      1
    )
    expect(resultOf(result)).toEqual({
      address: { host: "192.168.1.5", port: 4000 },
      got: [{ host: "192.168.1.5", port: 4000 }]
    })
  })

  it("incoming hands over everything queued in one chunk; receive takes one at a time and fails once closed", () => {
    const result = run(
      Effect.gen(function* () {
        const a = yield* makeSim({ identity: server("a"), boot: 1 })
        const scope = yield* Scope.make()
        const b = yield* Scope.extend(makeSim({ identity: server("b"), boot: 1 }), scope)
        yield* Effect.forEach([1, 2, 3, 4], (round) => a.send(b.address, heartbeat(round)), { discard: true })
        yield* Effect.sleep("5 millis")
        const first = yield* b.receive
        const chunk = yield* Stream.toPull(b.incoming).pipe(Effect.flatten, Effect.scoped)
        yield* Scope.close(scope, Exit.void)
        return {
          first: roundOf(first),
          chunk: Array.from(chunk, roundOf),
          afterClose: yield* Effect.either(b.receive)
        }
      }),
      1
    )
    const { first, chunk, afterClose } = resultOf(result)
    expect(first).toBe(1)
    expect(chunk).toEqual([2, 3, 4])
    expect(afterClose._tag === "Left" && afterClose.left._tag).toBe("TransportClosed")
  })

  it("a broadcast reaches every discovery listener, the sender's own included, and no one else", () => {
    const result = run(
      Effect.gen(function* () {
        const a = yield* node("a")
        const b = yield* node("b")
        const c = yield* node("c")
        const client = yield* node("client", { listenDiscovery: false })
        yield* a.transport.broadcast(discovery)
        yield* Effect.sleep("5 millis")
        const tagsOf = (test: TestNode) =>
          test.got.map((incoming) => `${incoming.envelope.from.id}:${incoming.envelope.body._tag}`)
        return {
          a: tagsOf(a),
          b: tagsOf(b),
          c: tagsOf(c),
          client: tagsOf(client),
          sources: [...a.got, ...b.got, ...c.got].map((incoming) => incoming.source),
          stats: yield* (yield* network).stats
        }
      }),
      1
    )
    const value = resultOf(result)
    expect(value.a).toEqual(["a:DiscoveryRequest"])
    expect(value.b).toEqual(["a:DiscoveryRequest"])
    expect(value.c).toEqual(["a:DiscoveryRequest"])
    expect(value.client).toEqual([])
    // Broadcasts leave from the sender's unicast address, so answers go there.
    expect(value.sources).toEqual(Array(3).fill({ host: "10.0.0.1", port: 7000 }))
    expect(value.stats).toMatchObject({ sent: 3, accepted: 3 })
  })

  it("a datagram to an address where nothing is attached is dropped as no-node", () => {
    const result = run(
      Effect.gen(function* () {
        const a = yield* node("a")
        yield* a.transport.send({ host: "10.0.0.99", port: 7000 }, heartbeat(1))
        yield* Effect.sleep("5 millis")
        return yield* (yield* network).stats
      }),
      1
    )
    expect(resultOf(result)).toMatchObject({ sent: 1, delivered: 0, dropped: { "no-node": 1 } })
    expect(result.trace.lines).toContain("0ms net #1 a>10.0.0.99:7000 Heartbeat dropped no-node")
  })
})

describe("SimNetwork: under TestClock", () => {
  it.scoped("works with @effect/vitest's TestClock: delivery waits for TestClock.adjust", () =>
    Effect.gen(function* () {
      const a = yield* node("a")
      const b = yield* node("b")
      yield* a.transport.send(b.transport.address, heartbeat(1))
      yield* TestClock.adjust("4 millis")
      const early = b.got.map(roundOf)
      yield* TestClock.adjust("1 millis")
      expect(early).toEqual([])
      expect(b.got.map(roundOf)).toEqual([1])
    }).pipe(Effect.provide(SimNetwork.layer({ link: { delayMsMin: 5, delayMsMax: 5 } })))
  )
})

describe("SimNetwork: partitions", () => {
  /** Every node sends one heartbeat to every other node; returns who received from whom. */
  const allToAll = (nodes: ReadonlyArray<readonly [string, TestNode]>, round: number) =>
    Effect.gen(function* () {
      for (const [, from] of nodes) {
        for (const [, to] of nodes) {
          if (from !== to) yield* from.transport.send(to.transport.address, heartbeat(round))
        }
      }
      yield* Effect.sleep("10 millis")
      const pairs: Array<string> = []
      for (const [name, test] of nodes) {
        for (const incoming of test.got) {
          if (roundOf(incoming) === round) pairs.push(`${incoming.envelope.from.id}>${name}`)
        }
      }
      return pairs.sort()
    })

  it("cuts exactly the links between groups, in both directions, in flight too; heal restores them", () => {
    const result = run(
      Effect.gen(function* () {
        const net = yield* network
        const nodes = [
          ["a", yield* node("a")],
          ["b", yield* node("b")],
          ["c", yield* node("c")],
          ["d", yield* node("d")]
        ] as const
        const before = yield* allToAll(nodes, 1)
        yield* net.partition([["a", "b"], ["c"]])
        const cut = yield* allToAll(nodes, 2)
        const statsCut = yield* net.stats
        yield* net.heal
        const healed = yield* allToAll(nodes, 3)
        // A datagram in flight when the partition starts is dropped when it arrives.
        yield* net.setDefaultLink({ delayMsMin: 20, delayMsMax: 20 })
        yield* nodes[0][1].transport.send(nodes[2][1].transport.address, heartbeat(4))
        yield* Effect.sleep("10 millis")
        yield* net.partition([["a"], ["c"]])
        yield* Effect.sleep("20 millis")
        return { before, cut, healed, statsCut, statsEnd: yield* net.stats }
      }),
      1
    )
    const value = resultOf(result)
    const everyPair = ["a>b", "a>c", "a>d", "b>a", "b>c", "b>d", "c>a", "c>b", "c>d", "d>a", "d>b", "d>c"]
    expect(value.before).toEqual(everyPair)
    // d is in no group: it keeps every link.
    expect(value.cut).toEqual(["a>b", "a>d", "b>a", "b>d", "c>d", "d>a", "d>b", "d>c"])
    expect(value.statsCut.dropped.partition).toBe(4)
    expect(value.healed).toEqual(everyPair)
    expect(value.statsEnd.dropped.partition).toBe(5)
    expect(value.statsEnd.inFlight).toBe(0)
    expectBalanced(value.statsEnd)
    expect(result.trace.lines).toContain("10ms net #14 a>c Heartbeat dropped partition")
    expect(result.trace.lines).toContain("50ms net #37 a>c Heartbeat dropped partition")
  })

  it("refuses a node in two groups", () => {
    const result = run(
      Effect.flatMap(network, (net) => net.partition([["a", "b"], ["b"]])),
      1
    )
    expect(Exit.isFailure(result.exit)).toBe(true)
  })
})

describe("SimNetwork: faults", () => {
  /**
   * a sends `count` heartbeats to b, one per ms, rounds 1..count; returns b's rounds in arrival
   * order. Signed: both hold the cluster key (MAC and replay window on).
   */
  const stream = (count: number, { signed }: { readonly signed: boolean } = { signed: true }) =>
    Effect.gen(function* () {
      const key = signed ? { clusterKey } : {}
      const a = yield* node("a", key)
      const b = yield* node("b", { ...key, inboxCapacity: 2 * count + 1 })
      for (let round = 1; round <= count; round++) {
        yield* a.transport.send(b.transport.address, heartbeat(round))
        yield* Effect.sleep("1 millis")
      }
      yield* Effect.sleep("1 second")
      return { rounds: b.got.map(roundOf), stats: yield* (yield* network).stats }
    })

  it("loses p = 0.3 of 10,000 datagrams, within ±3 %", () => {
    const result = run(stream(10_000), 11, { link: { dropProbability: 0.3 } })
    const { rounds, stats } = resultOf(result)
    const deliveredFraction = rounds.length / 10_000
    expect(deliveredFraction).toBeGreaterThan(0.67)
    expect(deliveredFraction).toBeLessThan(0.73)
    expect(stats.dropped.loss).toBe(10_000 - rounds.length)
    expect(stats).toMatchObject({ sent: 10_000, accepted: rounds.length, inFlight: 0 })
    expectBalanced(stats)
    // Survivors stay in order: loss does not reorder.
    expect(rounds).toEqual([...rounds].sort((x, y) => x - y))
  })

  it("duplicates about p = 0.2 of datagrams, each at most once; the replay window removes them under a key", () => {
    const count = 5000
    // Without a key datagrams carry no MAC and no replay check: every copy reaches the application.
    const unsigned = run(stream(count, { signed: false }), 12, {
      link: { duplicateProbability: 0.2, delayMsMin: 1, delayMsMax: 5 }
    })
    const { rounds, stats } = resultOf(unsigned)
    const timesSeen = new Map<number, number>()
    for (const round of rounds) timesSeen.set(round, (timesSeen.get(round) ?? 0) + 1)
    const twice = [...timesSeen.values()].filter((times) => times === 2).length
    expect(timesSeen.size).toBe(count)
    expect(Math.max(...timesSeen.values())).toBe(2)
    expect(twice).toBe(stats.duplicated)
    expect(twice / count).toBeGreaterThan(0.17)
    expect(twice / count).toBeLessThan(0.23)
    expect(rounds).toHaveLength(count + twice)
    expectBalanced(stats)

    // Under a cluster key every copy carries the same (boot, n): the receiver's replay window drops it.
    const signed = resultOf(run(stream(count), 12, { link: { duplicateProbability: 0.2 } }))
    expect(signed.stats.duplicated).toBeGreaterThan(0)
    expect(signed.rounds).toEqual(Array.from({ length: count }, (_, index) => index + 1))
    expect(signed.stats.filtered).toBe(signed.stats.duplicated)
  })

  it("reorders when asked (later datagrams overtake), and a link with jitter alone stays FIFO", () => {
    const count = 2000
    const inversionsOf = (rounds: ReadonlyArray<number>): number =>
      rounds.reduce(
        (inversions, round, index) => inversions + (index > 0 && round < (rounds[index - 1] ?? 0) ? 1 : 0),
        0
      )

    const reordered = resultOf(
      run(stream(count), 13, {
        link: { delayMsMin: 1, delayMsMax: 20, reorderProbability: 0.1, reorderDelayMsMax: 30 }
      })
    )
    expect(reordered.rounds).toHaveLength(count)
    expect([...reordered.rounds].sort((x, y) => x - y)).toEqual(
      Array.from({ length: count }, (_, i) => i + 1)
    )
    expect(inversionsOf(reordered.rounds)).toBeGreaterThan(50)
    // Bounded: sent one per ms, a datagram arrives at most delayMsMax + reorderDelayMsMax = 50 ms
    // late, so it ends up at most 50 places from where it was sent.
    const displacement = Math.max(...reordered.rounds.map((round, index) => Math.abs(round - (index + 1))))
    expect(displacement).toBeGreaterThan(0)
    expect(displacement).toBeLessThanOrEqual(50)

    const jitterOnly = resultOf(run(stream(count), 13, { link: { delayMsMin: 1, delayMsMax: 20 } }))
    expect(jitterOnly.rounds).toEqual(Array.from({ length: count }, (_, i) => i + 1))
  })

  it("per-link conditions take precedence field by field: the link's own, the sender's, the receiver's, the default", () => {
    const result = resultOf(
      run(
        Effect.gen(function* () {
          const net = yield* network
          const [a, b, c] = yield* Effect.forEach(["a", "b", "c"], (name) => node(name))
          if (a === undefined || b === undefined || c === undefined) return yield* Effect.die("nodes")
          yield* net.setDefaultLink({ dropProbability: 1 })
          yield* net.setNode("b", { dropProbability: 0 })
          yield* net.setLink("b", "c", { dropProbability: 1 })
          const sendTo = (from: TestNode, to: TestNode, round: number) =>
            Effect.orDie(from.transport.send(to.transport.address, heartbeat(round)))
          yield* sendTo(a, c, 1) // default: lost
          yield* sendTo(a, b, 2) // the receiver's (b): delivered
          yield* sendTo(b, a, 3) // the sender's (b): delivered
          yield* sendTo(b, c, 4) // the link's own: lost, over the sender's
          yield* sendTo(c, b, 5) // the receiver's (b): delivered; b → c is one direction only
          yield* Effect.sleep(100)
          yield* net.resetConditions
          yield* sendTo(b, c, 6) // reset: the layer's default (no loss) again
          yield* Effect.sleep(100)
          return { a: a.got.map(roundOf), b: b.got.map(roundOf), c: c.got.map(roundOf) }
        }),
        14
      )
    )
    expect(result).toEqual({ a: [3], b: [2, 5], c: [6] })
  })

  it("a downed node receives nothing, in flight included, and its sends are dropped; after up it works again", () => {
    const result = run(
      Effect.gen(function* () {
        const net = yield* network
        const a = yield* node("a")
        const b = yield* node("b")
        const exchange = (round: number) =>
          Effect.zipRight(
            Effect.zipRight(
              a.transport.send(b.transport.address, heartbeat(round)),
              b.transport.send(a.transport.address, heartbeat(round))
            ),
            Effect.sleep("20 millis")
          )
        yield* exchange(1)
        yield* net.down("b")
        yield* exchange(2)
        yield* b.transport.broadcast(discovery)
        yield* a.transport.broadcast(discovery)
        yield* Effect.sleep("20 millis")
        const whileDown = { atA: a.got.map(roundOf), atB: b.got.map(roundOf), stats: yield* net.stats }
        yield* net.up("b")
        yield* exchange(3)
        // Sent while up, arriving after the node went down: dropped at arrival.
        yield* net.setDefaultLink({ delayMsMin: 10, delayMsMax: 10 })
        yield* a.transport.send(b.transport.address, heartbeat(4))
        yield* Effect.sleep("5 millis")
        yield* net.down("b")
        yield* Effect.sleep("10 millis")
        return {
          whileDown,
          atA: a.got.map(roundOf),
          atB: b.got.map(roundOf),
          stats: yield* net.stats,
          statsB: yield* net.nodeStats("b")
        }
      }),
      1
    )
    const value = resultOf(result)
    // Round 1 and a's own discovery broadcast (-1) reach a; nothing of b's after it went down.
    expect(value.whileDown.atA).toEqual([1, -1])
    expect(value.whileDown.atB).toEqual([1])
    // a>b, b>a, b's broadcast to a and to itself, a's broadcast to b.
    expect(value.whileDown.stats.dropped.down).toBe(5)
    expect(value.atA).toEqual([1, -1, 3])
    expect(value.atB).toEqual([1, 3])
    expect(value.stats.dropped.down).toBe(6)
    expect(value.statsB.dropped.down).toBe(4)
    expectBalanced(value.stats)
    expect(result.trace.lines).toContain("20ms net #3 a>b Heartbeat dropped down")
    expect(result.trace.lines).toContain("20ms net #4 b>a Heartbeat dropped down (sender)")
    expect(result.trace.lines).toContain("90ms net #9 a>b Heartbeat dropped down")
  })
})

describe("SimNetwork: determinism", () => {
  /** Three nodes chatting at random intervals over a lossy, duplicating, reordering network. */
  const chatter = Effect.gen(function* () {
    const names = ["a", "b", "c"]
    const nodes = yield* Effect.forEach(names, (name) => node(name, { clusterKey }))
    yield* Effect.forEach(
      nodes,
      (from, index) =>
        Effect.forkScoped(
          Effect.forEach(
            Array.from({ length: 200 }, (_, round) => round),
            (round) =>
              Effect.gen(function* () {
                yield* Effect.sleep(`${(round % 7) + 1} millis`)
                const to = nodes[(index + 1 + (round % 2)) % nodes.length]
                if (to !== undefined) yield* from.transport.send(to.transport.address, heartbeat(round))
              }),
            { discard: true }
          )
        ),
      { discard: true }
    )
    yield* Effect.sleep("5 seconds")
    return yield* (yield* network).stats
  })
  const faulty: SimNetworkOptions = {
    link: {
      dropProbability: 0.2,
      duplicateProbability: 0.1,
      reorderProbability: 0.1,
      delayMsMin: 1,
      delayMsMax: 10
    }
  }

  it("the same seed gives the same trace and hash; another seed a different one", () => {
    const first = run(chatter, 7, faulty)
    const second = run(chatter, 7, faulty)
    const other = run(chatter, 8, faulty)
    const stats = resultOf(first)
    expect(stats.sent).toBe(600)
    expect(stats.dropped.loss).toBeGreaterThan(0)
    expect(stats.duplicated).toBeGreaterThan(0)
    expect(first.trace.lines.some((line) => line.endsWith("(reordered)"))).toBe(true)
    expect(second.trace.hash).toBe(first.trace.hash)
    expect(second.trace.lines).toEqual(first.trace.lines)
    expect(resultOf(second)).toEqual(stats)
    expect(other.trace.hash).not.toBe(first.trace.hash)
  })
})

describe("SimNetwork: fragments", () => {
  const bigChunk = (data: string): Outgoing => ({
    body: {
      _tag: "SnapshotChunk",
      snapshotSeq: 1,
      snapshotEpoch: 1,
      offset: 0,
      total: data.length,
      digest: "d",
      data
    },
    epoch: 1
  })
  const data = Array.from({ length: 800 }, (_, index) => `${index}`.padStart(8, "-")).join("")

  it("a message over the datagram limit arrives whole through its fragments", () => {
    const result = run(
      Effect.gen(function* () {
        const a = yield* node("a", { clusterKey })
        const b = yield* node("b", { clusterKey })
        yield* a.transport.send(b.transport.address, bigChunk(data))
        yield* Effect.sleep("5 millis")
        return { got: b.got.map((incoming) => incoming.envelope.body), stats: yield* (yield* network).stats }
      }),
      1
    )
    const { got, stats } = resultOf(result)
    expect(got).toEqual([bigChunk(data).body])
    expect(stats.sent).toBeGreaterThan(5)
    // Every fragment but the last is held; the last completes the message.
    expect(stats).toMatchObject({ delivered: stats.sent, filtered: stats.sent - 1, accepted: 1 })
    expect(result.trace.lines).toContain(`0ms net #1 a>b SnapshotChunk 1/${stats.sent} sent +1ms`)
  })

  it("under loss, resending completes it: fragments are named by content, so copies from different sends combine", () => {
    const result = run(
      Effect.gen(function* () {
        const a = yield* node("a", { clusterKey })
        const b = yield* node("b", { clusterKey })
        let sends = 0
        while (b.got.length === 0 && sends < 50) {
          sends += 1
          yield* a.transport.send(b.transport.address, bigChunk(data))
          yield* Effect.sleep("100 millis")
        }
        return { sends, got: b.got.map((incoming) => incoming.envelope.body) }
      }),
      3,
      { link: { dropProbability: 0.5 } }
    )
    const { sends, got } = resultOf(result)
    expect(got).toEqual([bigChunk(data).body])
    // Which parts of which send arrived, from the trace.
    const arrived = new Map<number, Set<number>>()
    let parts = 0
    for (const line of result.trace.lines) {
      const match = / net #(\d+) a>b SnapshotChunk (\d+)\/(\d+) delivered/.exec(line)
      if (match === null) continue
      parts = Number(match[3])
      const send = Math.floor((Number(match[1]) - 1) / parts)
      const set = arrived.get(send) ?? new Set()
      set.add(Number(match[2]))
      arrived.set(send, set)
    }
    expect(parts).toBeGreaterThan(5)
    expect(sends).toBeGreaterThan(1)
    // No single send got all its parts through: the message was put together from several.
    expect([...arrived.values()].every((set) => set.size < parts)).toBe(true)
    expect(new Set([...arrived.values()].flatMap((set) => [...set])).size).toBe(parts)
  })
})

describe("SimNetwork: crashes", () => {
  it("a crashed node receives nothing more; datagrams in flight to it are dropped and recorded; its own still arrive", () => {
    const result = run(
      Effect.gen(function* () {
        const net = yield* network
        const a = yield* node("a")
        const bScope = yield* Scope.make()
        const b = yield* Scope.extend(makeSim({ identity: server("b"), boot: 1 }), bScope)
        // Its consumer runs outside b's scope, so it sees `incoming` end when b crashes.
        const atB: Array<number> = []
        const consumer = yield* Effect.forkScoped(
          Stream.runForEach(b.incoming, (incoming) => Effect.sync(() => void atB.push(roundOf(incoming))))
        )
        const bAddress = b.address
        yield* a.transport.send(bAddress, heartbeat(1))
        yield* Effect.sleep("20 millis")
        for (const round of [2, 3, 4]) yield* a.transport.send(bAddress, heartbeat(round))
        yield* b.send(a.transport.address, heartbeat(100))
        yield* Effect.sleep("5 millis")
        yield* Scope.close(bScope, Exit.void)
        yield* Fiber.join(consumer)
        const sendAfterCrash = yield* Effect.exit(b.send(a.transport.address, heartbeat(101)))
        yield* Effect.sleep("20 millis")
        yield* a.transport.send(bAddress, heartbeat(5))
        yield* Effect.sleep("20 millis")
        const crashed = { atB: [...atB], addressOfB: yield* net.addressOf("b") }
        // Restarted: same host and port, a new endpoint; what was sent to its previous life is gone.
        const b2 = yield* node("b")
        yield* a.transport.send(b2.transport.address, heartbeat(6))
        yield* Effect.sleep("20 millis")
        return {
          crashed,
          sendAfterCrash,
          b2Address: b2.transport.address,
          bAddress,
          atA: a.got.map(roundOf),
          atB2: b2.got.map(roundOf),
          stats: yield* net.stats
        }
      }),
      1,
      { link: { delayMsMin: 10, delayMsMax: 10 } }
    )
    const value = resultOf(result)
    expect(value.crashed.atB).toEqual([1])
    expect(value.crashed.addressOfB).toEqual(Option.none())
    expect(Exit.isFailure(value.sendAfterCrash)).toBe(true)
    expect(String(value.sendAfterCrash)).toContain("TransportClosed")
    // b's heartbeat was on the wire when b crashed: it still arrives.
    expect(value.atA).toEqual([100])
    expect(value.b2Address).toEqual(value.bAddress)
    expect(value.atB2).toEqual([6])
    expect(value.stats.dropped).toMatchObject({ closed: 3, "no-node": 1 })
    expectBalanced(value.stats)
    expect(result.trace.lines).toEqual(
      expect.arrayContaining([
        "25ms net b detached from 10.0.0.2:7000",
        "30ms net #2 a>b Heartbeat dropped closed",
        "30ms net #3 a>b Heartbeat dropped closed",
        "30ms net #4 a>b Heartbeat dropped closed",
        "30ms net #5 b>a Heartbeat delivered",
        "45ms net #6 a>10.0.0.2:7000 Heartbeat dropped no-node",
        "65ms net b attached at 10.0.0.2:7000 +discovery",
        "75ms net #7 a>b Heartbeat delivered"
      ])
    )
  })

  it("probe: a crashed node's port answers closed after a round trip; a live, downed or cut-off node's does not", () => {
    const result = run(
      Effect.gen(function* () {
        const net = yield* network
        const a = yield* node("a")
        const live = yield* node("live")
        const crashScope = yield* Scope.make()
        const crashed = yield* Scope.extend(makeSim({ identity: server("crashed"), boot: 1 }), crashScope)
        yield* Scope.close(crashScope, Exit.void)
        const downed = yield* node("downed")
        yield* net.down("downed")
        const cut = yield* node("cut")
        yield* net.partition([["a", "live", "crashed", "downed"], ["cut"]])
        const probe = (to: Address) =>
          Effect.gen(function* () {
            const startMs = yield* Clock.currentTimeMillis
            const closed = yield* a.transport.probe(to)
            return [closed, (yield* Clock.currentTimeMillis) - startMs] as const
          })
        return {
          live: yield* probe(live.transport.address),
          crashed: yield* probe(crashed.address),
          downed: yield* probe(downed.transport.address),
          cut: yield* probe(cut.transport.address),
          nowhere: yield* probe({ host: "10.9.9.9", port: 1 })
        }
      }),
      1,
      { link: { delayMsMin: 4, delayMsMax: 6 } }
    )
    expect(resultOf(result)).toEqual({
      live: [false, 8],
      crashed: [true, 8],
      downed: [false, 8],
      cut: [false, 8],
      nowhere: [false, 2]
    })
    expect(result.trace.lines.filter((line) => line.includes("net probe"))).toEqual([
      "8ms net probe a>10.0.0.2:7000 no answer",
      "16ms net probe a>10.0.0.3:7000 port closed",
      "24ms net probe a>10.0.0.4:7000 no answer",
      "32ms net probe a>10.0.0.5:7000 no answer",
      "34ms net probe a>10.9.9.9:1 no answer"
    ])
  })

  it("refuses a second live node of the same name and a taken address", () => {
    const result = run(
      Effect.gen(function* () {
        yield* node("a", { host: "10.1.1.1", port: 5000 })
        const sameName = yield* Effect.flip(node("a"))
        const sameAddress = yield* Effect.flip(node("z", { host: "10.1.1.1", port: 5000 }))
        return [sameName._tag, sameAddress._tag, sameAddress.address]
      }),
      1
    )
    expect(resultOf(result)).toEqual(["SimBindError", "SimBindError", "10.1.1.1:5000"])
  })

  it("the network's scope owns the delivery timers: closing it leaves no timer behind", () => {
    const result = run(
      Effect.gen(function* () {
        const a = yield* node("a")
        const b = yield* node("b")
        yield* a.transport.send(b.transport.address, heartbeat(1))
      }),
      1,
      { link: { delayMsMin: 1000, delayMsMax: 1000 } }
    )
    expect(result.ending).toBe("completed")
    expect(result.timersLiveCount).toBe(0)
    expect(result.trace.lines.at(-1)).toBe("0ms net closed with 1 datagrams in flight")
  })
})

describe("SimNetwork: speed", () => {
  /** `count` nodes (HMAC on) each sending a heartbeat to every other node every 50 ms, for `simulatedMs`. */
  const heartbeating = (count: number, simulatedMs: number) =>
    Effect.gen(function* () {
      const nodes = yield* Effect.forEach(
        Array.from({ length: count }, (_, index) => `s${index + 1}`),
        (name) => node(name, { clusterKey })
      )
      yield* heartbeatAllToAll(nodes.map((test) => test.transport))
      yield* Effect.sleep(simulatedMs)
      return {
        received: nodes.reduce((sum, test) => sum + test.got.length, 0),
        stats: yield* (yield* network).stats
      }
    })
  const lan: SimNetworkOptions = { link: { delayMsMin: 1, delayMsMax: 3 } }

  it.each([3, 5])("%i nodes heartbeating every 50 ms to each other for 60 s of simulated time", (count) => {
    const simulatedMs = 60_000
    // Warm the JIT so the measured run is the steady state.
    run(heartbeating(count, simulatedMs), 5, lan)
    const cpuStart = process.cpuUsage()
    const result = run(heartbeating(count, simulatedMs), 5, lan)
    const cpu = process.cpuUsage(cpuStart)
    const cpuMs = (cpu.user + cpu.system) / 1000
    const { received, stats } = resultOf(result)
    const ratio = simulatedMs / result.wallMs
    // CPU time too: on a shared machine other processes inflate the wall time, not this.
    const cpuRatio = simulatedMs / cpuMs
    console.log(
      `SimNetwork speed: ${simulatedMs / 1000} s of ${count} nodes heartbeating every 50 ms (HMAC on, ` +
        `1-3 ms links) simulated in ${result.wallMs.toFixed(0)} ms of wall time (${cpuMs.toFixed(0)} ms of CPU): ` +
        `${ratio.toFixed(0)}x real time (${cpuRatio.toFixed(0)}x by CPU time; ${stats.sent} datagrams, ` +
        `${result.steps} steps, ${result.trace.count} trace lines)`
    )
    // Beats at 50, 100, ..., 59,950 ms (the one due at 60,000 loses the tie to the main sleep).
    const expected = count * (count - 1) * 1199
    expect(stats.sent).toBe(expected)
    expect(received).toBe(expected)
    expect(stats.inFlight).toBe(0)
    // Generous: a pathological slowdown fails, a busy machine does not.
    expect(cpuRatio).toBeGreaterThan(20)
    expect(ratio).toBeGreaterThan(5)
  })
})
