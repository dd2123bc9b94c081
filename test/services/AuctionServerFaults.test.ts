/**
 * The auction service under faults (DESIGN §1 promises 2 and 5; §5 Client
 * sessions, Reads and refusals, Notifications and order, Timers across
 * failover), each scenario on three servers in the simulation runtime.
 */
import { describe, expect, it } from "@effect/vitest"
import { Clock, Effect, Fiber, HashMap, Option } from "effect"
import type { AgoraEvent } from "../../src/domain/agora/Agora.js"
import { agoraMachine } from "../../src/domain/agora/Agora.js"
import type { AuctionEvent } from "../../src/domain/auction/index.js"
import type { AuctionId, SessionId } from "../../src/domain/Ids.js"
import type { ClientOp, ReplyResult } from "../../src/domain/Messages.js"
import { SimNetwork } from "../../src/layers/TransportSim.js"
import { makeRawClient, type RawClient } from "../simulation/RawClient.js"
import { runScenario } from "../simulation/run.js"
import { committedPrefixViolations } from "../simulation/SimCluster.js"
import { agoraEventsOf, auctionEventsOf, serverIds, startAgoraCluster } from "../support/AgoraCluster.js"

const auction = 1 as AuctionId

const create = (minRounds: number, item = "Vase"): ClientOp => ({
  _tag: "Create",
  item,
  minBid: 10,
  minRounds,
  minBidders: 2
})
const bid = (round: number, amount: number): ClientOp => ({ _tag: "Bid", auction, round, amount })

/** alice (auctioneer), bob and carol connected; auction 1 created with `minRounds` rounds, bob and carol joined. */
const threeClients = (minRounds: number) =>
  Effect.gen(function* () {
    const alice = yield* makeRawClient("alice")
    const bob = yield* makeRawClient("bob")
    const carol = yield* makeRawClient("carol")
    for (const client of [alice, bob, carol]) yield* client.connect
    const created = yield* alice.request(create(minRounds))
    if (typeof created === "string" || created._tag !== "Created")
      return yield* Effect.dieMessage("create failed")
    for (const bidder of [bob, carol]) yield* bidder.request({ _tag: "Join", auction })
    return { alice, bob, carol }
  })

/** The committed log of the leader (every server's committed log is a prefix of it). */
const leaderLog = (cluster: Effect.Effect.Success<ReturnType<typeof startAgoraCluster>>["cluster"]) =>
  Effect.gen(function* () {
    const leader = yield* cluster.awaitLeader(10_000)
    return (yield* cluster.committedLogs).get(leader) ?? []
  })

/** The answer committed for (session, requestId), if any. */
const committedAnswer = (
  events: ReadonlyArray<{ readonly event: AgoraEvent }>,
  session: SessionId,
  requestId: number
): ReadonlyArray<ReplyResult> =>
  events.flatMap(({ event }) =>
    event._tag === "RequestAnswered" && event.session === session && event.requestId === requestId
      ? [event.answer]
      : []
  )

const roundsCompleted = (events: ReadonlyArray<{ readonly event: AuctionEvent }>, round: number) =>
  events.filter(({ event }) => event._tag === "RoundCompleted" && event.round === round)

/** Waits (virtual time) until `client` holds a notice of `auction` that `find` picks. */
const awaitNotice = <A>(client: RawClient, find: (notices: ReadonlyArray<unknown>) => A | undefined) =>
  Effect.gen(function* () {
    for (let waitedMs = 0; waitedMs < 30_000; waitedMs += 5) {
      const found = find(client.notices(auction))
      if (found !== undefined) return found
      yield* Effect.sleep(5)
    }
    return yield* Effect.dieMessage("notice never came")
  })

/**
 * What a client ends up delivering to its user: the in-order prefix of what
 * arrived, one notice per seq, and every arrival that contradicts the notice
 * first delivered under its seq (none allowed: every leader numbers alike).
 */
