/**
 * A server on its SQLite store restarted with its data dir (DESIGN §1
 * promises 1 and 3; §5 Checkpoints and recovery): it comes back with exactly
 * the committed state it had — auctions and client sessions — and keeps
 * serving the same clients.
 *
 * The auction service runs on the simulated network in the simulation
 * runtime, over `layerSqlite` in a temporary directory: better-sqlite3 is
 * synchronous, so the store's effects complete within a simulated instant.
 * (An interrupted write recovering to the committed prefix is
 * StoreSqlite.test.ts's business.)
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, HashMap, Layer, Scope } from "effect"
import { agoraMachine } from "../../src/domain/agora/Agora.js"
import { defaultClusterConfig } from "../../src/domain/cluster/Config.js"
import type { AuctionId, Incarnation, ServerId } from "../../src/domain/Ids.js"
import type { ClientOp } from "../../src/domain/Messages.js"
import { layerSqlite } from "../../src/layers/StoreSqlite.js"
import { makeSim } from "../../src/layers/TransportSim.js"
import {
  type AgoraCluster,
  defaultAuctionServerConfig,
  makeAuctionServer
} from "../../src/services/AuctionServer.js"
import { LogStore } from "../../src/services/LogStore.js"
import { Transport } from "../../src/services/Transport.js"
import { makeRawClient } from "../simulation/RawClient.js"
import { runScenario } from "../simulation/run.js"

const auction = 1 as AuctionId
const id = "s1" as ServerId
const bid = (round: number, amount: number): ClientOp => ({ _tag: "Bid", auction, round, amount })

/**
 * One life of server s1 on `<dataDir>/agora.db`: store, transport and auction
 * service in a scope of their own; closing it stops the server and closes the database.
 */
const serverLife = (dataDir: string) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layerSqlite({ dataDir }), scope)
    const store = Context.get(context, LogStore)
    const stored = yield* Effect.orDie(store.open)
    const incarnation = stored.hard?.incarnation ?? ("s1-incarnation" as Incarnation)
    const transport = yield* makeSim({
      identity: { role: "server", id, incarnation },
      boot: stored.boot
    }).pipe(Effect.orDie, Scope.extend(scope))
    const cluster = yield* makeAuctionServer({
      id,
      // A checkpoint every 4 entries: the restart reads a checkpoint and a log tail.
      cluster: { ...defaultClusterConfig, checkpointEntries: 4 },
      server: { ...defaultAuctionServerConfig, roundTimeoutMs: 60_000, startTimeoutMs: 60_000 },
      stored,
      incarnation
    }).pipe(
      Scope.extend(scope),
      Effect.provideService(Transport, transport),
      Effect.provideService(LogStore, store),
      Effect.annotateLogs({ node: id })
    )
    return { scope, cluster, stored }
  })

/** Waits (virtual time) until the server leads with its no-op committed. */
const awaitLeading = (cluster: AgoraCluster) =>
  Effect.gen(function* () {
    for (let waitedMs = 0; waitedMs < 10_000; waitedMs += 10) {
      const status = yield* cluster.status
      if (status.role === "leader" && status.commitSeq >= status.lastSeq) return status
      yield* Effect.sleep(10)
    }
    return yield* Effect.dieMessage("s1 never led")
  })

/** Everything the committed state holds, as its checkpoint encoding (auctions with their events, sessions). */
const committedState = (cluster: AgoraCluster) =>
  Effect.map(Effect.orDie(cluster.read), (state) => ({
    encoded: agoraMachine.encodeState(state),
    sessions: HashMap.size(state.sessions),
    open: HashMap.size(state.auctions.open)
  }))

/** Runs `use` on a fresh temporary data dir, removed afterwards. */
const inTempDataDir = (use: (dataDir: string) => void): void => {
  const dataDir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "agora-recovery-"))
  try {
    use(dataDir)
  } finally {
    Fs.rmSync(dataDir, { recursive: true, force: true })
  }
}

