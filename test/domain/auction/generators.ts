/**
 * Random but plausible command sequences for property tests. A generated
 * `Plan` is resolved against the current state when it runs (pick a bidder
 * of that auction, bid for its current round, bid around its minimum), so
 * most commands succeed and auctions really reach their end, while the rest
 * exercise every refusal.
 */
import { Either, FastCheck, HashMap, Option } from "effect"
import {
  type AuctionCommand,
  type AuctionError,
  type AuctionEvent,
  type AuctionsState,
  decide,
  evolveAll,
  findAuction,
  initialState,
  type Phase,
  waitingBidders
} from "../../../src/domain/auction/index.js"
import { aid, sid, stateJson } from "./helpers.js"

const MAX = Number.MAX_SAFE_INTEGER

type Kind =
  | "create"
  | "join"
  | "start"
  | "cancel"
  | "bid"
  | "roundDeadline"
  | "startDeadline"
  | "sessionEnded"
  | "purge"

const weighted = (weights: Record<Kind, number>) =>
  FastCheck.oneof(
    ...Object.entries(weights).map(([kind, weight]) => ({
      arbitrary: FastCheck.constant(kind as Kind),
      weight
    }))
  )

const terms = FastCheck.record({
  item: FastCheck.oneof(
    { arbitrary: FastCheck.constant("Vase"), weight: 12 },
    FastCheck.constantFrom("", " Lamp ", "x".repeat(201))
  ),
  minBid: FastCheck.oneof(
    { arbitrary: FastCheck.integer({ min: 1, max: 20 }), weight: 12 },
    FastCheck.constantFrom(0, 1.5, Number.NaN, Number.POSITIVE_INFINITY, MAX - 3)
  ),
  minRounds: FastCheck.oneof(
    { arbitrary: FastCheck.integer({ min: 1, max: 3 }), weight: 12 },
    FastCheck.constantFrom(0, 101)
  ),
  minBidders: FastCheck.oneof(
    { arbitrary: FastCheck.integer({ min: 2, max: 3 }), weight: 12 },
    FastCheck.constant(1)
  ),
  roundTimeoutMs: FastCheck.oneof(
    { arbitrary: FastCheck.constant(1_000), weight: 12 },
    FastCheck.constant(0)
  ),
  startTimeoutMs: FastCheck.constant(2_000)
})

const amount = FastCheck.oneof(
  {
    arbitrary: FastCheck.record({
      relative: FastCheck.constant(true),
      value: FastCheck.integer({ min: -2, max: 6 })
    }),
    weight: 12
  },
  FastCheck.record({
    relative: FastCheck.constant(false),
    value: FastCheck.constantFrom(MAX - 2, MAX, 1e300, 1.5, Number.NaN, -1)
  })
)

export const plan = FastCheck.record({
  kind: weighted({
    create: 6,
    join: 16,
    start: 8,
    cancel: 1,
    bid: 40,
    roundDeadline: 5,
    startDeadline: 2,
    sessionEnded: 2,
    purge: 2
  }),
  auction: FastCheck.integer({ min: 1, max: 4 }),
  session: FastCheck.integer({ min: 1, max: 6 }),
  pickParticipant: FastCheck.oneof(
    { arbitrary: FastCheck.constant(true), weight: 4 },
    FastCheck.constant(false)
  ),
  round: FastCheck.integer({ min: 1, max: 4 }),
  currentRound: FastCheck.oneof(
    { arbitrary: FastCheck.constant(true), weight: 6 },
    FastCheck.constant(false)
  ),
  amount,
  advanceMs: FastCheck.integer({ min: 0, max: 1_500 }),
  terms
})
export type Plan = typeof plan extends FastCheck.Arbitrary<infer A> ? A : never

export const plans = FastCheck.array(plan, { minLength: 1, maxLength: 150, size: "max" })

const wanted: Record<Kind, ReadonlyArray<Phase>> = {
  create: [],
  join: ["waiting"],
  start: ["waiting"],
  cancel: ["waiting"],
  startDeadline: ["waiting"],
  bid: ["running"],
  roundDeadline: ["running"],
  sessionEnded: [],
  purge: ["closed", "cancelled"]
}

