/**
 * `decide(state, command, nowMs)`: the auction rules of DESIGN §3 as a pure
 * function. The leader runs it on its pending state; the events it returns
 * are sequenced, replicated and applied with `evolve`; a refusal returns a
 * tagged error and no events, so it changes nothing.
 *
 * Time enters only as `nowMs` (the deciding leader's clock): it stamps the
 * creation and the round deadlines. Deadlines that pass arrive as commands
 * (`RoundDeadline`, `StartDeadline`) from the leader's timers, which own the
 * timing; decide only checks that the deadline still applies.
 *
 * The events of one decision must be committed together (one log entry): a
 * last bid and its `RoundCompleted` / `RoundStarted` are one step.
 */
import * as Either from "effect/Either"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import type { AuctionId } from "../Ids.js"
import * as Money from "../Money.js"
import type {
  AuctionCommand,
  CancelAuction,
  CreateAuction,
  JoinAuction,
  PlaceBid,
  PurgeAuction,
  RoundDeadline,
  SessionEnded,
  StartAuction,
  StartDeadline
} from "./Commands.js"
import {
  AlreadyBid,
  AlreadyJoined,
  type AuctionError,
  AuctioneerCannotBid,
  AuctionFull,
  AuctionNotFound,
  BidTooHigh,
  BidTooLow,
  InvalidRequest,
  NotAuctioneer,
  NotEnoughBidders,
  NotInAuction,
  WrongPhase,
  WrongRound
} from "./Errors.js"
import type { AuctionEvent, RoundCompleted } from "./Events.js"
import { evolveAuction } from "./evolve.js"
import { biddersMax, minRoundsMax, termsProblems } from "./Rules.js"
import type { Auction, AuctionsState, RunningAuction } from "./State.js"
import { findAuction, isBidder, waitingBidders } from "./State.js"
import { outcomeOf } from "./Winner.js"

export type Decision = Either.Either<ReadonlyArray<AuctionEvent>, AuctionError>

const refuse = (error: AuctionError): Decision => Either.left(error)
const accept = (...events: ReadonlyArray<AuctionEvent>): Decision => Either.right(events)

const find = (state: AuctionsState, auction: AuctionId): Either.Either<Auction, AuctionNotFound> =>
  Option.match(findAuction(state, auction), {
    onNone: () => Either.left(new AuctionNotFound({ auction })),
    onSome: Either.right
  })

/** `nowMs + timeoutMs`: both are checked, so the sum is a safe integer. */
const deadline = (nowMs: number, timeoutMs: number): number => {
  const deadlineMs = nowMs + timeoutMs
  if (!Number.isSafeInteger(deadlineMs)) {
    throw new Error(`deadline ${nowMs} + ${timeoutMs} is not a safe integer`)
  }
  return deadlineMs
}

const createAuction = (state: AuctionsState, command: CreateAuction, nowMs: number): Decision => {
  const problems = termsProblems(command)
  if (problems.length > 0) return refuse(new InvalidRequest({ message: problems.join("; ") }))
  return accept({
    _tag: "AuctionCreated",
    auction: state.nextAuctionId,
    auctioneer: command.auctioneer,
    item: command.item.trim(),
    minBid: Money.unsafeMake(command.minBid),
    minRounds: command.minRounds,
    minBidders: command.minBidders,
    roundTimeoutMs: command.roundTimeoutMs,
    startTimeoutMs: command.startTimeoutMs,
    createdAtMs: nowMs
  })
}

const joinAuction = (state: AuctionsState, command: JoinAuction): Decision =>
  Either.flatMap(find(state, command.auction), (auction): Decision => {
    if (command.bidder === auction.auctioneer) {
      return refuse(new AuctioneerCannotBid({ auction: auction.auction, session: command.bidder }))
    }
    if (isBidder(auction, command.bidder)) {
      return refuse(new AlreadyJoined({ auction: auction.auction, bidder: command.bidder }))
    }
    if (auction.phase !== "waiting") {
      return refuse(new WrongPhase({ auction: auction.auction, phase: auction.phase }))
    }
    const bidders = HashMap.size(auction.bidders) + 1
    if (bidders > biddersMax) return refuse(new AuctionFull({ auction: auction.auction, biddersMax }))
    const joined: AuctionEvent = { _tag: "BidderJoined", auction: auction.auction, bidder: command.bidder }
    // Once only: a bidder leaving and another joining does not ask the auctioneer again.
    return bidders >= auction.minBidders && Option.isNone(auction.readyCheckIndex)
      ? accept(joined, { _tag: "ReadyCheck", auction: auction.auction, bidders })
      : accept(joined)
  })

