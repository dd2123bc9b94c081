/**
 * The fault plan of one seed, made before the run from the seed alone (so it
 * can be printed, and replays exactly), and the injector that applies it in
 * the simulation.
 *
 * Two independent strands:
 * - network segments, back to back over the fault phase: each sets the link
 *   conditions of every link (loss, duplication, reordering, delay, now and
 *   then a delay spike far above the failure timeout), maybe a spike on one
 *   node's links, and maybe a partition: the leader alone, a random split of
 *   servers (and clients) into two or three sides — with or without a
 *   majority anywhere —, a bridge (two servers cut from each other while both
 *   still reach the rest: not transitive), or one node's cable pulled;
 * - crashes: the leader or a random server is killed (its scope closed), with
 *   its store kept or lost, and restarted after a while. At most f servers are
 *   down at once (else the crash is skipped), and a store is lost only while
 *   the group is whole (every server up, every member a voter with its current
 *   incarnation, nothing else recovering): losing a second store before the
 *   first has rejoined could lose committed entries legitimately, which is not
 *   what we test. A skipped or downgraded fault is written in the timeline.
 */
import { Clock, Effect } from "effect"
import type { LinkConditions, SimNetworkShape } from "../../src/layers/SimNetwork.js"
import type { Rng } from "./Rng.js"

export type PartitionShape =
  | { readonly kind: "isolate-leader" }
  | { readonly kind: "groups"; readonly groups: ReadonlyArray<ReadonlyArray<string>> }
  | { readonly kind: "bridge"; readonly a: string; readonly b: string }
  | { readonly kind: "pull"; readonly node: string }

export interface Segment {
  readonly startMs: number
  readonly endMs: number
  readonly link: LinkConditions
  readonly spike: { readonly node: string; readonly link: Partial<LinkConditions> } | null
  readonly partition: PartitionShape | null
}

export interface CrashPlan {
  readonly atMs: number
  /** "leader": whoever leads at that moment. */
  readonly target: string
  readonly loseStore: boolean
  readonly downMs: number
}

export interface FaultPlan {
  readonly segments: ReadonlyArray<Segment>
  readonly crashes: ReadonlyArray<CrashPlan>
}

/** A LAN without faults: 1–3 ms, in order. */
export const calmLink: LinkConditions = {
  dropProbability: 0,
  delayMsMin: 1,
  delayMsMax: 3,
  duplicateProbability: 0,
  reorderProbability: 0,
  reorderDelayMsMax: 20
}

const round2 = (value: number) => Math.round(value * 100) / 100

const randomLink = (rng: Rng): LinkConditions => {
  const spike = rng.chance(0.12)
  const delayMsMin = spike ? rng.int(50, 300) : rng.int(1, 3)
  return {
    dropProbability: rng.chance(0.6) ? round2(rng.next() * 0.3) : 0,
    delayMsMin,
    delayMsMax: delayMsMin + (spike ? rng.int(0, 400) : rng.int(0, 8)),
    duplicateProbability: rng.chance(0.4) ? round2(rng.next() * 0.3) : 0,
    reorderProbability: rng.chance(0.4) ? round2(rng.next() * 0.3) : 0,
    reorderDelayMsMax: rng.int(5, 120)
  }
}

const randomPartition = (
  rng: Rng,
  servers: ReadonlyArray<string>,
  clients: ReadonlyArray<string>
): PartitionShape => {
  const kind = rng.weighted({ isolateLeader: 3, groups: 5, bridge: 2, pull: 2 })
  switch (kind) {
    case "isolateLeader":
      return { kind: "isolate-leader" }
    case "bridge": {
      const [a, b] = rng.shuffle(servers)
      return { kind: "bridge", a: a ?? "s1", b: b ?? "s2" }
    }
    case "pull":
      return { kind: "pull", node: rng.pick(rng.chance(0.75) ? servers : clients) }
    case "groups": {
      // Two or three sides; clients join a side or stay outside (reaching everyone).
      const sides = rng.chance(0.7) ? 2 : 3
      const groups: Array<Array<string>> = Array.from({ length: sides }, () => [])
      for (const [index, server] of rng.shuffle(servers).entries()) {
        // The first `sides` servers seed one side each, so no side is empty.
        groups[index < sides ? index : rng.int(0, sides - 1)]?.push(server)
      }
      for (const client of clients) {
        if (rng.chance(0.4)) groups[rng.int(0, sides - 1)]?.push(client)
      }
      return { kind: "groups", groups: groups.map((group) => [...group].sort()) }
    }
  }
}

/**
 * How a seed's faults are shaped: "mixed" (network trouble of every kind and
 * a crash every few seconds), or "crash-storm" (a calmer network, and a
 * server killed every fraction of a second, often right after it restarted,
 * so crashes land in elections and between a write and its acknowledgement),
 * or "churn" (the partition changes every few hundred ms, servers crash and
 * come back quickly: elections overlap, voters restart in the middle of one).
 */
export type FaultStyle = "mixed" | "crash-storm" | "churn"