describe("a server restarted with its SQLite data dir (DESIGN §5, Checkpoints and recovery)", () => {
  it("comes back with the identical committed state (auctions, sessions) and keeps serving the same clients", () => {
    inTempDataDir((dataDir) => {
      const result = runScenario(
        Effect.gen(function* () {
          const first = yield* serverLife(dataDir)
          yield* awaitLeading(first.cluster)
          const alice = yield* makeRawClient("alice")
          const bob = yield* makeRawClient("bob")
          const carol = yield* makeRawClient("carol")
          for (const client of [alice, bob, carol]) yield* client.connect
          yield* alice.request({ _tag: "Create", item: "Vase", minBid: 10, minRounds: 2, minBidders: 2 })
          yield* bob.request({ _tag: "Join", auction })
          yield* carol.request({ _tag: "Join", auction })
          yield* alice.request({ _tag: "Start", auction })
          yield* bob.request(bid(1, 20))
          yield* carol.request(bid(1, 15))
          const bobRoundTwo = yield* bob.request(bid(2, 10))
          const before = yield* committedState(first.cluster)
          const beforeLog = yield* first.cluster.committedEntries(0)
          const beforeStatus = yield* first.cluster.status

          // The server stops; its data dir is all that is left.
          yield* Scope.close(first.scope, Exit.void)
          yield* Effect.sleep(1_000)
          const second = yield* serverLife(dataDir)
          yield* awaitLeading(second.cluster)
          const recovered = yield* committedState(second.cluster)
          const afterStatus = yield* second.cluster.status

          // The same sessions and tokens keep working: carol's bid completes round 2 and closes the auction.
          const carolRoundTwo = yield* carol.request(bid(2, 30))
          const bobRetry = yield* bob.request(bid(2, 99), bob.lastRequestId())
          const dave = yield* makeRawClient("dave")
          const daveSession = yield* dave.connect
          yield* Effect.sleep(1_000)
          const final = yield* Effect.orDie(second.cluster.read)
          const closed = HashMap.get(final.auctions.history, auction)
          yield* Scope.close(second.scope, Exit.void)
          return {
            before,
            recovered,
            beforeLogSeqs: beforeLog.map((entry) => entry.seq),
            beforeCommitSeq: beforeStatus.commitSeq,
            beforeEpoch: beforeStatus.epoch,
            reopened: {
              checkpointSeq: second.stored.checkpoint?.seq ?? 0,
              commitSeq: second.stored.hard?.commitSeq ?? 0,
              tail: second.stored.entries.map((entry) => entry.seq),
              group: second.stored.hard?.group,
              boot: second.stored.boot
            },
            firstGroup: first.stored.hard?.group,
            afterEpoch: afterStatus.epoch,
            bobRoundTwo,
            carolRoundTwo,
            bobRetry,
            daveSession,
            sessions: [alice.session(), bob.session(), carol.session()],
            bob: bob.session(),
            carol: carol.session(),
            carolLast: carol.notices(auction).at(-1),
            aliceLast: alice.notices(auction).at(-1),
            finalSessions: HashMap.size(final.sessions),
            finalOpen: HashMap.size(final.auctions.open),
            closed:
              closed._tag === "Some"
                ? { phase: closed.value.phase, events: closed.value.events.length }
                : null
          }
        }),
        { maxTimeMs: 120_000 }
      )
      // The store held a checkpoint and the committed tail after it, and the server got a new boot.
      expect(result.reopened.checkpointSeq).toBeGreaterThan(0)
      expect(result.reopened.commitSeq).toBe(result.beforeCommitSeq)
      expect(result.reopened.tail[0]).toBe(result.reopened.checkpointSeq + 1)
      expect(result.reopened.tail.at(-1)).toBeGreaterThanOrEqual(result.beforeCommitSeq)
      expect(result.reopened.boot).toBe(2)
      // Identical committed state: every auction with its events, every session with its last answer.
      expect(result.recovered.encoded).toEqual(result.before.encoded)
      expect(result.before.sessions).toBe(3)
      expect(result.before.open).toBe(1)
      expect(result.afterEpoch).toBeGreaterThan(result.beforeEpoch)
      // It keeps serving: old sessions and tokens, the client table (a retry gets its first answer).
      expect(result.bobRoundTwo).toEqual({ _tag: "BidAccepted", auction: 1, round: 2, amount: 10 })
      expect(result.carolRoundTwo).toEqual({ _tag: "BidAccepted", auction: 1, round: 2, amount: 30 })
      expect(result.bobRetry).toEqual(result.bobRoundTwo)
      expect(result.daveSession).toBe(Math.max(...result.sessions) + 1)
      expect(result.finalSessions).toBe(4)
      expect(result.finalOpen).toBe(0)
      // Created, 2 joined, ready check, started, 2 rounds of (started, 2 bids, completed), closed.
      expect(result.closed).toEqual({ phase: "closed", events: 14 })
      expect(result.carolLast).toMatchObject({
        _tag: "AuctionWonNotice",
        winner: result.carol,
        amount: 45,
        totals: [
          { bidder: result.bob, amount: 30 },
          { bidder: result.carol, amount: 45 }
        ]
      })
      expect(result.aliceLast).toMatchObject({
        _tag: "AuctionClosedNotice",
        winner: result.carol,
        amount: 45
      })
    })
  })

  it("comes back with its ended auctions, which its checkpoint keeps one per row of checkpoint_part", () => {
    inTempDataDir((dataDir) => {
      const result = runScenario(
        Effect.gen(function* () {
          const first = yield* serverLife(dataDir)
          yield* awaitLeading(first.cluster)
          const alice = yield* makeRawClient("alice")
          yield* alice.connect
          const create = (item: string) =>
            alice.request({ _tag: "Create", item, minBid: 10, minRounds: 1, minBidders: 2 })
          for (const [item, auction] of [
            ["Vase", 1],
            ["Lamp", 2],
            ["Clock", 3]
          ] as const) {
            yield* create(item)
            yield* alice.request({ _tag: "Cancel", auction: auction as AuctionId })
          }
          // More entries than checkpointEntries after the last cancel: a checkpoint holds all three.
          for (let i = 0; i < 5; i++) yield* create(`Rug ${i}`)
          const before = yield* committedState(first.cluster)
          yield* Scope.close(first.scope, Exit.void)
          const second = yield* serverLife(dataDir)
          yield* awaitLeading(second.cluster)
          const recovered = yield* committedState(second.cluster)
          const history = HashMap.size((yield* Effect.orDie(second.cluster.read)).auctions.history)
          yield* Scope.close(second.scope, Exit.void)
          return {
            before,
            recovered,
            history,
            parts: [...(second.stored.checkpoint?.state.parts.keys() ?? [])].sort()
          }
        }),
        { maxTimeMs: 60_000 }
      )
      expect(result.parts).toEqual(["1", "2", "3"])
      expect(result.history).toBe(3)
      expect(result.recovered.encoded).toEqual(result.before.encoded)
    })
  })
})
