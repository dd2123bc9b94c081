/**
 * A custom deployment built from Agora's public API: three servers in one
 * process, on the simulated network, replicating a state machine of our own —
 * a set of named counters — instead of auctions. The leader is killed halfway;
 * the counters survive. It runs on the simulation runtime, so the same seed
 * gives the same run (and the same trace hash) every time.
 *
 * `test/examples.test.ts` compiles and runs it (`npx vitest run test/examples.test.ts`).
 */
import { Clock, Effect, Either, Exit, Scope } from "effect"
import {
  Cluster,
  ClusterConfig,
  type Incarnation,
  LogStore,
  type ServerId,
  SimRuntime,
  type StateMachine,
  Transport,
  TransportSim
} from "../src/index.js"

/** Our state machine: named counters. `add` adds to one; a negative amount is refused. */
type Counters = Readonly<Record<string, number>>
interface Add {
  readonly name: string
  readonly amount: number
}

const counters: StateMachine<Counters, Add, Add, string> = {
  initial: {},
  decide: (_state, add) =>
    add.amount < 0 ? Either.left(`negative amount for ${add.name}`) : Either.right([add]),
  evolve: (state, add) => ({ ...state, [add.name]: (state[add.name] ?? 0) + add.amount }),
  encodeEvents: (events) => events,
  decodeEvents: (data) => Either.right(data as ReadonlyArray<Add>),
  holdsClientData: (state) => Object.keys(state).length > 0,
  encodeState: (state) => state,
  decodeState: (data) => Either.right(data as Counters)
}

const ids = ["a", "b", "c"] as const

/** Starts one server in its own scope: closing the scope is a crash. */
const startServer = (id: string, store: LogStore.MemoryStoreData) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const memory = LogStore.makeMemory(store)
    const stored = yield* Effect.orDie(memory.open)
    const incarnation = (stored.hard?.incarnation ?? `${id}-1`) as Incarnation
    const transport = yield* TransportSim.makeSim({
      identity: { role: "server", id: id as ServerId, incarnation },
      boot: stored.boot
    }).pipe(Effect.orDie, Scope.extend(scope))
    const cluster = yield* Cluster.makeCluster({
      id: id as ServerId,
      machine: counters,
      config: { ...ClusterConfig.defaultClusterConfig, expect: ids.length },
      stored,
      incarnation
    }).pipe(
      Scope.extend(scope),
      Effect.provideService(Transport.Transport, transport),
      Effect.provideService(LogStore.LogStore, memory)
    )
    return { id, scope, cluster }
  })

/** The workload: 30 additions, the leader killed after 15. Returns the final counters and when it ended. */
export const program = Effect.gen(function* () {
  const servers = new Map<string, Effect.Effect.Success<ReturnType<typeof startServer>>>(
    yield* Effect.forEach(ids, (id) =>
      Effect.map(startServer(id, LogStore.makeMemoryStoreData()), (server) => [id, server] as const)
    )
  )
  const leader = Effect.gen(function* () {
    while (true) {
      for (const server of servers.values()) {
        if ((yield* server.cluster.status).role === "leader") return server
      }
      yield* Effect.sleep(10)
    }
  })
  const add = (name: string, amount: number) =>
    Effect.gen(function* () {
      while (true) {
        const result = yield* Effect.either((yield* leader).cluster.propose({ name, amount }))
        if (Either.isRight(result)) return result.right.state
        yield* Effect.sleep(20)
      }
    })
  for (let i = 1; i <= 30; i++) {
    yield* add(i % 2 === 0 ? "even" : "odd", i)
    if (i === 15) {
      const killed = yield* leader
      servers.delete(killed.id)
      yield* Scope.close(killed.scope, Exit.void)
    }
  }
  const final = yield* Effect.flatMap(leader, (server) => server.cluster.read)
  return { counters: final, atMs: yield* Clock.currentTimeMillis }
}).pipe(Effect.scoped, Effect.provide(TransportSim.SimNetwork.layer()))

/** Runs the program on the simulation runtime (virtual time, seeded randomness). */
export const runExample = (seed: number) => SimRuntime.simulate(program, { seed })