/** The plan of one seed for a fault phase of `faultMs`. */
export const planFaults = (
  rng: Rng,
  faultMs: number,
  servers: ReadonlyArray<string>,
  clients: ReadonlyArray<string>,
  style: FaultStyle = "mixed"
): FaultPlan => {
  if (style === "crash-storm") return crashStorm(rng, faultMs, servers)
  if (style === "churn") return churn(rng, faultMs, servers, clients)
  const segments: Array<Segment> = []
  for (let startMs = 0; startMs < faultMs; ) {
    const endMs = Math.min(faultMs, startMs + rng.int(300, 5_000))
    const calm = rng.chance(0.2)
    segments.push({
      startMs,
      endMs,
      link: calm ? calmLink : randomLink(rng),
      spike:
        !calm && rng.chance(0.15)
          ? {
              node: rng.pick([...servers, ...clients]),
              link: { delayMsMin: rng.int(100, 500), delayMsMax: rng.int(500, 900) }
            }
          : null,
      partition: !calm && rng.chance(0.45) ? randomPartition(rng, servers, clients) : null
    })
    startMs = endMs
  }
  const crashes: Array<CrashPlan> = []
  const crashCount = rng.int(1, Math.max(1, Math.floor(faultMs / 3_000)))
  for (let index = 0; index < crashCount; index++) {
    crashes.push({
      atMs: rng.int(0, Math.max(0, faultMs - 500)),
      target: rng.chance(0.5) ? "leader" : rng.pick(servers),
      loseStore: rng.chance(0.3),
      downMs: rng.chance(0.2) ? rng.int(50, 400) : rng.int(400, 6_000)
    })
  }
  crashes.sort((a, b) => a.atMs - b.atMs)
  return { segments, crashes }
}

const crashStorm = (rng: Rng, faultMs: number, servers: ReadonlyArray<string>): FaultPlan => {
  const segments: Array<Segment> = []
  for (let startMs = 0; startMs < faultMs; ) {
    const endMs = Math.min(faultMs, startMs + rng.int(1_000, 5_000))
    segments.push({
      startMs,
      endMs,
      link: rng.chance(0.5)
        ? calmLink
        : { ...calmLink, dropProbability: round2(rng.next() * 0.1), delayMsMax: rng.int(3, 20) },
      spike: null,
      partition: rng.chance(0.2) ? { kind: "isolate-leader" } : null
    })
    startMs = endMs
  }
  const crashes: Array<CrashPlan> = []
  for (let atMs = rng.int(0, 500); atMs < faultMs - 200; atMs += rng.int(150, 1_200)) {
    crashes.push({
      atMs,
      target: rng.chance(0.5) ? "leader" : rng.pick(servers),
      loseStore: rng.chance(0.1),
      downMs: rng.int(30, 400)
    })
  }
  return { segments, crashes }
}

const churn = (
  rng: Rng,
  faultMs: number,
  servers: ReadonlyArray<string>,
  clients: ReadonlyArray<string>
): FaultPlan => {
  const segments: Array<Segment> = []
  for (let startMs = 0; startMs < faultMs; ) {
    const endMs = Math.min(faultMs, startMs + rng.int(200, 1_500))
    segments.push({
      startMs,
      endMs,
      link: { ...calmLink, dropProbability: rng.chance(0.3) ? round2(rng.next() * 0.1) : 0 },
      spike: null,
      partition: rng.chance(0.8) ? randomPartition(rng, servers, clients) : null
    })
    startMs = endMs
  }
  const crashes: Array<CrashPlan> = []
  for (let atMs = rng.int(0, 500); atMs < faultMs - 200; atMs += rng.int(300, 2_000)) {
    crashes.push({ atMs, target: rng.pick(servers), loseStore: false, downMs: rng.int(30, 600) })
  }
  return { segments, crashes }
}

const linkText = (link: Partial<LinkConditions>): string => {
  const parts: Array<string> = []
  if (link.dropProbability !== undefined && link.dropProbability > 0)
    parts.push(`loss ${link.dropProbability}`)
  if (link.duplicateProbability !== undefined && link.duplicateProbability > 0)
    parts.push(`dup ${link.duplicateProbability}`)
  if (link.reorderProbability !== undefined && link.reorderProbability > 0)
    parts.push(`reorder ${link.reorderProbability}/${link.reorderDelayMsMax ?? "?"}ms`)
  if (link.delayMsMin !== undefined)
    parts.push(`delay ${link.delayMsMin}-${link.delayMsMax ?? link.delayMsMin}ms`)
  return parts.join(" ")
}

export const partitionText = (shape: PartitionShape): string => {
  switch (shape.kind) {
    case "isolate-leader":
      return "leader alone"
    case "groups":
      return shape.groups.map((group) => `[${group.join(",")}]`).join(" | ")
    case "bridge":
      return `bridge ${shape.a}x${shape.b}`
    case "pull":
      return `cable of ${shape.node} pulled`
  }
}

