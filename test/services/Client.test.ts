/**
 * The `Client` service against fake leaders on the simulated network, under
 * `simulate` (virtual time, seeded Random): DESIGN §5 "Discovery", "Client
 * sessions", "Notifications and order"; promises 2 (in order, no gaps, no
 * repeats, across failover) and 5 (exactly-once requests, Timeout = maybe).
 *
 * A fake server is a small program on its own `layerSim` transport. Fake
 * servers of one test share one `FakeCluster`: the "replicated" client table
 * (sessions, highest request id and its answer per session: VR's client
 * table, with Agora's rules), the notice streams, and what each server saw.
 */
import { describe, expect, it } from "@effect/vitest"
import { Cause, Clock, Context, Effect, Exit, Layer, Logger, LogLevel, Option, Scope, Stream } from "effect"
import type { Notice } from "../../src/domain/auction/Notifications.js"
import type { Body } from "../../src/domain/Envelope.js"
import {
  AuctionId,
  ClientId,
  GroupId,
  Incarnation,
  ServerId,
  SessionId,
  SessionToken
} from "../../src/domain/Ids.js"
import type { ClientOp, LeaderInfo, ReplyResult } from "../../src/domain/Messages.js"
import * as Money from "../../src/domain/Money.js"
import type { Address } from "../../src/domain/Schemas.js"
import { simulate } from "../../src/layers/SimRuntime.js"
import { type LinkConditions, layerSim, makeSim, SimNetwork } from "../../src/layers/TransportSim.js"
import {
  Client,
  type ClientOptions,
  type ClientShape,
  type DeliveredNotice,
  type LeaderChange,
  layer
} from "../../src/services/Client.js"
import type { Incoming, TransportShape } from "../../src/services/Transport.js"

// ---------------------------------------------------------------------------
// Running

const run = <A, E>(
  program: Effect.Effect<A, E, SimNetwork | Scope.Scope>,
  options: { readonly seed?: number; readonly link?: Partial<LinkConditions> } = {}
): A => {
  const seed = options.seed ?? 1
  const result = simulate(
    program.pipe(
      Effect.scoped,
      Effect.provide(SimNetwork.layer({ link: options.link })),
      Logger.withMinimumLogLevel(LogLevel.Error)
    ),
    { seed, maxTimeMs: 600_000 }
  )
  if (Exit.isSuccess(result.exit)) return result.exit.value
  throw new Error(
    `simulation (seed ${seed}) ended ${result.ending} at +${result.elapsedMs} ms: ${Cause.pretty(result.exit.cause)}\n` +
      result.trace.lines.slice(-40).join("\n")
  )
}

/** Polls `condition` every 10 ms of virtual time; dies after `timeoutMs`. */
const until = (what: string, condition: () => boolean, timeoutMs = 30_000): Effect.Effect<void> =>
  Effect.gen(function* () {
    for (let waitedMs = 0; !condition(); waitedMs += 10) {
      if (waitedMs >= timeoutMs) return yield* Effect.dieMessage(`timed out waiting for ${what}`)
      yield* Effect.sleep(10)
    }
  })

// ---------------------------------------------------------------------------
// The fake cluster

interface FakeSession {
  readonly client: string
  readonly nonce: number
  readonly token: SessionToken
  readonly address: Address
  lastRequest: number
  answer: ReplyResult | null
  /** The answer of `lastRequest` is not "committed" yet: retries wait, as on a real leader. */
  answering: boolean
  /** The highest request id answered (for the one-in-flight check). */
  answeredMax: number
}

interface SeenRequest {
  readonly server: string
  readonly session: number
  readonly requestId: number
  readonly op: ClientOp
  /** The session's highest answered request id when this datagram arrived. */
  readonly answeredMax: number
}

interface FakeCluster {
  readonly sessions: Map<number, FakeSession>
  nextSession: number
  nextAuction: number
  /** Applications per `session/requestId`: exactly-once means every value is 1. */
  readonly applied: Map<string, number>
  readonly requests: Array<SeenRequest>
  readonly registers: Array<{ readonly server: string; readonly client: string; readonly nonce: number }>
  readonly subscribes: Array<{ readonly server: string; readonly auction: number; readonly fromSeq: number }>
  readonly acks: Array<{ readonly server: string; readonly auction: number; readonly seq: number }>
  readonly pings: Array<{ readonly server: string; readonly session: number }>
  /** Each auction's notice stream (index = seq - 1), and how far it is "committed" (what a Subscribe gets). */
  readonly streams: Map<number, ReadonlyArray<Notice>>
  readonly published: Map<number, number>
}