const startAuction = (state: AuctionsState, command: StartAuction, nowMs: number): Decision =>
  Either.flatMap(find(state, command.auction), (auction): Decision => {
    if (command.by !== auction.auctioneer) {
      return refuse(new NotAuctioneer({ auction: auction.auction, session: command.by }))
    }
    if (auction.phase !== "waiting") {
      return refuse(new WrongPhase({ auction: auction.auction, phase: auction.phase }))
    }
    const bidders = waitingBidders(auction)
    if (bidders.length < auction.minBidders) {
      return refuse(
        new NotEnoughBidders({
          auction: auction.auction,
          bidders: bidders.length,
          minBidders: auction.minBidders
        })
      )
    }
    return accept(
      { _tag: "AuctionStarted", auction: auction.auction, bidders, rounds: auction.minRounds },
      {
        _tag: "RoundStarted",
        auction: auction.auction,
        round: 1,
        minBid: auction.minBid,
        deadlineMs: deadline(nowMs, auction.roundTimeoutMs)
      }
    )
  })

const cancelAuction = (state: AuctionsState, command: CancelAuction): Decision =>
  Either.flatMap(find(state, command.auction), (auction): Decision => {
    if (command.by !== auction.auctioneer) {
      return refuse(new NotAuctioneer({ auction: auction.auction, session: command.by }))
    }
    if (auction.phase !== "waiting") {
      return refuse(new WrongPhase({ auction: auction.auction, phase: auction.phase }))
    }
    return accept({ _tag: "AuctionCancelled", auction: auction.auction, reason: "cancelled-by-auctioneer" })
  })

const startDeadline = (state: AuctionsState, command: StartDeadline): Decision =>
  Either.flatMap(
    find(state, command.auction),
    (auction): Decision =>
      // Only a ready check starts the start timeout; once started or ended, a late timer is harmless.
      auction.phase === "waiting" && Option.isSome(auction.readyCheckIndex)
        ? accept({ _tag: "AuctionCancelled", auction: auction.auction, reason: "start-timeout" })
        : refuse(new WrongPhase({ auction: auction.auction, phase: auction.phase }))
  )

/** The round a command names must be the auction's current round. */
const checkRound = (auction: RunningAuction, round: number): Either.Either<void, AuctionError> => {
  if (!Number.isSafeInteger(round)) {
    return Either.left(
      new InvalidRequest({
        message: `round must be a whole number from 1 to ${minRoundsMax}, got ${String(round)}`
      })
    )
  }
  return round === auction.round
    ? Either.void
    : Either.left(new WrongRound({ auction: auction.auction, round, currentRound: auction.round }))
}

/** The current round ends: every bid revealed (0 for the missing), then the next round or the result. */
const completeRound = (auction: RunningAuction, nowMs: number): ReadonlyArray<AuctionEvent> => {
  const completed: RoundCompleted = {
    _tag: "RoundCompleted",
    auction: auction.auction,
    round: auction.round,
    bids: auction.bidders.map((bidder) => ({
      bidder,
      amount: Option.getOrElse(HashMap.get(auction.roundBids, bidder), () => Money.zero)
    }))
  }
  if (auction.round < auction.minRounds) {
    return [
      completed,
      {
        _tag: "RoundStarted",
        auction: auction.auction,
        round: auction.round + 1,
        minBid: auction.minBid,
        deadlineMs: deadline(nowMs, auction.roundTimeoutMs)
      }
    ]
  }
  const { amount, totals, winner } = outcomeOf(auction)
  return [completed, { _tag: "AuctionClosed", auction: auction.auction, winner, amount, totals }]
}

const roundDeadline = (state: AuctionsState, command: RoundDeadline, nowMs: number): Decision =>
  Either.flatMap(find(state, command.auction), (auction): Decision => {
    if (auction.phase !== "running") {
      return refuse(new WrongPhase({ auction: auction.auction, phase: auction.phase }))
    }
    return Either.map(checkRound(auction, command.round), () => completeRound(auction, nowMs))
  })