/** The plan in a few lines, for the failure summary. */
export const describePlan = (plan: FaultPlan): ReadonlyArray<string> => [
  ...plan.segments
    .filter((segment) => segment.link !== calmLink || segment.partition !== null)
    .map(
      (segment) =>
        `${segment.startMs}-${segment.endMs}ms ${linkText(segment.link)}${segment.spike === null ? "" : `; spike on ${segment.spike.node} ${linkText(segment.spike.link)}`}${segment.partition === null ? "" : `; partition ${partitionText(segment.partition)}`}`
    ),
  ...plan.crashes.map(
    (crash) =>
      `${crash.atMs}ms crash ${crash.target}${crash.loseStore ? " (store lost)" : ""} for ${crash.downMs}ms`
  )
]

/** What the injector needs of the cluster. */
export interface FaultTarget {
  readonly servers: ReadonlyArray<string>
  readonly network: SimNetworkShape
  /** The server that leads now, if exactly one does. */
  readonly leader: Effect.Effect<string | null>
  readonly isRunning: (id: string) => boolean
  readonly crash: (id: string, loseStore: boolean) => Effect.Effect<void>
  readonly start: (id: string) => Effect.Effect<void>
  /** Whether a store may be lost now (see the module comment). */
  readonly wholeGroup: Effect.Effect<boolean>
  /** Appends to the run's timeline (and trace). */
  readonly note: (text: string) => Effect.Effect<void>
}

/**
 * Applies the plan from now on: both strands in parallel, each step at its
 * time. Returns when the fault phase (`faultMs`) is over; the caller heals.
 */
export const injectFaults = (
  plan: FaultPlan,
  faultMs: number,
  target: FaultTarget,
  rng: Rng
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const phaseStartMs = yield* Clock.currentTimeMillis
    const until = (atMs: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (nowMs) =>
        Effect.sleep(Math.max(0, phaseStartMs + atMs - nowMs))
      )
    const network = target.network
    const f = Math.floor((target.servers.length - 1) / 2)
    let lossAllowedAtMs = 0

    const segments = Effect.forEach(
      plan.segments,
      (segment) =>
        Effect.gen(function* () {
          yield* until(segment.startMs)
          yield* network.resetConditions
          yield* network.heal
          for (const name of target.servers) yield* network.up(name)
          yield* network.setDefaultLink(segment.link)
          if (segment.spike !== null) yield* network.setNode(segment.spike.node, segment.spike.link)
          const shape = segment.partition
          let applied = "no partition"
          if (shape !== null) {
            switch (shape.kind) {
              case "isolate-leader": {
                const leader = yield* target.leader
                if (leader !== null) {
                  yield* network.partition([[leader], target.servers.filter((id) => id !== leader)])
                  applied = `partition [${leader}] | rest`
                } else applied = "partition skipped (no leader)"
                break
              }
              case "groups":
                yield* network.partition(shape.groups)
                applied = `partition ${partitionText(shape)}`
                break
              case "bridge":
                yield* network.setLink(shape.a, shape.b, { dropProbability: 1 })
                yield* network.setLink(shape.b, shape.a, { dropProbability: 1 })
                applied = partitionText(shape)
                break
              case "pull":
                yield* network.down(shape.node)
                applied = partitionText(shape)
                break
            }
          }
          yield* target.note(
            `net ${linkText(segment.link)}${segment.spike === null ? "" : `; spike ${segment.spike.node}`}; ${applied}`
          )
        }),
      { discard: true }
    )

    const crashes = Effect.forEach(
      plan.crashes,
      (crash) =>
        Effect.gen(function* () {
          yield* until(crash.atMs)
          let id = crash.target
          if (id === "leader") {
            const leader = yield* target.leader
            const running = target.servers.filter(target.isRunning)
            id = leader ?? (running.length === 0 ? "" : rng.pick(running))
          }
          if (id === "" || !target.isRunning(id)) {
            return yield* target.note(`crash of ${crash.target} skipped (not running)`)
          }
          const downCount = target.servers.filter((server) => !target.isRunning(server)).length
          if (downCount >= f) {
            return yield* target.note(`crash of ${id} skipped (${downCount} already down)`)
          }
          let loseStore = crash.loseStore
          if (loseStore) {
            const nowMs = yield* Clock.currentTimeMillis
            if (nowMs < lossAllowedAtMs || !(yield* target.wholeGroup)) {
              loseStore = false
              yield* target.note(`store loss of ${id} downgraded to a crash (group not whole)`)
            } else {
              lossAllowedAtMs = nowMs + crash.downMs + 1_000
            }
          }
          yield* target.crash(id, loseStore)
          yield* target.note(`crash ${id}${loseStore ? " (store lost)" : ""}, down ${crash.downMs}ms`)
          yield* Effect.fork(
            Effect.gen(function* () {
              yield* Effect.sleep(crash.downMs)
              if (target.isRunning(id)) return
              yield* target.start(id)
              yield* target.note(`restart ${id}`)
            })
          )
        }),
      { discard: true }
    )

    yield* Effect.all([segments, crashes], { concurrency: 2, discard: true })
    yield* until(faultMs)
  })