const makeCluster = (): FakeCluster => ({
  sessions: new Map(),
  nextSession: 1,
  nextAuction: 1,
  applied: new Map(),
  requests: [],
  registers: [],
  subscribes: [],
  acks: [],
  pings: [],
  streams: new Map(),
  published: new Map()
})

/** What a fake server does with a request id it has not decided yet. */
type Decision = "apply" | "ignore" | { readonly notLeader: LeaderInfo | null }

interface FakeOptions {
  readonly id: string
  readonly epoch: number
  readonly cluster: FakeCluster
  /** Answers `DiscoveryRequest` naming itself leader. Default true. */
  readonly leads?: boolean
  readonly decide?: (request: SeenRequest) => Decision
  /** Time between applying a request and answering it (its "commit"). Default 0. */
  readonly answerDelayMs?: number
}

interface FakeServer {
  readonly id: ServerId
  readonly address: Address
  readonly info: LeaderInfo
  /** Sends the given numbers of an auction's stream to the session's client, in this order; raises `published`. */
  readonly push: (session: number, auction: number, seqs: ReadonlyArray<number>) => Effect.Effect<void>
  /** Sends any body to the session's client. */
  readonly tell: (session: number, body: Body) => Effect.Effect<void>
  /** Crash: the transport detaches, the loop stops. */
  readonly stop: Effect.Effect<void>
}

const group = GroupId.make("g1")

/** The answer a fake server gives an applied operation. */
const answerOf = (cluster: FakeCluster, op: ClientOp): ReplyResult => {
  switch (op._tag) {
    case "Create": {
      const auction = AuctionId.make(cluster.nextAuction)
      cluster.nextAuction += 1
      return { _tag: "Created", auction }
    }
    case "List":
      return { _tag: "Auctions", auctions: [], nextPage: null }
    case "Join":
      return { _tag: "Joined", auction: op.auction }
    case "Start":
      return { _tag: "Started", auction: op.auction }
    case "Cancel":
      return { _tag: "Cancelled", auction: op.auction }
    case "Bid":
      return { _tag: "BidAccepted", auction: op.auction, round: op.round, amount: op.amount }
  }
}

