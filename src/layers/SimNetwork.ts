/**
 * SimNetwork: an in-memory network for many nodes in one process (DESIGN §2,
 * §8), the wire under `layerSim` (TransportSim.ts). It moves datagram bytes
 * between attached endpoints and injects the faults a LAN has: loss, delay,
 * jitter, duplication, reordering, partitions, and nodes whose cable is pulled
 * (`down`). It knows nothing of envelopes: each endpoint's own codec (the
 * shared pipeline of Datagrams.ts) turns bytes into messages at arrival.
 *
 * Determinism: the network's random choices come from Effect's PCG generator
 * seeded from Effect's `Random` when the network is built, and every delay is
 * an `Effect.sleep` on the `Clock`, so under `simulate` (seeded `Random`,
 * virtual clock) the same seed gives the same deliveries, in the same order,
 * and the same trace. (A generator of its own lets the send path be plain code
 * instead of an Effect per draw; it also keeps the network's faults from
 * shifting when node code draws more or fewer random numbers.) Under
 * `TestClock` it moves with `TestClock.adjust`.
 *
 * Addresses are fake (they never touch a socket). A node is known by its name
 * (by default its identity's id) and keeps its host across restarts: the
 * first node gets 10.0.0.1, the next 10.0.0.2, … and unicast port 7000, unless
 * it asks for a fixed host or port. One network is one broadcast domain:
 * a datagram to `broadcastAddress` (default 10.0.255.255, on the discovery
 * port 12345) reaches every attached node that listens for discovery, the
 * sender included, as real UDP does with a wildcard-bound discovery socket.
 * A unicast datagram to a host's discovery port reaches the listener on that
 * host that attached first.
 *
 * Delivery. The fate of each datagram is decided when it is sent: dropped (the
 * sender or receiver is down, a partition cuts the link, loss), or scheduled
 * for `now + delay`, and with the duplication probability a second copy with
 * its own delay. Jitter alone never reorders a link: a datagram is never
 * scheduled before the previous one on its link (a wire is FIFO). Only a
 * "reordered" datagram (reorder probability) gets an extra random delay
 * outside that rule, so later ones overtake it. Scheduled datagrams with the
 * same arrival instant share one timer, the NETWORK's, which delivers them in
 * the order they were sent. So a datagram in flight survives its sender's
 * crash (as on a real wire), and a heartbeat round of 5 nodes with 1–3 ms
 * links makes at most 3 timers, not 20. Under `simulate` a timer is a bare
 * callback on the virtual clock, no fiber at all, and delivery is plain code
 * (a datagram's arrival costs what a NIC's interrupt does: decode, and a
 * wake-up of the fiber waiting on the inbox); under any other clock it is a
 * fiber in the network's scope. At arrival a datagram is dropped if its
 * receiver is down, a partition now cuts the link, or the receiving endpoint
 * has closed since the datagram was sent (a crash; a restarted node at the
 * same address gets a new endpoint and does not receive datagrams sent to its
 * previous life). Otherwise the receiver's `receive` runs (decode, inbox) and
 * its outcome is recorded; what the receiver leaves to an Effect (logging a
 * drop) runs in a fiber of its own after the arrival.
 *
 * Trace: each datagram's fate is one line at send ("sent", "dropped") and one
 * per scheduled copy at arrival ("delivered", "dropped"), with its number,
 * sender, receiver, body tag (fragments as "Tag 2/5") and a short detail, e.g.
 * `net #41 s1>s3 Heartbeat sent +2ms` / `net #41 s1>s3 Heartbeat delivered`.
 * Duplicate copies carry `'` after the number. Lines go to the simulation's
 * `SimTrace` (what `recordTrace` writes to; resolved once when the network is
 * built, so nothing is looked up per datagram), and nowhere outside a simulation.
 */
import type * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import * as Random from "effect/Random"
import * as Runtime from "effect/Runtime"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"
import { PCGRandom } from "effect/Utils"
import type { Address } from "../domain/Schemas.js"
import { type SimTimer, VirtualClock } from "./SimClock.js"
import { SimTrace, type SimTraceShape } from "./SimTrace.js"

/** Conditions of a directed link, from the sender to the receiver. */
export interface LinkConditions {
  /** Probability that a datagram is lost, in [0, 1]. */
  readonly dropProbability: number
  /** One-way delay, a whole number of ms drawn uniformly from [delayMsMin, delayMsMax]. */
  readonly delayMsMin: number
  /** A maximum below `delayMsMin` counts as `delayMsMin`. */
  readonly delayMsMax: number
  /** Probability that a delivered datagram is delivered a second time (with its own delay), in [0, 1]. */
  readonly duplicateProbability: number
  /** Probability that a datagram is held back by an extra 1..reorderDelayMsMax ms, so later ones overtake it. */
  readonly reorderProbability: number
  /** The most extra delay a reordered datagram gets (whole ms, >= 1). */
  readonly reorderDelayMsMax: number
}

