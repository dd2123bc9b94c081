/**
 * The generated workload: each simulated client runs a loop of auction
 * operations, concurrent with the others and with the faults. It creates
 * auctions, lists and joins them, starts its own after the ready check, bids
 * in every round it is told of, and now and then does something wrong on
 * purpose (a bid too low, for the wrong round or twice; a join of an auction
 * that does not exist; a start or cancel of someone else's auction; an invalid
 * create; a request forged in another client's name), so refusals are
 * exercised as much as acceptances. Amounts come from a small set, so ties
 * (and the tie rule) are common.
 *
 * Once the network heals the clients only finish what is under way: bid in
 * running rounds, start or cancel their waiting auctions, so that every
 * auction can reach its end within a bound the checkers know.
 *
 * Every choice comes from the client's own seeded `Rng` and from what it has
 * seen, so a seed replays exactly. Every operation goes into the history.
 */
import { Clock, Effect } from "effect"
import type { AuctionId, SessionId } from "../../src/domain/Ids.js"
import type { ClientOp } from "../../src/domain/Messages.js"
import { recordTrace } from "../../src/layers/SimTrace.js"
import type { ClientRecord, History, OpRecord } from "./History.js"
import type { Rng } from "./Rng.js"
import type { Answer, WorkloadClient } from "./SimClient.js"

/** What the clients share: auction ids they have heard of, each other's sessions, the phase of the run. */
export interface Shared {
  readonly known: Map<number, { readonly auctioneer: number | null }>
  readonly sessions: Map<string, number>
  phase: "faults" | "quiesce" | "done"
  /** Virtual `now` at the start of the run, so records carry ms since the start. */
  readonly startMs: number
}

export interface WorkloadLimits {
  /** Auctions a client keeps waiting at once (it creates no more until one starts or ends). */
  readonly waitingPerClientMax: number
  /** Rounds of a created auction: 1..this. */
  readonly roundsMax: number
  /** Pause between a client's operations: uniform in [min, max] ms. */
  readonly pauseMsMin: number
  readonly pauseMsMax: number
}

export const workloadLimitsDefault: WorkloadLimits = {
  waitingPerClientMax: 2,
  roundsMax: 3,
  pauseMsMin: 20,
  pauseMsMax: 400
}

/** A request id far above any a client reaches by itself: forged requests use these. */
const forgedRequestIdBase = 1_000_000_000

interface Mine {
  readonly auction: number
  started: boolean
  readyChecked: boolean
  ended: boolean
}

interface Participation {
  readonly auction: number
  /** The session is a bidder (from `AuctionStartedNotice`). */
  bidder: boolean
  round: number
  minBid: number
  /** Rounds bid in (accepted or not). */
  readonly bidRounds: Set<number>
  /** The amount of an accepted bid per round, for a second (different) bid. */
  readonly accepted: Map<number, number>
  ended: boolean
}

const opText = (op: ClientOp): string => {
  switch (op._tag) {
    case "Create":
      return `Create(minBid ${op.minBid}, rounds ${op.minRounds}, bidders ${op.minBidders})`
    case "List":
      return `List(${op.page})`
    case "Bid":
      return `Bid(a${op.auction} r${op.round} ${op.amount})`
    default:
      return `${op._tag}(a${op.auction})`
  }
}

export const answerText = (answer: Answer | null): string =>
  answer === null
    ? "in flight"
    : answer === "timeout"
      ? "timeout"
      : answer._tag === "Failed"
        ? `Failed ${answer.code}`
        : answer._tag === "Auctions"
          ? `Auctions(${answer.auctions.length})`
          : answer._tag

/**
 * One client's whole life in the run: connect, then operations until the
 * phase is "done". Never fails: whatever happens is recorded.
 */