const fakeServer = (options: FakeOptions): Effect.Effect<FakeServer, never, SimNetwork | Scope.Scope> =>
  Effect.gen(function* () {
    const { cluster, epoch } = options
    const id = ServerId.make(options.id)
    const scope = yield* Scope.make()
    // Its own scope, so the test can crash it; the test's scope closes it at the latest.
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const transport: TransportShape = yield* Scope.extend(
      Effect.orDie(
        makeSim({
          identity: { role: "server", id, incarnation: Incarnation.make(`${options.id}-1`) },
          boot: 1
        })
      ),
      scope
    )
    const info: LeaderInfo = { id, address: transport.address, epoch }
    const send = (to: Address, body: Body) => Effect.orDie(transport.send(to, { body, group, epoch }))

    const notify = (address: Address, auction: number, seq: number) => {
      const notice = cluster.streams.get(auction)?.[seq - 1]
      return notice === undefined
        ? Effect.void
        : send(address, { _tag: "Notify", auction: AuctionId.make(auction), seq, notices: [notice] })
    }

    const onRequest = (
      source: Address,
      body: Extract<Body, { readonly _tag: "Request" }>
    ): Effect.Effect<void, never, Scope.Scope> =>
      Effect.gen(function* () {
        const session = cluster.sessions.get(body.session)
        const seen: SeenRequest = {
          server: options.id,
          session: body.session,
          requestId: body.requestId,
          op: body.op,
          answeredMax: session?.answeredMax ?? 0
        }
        cluster.requests.push(seen)
        if (session === undefined) {
          return yield* send(source, {
            _tag: "Reply",
            requestId: body.requestId,
            result: { _tag: "Failed", code: "SessionExpired", message: "no such session" }
          })
        }
        if (session.token !== body.token) return
        // Lower: a stale duplicate, dropped unanswered. Equal: the stored answer (once committed).
        if (body.requestId < session.lastRequest) return
        if (body.requestId === session.lastRequest) {
          if (session.answering || session.answer === null) return
          return yield* send(source, { _tag: "Reply", requestId: body.requestId, result: session.answer })
        }
        const decision = options.decide?.(seen) ?? "apply"
        if (decision === "ignore") return
        if (decision !== "apply")
          return yield* send(source, { _tag: "NotLeader", leader: decision.notLeader })
        const key = `${body.session}/${body.requestId}`
        cluster.applied.set(key, (cluster.applied.get(key) ?? 0) + 1)
        const answer = answerOf(cluster, body.op)
        session.lastRequest = body.requestId
        session.answer = answer
        session.answering = true
        const answerNow = Effect.gen(function* () {
          session.answering = false
          session.answeredMax = Math.max(session.answeredMax, body.requestId)
          yield* send(source, { _tag: "Reply", requestId: body.requestId, result: answer })
        })
        const delayMs = options.answerDelayMs ?? 0
        if (delayMs === 0) return yield* answerNow
        yield* Effect.forkIn(Effect.zipRight(Effect.sleep(delayMs), answerNow), scope)
      })

    const handle = ({ envelope, source }: Incoming): Effect.Effect<void, never, Scope.Scope> =>
      Effect.gen(function* () {
        const body = envelope.body
        const from = envelope.from
        switch (body._tag) {
          case "DiscoveryRequest":
            if (from.role !== "client" || options.leads === false) return
            return yield* send(source, {
              _tag: "DiscoveryResponse",
              group,
              leader: info,
              bootstrapping: false
            })
          case "Register": {
            cluster.registers.push({ server: options.id, client: from.id, nonce: body.nonce })
            let found: number | undefined
            for (const [number, session] of cluster.sessions) {
              if (session.client === from.id && session.nonce === body.nonce) found = number
            }
            if (found === undefined) {
              found = cluster.nextSession
              cluster.nextSession += 1
              cluster.sessions.set(found, {
                client: from.id,
                nonce: body.nonce,
                token: SessionToken.make(`token-${found}`),
                address: source,
                lastRequest: 0,
                answer: null,
                answering: false,
                answeredMax: 0
              })
            }
            const session = cluster.sessions.get(found)
            if (session === undefined) return
            return yield* send(source, {
              _tag: "Registered",
              nonce: body.nonce,
              session: SessionId.make(found),
              token: session.token,
              leader: id
            })
          }
          case "Request":
            return yield* onRequest(source, body)
          case "Ping":
            cluster.pings.push({ server: options.id, session: body.session })
            return yield* send(source, { _tag: "Pong", leader: id, epoch })
          case "Subscribe": {
            cluster.subscribes.push({ server: options.id, auction: body.auction, fromSeq: body.fromSeq })
            const session = cluster.sessions.get(body.session)
            if (session === undefined || session.token !== body.token) return
            // Fills a gap only when asked: everything from fromSeq to what is committed.
            const last = cluster.published.get(body.auction) ?? 0
            for (let seq = body.fromSeq; seq <= last; seq++) yield* notify(source, body.auction, seq)
            return
          }
          case "NotifyAck":
            cluster.acks.push({ server: options.id, auction: body.auction, seq: body.seq })
            return
          default:
            return
        }
      })

    yield* Effect.forkIn(
      Stream.runForEach(transport.incoming, (incoming) => handle(incoming)),
      scope
    )

    return {
      id,
      address: transport.address,
      info,
      push: (session, auction, seqs) =>
        Effect.gen(function* () {
          const address = cluster.sessions.get(session)?.address
          if (address === undefined) return yield* Effect.dieMessage(`no session ${session}`)
          cluster.published.set(auction, Math.max(cluster.published.get(auction) ?? 0, ...seqs))
          for (const seq of seqs) yield* notify(address, auction, seq)
        }),
      tell: (session, body) =>
        Effect.gen(function* () {
          const address = cluster.sessions.get(session)?.address
          if (address === undefined) return yield* Effect.dieMessage(`no session ${session}`)
          yield* send(address, body)
        }),
      stop: Scope.close(scope, Exit.void)
    }
  })

// ---------------------------------------------------------------------------
// The client under test

interface TestClient {
  readonly client: ClientShape
  readonly notices: Array<DeliveredNotice>
  readonly leaderChanges: Array<LeaderChange>
}

