/**
 * A custom deployment built from Agora's public API: three servers in one
 * process, on the simulated network, replicating a state machine of our own —
 * a set of named counters — instead of auctions. The leader is killed halfway;
 * the counters survive. It runs on the simulation runtime, so the same seed
 * gives the same run (and the same trace hash) every time.
 *
 * `test/examples.test.ts` compiles and runs it (`npx vitest run test/examples.test.ts`).
 */
import { Clock, Context, Effect, Either, Exit, Layer, Scope } from "effect"
import {
  Cluster,
  ClusterConfig,
  LogStore,
  type ServerId,
  SimRuntime,
  type StateMachine,
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

/** Our cluster's Tag: the cluster is generic in its state machine, so a deployment names its own. */
const CountersCluster = Cluster.clusterTag<Counters, Add, string>("example/CountersCluster")

/**
 * One server as layers, in its own scope: the store (opened once: the transport needs its boot
 * counter and incarnation), the simulated transport, the cluster. Closing the scope is a crash.
 */
const startServer = (id: string, store: LogStore.MemoryStoreData) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const opened = LogStore.layerOpened(id as ServerId).pipe(Layer.provideMerge(LogStore.layerMemory(store)))
    const transport = Layer.unwrapEffect(
      Effect.map(LogStore.Opened, (server) =>
        TransportSim.layerSim({
          identity: { role: "server", id: server.id, incarnation: server.incarnation },
          boot: server.stored.boot
        })
      )
    )
    const server = Cluster.layer(CountersCluster, {
      machine: counters,
      config: { ...ClusterConfig.defaultClusterConfig, expect: ids.length }
    }).pipe(Layer.provide(transport), Layer.provide(opened))
    const context = yield* Layer.buildWithScope(server, scope).pipe(Effect.orDie)
    return { id, scope, cluster: Context.get(context, CountersCluster) }
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
