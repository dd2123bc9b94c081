/**
 * How much faster than real time the simulation runs (`npm run sim:speed`):
 * simulated milliseconds per real millisecond, wall and CPU, median of
 * `--runs` runs after two warm-ups, for
 * - bare transports heartbeating every 50 ms to every other node (3 and 5
 *   nodes, with and without a cluster key), the worst case of a few nodes'
 *   steady traffic;
 * - an idle group of real `Cluster` services (3 and 5 servers, default
 *   timings: a heartbeat every 50 ms, acks, no client), as the cluster
 *   simulator runs it between faults.
 * Options: --runs K (default 9), --seconds S of simulated time per run (default 60).
 */
import { Effect, Logger, LogLevel, Redacted, type Scope, Stream } from "effect"
import { Incarnation, ServerId } from "../../src/domain/Ids.js"
import { simulate } from "../../src/layers/SimRuntime.js"
import { makeSim, SimNetwork } from "../../src/layers/TransportSim.js"
import { counter } from "../support/Counter.js"
import { heartbeatAllToAll } from "../support/Heartbeating.js"
import { makeSimCluster } from "./SimCluster.js"

const optionOf = (name: string, fallback: number): number => {
  const index = process.argv.indexOf(name)
  const value = index < 0 ? fallback : Number(process.argv[index + 1])
  if (!(Number.isInteger(value) && value > 0)) {
    console.error(`${name} must be a positive integer`)
    process.exit(2)
  }
  return value
}
const runs = optionOf("--runs", 9)
const simulatedMs = optionOf("--seconds", 60) * 1000

/** Every node sends a heartbeat to every other node every 50 ms; each counts what it receives. */
const heartbeating = (count: number, keyed: boolean) =>
  Effect.gen(function* () {
    const clusterKey = keyed ? Redacted.make("speed test key") : undefined
    const nodes = yield* Effect.forEach(
      Array.from({ length: count }, (_, index) => `s${index + 1}`),
      (id) =>
        Effect.tap(
          makeSim({
            identity: { role: "server", id: ServerId.make(id), incarnation: Incarnation.make(`${id}-1`) },
            boot: 1,
            clusterKey
          }).pipe(Effect.orDie),
          (transport) => Effect.forkScoped(Stream.runDrain(transport.incoming))
        )
    )
    yield* heartbeatAllToAll(nodes)
    yield* Effect.sleep(simulatedMs)
  })

/** An idle group of `count` servers: formed, then heartbeating for the rest of the run. */
const idleGroup = (count: number) =>
  Effect.gen(function* () {
    const ids = Array.from({ length: count }, (_, index) => `s${index + 1}`)
    const cluster = yield* makeSimCluster({ ids, machine: counter, config: { expect: count } })
    yield* Effect.forEach(ids, (id) => cluster.start(id), { discard: true })
    yield* Effect.sleep(simulatedMs)
  })

const median = (values: ReadonlyArray<number>): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN
}

const measure = (name: string, program: Effect.Effect<void, never, SimNetwork | Scope.Scope>) => {
  const once = () => {
    const cpuStart = process.cpuUsage()
    const result = simulate(
      Effect.scoped(program).pipe(
        Effect.provide(SimNetwork.layer({ link: { delayMsMin: 1, delayMsMax: 3 } })),
        // As the simulator runs: errors only.
        Logger.withMinimumLogLevel(LogLevel.Error)
      ),
      { seed: 1, maxTimeMs: simulatedMs + 60_000 }
    )
    const cpu = process.cpuUsage(cpuStart)
    if (result.ending !== "completed") throw new Error(`${name}: the run ended ${result.ending}`)
    return { wall: simulatedMs / result.wallMs, cpu: simulatedMs / ((cpu.user + cpu.system) / 1000) }
  }
  once()
  once()
  const samples = Array.from({ length: runs }, once)
  const wall = samples.map((sample) => sample.wall)
  console.log(
    `${name.padEnd(48)} ${median(wall).toFixed(0).padStart(5)}x wall (${Math.min(...wall).toFixed(0)}–` +
      `${Math.max(...wall).toFixed(0)})  ${median(samples.map((sample) => sample.cpu))
        .toFixed(0)
        .padStart(5)}x CPU`
  )
}

console.log(
  `simulated time / real time, median of ${runs} runs of ${simulatedMs / 1000} s after 2 warm-ups (1–3 ms links)`
)
for (const count of [3, 5]) {
  measure(`${count} transports, all-to-all heartbeats, HMAC`, heartbeating(count, true))
  measure(`${count} transports, all-to-all heartbeats, no key`, heartbeating(count, false))
  measure(`${count} Cluster servers, idle group`, idleGroup(count))
}