const startClient = (
  id: string,
  options: Partial<ClientOptions> = {}
): Effect.Effect<TestClient, never, SimNetwork | Scope.Scope> =>
  Effect.gen(function* () {
    const clientId = ClientId.make(id)
    const transport = makeSimLayer(clientId)
    const context = yield* Layer.build(layer({ ...options, id: clientId }).pipe(Layer.provide(transport)))
    const client = Context.get(context, Client)
    const notices: Array<DeliveredNotice> = []
    const leaderChanges: Array<LeaderChange> = []
    yield* Effect.forkScoped(
      Stream.runForEach(client.notices, (n) => Effect.sync(() => void notices.push(n)))
    )
    yield* Effect.forkScoped(
      Stream.runForEach(client.leaderChanges, (c) => Effect.sync(() => void leaderChanges.push(c)))
    )
    return { client, notices, leaderChanges }
  })

/** A client's transport: its own identity, no discovery socket (a client only sends broadcasts). */
const makeSimLayer = (id: ClientId) =>
  Layer.orDie(layerSim({ identity: { role: "client", id }, boot: 0, listenDiscovery: false }))

const round = (auction: number, n: number): Notice => ({
  _tag: "RoundStartedNotice",
  auction: AuctionId.make(auction),
  round: n,
  minBid: Money.unsafeMake(10),
  deadlineMs: 60_000 * n
})

const bidReceived = (auction: number, n: number, bidder: number): Notice => ({
  _tag: "BidReceivedNotice",
  auction: AuctionId.make(auction),
  round: n,
  bidder: SessionId.make(bidder)
})

const roundCompleted = (auction: number, n: number, bidder: number, amount: number): Notice => ({
  _tag: "RoundCompletedNotice",
  auction: AuctionId.make(auction),
  round: n,
  bids: [{ bidder: SessionId.make(bidder), amount: Money.unsafeMake(amount) }]
})

const create = (item: string): ClientOp => ({ _tag: "Create", item, minBid: 10, minRounds: 3, minBidders: 2 })

const created = (auction: number): ReplyResult => ({ _tag: "Created", auction: AuctionId.make(auction) })

const lossy: Partial<LinkConditions> = {
  dropProbability: 0.3,
  duplicateProbability: 0.3,
  reorderProbability: 0.3,
  delayMsMin: 1,
  delayMsMax: 5
}

// ---------------------------------------------------------------------------