/** Mostly aim at an auction in a phase where the command can succeed, so sequences get somewhere. */
const target = (state: AuctionsState, p: Plan): number => {
  const all = [...HashMap.values(state.open), ...HashMap.values(state.history)].sort(
    (a, b) => a.auction - b.auction
  )
  const phases = wanted[p.kind]
  const fitting = all.filter((a) => phases.includes(a.phase))
  const candidates = fitting.length > 0 ? fitting : all
  return candidates[p.auction % Math.max(1, candidates.length)]?.auction ?? p.auction
}

/** The concrete command a plan stands for in this state. */
export const resolve = (state: AuctionsState, p: Plan): AuctionCommand => {
  const auction = aid(p.pickParticipant ? target(state, p) : p.auction)
  const found = findAuction(state, auction)
  const bidders = Option.match(found, {
    onNone: () => [],
    onSome: (a) => (a.phase === "waiting" ? waitingBidders(a) : a.bidders)
  })
  const auctioneer = Option.match(found, { onNone: () => sid(p.session), onSome: (a) => a.auctioneer })
  const participant =
    p.pickParticipant && bidders.length > 0
      ? (bidders[p.session % bidders.length] ?? sid(p.session))
      : sid(p.session)
  const round = Option.match(found, {
    onNone: () => p.round,
    onSome: (a) => (p.currentRound && a.phase === "running" ? a.round : p.round)
  })
  const minBid = Option.match(found, { onNone: () => 10, onSome: (a) => a.minBid })
  // Nothing to act on yet: open an auction first, mostly.
  const kind = p.pickParticipant && state.nextAuctionId === 1 ? "create" : p.kind
  switch (kind) {
    case "create":
      return { _tag: "CreateAuction", auctioneer: sid(p.session), ...p.terms }
    case "join":
      return { _tag: "JoinAuction", auction, bidder: sid(p.session) }
    case "start":
      return { _tag: "StartAuction", auction, by: p.pickParticipant ? auctioneer : sid(p.session) }
    case "cancel":
      return { _tag: "CancelAuction", auction, by: p.pickParticipant ? auctioneer : sid(p.session) }
    case "bid":
      return {
        _tag: "PlaceBid",
        auction,
        bidder: participant,
        round,
        amount: p.amount.relative ? minBid + p.amount.value : p.amount.value
      }
    case "roundDeadline":
      return { _tag: "RoundDeadline", auction, round }
    case "startDeadline":
      return { _tag: "StartDeadline", auction }
    case "sessionEnded":
      return { _tag: "SessionEnded", session: sid(p.session) }
    case "purge":
      return { _tag: "PurgeAuction", auction }
  }
}

export interface Trace {
  /** The state reached step by step. */
  readonly state: AuctionsState
  /** Every event, in order. */
  readonly log: ReadonlyArray<AuctionEvent>
  readonly refusals: ReadonlyArray<AuctionError>
  /** Problems seen while stepping (decide mutated the state, …): must stay empty. */
  readonly problems: ReadonlyArray<string>
}

/**
 * Run plans from the initial state. With `checkUnchanged`, check at each
 * step (via the JSON encoding) that deciding, accepted or refused, leaves
 * the state it was given exactly as it was.
 */
export const run = (ps: ReadonlyArray<Plan>, options: { readonly checkUnchanged?: boolean } = {}): Trace => {
  let state = initialState
  let nowMs = 1_700_000_000_000
  const log: Array<AuctionEvent> = []
  const refusals: Array<AuctionError> = []
  const problems: Array<string> = []
  let json = options.checkUnchanged ? stateJson(state) : ""
  for (const p of ps) {
    nowMs += p.advanceMs
    const command = resolve(state, p)
    const decision = decide(state, command, nowMs)
    if (options.checkUnchanged && stateJson(state) !== json) {
      problems.push(`deciding ${JSON.stringify(command)} changed the state`)
    }
    if (Either.isLeft(decision)) {
      refusals.push(decision.left)
    } else {
      state = evolveAll(state, decision.right)
      log.push(...decision.right)
      if (options.checkUnchanged) json = stateJson(state)
    }
  }
  return { state, log, refusals, problems }
}

/** Every auction id that appears in the state, open or ended. */
export const auctionIds = (state: AuctionsState) => [
  ...HashMap.keys(state.open),
  ...HashMap.keys(state.history)
]