const deliveredStream = (client: RawClient) => {
  const first = new Map<number, string>()
  const contradictions: Array<string> = []
  for (const arrival of client.arrivals(auction)) {
    const text = JSON.stringify(arrival.notice)
    const seen = first.get(arrival.seq)
    if (seen === undefined) first.set(arrival.seq, text)
    else if (seen !== text) contradictions.push(`seq ${arrival.seq}: ${seen} then ${text}`)
  }
  const delivered: Array<{ readonly seq: number; readonly tag: string }> = []
  for (let seq = 1; first.has(seq); seq++) {
    const text = first.get(seq) ?? ""
    delivered.push({ seq, tag: (JSON.parse(text) as { _tag: string })._tag })
  }
  return { delivered, contradictions, highestSeq: Math.max(0, ...first.keys()) }
}

describe("Auction service under faults (DESIGN §1, §5)", () => {
  it("a client that missed notifications gets them in order, once, also from a new leader whose log a checkpoint truncated (DESIGN §5, Notifications and order)", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const network = yield* SimNetwork
        // A checkpoint every 3 entries: the entries of the notices bob misses are gone from every log.
        const { cluster, leader } = yield* startAgoraCluster({
          server: { roundTimeoutMs: 2_000 },
          cluster: { checkpointEntries: 3, catchUpEntries: 0 }
        })
        const { alice, bob, carol } = yield* threeClients(2)
        // Bob hears nothing from this leader from now on (his own datagrams still reach it).
        yield* network.setLink(leader, "bob", { dropProbability: 1 })
        const cutAtSeq = (yield* cluster.leaders)[0]?.commitSeq ?? 0
        yield* alice.request({ _tag: "Start", auction })
        yield* carol.request(bid(1, 15))
        // Round 1 completes at its deadline (bob silent): round 2 starts.
        yield* awaitNotice(carol, (notices) => (notices.length >= 5 ? true : undefined))
        yield* carol.request(bid(2, 30))
        // Let every follower apply all that: the new leader must have nothing new to tell, only what bob asks for.
        yield* Effect.sleep(300)
        const missedBeforeKill = bob.arrivals(auction).length
        yield* cluster.crash(leader)
        yield* network.resetConditions
        const survivors = serverIds.filter((id) => id !== leader)
        const newLeader = yield* cluster.awaitLeader(10_000, survivors)
        // The new leader's LeaderChanged tells bob where it is; he resubscribes from what he has (nothing).
        yield* Effect.sleep(500)
        const beforeResubscribe = bob.arrivals(auction).length
        yield* bob.subscribe(auction)
        yield* Effect.sleep(1_000)
        const afterResubscribe = deliveredStream(bob)
        // The new leader's log start: its committed entries begin right after it (none: it is at the commit point).
        const newLog = (yield* cluster.committedLogs).get(newLeader) ?? []
        const newCommitSeq =
          (yield* cluster.statuses).find((status) => status.id === newLeader)?.commitSeq ?? 0
        const newLogStartSeq = newLog[0] === undefined ? newCommitSeq : newLog[0].seq - 1
        // Then the auction goes on: bob's bid completes round 2 and closes it.
        const bobBid = yield* bob.request(bid(2, 10))
        yield* Effect.sleep(1_000)
        return {
          missedBeforeKill,
          beforeResubscribe,
          cutAtSeq,
          newLogStartSeq,
          afterResubscribe,
          bobBid,
          final: deliveredStream(bob),
          carol: carol.session(),
          bob: bob.session(),
          lastNotice: bob.notices(auction).at(-1),
          bobNotices: bob.notices(auction),
          carolNotices: carol.notices(auction)
        }
      })
    )
    expect(result.missedBeforeKill).toBe(0)
    // The new leader had nothing new to tell: what bob gets, he gets because he asked.
    expect(result.beforeResubscribe).toBe(0)
    // Every entry that told bob something is behind the new leader's checkpoint.
    expect(result.newLogStartSeq).toBeGreaterThanOrEqual(result.cutAtSeq + 4)
    const missed = [
      "AuctionStartedNotice",
      "RoundStartedNotice",
      "BidReceivedNotice",
      "RoundCompletedNotice",
      "RoundStartedNotice",
      "BidReceivedNotice"
    ]
    expect(result.afterResubscribe.contradictions).toEqual([])
    expect(result.afterResubscribe.delivered).toEqual(missed.map((tag, i) => ({ seq: i + 1, tag })))
    expect(result.afterResubscribe.highestSeq).toBe(missed.length)
    expect(result.bobBid).toEqual({ _tag: "BidAccepted", auction: 1, round: 2, amount: 10 })
    const all = [...missed, "BidReceivedNotice", "RoundCompletedNotice", "AuctionLostNotice"]
    expect(result.final.contradictions).toEqual([])
    expect(result.final.delivered).toEqual(all.map((tag, i) => ({ seq: i + 1, tag })))
    expect(result.final.highestSeq).toBe(all.length)
    // The same events, the same numbers: everything but the result reads as carol's stream does.
    expect(result.bobNotices.slice(0, -1)).toEqual(result.carolNotices.slice(0, -1))
    expect(result.lastNotice).toMatchObject({
      _tag: "AuctionLostNotice",
      winner: result.carol,
      amount: 45,
      totals: [
        { bidder: result.bob, amount: 10 },
        { bidder: result.carol, amount: 45 }
      ]
    })
  })

  it("a delayed duplicate of an older request (id k after k+1) is dropped: no answer, no effect (DESIGN §5, Client sessions)", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const { cluster, leader } = yield* startAgoraCluster()
        const alice = yield* makeRawClient("alice")
        yield* alice.connect
        const first = yield* alice.request(create(1))
        const k = alice.lastRequestId()
        const second = yield* alice.request(create(1, "Lamp"))
        const server = cluster.cluster(leader)
        if (server === undefined) return yield* Effect.dieMessage("no leader")
        const before = yield* Effect.orDie(server.read)
        const duplicate = yield* alice.request(create(1), k)
        const after = yield* Effect.orDie(server.read)
        const list = yield* alice.request({ _tag: "List", page: 0 })
        const session = Option.getOrUndefined(HashMap.get(after.sessions, alice.session()))
        const events = agoraEventsOf(yield* leaderLog(cluster))
        return {
          first,
          second,
          duplicate,
          repliesToK: alice.replies(k),
          before: agoraMachine.encodeState(before),
          after: agoraMachine.encodeState(after),
          list,
          session: { lastRequest: session?.lastRequest, answer: session?.answer },
          k,
          created: events.filter(
            ({ event }) => event._tag === "AuctionHappened" && event.event._tag === "AuctionCreated"
          ).length,
          answersToK: committedAnswer(events, alice.session(), k)
        }
      })
    )
    expect(result.first).toEqual({ _tag: "Created", auction: 1 })
    expect(result.second).toEqual({ _tag: "Created", auction: 2 })
    // Dropped unanswered: a stale id is neither decided again nor answered (its answer is gone).
    expect(result.duplicate).toBe("timeout")
    expect(result.repliesToK).toEqual([result.first])
    expect(result.after).toEqual(result.before)
    expect(result.session).toEqual({ lastRequest: result.k + 1, answer: result.second })
    expect(result.created).toBe(2)
    expect(result.answersToK).toEqual([result.first])
    expect(result.list).toMatchObject({
      _tag: "Auctions",
      auctions: [
        { auction: 1, item: "Vase" },
        { auction: 2, item: "Lamp" }
      ]
    })
  })

  it("a retry that arrives while its first copy is still pending is applied once, with one answer (DESIGN §5, Replication)", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const network = yield* SimNetwork
        const { cluster, leader } = yield* startAgoraCluster({ server: { roundTimeoutMs: 60_000 } })
        const { alice, bob } = yield* threeClients(1)
        yield* alice.request({ _tag: "Start", auction })
        // Slow replication: 140 ms each way between the leader and its followers, so an entry is
        // pending ~280 ms while bob resends every 100 ms; a round trip stays under the failure
        // timeout (300 ms), so nobody loses its leader meanwhile.
        for (const follower of serverIds.filter((id) => id !== leader)) {
          yield* network.setLink(leader, follower, { delayMsMin: 140, delayMsMax: 140 })
          yield* network.setLink(follower, leader, { delayMsMin: 140, delayMsMax: 140 })
        }
        const epochBefore = (yield* cluster.leaders).map((status) => `${status.id}@${status.epoch}`)
        const sentBefore = bob.requestsSent()
        const startMs = yield* Clock.currentTimeMillis
        const answer = yield* bob.request(bid(1, 20))
        const elapsedMs = (yield* Clock.currentTimeMillis) - startMs
        const epochAfter = (yield* cluster.leaders).map((status) => `${status.id}@${status.epoch}`)
        const k = bob.lastRequestId()
        const copies = bob.requestsSent() - sentBefore
        yield* network.resetConditions
        yield* Effect.sleep(500)
        const logs = yield* cluster.committedLogs
        const events = agoraEventsOf(logs.get(leader) ?? [])
        return {
          answer,
          elapsedMs,
          copies,
          replies: bob.replies(k),
          bidsPlaced: auctionEventsOf(logs.get(leader) ?? []).filter(
            ({ event }) => event._tag === "BidPlaced" && event.bidder === bob.session()
          ).length,
          answers: committedAnswer(events, bob.session(), k),
          epochBefore,
          epochAfter,
          leader
        }
      })
    )
    expect(result.answer).toEqual({ _tag: "BidAccepted", auction: 1, round: 1, amount: 20 })
    // One leader all along, and its entry was pending ≥ 280 ms: the copies bob sent every 100 ms
    // meanwhile reached it as retries of a pending request.
    expect(result.epochBefore).toEqual(result.epochAfter)
    expect(result.epochBefore).toHaveLength(1)
    expect(result.elapsedMs).toBeGreaterThanOrEqual(280)
    expect(result.copies).toBeGreaterThanOrEqual(3)
    expect(result.bidsPlaced).toBe(1)
    expect(result.answers).toEqual([result.answer])
    expect(result.replies.length).toBeGreaterThanOrEqual(1)
    for (const reply of result.replies) expect(reply).toEqual(result.answer)
  })

  it("a last bid racing the round deadline yields exactly one RoundCompleted for the round (DESIGN §5, Replication)", () => {
    const roundTimeoutMs = 3_000
    const race = (seed: number, offsetMs: number) =>
      runScenario(
        Effect.gen(function* () {
          const { cluster } = yield* startAgoraCluster({ server: { roundTimeoutMs } })
          const { alice, bob, carol } = yield* threeClients(2)
          yield* alice.request({ _tag: "Start", auction })
          yield* bob.request(bid(1, 20))
          const deadlineMs = yield* awaitNotice(carol, (notices) => {
            const started = notices.find(
              (n): n is { _tag: "RoundStartedNotice"; deadlineMs: number } =>
                (n as { _tag: string })._tag === "RoundStartedNotice"
            )
            return started?.deadlineMs
          })
          // Carol's last bid is sent to arrive `offsetMs` after the round's deadline (1 ms links).
          yield* Effect.sleep(Math.max(0, deadlineMs + offsetMs - 1 - (yield* Clock.currentTimeMillis)))
          const last = yield* carol.request(bid(1, 15))
          const roundTwoAnswers = [yield* bob.request(bid(2, 10)), yield* carol.request(bid(2, 30))]
          yield* Effect.sleep(500)
          const events = auctionEventsOf(yield* leaderLog(cluster))
          const completed = roundsCompleted(events, 1)
          return {
            last,
            roundOne: completed.length,
            roundTwo: roundsCompleted(events, 2).length,
            roundTwoAnswers,
            roundTwoBids: roundsCompleted(events, 2).flatMap(({ event }) =>
              event._tag === "RoundCompleted" ? event.bids.map((b) => b.amount) : []
            ),
            roundOneBids: completed[0]?.event._tag === "RoundCompleted" ? completed[0].event.bids : [],
            carol: carol.session(),
            closed: events.filter(({ event }) => event._tag === "AuctionClosed").length
          }
        }),
        { seed }
      )
    const outcomes: Array<string> = []
    for (const [index, offsetMs] of [-2, 0, 1, 2, 3, 4, 6].entries()) {
      for (const seed of [index + 1, index + 101]) {
        const run = race(seed, offsetMs)
        const label = `seed ${seed}, offset ${offsetMs} ms`
        expect(run.roundOne, label).toBe(1)
        expect(run.roundTwo, label).toBe(1)
        expect(run.closed, label).toBe(1)
        // Round 2 is untouched by the race: it starts once and completes with both bids.
        expect(run.roundTwoAnswers, label).toEqual([
          { _tag: "BidAccepted", auction: 1, round: 2, amount: 10 },
          { _tag: "BidAccepted", auction: 1, round: 2, amount: 30 }
        ])
        expect(run.roundTwoBids, label).toEqual([10, 30])
        const carolInRoundOne = run.roundOneBids.find((b) => b.bidder === run.carol)?.amount
        if (typeof run.last !== "string" && run.last._tag === "BidAccepted") {
          // Her bid won the race: it is in the round's result.
          expect(carolInRoundOne, label).toBe(15)
          outcomes.push("bid first")
        } else {
          // The deadline won: her late bid is refused and she bid 0.
          expect(run.last, label).toMatchObject({ _tag: "Failed", code: "WrongRound" })
          expect(carolInRoundOne, label).toBe(0)
          outcomes.push("deadline first")
        }
      }
    }
    // The sweep really raced: each side won at least once.
    expect(new Set(outcomes)).toEqual(new Set(["bid first", "deadline first"]))
  })

  it("a deposed leader's refusal never contradicts what the new leader applied (DESIGN §5, Reads and refusals)", () => {
    const scenario = (seed: number) =>
      runScenario(
        Effect.gen(function* () {
          const network = yield* SimNetwork
          const { cluster, leader } = yield* startAgoraCluster()
          const alice = yield* makeRawClient("alice")
          const bob = yield* makeRawClient("bob")
          yield* alice.connect
          yield* bob.connect
          yield* alice.request(create(1))
          const followers = serverIds.filter((id) => id !== leader)
          // The leader is cut off from its followers; clients still reach everyone.
          yield* network.partition([[leader], followers])
          // Alice's cancel reaches only the old leader, which appends it (pending, never committed)…
          const cancel = yield* Effect.fork(alice.request({ _tag: "Cancel", auction }))
          yield* Effect.sleep(20)
          yield* Fiber.interrupt(cancel)
          // …so on its pending state bob's join is refused (WrongPhase): that refusal must never reach bob.
          const join = yield* Effect.fork(bob.request({ _tag: "Join", auction }))
          yield* Effect.sleep(50)
          const old = (yield* cluster.statuses).find((status) => status.id === leader)
          const pendingAtOldLeader = old === undefined ? 0 : old.lastSeq - old.commitSeq
          const answer = yield* Fiber.join(join)
          const k = bob.lastRequestId()
          yield* network.heal
          const finalLeader = yield* cluster.awaitLeader(10_000)
          yield* Effect.sleep(1_000)
          const logs = yield* cluster.committedLogs
          const events = agoraEventsOf(logs.get(finalLeader) ?? [])
          return {
            pendingAtOldLeader,
            answer,
            replies: bob.replies(k),
            committed: committedAnswer(events, bob.session(), k),
            cancelled: auctionEventsOf(logs.get(finalLeader) ?? []).filter(
              ({ event }) => event._tag === "AuctionCancelled"
            ).length,
            prefixViolations: committedPrefixViolations(logs),
            finalLeader,
            leader
          }
        }),
        { seed }
      )
    for (const seed of [1, 2, 3]) {
      const run = scenario(seed)
      const label = `seed ${seed}`
      // Whatever bob was told for his join is what the history holds for it.
      for (const reply of run.replies) expect(reply, label).toEqual(run.committed[0])
      expect(run.answer, label).toEqual(run.committed[0])
      expect(run.committed, label).toEqual([{ _tag: "Joined", auction: 1 }])
      // The premises: the old leader had appended alice's cancel (on its pending state bob's join
      // was refused), and a new leader took over.
      expect(run.pendingAtOldLeader, label).toBeGreaterThanOrEqual(1)
      expect(run.finalLeader, label).not.toBe(run.leader)
      expect(run.cancelled, label).toBe(0)
      expect(run.prefixViolations, label).toEqual([])
    }
  })

  it("a deposed leader that appended an accepted bid but never heard the acks: one BidPlaced, the first answer everywhere (DESIGN §5, Reads and refusals)", () => {
    const result = runScenario(
      Effect.gen(function* () {
        const network = yield* SimNetwork
        const { cluster, leader } = yield* startAgoraCluster({ server: { roundTimeoutMs: 60_000 } })
        const { alice, bob } = yield* threeClients(1)
        yield* alice.request({ _tag: "Start", auction })
        const followers = serverIds.filter((id) => id !== leader)
        // The followers receive the leader's entries, but their acks never come back: it cannot commit.
        for (const follower of followers) yield* network.setLink(follower, leader, { dropProbability: 1 })
        const answer = yield* bob.request(bid(1, 20))
        const k = bob.lastRequestId()
        yield* network.resetConditions
        const finalLeader = yield* cluster.awaitLeader(10_000)
        yield* Effect.sleep(1_000)
        const logs = yield* cluster.committedLogs
        return {
          answer,
          replies: bob.replies(k),
          committed: committedAnswer(agoraEventsOf(logs.get(finalLeader) ?? []), bob.session(), k),
          bidsPlaced: auctionEventsOf(logs.get(finalLeader) ?? []).filter(
            ({ event }) => event._tag === "BidPlaced"
          ).length,
          prefixViolations: committedPrefixViolations(logs),
          deposed: finalLeader !== leader
        }
      })
    )
    expect(result.deposed).toBe(true)
    expect(result.committed).toEqual([{ _tag: "BidAccepted", auction: 1, round: 1, amount: 20 }])
    expect(result.answer).toEqual(result.committed[0])
    for (const reply of result.replies) expect(reply).toEqual(result.committed[0])
    expect(result.bidsPlaced).toBe(1)
    expect(result.prefixViolations).toEqual([])
  })

  it("deadlines are not shortened by a failover: the round completes roundTimeoutMs after DeadlinesRestarted at the earliest (DESIGN §5, Timers across failover)", () => {
    const roundTimeoutMs = 5_000
    const result = runScenario(
      Effect.gen(function* () {
        const { cluster, leader } = yield* startAgoraCluster({ server: { roundTimeoutMs } })
        const { alice, bob } = yield* threeClients(1)
        yield* alice.request({ _tag: "Start", auction })
        const roundStartedMs = yield* Clock.currentTimeMillis
        yield* bob.request(bid(1, 20))
        // Carol stays silent: only the deadline can complete the round.
        yield* Effect.sleep(3_000)
        const killMs = yield* Clock.currentTimeMillis
        const killSeq = (yield* cluster.leaders)[0]?.commitSeq ?? 0
        yield* cluster.crash(leader)
        const survivors = serverIds.filter((id) => id !== leader)
        // Watch the survivors' commit points every ms; look at what each newly committed entry holds.
        let restartedMs: number | null = null
        let completedMs: number | null = null
        let seenSeq = killSeq
        for (let waitedMs = 0; completedMs === null && waitedMs < 30_000; waitedMs++) {
          const commitSeq = Math.max(
            ...(yield* cluster.statuses).filter((s) => survivors.includes(s.id)).map((s) => s.commitSeq)
          )
          if (commitSeq > seenSeq) {
            const now = yield* Clock.currentTimeMillis
            const logs = yield* cluster.committedLogs
            const fresh = survivors
              .flatMap((id) => logs.get(id) ?? [])
              .filter((entry) => entry.seq > seenSeq && entry.seq <= commitSeq)
            for (const { event } of agoraEventsOf(fresh)) {
              if (event._tag === "DeadlinesRestarted") restartedMs ??= now
              if (event._tag === "AuctionHappened" && event.event._tag === "RoundCompleted")
                completedMs ??= now
            }
            seenSeq = commitSeq
          }
          yield* Effect.sleep(1)
        }
        return { roundStartedMs, killMs, restartedMs, completedMs }
      })
    )
    const { roundStartedMs, killMs, restartedMs, completedMs } = result
    if (restartedMs === null || completedMs === null)
      throw new Error(`never happened: ${JSON.stringify(result)}`)
    // The old deadline was roundStartedMs + 5 s; the kill came 3 s in.
    expect(killMs - roundStartedMs).toBeLessThan(roundTimeoutMs)
    expect(restartedMs).toBeGreaterThan(killMs)
    // Restarted in full from DeadlinesRestarted, never shortened…
    expect(completedMs - restartedMs).toBeGreaterThanOrEqual(roundTimeoutMs)
    expect(completedMs - killMs).toBeGreaterThan(roundTimeoutMs)
    // …and not forgotten either.
    expect(completedMs - restartedMs).toBeLessThan(roundTimeoutMs + 500)
  })
})