describe("Client — requests (DESIGN §1 promise 5, §5 Client sessions)", () => {
  it.each([1, 2, 3])(
    "under 30%% loss, duplication and reordering every request is answered, and applied exactly once (seed %i)",
    (seed) => {
      const value = run(
        Effect.gen(function* () {
          const cluster = makeCluster()
          yield* fakeServer({ id: "s1", epoch: 1, cluster })
          const { client } = yield* startClient("c1")
          const results: Array<ReplyResult> = []
          for (let i = 1; i <= 20; i++) results.push(yield* client.request(create(`item ${i}`)))
          return {
            results,
            applied: [...cluster.applied.entries()],
            datagrams: cluster.requests.length,
            sessions: [...cluster.sessions.keys()]
          }
        }),
        { seed, link: lossy }
      )
      // The fake numbers auctions as it applies: 1..20 in order means no request was applied twice or skipped.
      expect(value.results).toEqual(Array.from({ length: 20 }, (_, i) => created(i + 1)))
      expect(value.applied).toEqual(Array.from({ length: 20 }, (_, i) => [`1/${i + 1}`, 1]))
      // A retried Register (same nonce) found the same session.
      expect(value.sessions).toEqual([1])
      // Retries did happen (and duplicates arrived): more datagrams than requests.
      expect(value.datagrams).toBeGreaterThan(20)
    }
  )

  it("one request in flight: concurrent calls are sent one after the other, in call order", () => {
    const value = run(
      Effect.gen(function* () {
        const cluster = makeCluster()
        yield* fakeServer({ id: "s1", epoch: 1, cluster, answerDelayMs: 30 })
        const { client } = yield* startClient("c1")
        yield* client.connect
        const results = yield* Effect.all(
          Array.from({ length: 10 }, (_, i) => client.request(create(`item ${i + 1}`))),
          { concurrency: "unbounded" }
        )
        return {
          results,
          // Each datagram the leader saw: its request id and the highest id answered before it arrived.
          seen: cluster.requests.map((r) => [r.requestId, r.answeredMax])
        }
      })
    )
    expect(value.results).toEqual(Array.from({ length: 10 }, (_, i) => created(i + 1)))
    // Request k+1 arrives only after k was answered; answered within the retry interval, each is sent once.
    expect(value.seen).toEqual(Array.from({ length: 10 }, (_, i) => [i + 1, i]))
  })

  it("a full queue refuses at once with ClientBusy (nothing sent); the queued ones are served in order", () => {
    const value = run(
      Effect.gen(function* () {
        const cluster = makeCluster()
        yield* fakeServer({ id: "s1", epoch: 1, cluster, answerDelayMs: 30 })
        const { client } = yield* startClient("c1", { queueCapacity: 2 })
        yield* client.connect
        const first = yield* Effect.fork(client.request(create("first")))
        yield* Effect.sleep(5)
        const rest = yield* Effect.all(
          Array.from({ length: 4 }, (_, i) => Effect.either(client.request(create(`then ${i}`)))),
          { concurrency: "unbounded" }
        )
        return {
          first: yield* first,
          rest: rest.map((r) => (r._tag === "Right" ? r.right : r.left._tag)),
          items: cluster.requests.map((r) => (r.op._tag === "Create" ? r.op.item : r.op._tag))
        }
      })
    )
    expect(value.first).toEqual(created(1))
    expect(value.rest).toEqual([created(2), created(3), "ClientBusy", "ClientBusy"])
    expect(value.items).toEqual(["first", "then 0", "then 1"])
  })

  it("an unanswered request fails with Timeout after the request timeout, resent every retry interval with the same id", () => {
    const value = run(
      Effect.gen(function* () {
        const cluster = makeCluster()
        yield* fakeServer({ id: "s1", epoch: 1, cluster, decide: () => "ignore" })
        const { client } = yield* startClient("c1")
        yield* client.connect
        const startMs = yield* Clock.currentTimeMillis
        const outcome = yield* Effect.flip(client.request(create("vase")))
        return {
          outcome,
          elapsedMs: (yield* Clock.currentTimeMillis) - startMs,
          seen: cluster.requests.map((r) => [r.session, r.requestId])
        }
      })
    )
    expect(value.outcome).toMatchObject({ _tag: "Timeout", requestId: 1 })
    expect(value.elapsedMs).toBe(10_000)
    // Sent at 0, 500, …, 9,500 ms: 20 times, always as request 1 of session 1.
    expect(value.seen).toEqual(Array.from({ length: 20 }, () => [1, 1]))
  })

  it("Failed SessionExpired is reported as Timeout; the request is never resent under the new session", () => {
    const value = run(
      Effect.gen(function* () {
        const cluster = makeCluster()
        yield* fakeServer({ id: "s1", epoch: 1, cluster })
        const { client } = yield* startClient("c1")
        const connected = yield* client.connect
        // The cluster expired the session (say, after a long partition).
        cluster.sessions.delete(connected.session)
        const expired = yield* Effect.flip(client.request(create("vase")))
        const next = yield* client.request(create("lamp"))
        return {
          firstSession: connected.session,
          expired,
          next,
          session: Option.map(yield* client.connection, (c) => c.session),
          seen: cluster.requests.map((r) => [
            r.session,
            r.requestId,
            r.op._tag === "Create" ? r.op.item : ""
          ]),
          nonces: cluster.registers.map((r) => r.nonce)
        }
      })
    )
    expect(value.firstSession).toBe(1)
    expect(value.expired).toMatchObject({ _tag: "Timeout", requestId: 1 })
    // "vase" was never applied (its session was gone), so "lamp" creates auction 1.
    expect(value.next).toEqual(created(1))
    expect(value.session).toEqual(Option.some(2))
    expect(value.seen).toEqual([
      [1, 1, "vase"],
      [2, 2, "lamp"]
    ])
    // A new registration attempt, a new nonce (one higher).
    expect(value.nonces.length).toBe(2)
    expect((value.nonces[1] ?? 0) - (value.nonces[0] ?? 0)).toBe(1)
  })

  it("no leader within the request timeout: NotConnected, nothing sent", () => {
    const value = run(
      Effect.gen(function* () {
        const { client } = yield* startClient("c1", { requestTimeoutMs: 3_000 })
        const startMs = yield* Clock.currentTimeMillis
        const outcome = yield* Effect.flip(client.request(create("vase")))
        return { tag: outcome._tag, elapsedMs: (yield* Clock.currentTimeMillis) - startMs }
      })
    )
    expect(value).toEqual({ tag: "NotConnected", elapsedMs: 3_000 })
  })
})

