/**
 * The leader decides and evolves ~20,000 bids/s and keeps 10,000+ ended
 * auctions: per event, decide and evolve must cost O(log n), never a copy of
 * all auctions or of an event list. Bounds are loose (CI machines vary);
 * the measured times are printed.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, HashMap } from "effect"
import {
  type AuctionCommand,
  type AuctionsState,
  decide,
  evolveAll,
  initialState,
  notificationsFor
} from "../../../src/domain/auction/index.js"
import { aid, auctioneer, bidder, createCommand, T0 } from "./helpers.js"

/** Decide and evolve; a refusal fails the test. Returns the new state and how many events it applied. */
const apply = (state: AuctionsState, command: AuctionCommand, nowMs: number): [AuctionsState, number] => {
  const decision = decide(state, command, nowMs)
  if (Either.isLeft(decision)) throw new Error(`${command._tag} refused: ${decision.left.message}`)
  return [evolveAll(state, decision.right), decision.right.length]
}

const fullAuction = (
  state: AuctionsState,
  auction: number,
  bidders: number,
  rounds: number,
  startMs: number
) => {
  let s = state
  let events = 0
  let n = 0
  const go = (command: AuctionCommand) => {
    const [next, count] = apply(s, command, startMs + n++)
    s = next
    events += count
  }
  go(createCommand({ minRounds: rounds, minBidders: Math.min(bidders, 1000) }))
  for (let k = 1; k <= bidders; k++) go({ _tag: "JoinAuction", auction: aid(auction), bidder: bidder(k) })
  go({ _tag: "StartAuction", auction: aid(auction), by: auctioneer })
  for (let round = 1; round <= rounds; round++) {
    for (let k = 1; k <= bidders; k++) {
      go({
        _tag: "PlaceBid",
        auction: aid(auction),
        bidder: bidder(k),
        round,
        amount: 10 + ((k * 7919 + round) % 500)
      })
    }
  }
  return { state: s, events }
}

describe("performance", () => {
  it("a 1,000-bidder, 3-round auction decides and evolves in seconds at most (a guard against quadratic work, not a benchmark)", () => {
    const started = performance.now()
    const { events, state } = fullAuction(initialState, 1, 1000, 3, T0)
    const elapsedMs = performance.now() - started
    console.log(
      `1,000 bidders × 3 rounds: ${events} events decided and evolved in ${elapsedMs.toFixed(1)} ms`
    )
    const ended = HashMap.unsafeGet(state.history, aid(1))
    expect(ended.phase).toBe("closed")
    expect(ended.events.length).toBe(events)
    expect(elapsedMs).toBeLessThan(10_000)

    // The notifier's pattern: after each event, each recipient's newest notice (fromSeq = stream length).
    const notifyStarted = performance.now()
    for (const session of [auctioneer, ...Array.from({ length: 1000 }, (_, k) => bidder(k + 1))]) {
      const { length } = notificationsFor(ended, session, 1, 0)
      expect(notificationsFor(ended, session, length).notifications).toHaveLength(1)
    }
    const whole = notificationsFor(ended, bidder(1), 1)
    const notifyMs = performance.now() - notifyStarted
    console.log(
      `newest notice for 1,001 participants + one whole stream of ${whole.length}: ${notifyMs.toFixed(1)} ms`
    )
    // From AuctionStarted on: the start, 3 round starts, 3,000 bids, 3 round ends, the close.
    expect(whole.length).toBe(1 + 3 + 3000 + 3 + 1)
    expect(notifyMs).toBeLessThan(5_000)
  })

  it("10,000 ended auctions in the history do not slow down deciding and evolving a bid", () => {
    let state = initialState
    const buildStarted = performance.now()
    for (let auction = 1; auction <= 10_000; auction++) {
      state = fullAuction(state, auction, 2, 1, T0).state
    }
    const buildMs = performance.now() - buildStarted
    expect(HashMap.size(state.history)).toBe(10_000)

    const bidsStarted = performance.now()
    const { events } = fullAuction(state, 10_001, 1000, 3, T0)
    const bidsMs = performance.now() - bidsStarted
    console.log(
      `10,000 small auctions (60,000 events) in ${buildMs.toFixed(0)} ms; then ${events} events of a 1,000-bidder auction in ${bidsMs.toFixed(1)} ms`
    )
    expect(buildMs).toBeLessThan(30_000)
    expect(bidsMs).toBeLessThan(10_000)
  })
})