const placeBid = (state: AuctionsState, command: PlaceBid, nowMs: number): Decision =>
  Either.flatMap(find(state, command.auction), (auction): Decision => {
    const { amount, bidder } = command
    if (bidder === auction.auctioneer) {
      return refuse(new AuctioneerCannotBid({ auction: auction.auction, session: bidder }))
    }
    if (!isBidder(auction, bidder)) {
      return refuse(new NotInAuction({ auction: auction.auction, session: bidder }))
    }
    if (auction.phase !== "running") {
      return refuse(new WrongPhase({ auction: auction.auction, phase: auction.phase }))
    }
    const round = checkRound(auction, command.round)
    if (Either.isLeft(round)) return refuse(round.left)
    if (HashMap.has(auction.roundBids, bidder)) {
      return refuse(new AlreadyBid({ auction: auction.auction, round: auction.round }))
    }
    if (!Number.isInteger(amount)) {
      return refuse(
        new InvalidRequest({ message: `amount must be a whole number of minor units, got ${String(amount)}` })
      )
    }
    if (amount < auction.minBid) {
      return refuse(new BidTooLow({ auction: auction.auction, minBid: auction.minBid, amount }))
    }
    const total = Option.getOrElse(HashMap.get(auction.totals, bidder), () => Money.zero)
    const amountMax = Money.headroom(total)
    if (amount > amountMax) return refuse(new BidTooHigh({ auction: auction.auction, amount, amountMax }))
    const placed: AuctionEvent = {
      _tag: "BidPlaced",
      auction: auction.auction,
      round: auction.round,
      bidder,
      amount: Money.unsafeMake(amount)
    }
    if (HashMap.size(auction.roundBids) + 1 < auction.bidders.length) return accept(placed)
    // The last bid of the round completes it in the same decision: look ahead with the bid applied.
    return accept(placed, ...completeRound(evolveAuction(auction, placed) as RunningAuction, nowMs))
  })

const sessionEnded = (state: AuctionsState, command: SessionEnded): Decision => {
  const events: Array<AuctionEvent> = []
  // Ascending auction ids, so the same state always gives the same events.
  const waiting = Array.from(HashMap.values(state.open)).sort((a, b) => a.auction - b.auction)
  for (const auction of waiting) {
    if (auction.phase !== "waiting") continue
    if (auction.auctioneer === command.session) {
      events.push({ _tag: "AuctionCancelled", auction: auction.auction, reason: "auctioneer-left" })
    } else if (HashMap.has(auction.bidders, command.session)) {
      events.push({ _tag: "BidderLeft", auction: auction.auction, bidder: command.session })
    }
  }
  return Either.right(events)
}

const purgeAuction = (state: AuctionsState, command: PurgeAuction): Decision =>
  Either.flatMap(
    find(state, command.auction),
    (auction): Decision =>
      auction.phase === "closed" || auction.phase === "cancelled"
        ? accept({ _tag: "AuctionPurged", auction: auction.auction })
        : refuse(new WrongPhase({ auction: auction.auction, phase: auction.phase }))
  )

/**
 * The events a command produces on `state`, or why it is refused.
 * `nowMs` is a non-negative safe integer (ms since the epoch); anything else
 * is a caller's bug and throws.
 */
export const decide = (state: AuctionsState, command: AuctionCommand, nowMs: number): Decision => {
  if (!Number.isSafeInteger(nowMs) || nowMs < 0) throw new Error(`decide: nowMs ${nowMs} is not a valid time`)
  switch (command._tag) {
    case "CreateAuction":
      return createAuction(state, command, nowMs)
    case "JoinAuction":
      return joinAuction(state, command)
    case "StartAuction":
      return startAuction(state, command, nowMs)
    case "CancelAuction":
      return cancelAuction(state, command)
    case "PlaceBid":
      return placeBid(state, command, nowMs)
    case "RoundDeadline":
      return roundDeadline(state, command, nowMs)
    case "StartDeadline":
      return startDeadline(state, command)
    case "SessionEnded":
      return sessionEnded(state, command)
    case "PurgeAuction":
      return purgeAuction(state, command)
  }
}