describe("Client — leader changes (DESIGN §5 Client sessions, Discovery)", () => {
  it("NotLeader{leader: other} switches to the other server at once and gets its answer there", () => {
    const value = run(
      Effect.gen(function* () {
        const cluster = makeCluster()
        const s2 = yield* fakeServer({ id: "s2", epoch: 2, cluster, leads: false })
        yield* fakeServer({ id: "s1", epoch: 1, cluster, decide: () => ({ notLeader: s2.info }) })
        const t = yield* startClient("c1")
        const startMs = yield* Effect.zipRight(t.client.connect, Clock.currentTimeMillis)
        const first = yield* t.client.request(create("vase"))
        const elapsedMs = (yield* Clock.currentTimeMillis) - startMs
        const second = yield* t.client.request(create("lamp"))
        return {
          first,
          second,
          elapsedMs,
          seen: cluster.requests.map((r) => [r.server, r.requestId]),
          applied: [...cluster.applied.entries()],
          leaderChanges: t.leaderChanges,
          leader: Option.map(yield* t.client.connection, (c) => c.leader.id)
        }
      })
    )
    expect(value.first).toEqual(created(1))
    expect(value.second).toEqual(created(2))
    // Resent at once (two round trips of 1 ms links), not after the retry interval.
    expect(value.elapsedMs).toBe(4)
    expect(value.seen).toEqual([
      ["s1", 1],
      ["s2", 1],
      ["s2", 2]
    ])
    expect(value.applied).toEqual([
      ["1/1", 1],
      ["1/2", 1]
    ])
    expect(value.leaderChanges).toEqual([{ leader: "s2", epoch: 2 }])
    expect(value.leader).toEqual(Option.some("s2"))
  })

  it("NotLeader{leader: null} makes the client rediscover; it follows the higher epoch it finds", () => {
    const value = run(
      Effect.gen(function* () {
        const cluster = makeCluster()
        yield* fakeServer({ id: "s1", epoch: 1, cluster, decide: () => ({ notLeader: null }) })
        const t = yield* startClient("c1")
        yield* t.client.connect
        // A new leader appears; the client does not know yet (it is not broadcasting).
        yield* fakeServer({ id: "s2", epoch: 2, cluster })
        const result = yield* t.client.request(create("vase"))
        return {
          result,
          applied: [...cluster.applied.entries()],
          answeredBy: cluster.requests
            .filter((r) => cluster.applied.has(`${r.session}/${r.requestId}`))
            .at(-1)?.server,
          leaderChanges: t.leaderChanges
        }
      })
    )
    expect(value.result).toEqual(created(1))
    expect(value.applied).toEqual([["1/1", 1]])
    expect(value.answeredBy).toBe("s2")
    expect(value.leaderChanges).toEqual([{ leader: "s2", epoch: 2 }])
  })

  it("LeaderChanged of a higher epoch switches the target; a stale one of a lower epoch is ignored", () => {
    const value = run(
      Effect.gen(function* () {
        const cluster = makeCluster()
        const s1 = yield* fakeServer({ id: "s1", epoch: 1, cluster })
        const s2 = yield* fakeServer({ id: "s2", epoch: 2, cluster, leads: false })
        const t = yield* startClient("c1")
        yield* t.client.request(create("vase"))
        yield* s2.tell(1, { _tag: "LeaderChanged", leader: s2.info })
        yield* Effect.sleep(10)
        yield* t.client.request(create("lamp"))
        // A deposed leader's late announcement must not pull the client back.
        yield* s1.tell(1, { _tag: "LeaderChanged", leader: s1.info })
        yield* Effect.sleep(10)
        yield* t.client.request(create("bowl"))
        return {
          seen: cluster.requests.map((r) => [r.server, r.requestId]),
          leaderChanges: t.leaderChanges
        }
      })
    )
    expect(value.seen).toEqual([
      ["s1", 1],
      ["s2", 2],
      ["s2", 3]
    ])
    expect(value.leaderChanges).toEqual([{ leader: "s2", epoch: 2 }])
  })

  it("failover: the leader crashes, a new one answers discovery; requests continue and notifications resume from the last delivered seq", () => {
    const value = run(
      Effect.gen(function* () {
        const cluster = makeCluster()
        const auction = AuctionId.make(7)
        cluster.streams.set(7, [
          round(7, 1),
          roundCompleted(7, 1, 2, 40),
          round(7, 2),
          bidReceived(7, 2, 2),
          roundCompleted(7, 2, 1, 25)
        ])
        const s1 = yield* fakeServer({ id: "s1", epoch: 1, cluster })
        const t = yield* startClient("c1")
        yield* t.client.join(auction)
        yield* s1.push(1, 7, [1, 2, 3])
        yield* until("3 notices acknowledged", () => cluster.acks.some((a) => a.seq === 3))
        yield* s1.stop
        const crashedMs = yield* Clock.currentTimeMillis
        const s2 = yield* fakeServer({ id: "s2", epoch: 2, cluster })
        // Sent while nobody leads: retried, resent to s2 once the client finds it.
        const bid = yield* t.client.bid(auction, 25)
        const answeredAfterMs = (yield* Clock.currentTimeMillis) - crashedMs
        yield* s2.push(1, 7, [4, 5])
        yield* until("5 notices", () => t.notices.length === 5)
        return {
          bid,
          answeredAfterMs,
          seen: cluster.requests.map((r) => [r.server, r.requestId, r.op._tag]),
          applied: [...cluster.applied.entries()],
          subscribesAtS2: cluster.subscribes.filter((s) => s.server === "s2"),
          delivered: t.notices.map((n) => n.seq),
          leaderChanges: t.leaderChanges
        }
      })
    )
    // The round came from the last RoundStartedNotice delivered (seq 3: round 2).
    expect(value.bid).toEqual({ auction: 7, round: 2, amount: 25 })
    // Detection (3 silent ping intervals of 2 s) plus discovery: within the request timeout.
    expect(value.answeredAfterMs).toBeLessThan(10_000)
    expect(value.seen).toEqual([
      ["s1", 1, "Join"],
      ["s2", 2, "Bid"]
    ])
    expect(value.applied).toEqual([
      ["1/1", 1],
      ["1/2", 1]
    ])
    expect(value.subscribesAtS2).toEqual([{ server: "s2", auction: 7, fromSeq: 4 }])
    expect(value.delivered).toEqual([1, 2, 3, 4, 5])
    expect(value.leaderChanges).toEqual([{ leader: "s2", epoch: 2 }])
  })
})

