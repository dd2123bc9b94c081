/**
 * Shared test helpers for the auction domain: short id constructors, a
 * command runner that decides and evolves, and exact comparisons of
 * decisions (errors are compared by their encoded fields and message).
 */
import { expect } from "@effect/vitest"
import { Either, Schema } from "effect"
import {
  type AuctionCommand,
  AuctionError,
  type AuctionEvent,
  type AuctionsState,
  type CreateAuction,
  type Decision,
  decide,
  encodeState,
  evolveAll,
  initialState
} from "../../../src/domain/auction/index.js"
import { AuctionId, SessionId } from "../../../src/domain/Ids.js"
import * as Money from "../../../src/domain/Money.js"

export const sid = (n: number): SessionId => SessionId.make(n)
export const aid = (n: number): AuctionId => AuctionId.make(n)
export const money = (n: number): Money.Money => Money.unsafeMake(n)

/** The auctioneer of the auctions built by these helpers; bidders are sessions 11, 12, … */
export const auctioneer = sid(1)
export const bidder = (k: number): SessionId => sid(10 + k)

export const T0 = 1_700_000_000_000

export const createCommand = (overrides: Partial<Omit<CreateAuction, "_tag">> = {}): CreateAuction => ({
  _tag: "CreateAuction",
  auctioneer,
  item: "Vase",
  minBid: 10,
  minRounds: 2,
  minBidders: 2,
  roundTimeoutMs: 60_000,
  startTimeoutMs: 60_000,
  ...overrides
})

export const encodeError = Schema.encodeSync(AuctionError)

/** The JSON text of a state: equal states give equal text (maps are encoded sorted). */
export const stateJson = (state: AuctionsState): string => JSON.stringify(encodeState(state))

/** The events of an accepted decision; fails the test on a refusal. */
export const accepted = (decision: Decision): ReadonlyArray<AuctionEvent> => {
  if (Either.isLeft(decision)) {
    expect.fail(`expected the command to be accepted, got ${decision.left._tag}: ${decision.left.message}`)
  }
  return decision.right
}

/** The decision is exactly this refusal: same tag, fields and message. */
export const expectRefused = (decision: Decision, expected: AuctionError): void => {
  if (Either.isRight(decision)) {
    expect.fail(`expected ${expected._tag}, got events ${JSON.stringify(decision.right)}`)
  }
  expect(encodeError(decision.left)).toStrictEqual(encodeError(expected))
  expect(decision.left.message).toBe(expected.message)
}

/** A state and the events that led to it, step by step. */
export interface World {
  readonly state: AuctionsState
  readonly log: ReadonlyArray<AuctionEvent>
}

export const emptyWorld: World = { state: initialState, log: [] }

/** Decide and apply one command that must be accepted; returns its events too. */
export const step = (
  world: World,
  command: AuctionCommand,
  nowMs = T0
): World & { readonly events: ReadonlyArray<AuctionEvent> } => {
  const events = accepted(decide(world.state, command, nowMs))
  return { state: evolveAll(world.state, events), log: [...world.log, ...events], events }
}

/** Apply commands in order, each at `nowMs`. */
export const steps = (world: World, commands: ReadonlyArray<AuctionCommand>, nowMs = T0): World =>
  commands.reduce((w, command) => step(w, command, nowMs), world)

/** Auction 1 (by `auctioneer`) with `bidders` bidders joined (sessions 11, 12, …), still waiting. */
export const waitingWith = (bidders: number, overrides: Partial<Omit<CreateAuction, "_tag">> = {}): World =>
  steps(emptyWorld, [
    createCommand(overrides),
    ...Array.from({ length: bidders }, (_, k) => ({
      _tag: "JoinAuction" as const,
      auction: aid(1),
      bidder: bidder(k + 1)
    }))
  ])

/** Auction 1 with `bidders` bidders, started at T0: round 1 is open. */
export const runningWith = (bidders: number, overrides: Partial<Omit<CreateAuction, "_tag">> = {}): World =>
  step(waitingWith(bidders, { minBidders: Math.min(bidders, 2), ...overrides }), {
    _tag: "StartAuction",
    auction: aid(1),
    by: auctioneer
  })

export const bid = (k: number, round: number, amount: number, auction = 1): AuctionCommand => ({
  _tag: "PlaceBid",
  auction: aid(auction),
  bidder: bidder(k),
  round,
  amount
})