/** A perfect LAN: no loss, 1 ms, in order. */
export const linkConditionsDefault: LinkConditions = {
  dropProbability: 0,
  delayMsMin: 1,
  delayMsMax: 1,
  duplicateProbability: 0,
  reorderProbability: 0,
  reorderDelayMsMax: 50
}

/** Why the network dropped a datagram (the receiver's own checks are counted by its codec). */
export type SimDropReason =
  /** Random loss (dropProbability). */
  | "loss"
  /** A partition cuts the link (at send or at arrival). */
  | "partition"
  /** The sender was down when it sent, or the receiver was down at send or at arrival. */
  | "down"
  /** Nothing is attached at the destination address. */
  | "no-node"
  /** The receiving endpoint closed (its node crashed) while the datagram was in flight. */
  | "closed"
  /** The receiver's inbox was full. */
  | "overflow"

export const simDropReasons: ReadonlyArray<SimDropReason> = [
  "loss",
  "partition",
  "down",
  "no-node",
  "closed",
  "overflow"
]

/**
 * What became of a datagram at its receiver:
 * - "accepted": it completed a message, which is now in the inbox;
 * - "filtered": the receiver's codec kept nothing (dropped and counted by reason
 *   in `agora_datagrams_dropped`, or a fragment held for reassembly);
 * - "overflow": it completed a message but the inbox was full.
 */
export type SimReceiveOutcome = "accepted" | "filtered" | "overflow"

/** What a receiver made of a datagram. */
export interface SimReceipt {
  readonly outcome: SimReceiveOutcome
  /** Why it kept nothing, for the trace. */
  readonly detail?: string | undefined
  /** What it leaves to an Effect (logging a drop); the network runs it after the arrival. */
  readonly report?: Effect.Effect<void> | undefined
}

/** Counters over the whole network. Invariant: sent + duplicated = delivered + dropped (all reasons but overflow) + inFlight. */
export interface SimNetworkStats {
  /** Datagrams handed to the network; a broadcast counts once per receiver. */
  readonly sent: number
  /** Extra copies scheduled by duplication. */
  readonly duplicated: number
  /** Copies that arrived at their receiver's endpoint (then accepted, filtered or overflowed). */
  readonly delivered: number
  /** Delivered copies that completed a message now in an inbox. */
  readonly accepted: number
  /** Delivered copies the receiver's codec kept nothing of (see `SimReceiveOutcome`). */
  readonly filtered: number
  /** Dropped, by reason ("overflow" copies were delivered first). */
  readonly dropped: Readonly<Record<SimDropReason, number>>
  /** Copies scheduled and not yet arrived. */
  readonly inFlight: number
}

/** Counters of one node (by name, across restarts). */
export interface SimNodeStats {
  /** Datagrams it sent (a broadcast once per receiver). */
  readonly sent: number
  /** Copies that arrived at it. */
  readonly delivered: number
  /** Of those, the ones that completed a message now in its inbox. */
  readonly accepted: number
  /** Datagrams addressed to it that were dropped, by reason. */
  readonly dropped: Readonly<Record<SimDropReason, number>>
}

export interface SimNetworkOptions {
  /** Conditions of every link without its own (see `setLink`, `setNode`). Default `linkConditionsDefault`. */
  readonly link?: Partial<LinkConditions> | undefined
  /** Where broadcasts go (any port: only the discovery port has listeners). Default 10.0.255.255. */
  readonly broadcastHost?: string | undefined
  /** The port discovery listeners share. Default 12345. */
  readonly discoveryPort?: number | undefined
  /** The unicast port a node gets unless it asks for one (the first free from here on its host). Default 7000. */
  readonly unicastPortBase?: number | undefined
  /** Record every datagram's fate in the simulation trace. Default true. */
  readonly traceDatagrams?: boolean | undefined
}

/** What an endpoint asks for when it attaches. */
export interface SimAttachOptions {
  /** The node's name in controls, stats and trace. Two live endpoints cannot share one. */
  readonly name: string
  /** Default: the host the node had before, else the next free 10.0.x.y. */
  readonly host?: string | undefined
  /** Default: the port the node had before if free, else the first free from `unicastPortBase`. */
  readonly port?: number | undefined
  /** Receive broadcasts (a discovery socket). */
  readonly listenDiscovery: boolean
  /**
   * Called when a datagram arrives, with its bytes (read-only, maybe shared), its source
   * address and the time. Plain code that must neither block (nothing waits on one receiver)
   * nor throw (it runs in the simulation's driver).
   */
  readonly receive: (bytes: Uint8Array, source: Address, nowMs: number) => SimReceipt
}