describe("Client — notifications (DESIGN §1 promise 2, §5 Notifications and order)", () => {
  const stream5: ReadonlyArray<Notice> = [
    round(5, 1),
    bidReceived(5, 1, 2),
    bidReceived(5, 1, 3),
    roundCompleted(5, 1, 2, 40),
    round(5, 2),
    bidReceived(5, 2, 2),
    bidReceived(5, 2, 3),
    roundCompleted(5, 2, 3, 50),
    round(5, 3),
    bidReceived(5, 3, 2)
  ]

  it.each(["the notices stream", "onNotice"])(
    "reordered, duplicated, with gaps filled only on Subscribe: delivered exactly once each, in order (%s)",
    (via) => {
      const value = run(
        Effect.gen(function* () {
          const cluster = makeCluster()
          cluster.streams.set(5, stream5)
          const s1 = yield* fakeServer({ id: "s1", epoch: 1, cluster })
          const taken: Array<DeliveredNotice> = []
          const t = yield* startClient(
            "c1",
            via === "onNotice" ? { onNotice: (notice) => void taken.push(notice) } : {}
          )
          const delivered = () => (via === "onNotice" ? taken : t.notices)
          yield* t.client.join(AuctionId.make(5))
          yield* s1.push(1, 5, [2, 1, 1, 3, 5, 4, 4])
          yield* Effect.sleep(100)
          yield* s1.push(1, 5, [8, 7, 8]) // 6 is missing: sent only when asked
          yield* Effect.sleep(100)
          yield* s1.push(1, 5, [10, 10]) // 9 is missing
          yield* until("10 notices", () => delivered().length >= 10)
          // Late duplicates (the answers to every Subscribe) have all arrived by now.
          yield* Effect.sleep(3_000)
          return {
            delivered: delivered(),
            // With a callback every notice goes to it, and the stream stays empty.
            streamed: via === "onNotice" ? t.notices.length : 0,
            subscribes: cluster.subscribes.map((s) => s.fromSeq),
            lastAck: cluster.acks.at(-1)
          }
        })
      )
      expect(value.delivered).toEqual(stream5.map((notice, i) => ({ auction: 5, seq: i + 1, notice })))
      expect(value.streamed).toBe(0)
      // 2 before 1 → ask 1; 5 before 4 → ask 4; 8 without 6 → ask 6; 10 without 9 → ask 9.
      expect(value.subscribes).toEqual([1, 4, 6, 9])
      expect(value.lastAck).toEqual({ server: "s1", auction: 5, seq: 10 })
    }
  )

  it.each([1, 2, 3])(
    "30 notices shuffled over a lossy, duplicating, reordering network: exactly 1..30 in order (seed %i)",
    (seed) => {
      const value = run(
        Effect.gen(function* () {
          const cluster = makeCluster()
          const notices = Array.from({ length: 30 }, (_, i) =>
            bidReceived(9, 1 + Math.floor(i / 10), 2 + (i % 10))
          )
          cluster.streams.set(9, notices)
          const s1 = yield* fakeServer({ id: "s1", epoch: 1, cluster })
          const t = yield* startClient("c1")
          yield* t.client.join(AuctionId.make(9))
          // A fixed shuffle (a stride through 1..30), then the tail is resent until acknowledged,
          // as a real leader resends what is unacknowledged; gaps are filled only on Subscribe.
          const order = Array.from({ length: 30 }, (_, i) => ((i * 7) % 30) + 1)
          yield* s1.push(1, 9, order)
          const acked = () => cluster.acks.some((a) => a.seq === 30)
          for (let i = 0; i < 60 && !acked(); i++) {
            yield* Effect.sleep(500)
            if (!acked()) yield* s1.push(1, 9, [30])
          }
          yield* until("30 notices", () => t.notices.length >= 30)
          yield* Effect.sleep(3_000)
          return { delivered: t.notices.map((n) => [n.seq, n.notice]), subscribes: cluster.subscribes.length }
        }),
        { seed, link: lossy }
      )
      expect(value.delivered.map(([seq]) => seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
      // Lost notices were fetched with Subscribe (the fake sends a gap's notices only when asked).
      expect(value.subscribes).toBeGreaterThan(0)
      expect(value.delivered.map(([, notice]) => notice)).toEqual(
        Array.from({ length: 30 }, (_, i) => bidReceived(9, 1 + Math.floor(i / 10), 2 + (i % 10)))
      )
    }
  )

  it("bid without a round uses the round of the last RoundStartedNotice of that auction", () => {
    const value = run(
      Effect.gen(function* () {
        const cluster = makeCluster()
        cluster.streams.set(3, [round(3, 1), bidReceived(3, 1, 2), roundCompleted(3, 1, 2, 40), round(3, 2)])
        const s1 = yield* fakeServer({ id: "s1", epoch: 1, cluster })
        const t = yield* startClient("c1")
        const auction = AuctionId.make(3)
        yield* t.client.join(auction)
        const beforeAnyRound = yield* Effect.flip(t.client.bid(auction, 25))
        yield* s1.push(1, 3, [1])
        yield* until("round 1", () => t.notices.length === 1)
        const inRound1 = yield* t.client.bid(auction, 20)
        yield* s1.push(1, 3, [2, 3, 4])
        yield* until("round 2", () => t.notices.length === 4)
        const inRound2 = yield* t.client.bid(auction, 25)
        const explicit = yield* t.client.bid(auction, 30, 1)
        return {
          beforeAnyRound,
          inRound1,
          inRound2,
          explicit,
          currentRound: yield* t.client.currentRound(auction),
          bidsSent: cluster.requests.flatMap((r) => (r.op._tag === "Bid" ? [[r.op.round, r.op.amount]] : []))
        }
      })
    )
    expect(value.beforeAnyRound).toMatchObject({ _tag: "Refused", code: "WrongRound" })
    expect(value.inRound1).toEqual({ auction: 3, round: 1, amount: 20 })
    expect(value.inRound2).toEqual({ auction: 3, round: 2, amount: 25 })
    expect(value.explicit).toEqual({ auction: 3, round: 1, amount: 30 })
    expect(value.currentRound).toEqual(Option.some(2))
    // Nothing was sent for the bid without a known round.
    expect(value.bidsSent).toEqual([
      [1, 20],
      [2, 25],
      [1, 30]
    ])
  })
})