export const runClient = (
  client: WorkloadClient,
  rng: Rng,
  shared: Shared,
  history: History,
  limits: WorkloadLimits = workloadLimitsDefault
): Effect.Effect<void> =>
  Effect.gen(function* () {
    const record: ClientRecord = {
      name: client.name,
      deliveryKind: client.deliveryKind,
      session: null,
      deliveries: []
    }
    history.clients.push(record)
    const elapsed = Effect.map(Clock.currentTimeMillis, (nowMs) => nowMs - shared.startMs)
    const mine = new Map<number, Mine>()
    const parts = new Map<number, Participation>()
    const joined = new Set<number>()
    let seen = 0
    let invalidCount = 0
    let lastListMs = -1_000_000

    // Connect (servers may still be electing): keep trying while the run lasts.
    while (client.session() === null && shared.phase !== "done") {
      yield* client.connect(5_000)
    }
    const session = client.session()
    record.session = session
    if (session === null) return
    shared.sessions.set(client.name, session)
    yield* recordTrace(`sim client ${client.name} session ${session}`)

    const participation = (auction: number): Participation => {
      let part = parts.get(auction)
      if (part === undefined) {
        part = {
          auction,
          bidder: false,
          round: 0,
          minBid: 1,
          bidRounds: new Set(),
          accepted: new Map(),
          ended: false
        }
        parts.set(auction, part)
      }
      return part
    }

    /** Takes in the notifications that arrived since the last look. */
    const absorb = () => {
      const deliveries = client.deliveries()
      record.deliveries = deliveries
      for (; seen < deliveries.length; seen++) {
        const delivery = deliveries[seen]
        if (delivery === undefined) continue
        const notice = delivery.notice
        const part = participation(delivery.auction)
        const own = mine.get(delivery.auction)
        switch (notice._tag) {
          case "ReadyCheckNotice":
            if (own !== undefined) own.readyChecked = true
            else
              mine.set(delivery.auction, {
                auction: delivery.auction,
                started: false,
                readyChecked: true,
                ended: false
              })
            break
          case "AuctionStartedNotice":
            part.bidder = notice.bidders.includes(session)
            if (own !== undefined) own.started = true
            break
          case "RoundStartedNotice":
            if (notice.round > part.round) {
              part.round = notice.round
              part.minBid = notice.minBid
            }
            break
          case "AuctionCancelledNotice":
          case "AuctionWonNotice":
          case "AuctionLostNotice":
          case "AuctionClosedNotice":
            part.ended = true
            if (own !== undefined) own.ended = true
            break
          default:
            break
        }
      }
    }

    const perform = (op: ClientOp, forgeAs?: { readonly session: number }) =>
      Effect.gen(function* () {
        const invokeMs = yield* elapsed
        const record: OpRecord = {
          index: history.ops.length,
          client: client.name,
          session: forgeAs?.session ?? session,
          requestId: 0,
          op,
          forged: forgeAs !== undefined,
          invokeMs,
          endMs: null,
          result: null
        }
        history.ops.push(record)
        const forgedId = forgedRequestIdBase + record.index
        if (forgeAs !== undefined) record.requestId = forgedId
        const outcome =
          forgeAs === undefined
            ? yield* client.request(op, (requestId) => {
                record.requestId = requestId
              })
            : yield* client.forge(op, forgeAs.session as SessionId, forgedId)
        record.requestId = outcome.requestId
        record.endMs = yield* elapsed
        record.result = outcome.result
        yield* recordTrace(
          `sim op ${client.name}#${outcome.requestId}${forgeAs === undefined ? "" : ` forged as s${forgeAs.session}`} ${opText(op)} -> ${answerText(outcome.result)}`
        )
        return outcome.result
      })

    const learnFrom = (answer: Answer) => {
      if (answer === "timeout" || answer._tag !== "Auctions") return
      for (const row of answer.auctions) {
        shared.known.set(row.auction, { auctioneer: row.auctioneer })
        if (row.auctioneer === session && !mine.has(row.auction)) {
          mine.set(row.auction, {
            auction: row.auction,
            started: row.status !== "waiting",
            readyChecked: false,
            ended: row.status === "closed" || row.status === "cancelled"
          })
          client.track(row.auction)
        }
      }
    }

    /** Every page of the open auctions; returns them, or null when a page timed out. */
    const listAll = Effect.gen(function* () {
      const rows: Array<{
        auction: number
        status: string
        bidders: number
        minBidders: number
        auctioneer: number
      }> = []
      let page = 0
      for (let pages = 0; pages < 20; pages++) {
        const answer = yield* perform({ _tag: "List", page })
        if (answer === "timeout" || answer._tag !== "Auctions") return null
        learnFrom(answer)
        rows.push(...answer.auctions)
        if (answer.nextPage === null) return rows
        page = answer.nextPage
      }
      return rows
    })

    /** A bid for a round the client was told of: mostly valid, sometimes wrong on purpose. */
    const bidFor = (part: Participation) =>
      Effect.gen(function* () {
        const round = part.round
        part.bidRounds.add(round)
        const kind = rng.weighted({ valid: 86, skip: 4, low: 3, wrongRound: 3, twice: 4 })
        const amount = part.minBid + rng.pick([0, 0, 1, 1, 5, 10, 20])
        const auction = part.auction as AuctionId
        switch (kind) {
          case "skip":
            return
          case "low":
            if (part.minBid > 1) {
              yield* perform({ _tag: "Bid", auction, round, amount: part.minBid - 1 })
              return
            }
            break
          case "wrongRound":
            yield* perform({ _tag: "Bid", auction, round: round + rng.pick([1, 2]), amount })
            break
          default:
            break
        }
        const answer = yield* perform({ _tag: "Bid", auction, round, amount })
        if (answer !== "timeout" && answer._tag === "BidAccepted") part.accepted.set(round, amount)
        if (kind === "twice") yield* perform({ _tag: "Bid", auction, round, amount: amount + 1 })
      })

    /** Something the client must be refused for (the rules, not the network, say no). */
    const invalid = Effect.gen(function* () {
      invalidCount += 1
      const others = [...shared.known.entries()].filter(([, info]) => info.auctioneer !== session)
      const otherSessions = [...shared.sessions.entries()].filter(([name]) => name !== client.name)
      const kind = rng.weighted({
        badCreate: 2,
        joinMissing: 2,
        startOthers: 2,
        cancelOthers: 1,
        joinOwn: 1,
        startEarly: 1,
        forge: 2
      })
      switch (kind) {
        case "badCreate": {
          const which = rng.int(0, 3)
          yield* perform({
            _tag: "Create",
            item: `bad-${client.name}-${invalidCount}`,
            minBid: which === 0 ? 0 : 5,
            minRounds: which === 1 ? 0 : which === 2 ? 101 : 2,
            minBidders: which === 3 ? 1 : 2
          })
          return
        }
        case "joinMissing":
          yield* perform({ _tag: "Join", auction: (900_000 + rng.int(0, 99)) as AuctionId })
          return
        case "startOthers":
        case "cancelOthers": {
          if (others.length === 0) return
          const [auction] = rng.pick(others)
          yield* perform({ _tag: kind === "startOthers" ? "Start" : "Cancel", auction: auction as AuctionId })
          return
        }
        case "joinOwn":
        case "startEarly": {
          const own = [...mine.values()].filter((m) => !m.started && !m.ended)
          if (own.length === 0) return
          const auction = rng.pick(own).auction as AuctionId
          yield* perform(kind === "joinOwn" ? { _tag: "Join", auction } : { _tag: "Start", auction })
          return
        }
        case "forge": {
          if (otherSessions.length === 0) return
          const [, victim] = rng.pick(otherSessions)
          const target = [...shared.known.keys()]
          const auction = (target.length === 0 ? 1 : rng.pick(target)) as AuctionId
          yield* perform(
            rng.chance(0.5)
              ? { _tag: "Join", auction }
              : { _tag: "Create", item: `forged-${client.name}`, minBid: 1, minRounds: 1, minBidders: 2 },
            { session: victim }
          )
          return
        }
      }
    })

    /** What is due whatever the phase: bids for announced rounds, starts after a ready check. */
    const due = Effect.gen(function* () {
      for (const part of [...parts.values()].sort((a, b) => a.auction - b.auction)) {
        if (part.bidder && !part.ended && part.round > 0 && !part.bidRounds.has(part.round)) {
          yield* bidFor(part)
          return true
        }
      }
      for (const own of [...mine.values()].sort((a, b) => a.auction - b.auction)) {
        if (own.readyChecked && !own.started && !own.ended) {
          // Sometimes the auctioneer never confirms: the start timeout cancels the auction.
          own.started = true
          if (rng.chance(0.8)) yield* perform({ _tag: "Start", auction: own.auction as AuctionId })
          return true
        }
      }
      return false
    })

    const faultPhaseStep = Effect.gen(function* () {
      const waitingMine = [...mine.values()].filter((m) => !m.started && !m.ended).length
      const joinable = [...shared.known.entries()].filter(
        ([auction, info]) => info.auctioneer !== session && !joined.has(auction)
      )
      const action = rng.weighted({
        create: waitingMine < limits.waitingPerClientMax ? 14 : 0,
        join: joinable.length > 0 ? 30 : 0,
        list: 8,
        cancelOwn: waitingMine > 0 ? 2 : 0,
        invalid: 8,
        idle: 10
      })
      switch (action) {
        case "create": {
          const answer = yield* perform({
            _tag: "Create",
            item: `item-${client.name}-${history.ops.length}`,
            minBid: rng.int(1, 20),
            minRounds: rng.int(1, limits.roundsMax),
            minBidders: rng.int(2, Math.max(2, Math.min(3, shared.sessions.size - 1)))
          })
          if (answer !== "timeout" && answer._tag === "Created") {
            shared.known.set(answer.auction, { auctioneer: session })
            const own = mine.get(answer.auction)
            if (own === undefined) {
              mine.set(answer.auction, {
                auction: answer.auction,
                started: false,
                readyChecked: false,
                ended: false
              })
            }
            client.track(answer.auction)
          }
          return
        }
        case "join": {
          const [auction] = rng.pick(joinable)
          joined.add(auction)
          client.track(auction)
          yield* perform({ _tag: "Join", auction: auction as AuctionId })
          return
        }
        case "list": {
          const answer = yield* perform({ _tag: "List", page: 0 })
          learnFrom(answer)
          return
        }
        case "cancelOwn": {
          const own = [...mine.values()].filter((m) => !m.started && !m.ended)
          if (own.length === 0) return
          const target = rng.pick(own)
          const answer = yield* perform({ _tag: "Cancel", auction: target.auction as AuctionId })
          if (answer !== "timeout" && answer._tag === "Cancelled") target.ended = true
          return
        }
        case "invalid":
          yield* invalid
          return
        case "idle":
          return
      }
    })

    /**
     * After healing: every auction of ours still waiting is started (enough
     * bidders) or cancelled, found by listing, so none stays open forever.
     */
    const quiesceStep = Effect.gen(function* () {
      const nowMs = yield* elapsed
      if (nowMs - lastListMs < 2_000) return
      lastListMs = nowMs
      const rows = yield* listAll
      if (rows === null) return
      for (const row of rows) {
        if (row.auctioneer !== session || row.status !== "waiting") continue
        const own = mine.get(row.auction)
        if (row.bidders >= row.minBidders && own?.started !== true && rng.chance(0.5)) {
          if (own !== undefined) own.started = true
          yield* perform({ _tag: "Start", auction: row.auction as AuctionId })
        } else if (row.bidders < row.minBidders || own?.started === true) {
          yield* perform({ _tag: "Cancel", auction: row.auction as AuctionId })
        }
      }
    })

    // Read through a function: the run changes the phase while this loop sleeps.
    const phase = () => shared.phase
    while (phase() !== "done") {
      yield* Effect.sleep(rng.int(limits.pauseMsMin, limits.pauseMsMax))
      absorb()
      if (phase() === "done") break
      if (yield* due) continue
      if (phase() === "faults") yield* faultPhaseStep
      else yield* quiesceStep
    }
    absorb()
  })