/** An attached endpoint, as its transport sees it. Detached when the scope of `attach` closes. */
export interface SimAttachment {
  readonly address: Address
  /** Sends the datagrams of one message (several: its fragments) to `to`, or to everyone at the broadcast address. */
  readonly send: (to: Address, datagrams: ReadonlyArray<Uint8Array>, tag: string) => Effect.Effect<void>
  /**
   * Whether `to`'s host answers, one round trip later, that nothing listens at its port: its
   * node is known, up, reachable from this one, and not attached there (crashed). A live
   * endpoint, a node that is down, a partition, or loss of the probe or its answer: false.
   */
  readonly probe: (to: Address) => Effect.Effect<boolean>
}

/** Attaching failed: the name is live, or the address is taken. */
export class SimBindError extends Schema.TaggedError<SimBindError>()("SimBindError", {
  node: Schema.String,
  address: Schema.String,
  message: Schema.String
}) {}

export interface SimNetworkShape {
  /** Where broadcasts go: the broadcast host on the discovery port. */
  readonly broadcastAddress: Address
  readonly discoveryPort: number
  /** Merges `conditions` into the default of every link. */
  readonly setDefaultLink: (conditions: Partial<LinkConditions>) => Effect.Effect<void>
  /**
   * Merges `conditions` into those of every link from or to `name`. A link's
   * conditions are, field by field, the first set of: the link's own
   * (`setLink`), the sender's (`setNode`), the receiver's, the default.
   */
  readonly setNode: (name: string, conditions: Partial<LinkConditions>) => Effect.Effect<void>
  /** Merges `conditions` into those of the directed link `from` → `to`. */
  readonly setLink: (from: string, to: string, conditions: Partial<LinkConditions>) => Effect.Effect<void>
  /** Forgets every `setNode`/`setLink` and restores the default given to the layer. */
  readonly resetConditions: Effect.Effect<void>
  /**
   * Cuts every link between nodes of different groups, in both directions,
   * for datagrams sent from now on and those in flight. Nodes in no group keep
   * all their links. Replaces the previous partition.
   */
  readonly partition: (groups: ReadonlyArray<ReadonlyArray<string>>) => Effect.Effect<void>
  /** Removes the partition. */
  readonly heal: Effect.Effect<void>
  /** The node receives nothing and everything it sends is dropped, until `up`. Survives its restarts. */
  readonly down: (name: string) => Effect.Effect<void>
  readonly up: (name: string) => Effect.Effect<void>
  /** The unicast address of the node's live endpoint. */
  readonly addressOf: (name: string) => Effect.Effect<Option.Option<Address>>
  readonly stats: Effect.Effect<SimNetworkStats>
  readonly nodeStats: (name: string) => Effect.Effect<SimNodeStats>
  /** Attaches an endpoint (what `layerSim` does); the scope's end detaches it. */
  readonly attach: (options: SimAttachOptions) => Effect.Effect<SimAttachment, SimBindError, Scope.Scope>
}

export class SimNetwork extends Context.Tag("agora/SimNetwork")<SimNetwork, SimNetworkShape>() {
  /** A network of its own, closed (in-flight datagrams abandoned) with the layer's scope. */
  static readonly layer = (options: SimNetworkOptions = {}): Layer.Layer<SimNetwork> =>
    Layer.scoped(SimNetwork, makeSimNetwork(options))
}

// ---------------------------------------------------------------------------
// Internals

const DiscoveryPortDefault = 12345
const BroadcastHostDefault = "10.0.255.255"
const UnicastPortBaseDefault = 7000
/** Automatic hosts are 10.0.x.y with y in 1..254: room for 254 * 255 nodes. */
const AutoHostsMax = 254 * 255

type DropCounts = Record<SimDropReason, number>

const zeroDrops = (): DropCounts => ({
  loss: 0,
  partition: 0,
  down: 0,
  "no-node": 0,
  closed: 0,
  overflow: 0
})

interface NodeCounters {
  sent: number
  delivered: number
  accepted: number
  readonly dropped: DropCounts
}

/** A node by name: what outlives its endpoints (host, down, conditions, counters). */
interface NodeState {
  readonly name: string
  host: string | undefined
  port: number | undefined
  down: boolean
  /** Index of its side in the current partition, if it is in one. */
  group: number | undefined
  conditions: Partial<LinkConditions>
  /** The live endpoint, if attached. */
  endpoint: Endpoint | undefined
  /** Resolved conditions of its links to each receiver; cleared when any condition changes. */
  readonly linkCache: Map<NodeState, LinkConditions>
  /** Latest arrival time scheduled on its link to each receiver: jitter never reorders a link. */
  readonly lastArrivalMs: Map<NodeState, number>
  readonly counters: NodeCounters
}

interface Endpoint {
  readonly node: NodeState
  readonly address: Address
  readonly listenDiscovery: boolean
  readonly receive: (bytes: Uint8Array, source: Address, nowMs: number) => SimReceipt
  closed: boolean
}

/** One scheduled copy of a datagram. */
interface Flight {
  /** The datagram's number: copies of one datagram (broadcast, duplicate) share it. */
  readonly number: number
  /** A duplicate ("#41'" in the trace). */
  readonly copy: boolean
  readonly from: NodeState
  readonly to: Endpoint
  readonly bytes: Uint8Array
  readonly source: Address
  readonly tag: string
}

const checkProbability = (name: string, value: number | undefined): string | undefined =>
  value === undefined || (value >= 0 && value <= 1) ? undefined : `${name} must be in [0, 1], got ${value}`

const checkMs = (name: string, value: number | undefined, min: number): string | undefined =>
  value === undefined || (Number.isInteger(value) && value >= min)
    ? undefined
    : `${name} must be an integer >= ${min}, got ${value}`

/** Conditions are programmer input: a bad value is a defect at the call, not a surprise later. */
const validate = (conditions: Partial<LinkConditions>): Effect.Effect<void> => {
  const problem =
    checkProbability("dropProbability", conditions.dropProbability) ??
    checkProbability("duplicateProbability", conditions.duplicateProbability) ??
    checkProbability("reorderProbability", conditions.reorderProbability) ??
    checkMs("delayMsMin", conditions.delayMsMin, 0) ??
    checkMs("delayMsMax", conditions.delayMsMax, 0) ??
    checkMs("reorderDelayMsMax", conditions.reorderDelayMsMax, 1)
  return problem === undefined ? Effect.void : Effect.dieMessage(`SimNetwork: ${problem}`)
}

/** Copies only the fields that are set: with exactOptionalPropertyTypes a spread could carry `undefined`. */
const definedOf = (conditions: Partial<LinkConditions>): Partial<LinkConditions> => {
  const out: { -readonly [K in keyof LinkConditions]?: number } = {}
  for (const key of Object.keys(conditions) as Array<keyof LinkConditions>) {
    const value = conditions[key]
    if (value !== undefined) out[key] = value
  }
  return out
}

const addressText = (address: Address): string => `${address.host}:${address.port}`

export const makeSimNetwork = (
  options: SimNetworkOptions = {}
): Effect.Effect<SimNetworkShape, never, Scope.Scope> =>
  Effect.gen(function* () {
    const discoveryPort = options.discoveryPort ?? DiscoveryPortDefault
    const broadcastHost = options.broadcastHost ?? BroadcastHostDefault
    const unicastPortBase = options.unicastPortBase ?? UnicastPortBaseDefault
    const initialDefault = options.link === undefined ? {} : definedOf(options.link)
    yield* validate(initialDefault)
    let defaults: LinkConditions = { ...linkConditionsDefault, ...initialDefault }
    const broadcastAddress: Address = { host: broadcastHost, port: discoveryPort }

    const scope = yield* Effect.scope
    const traceService = yield* Effect.serviceOption(SimTrace)
    const trace: SimTraceShape | undefined =
      (options.traceDatagrams ?? true) && Option.isSome(traceService) ? traceService.value : undefined

    const nodes = new Map<string, NodeState>()
    /** Live endpoints by host, then unicast port. */
    const unicast = new Map<string, Map<number, Endpoint>>()
    /** Live discovery listeners, in the order they attached: broadcasts go to them in this order. */
    const listeners: Array<Endpoint> = []
    const linkConditions = new Map<string, Map<string, Partial<LinkConditions>>>()
    const partitionOf = new Map<string, number>()
    const hostsTaken = new Set<string>()
    let autoHostNext = 0

    const totals = {
      sent: 0,
      duplicated: 0,
      delivered: 0,
      accepted: 0,
      filtered: 0,
      dropped: zeroDrops(),
      inFlight: 0
    }
    let datagramNext = 0

    /** Datagrams arriving at one instant, in the order they were sent; one timer each. */
    const arrivals = new Map<number, Array<Flight>>()

    const nodeOf = (name: string): NodeState => {
      let node = nodes.get(name)
      if (node === undefined) {
        node = {
          name,
          host: undefined,
          port: undefined,
          down: false,
          group: partitionOf.get(name),
          conditions: {},
          endpoint: undefined,
          linkCache: new Map(),
          lastArrivalMs: new Map(),
          counters: { sent: 0, delivered: 0, accepted: 0, dropped: zeroDrops() }
        }
        nodes.set(name, node)
      }
      return node
    }

    const record = (line: string): void => {
      if (trace !== undefined) trace.unsafeRecord(line)
    }

    const conditionsChanged = (): void => {
      for (const node of nodes.values()) node.linkCache.clear()
    }

    const resolve = (from: NodeState, to: NodeState): LinkConditions => {
      let resolved = from.linkCache.get(to)
      if (resolved === undefined) {
        const link = linkConditions.get(from.name)?.get(to.name) ?? {}
        const merged = { ...defaults, ...to.conditions, ...from.conditions, ...link }
        resolved =
          merged.delayMsMax < merged.delayMsMin ? { ...merged, delayMsMax: merged.delayMsMin } : merged
        from.linkCache.set(to, resolved)
      }
      return resolved
    }

    const cut = (a: NodeState, b: NodeState): boolean =>
      a.group !== undefined && b.group !== undefined && a.group !== b.group

    const countDrop = (to: NodeState | undefined, reason: SimDropReason): void => {
      totals.dropped[reason] += 1
      if (to !== undefined) to.counters.dropped[reason] += 1
    }

    // -- arrival ------------------------------------------------------------

    const arrive = (flight: Flight, nowMs: number, reports: Array<Effect.Effect<void>>): void => {
      totals.inFlight -= 1
      const receiver = flight.to.node
      const reason: SimDropReason | undefined = flight.to.closed
        ? "closed"
        : receiver.down
          ? "down"
          : cut(flight.from, receiver)
            ? "partition"
            : undefined
      if (reason !== undefined) {
        countDrop(receiver, reason)
        if (trace !== undefined) record(`${flightLine(flight)} dropped ${reason}`)
        return
      }
      totals.delivered += 1
      receiver.counters.delivered += 1
      const receipt = flight.to.receive(flight.bytes, flight.source, nowMs)
      if (receipt.report !== undefined) reports.push(receipt.report)
      if (receipt.outcome === "accepted") {
        totals.accepted += 1
        receiver.counters.accepted += 1
        if (trace !== undefined) record(`${flightLine(flight)} delivered`)
      } else if (receipt.outcome === "filtered") {
        totals.filtered += 1
        if (trace !== undefined) {
          const why = receipt.detail === undefined ? "" : ` (${receipt.detail})`
          record(`${flightLine(flight)} delivered, kept nothing${why}`)
        }
      } else {
        countDrop(receiver, "overflow")
        if (trace !== undefined) record(`${flightLine(flight)} dropped overflow`)
      }
    }

    const flightLine = (flight: Flight): string =>
      `net #${flight.number}${flight.copy ? "'" : ""} ${flight.from.name}>${flight.to.node.name} ${flight.tag}`

    /** Delivers the datagrams due at `atMs`; returns what their receivers left to an Effect. */
    const arriveAll = (atMs: number): Array<Effect.Effect<void>> => {
      const flights = arrivals.get(atMs)
      arrivals.delete(atMs)
      const reports: Array<Effect.Effect<void>> = []
      if (flights !== undefined) for (const flight of flights) arrive(flight, atMs, reports)
      return reports
    }

    // Reports of arrivals on bare timers run in a fiber of the runtime the network was built
    // in: its scheduler, clock and logger, so under `simulate` they stay deterministic.
    const runReports = Runtime.runFork(yield* Effect.runtime<never>())
    /** Bare timers on the virtual clock, by instant: cancelled when the network closes. */
    const bareTimers = new Map<number, SimTimer>()
    let virtualClock: VirtualClock | undefined

    /**
     * The timer of one arrival instant. On the virtual clock, a bare callback; on any other,
     * a fiber forked into the network's scope, interruptible even when the sender sent from
     * an uninterruptible region (a finalizer saying goodbye). Either outlives the sender, and
     * closing the network abandons it.
     */
    const timer = (clock: Clock.Clock, delayMs: number, atMs: number): Effect.Effect<void> => {
      if (clock instanceof VirtualClock) {
        virtualClock = clock
        const onArrival = (): void => {
          bareTimers.delete(atMs)
          const reports = arriveAll(atMs)
          if (reports.length > 0) runReports(Effect.all(reports, { discard: true }))
        }
        bareTimers.set(atMs, clock.unsafeSchedule(delayMs, onArrival))
        return Effect.void
      }
      return Effect.asVoid(
        Effect.forkIn(
          Effect.interruptible(
            Effect.zipRight(
              Effect.sleep(delayMs),
              Effect.suspend(() => Effect.all(arriveAll(atMs), { discard: true }))
            )
          ),
          scope
        )
      )
    }

    // -- send -----------------------------------------------------------------

    // The network's own generator, seeded from Effect's `Random` when the network is built:
    // the same seed gives the same faults, and drawing needs no Effect per datagram (the send
    // path is plain code, run once per message).
    const seedHi = yield* Random.nextIntBetween(0, 0x1_0000_0000)
    const seedLo = yield* Random.nextIntBetween(0, 0x1_0000_0000)
    const prng = new PCGRandom(seedHi, seedLo)
    const chance = (probability: number): boolean =>
      probability > 0 && (probability >= 1 || prng.number() < probability)
    /** A whole number of ms in [min, max]. */
    const between = (min: number, max: number): number =>
      max <= min ? min : min + Math.floor(prng.number() * (max - min + 1))

    /** Instants that got their first datagram during the current send: each needs a timer. */
    let timersNew: Array<number> = []

    /** Puts a copy on the wire to arrive at `atMs`; the first copy for an instant asks for a timer. */
    const schedule = (flight: Flight, atMs: number): void => {
      totals.inFlight += 1
      const pending = arrivals.get(atMs)
      if (pending !== undefined) {
        pending.push(flight)
        return
      }
      arrivals.set(atMs, [flight])
      timersNew.push(atMs)
    }

    /** The arrival time of one copy: jittered, never before the previous copy on its link unless reordered. */
    const arrivalOf = (from: NodeState, to: NodeState, conditions: LinkConditions, nowMs: number): number => {
      const delayMs = between(conditions.delayMsMin, conditions.delayMsMax)
      if (chance(conditions.reorderProbability)) {
        extraMsLast = between(1, conditions.reorderDelayMsMax)
        return nowMs + delayMs + extraMsLast
      }
      extraMsLast = 0
      const atMs = Math.max(nowMs + delayMs, from.lastArrivalMs.get(to) ?? 0)
      from.lastArrivalMs.set(to, atMs)
      return atMs
    }
    /** The extra delay `arrivalOf` gave its last copy (0: not reordered), for the trace. */
    let extraMsLast = 0

    const arrivalText = (atMs: number, extraMs: number, nowMs: number): string =>
      extraMs === 0 ? `+${atMs - nowMs}ms` : `+${atMs - nowMs - extraMs}+${extraMs}ms (reordered)`

    /** Decides the fate of one datagram to one receiver, at send. */
    const transmit = (
      number: number,
      sender: Endpoint,
      to: Endpoint,
      bytes: Uint8Array,
      tag: string,
      nowMs: number
    ): void => {
      const from = sender.node
      const receiver = to.node
      totals.sent += 1
      from.counters.sent += 1
      const reason: SimDropReason | undefined =
        from.down || receiver.down ? "down" : cut(from, receiver) ? "partition" : undefined
      if (reason !== undefined) {
        countDrop(receiver, reason)
        if (trace !== undefined) {
          record(
            `net #${number} ${from.name}>${receiver.name} ${tag} dropped ${reason}${from.down ? " (sender)" : ""}`
          )
        }
        return
      }
      const conditions = resolve(from, receiver)
      if (chance(conditions.dropProbability)) {
        countDrop(receiver, "loss")
        if (trace !== undefined) record(`net #${number} ${from.name}>${receiver.name} ${tag} dropped loss`)
        return
      }
      const atMs = arrivalOf(from, receiver, conditions, nowMs)
      const extraMs = extraMsLast
      schedule({ number, copy: false, from, to, bytes, source: sender.address, tag }, atMs)
      if (!chance(conditions.duplicateProbability)) {
        if (trace !== undefined) {
          record(
            `net #${number} ${from.name}>${receiver.name} ${tag} sent ${arrivalText(atMs, extraMs, nowMs)}`
          )
        }
        return
      }
      totals.duplicated += 1
      const copyAtMs = arrivalOf(from, receiver, conditions, nowMs)
      schedule({ number, copy: true, from, to, bytes, source: sender.address, tag }, copyAtMs)
      if (trace !== undefined) {
        record(
          `net #${number} ${from.name}>${receiver.name} ${tag} sent ${arrivalText(atMs, extraMs, nowMs)}, ` +
            `duplicate ${arrivalText(copyAtMs, extraMsLast, nowMs)}`
        )
      }
    }

    /** Sends one datagram to a unicast address, or to every discovery listener at the broadcast host. */
    const sendOne = (
      sender: Endpoint,
      to: Address,
      datagram: Uint8Array,
      tag: string,
      nowMs: number
    ): void => {
      datagramNext += 1
      const number = datagramNext
      // The network keeps its own copy: nothing the sender does later can change what arrives.
      const bytes = datagram.slice()
      if (to.host === broadcastHost) {
        if (to.port !== discoveryPort) return noNode(sender, number, to, tag)
        // Listeners that attach while it fans out (none can: this is plain code) would not get it.
        for (const receiver of listeners) transmit(number, sender, receiver, bytes, tag, nowMs)
        return
      }
      const receiver =
        to.port === discoveryPort
          ? listeners.find((listener) => listener.address.host === to.host)
          : unicast.get(to.host)?.get(to.port)
      if (receiver === undefined) return noNode(sender, number, to, tag)
      transmit(number, sender, receiver, bytes, tag, nowMs)
    }

    const noNode = (sender: Endpoint, number: number, to: Address, tag: string): void => {
      totals.sent += 1
      sender.node.counters.sent += 1
      countDrop(undefined, "no-node")
      record(`net #${number} ${sender.node.name}>${addressText(to)} ${tag} dropped no-node`)
    }

    /** Sends the datagrams of one message: plain code, and a timer for each new arrival instant. */
    const sendAll = (
      sender: Endpoint,
      to: Address,
      datagrams: ReadonlyArray<Uint8Array>,
      tag: string
    ): Effect.Effect<void> =>
      Effect.clockWith((clock) => {
        const nowMs = clock.unsafeCurrentTimeMillis()
        if (datagrams.length === 1) {
          const only = datagrams[0]
          if (only !== undefined) sendOne(sender, to, only, tag, nowMs)
        } else {
          for (const [index, datagram] of datagrams.entries()) {
            sendOne(sender, to, datagram, `${tag} ${index + 1}/${datagrams.length}`, nowMs)
          }
        }
        if (timersNew.length === 0) return Effect.void
        const instants = timersNew
        timersNew = []
        return instants.length === 1
          ? timer(clock, (instants[0] ?? nowMs) - nowMs, instants[0] ?? nowMs)
          : Effect.forEach(instants, (atMs) => timer(clock, atMs - nowMs, atMs), { discard: true })
      })

    // -- probe ----------------------------------------------------------------

    /** The answer of `to`'s host, decided when the probe arrives there: the probe or the answer may be lost. */
    const portClosedAt = (sender: Endpoint, to: Address, owner: NodeState | undefined): boolean => {
      if (owner === undefined || sender.closed || sender.node.down || owner.down || cut(sender.node, owner)) {
        return false
      }
      if (unicast.get(to.host)?.get(to.port) !== undefined) return false
      const { dropProbability } = resolve(sender.node, owner)
      return !chance(dropProbability) && !chance(dropProbability)
    }

    const probe = (sender: Endpoint, to: Address): Effect.Effect<boolean> =>
      Effect.suspend(() => {
        // The node that had this address last: its host tells whether anything is there.
        const owner = [...nodes.values()].find((node) => node.host === to.host && node.port === to.port)
        const roundTripMs = 2 * (owner === undefined ? 1 : resolve(sender.node, owner).delayMsMin)
        return Effect.zipRight(
          Effect.sleep(roundTripMs),
          Effect.sync(() => {
            const closed = portClosedAt(sender, to, owner)
            record(`net probe ${sender.node.name}>${addressText(to)} ${closed ? "port closed" : "no answer"}`)
            return closed
          })
        )
      })

    // -- attach / detach ----------------------------------------------------

    const autoHost = (): string => {
      while (autoHostNext < AutoHostsMax) {
        const index = autoHostNext
        autoHostNext += 1
        const host = `10.0.${Math.floor(index / 254)}.${(index % 254) + 1}`
        if (!hostsTaken.has(host) && host !== broadcastHost) return host
      }
      throw new Error(`SimNetwork: more than ${AutoHostsMax} automatic hosts`)
    }

    const portFree = (host: string, port: number): boolean =>
      port !== discoveryPort && unicast.get(host)?.get(port) === undefined

    const attach = (
      attachOptions: SimAttachOptions
    ): Effect.Effect<SimAttachment, SimBindError, Scope.Scope> =>
      Effect.gen(function* () {
        const node = nodeOf(attachOptions.name)
        if (node.endpoint !== undefined) {
          return yield* new SimBindError({
            node: node.name,
            address: addressText(node.endpoint.address),
            message: `a node named ${node.name} is already attached`
          })
        }
        const host = attachOptions.host ?? node.host ?? autoHost()
        if (host === broadcastHost) {
          return yield* new SimBindError({
            node: node.name,
            address: host,
            message: "the broadcast host is no node's host"
          })
        }
        let port = attachOptions.port
        if (port === undefined) {
          port =
            node.port !== undefined && node.host === host && portFree(host, node.port) ? node.port : undefined
          for (let candidate = unicastPortBase; port === undefined && candidate <= 65535; candidate++) {
            if (portFree(host, candidate)) port = candidate
          }
        }
        if (
          port === undefined ||
          !Number.isInteger(port) ||
          port < 1 ||
          port > 65535 ||
          !portFree(host, port)
        ) {
          return yield* new SimBindError({
            node: node.name,
            address: `${host}:${port}`,
            message: "address in use (or the discovery port, or not a port)"
          })
        }
        node.host = host
        node.port = port
        hostsTaken.add(host)
        const address: Address = { host, port }
        const endpoint: Endpoint = {
          node,
          address,
          listenDiscovery: attachOptions.listenDiscovery,
          receive: attachOptions.receive,
          closed: false
        }
        node.endpoint = endpoint
        let ports = unicast.get(host)
        if (ports === undefined) {
          ports = new Map()
          unicast.set(host, ports)
        }
        ports.set(port, endpoint)
        if (endpoint.listenDiscovery) listeners.push(endpoint)
        record(
          `net ${node.name} attached at ${addressText(address)}${endpoint.listenDiscovery ? " +discovery" : ""}`
        )

        yield* Effect.addFinalizer(() =>
          Effect.sync(() => {
            endpoint.closed = true
            if (node.endpoint === endpoint) node.endpoint = undefined
            unicast.get(host)?.delete(port)
            const index = listeners.indexOf(endpoint)
            if (index >= 0) listeners.splice(index, 1)
            record(`net ${node.name} detached from ${addressText(address)}`)
          })
        )

        const send = (to: Address, datagrams: ReadonlyArray<Uint8Array>, tag: string): Effect.Effect<void> =>
          sendAll(endpoint, to, datagrams, tag)

        return { address, send, probe: (to: Address) => probe(endpoint, to) }
      })

    // -- controls -----------------------------------------------------------

    const setDefaultLink = (conditions: Partial<LinkConditions>): Effect.Effect<void> =>
      Effect.zipRight(
        validate(conditions),
        Effect.sync(() => {
          defaults = { ...defaults, ...definedOf(conditions) }
          conditionsChanged()
          record(`net default link ${JSON.stringify(definedOf(conditions))}`)
        })
      )

    const setNode = (name: string, conditions: Partial<LinkConditions>): Effect.Effect<void> =>
      Effect.zipRight(
        validate(conditions),
        Effect.sync(() => {
          const node = nodeOf(name)
          node.conditions = { ...node.conditions, ...definedOf(conditions) }
          conditionsChanged()
          record(`net node ${name} ${JSON.stringify(definedOf(conditions))}`)
        })
      )

    const setLink = (from: string, to: string, conditions: Partial<LinkConditions>): Effect.Effect<void> =>
      Effect.zipRight(
        validate(conditions),
        Effect.sync(() => {
          let links = linkConditions.get(from)
          if (links === undefined) {
            links = new Map()
            linkConditions.set(from, links)
          }
          links.set(to, { ...links.get(to), ...definedOf(conditions) })
          conditionsChanged()
          record(`net link ${from}>${to} ${JSON.stringify(definedOf(conditions))}`)
        })
      )

    const resetConditions = Effect.sync(() => {
      defaults = { ...linkConditionsDefault, ...initialDefault }
      linkConditions.clear()
      for (const node of nodes.values()) node.conditions = {}
      conditionsChanged()
      record("net conditions reset")
    })

    const partition = (groups: ReadonlyArray<ReadonlyArray<string>>): Effect.Effect<void> =>
      Effect.suspend(() => {
        const next = new Map<string, number>()
        for (const [index, group] of groups.entries()) {
          for (const name of group) {
            if (next.has(name)) return Effect.dieMessage(`SimNetwork.partition: ${name} is in two groups`)
            next.set(name, index)
          }
        }
        partitionOf.clear()
        for (const [name, index] of next) partitionOf.set(name, index)
        for (const node of nodes.values()) node.group = partitionOf.get(node.name)
        record(`net partition ${groups.map((group) => `[${group.join(",")}]`).join(" ")}`)
        return Effect.void
      })

    const heal = Effect.sync(() => {
      partitionOf.clear()
      for (const node of nodes.values()) node.group = undefined
      record("net healed")
    })

    const setDown = (name: string, down: boolean): Effect.Effect<void> =>
      Effect.sync(() => {
        nodeOf(name).down = down
        record(`net ${name} ${down ? "down" : "up"}`)
      })

    const stats = Effect.sync(
      (): SimNetworkStats => ({
        sent: totals.sent,
        duplicated: totals.duplicated,
        delivered: totals.delivered,
        accepted: totals.accepted,
        filtered: totals.filtered,
        dropped: { ...totals.dropped },
        inFlight: totals.inFlight
      })
    )

    const nodeStats = (name: string): Effect.Effect<SimNodeStats> =>
      Effect.sync(() => {
        const counters = nodes.get(name)?.counters
        return counters === undefined
          ? { sent: 0, delivered: 0, accepted: 0, dropped: zeroDrops() }
          : { ...counters, dropped: { ...counters.dropped } }
      })

    const addressOf = (name: string): Effect.Effect<Option.Option<Address>> =>
      Effect.sync(() => Option.fromNullable(nodes.get(name)?.endpoint?.address))

    // Runs after the timer fibers' own finalizers (added later, run first) have interrupted them.
    yield* Effect.addFinalizer(() =>
      Effect.sync(() => {
        for (const bare of bareTimers.values()) virtualClock?.unsafeCancel(bare)
        bareTimers.clear()
        record(`net closed with ${totals.inFlight} datagrams in flight`)
      })
    )

    return SimNetwork.of({
      broadcastAddress,
      discoveryPort,
      setDefaultLink,
      setNode,
      setLink,
      resetConditions,
      partition,
      heal,
      down: (name) => setDown(name, true),
      up: (name) => setDown(name, false),
      addressOf,
      stats,
      nodeStats,
      attach
    })
  })
