/**
 * `agora client` without `--json`: the original's menu flow (DESIGN §7,
 * seed NOTES "Client UX") with `@effect/cli` prompts.
 *
 * Banner, "Finding a server...", the connection line, then the menu
 * (1 Create, 2 List, 3 Join, 4 Exit). After creating or joining, the client
 * follows that auction until it ends, then returns to the menu:
 * - the auctioneer is asked "Start auction now? (y/n)" when the ready check
 *   arrives (declining offers to cancel, or asks again);
 * - a bidder is asked "Your bid (min $X): $" at each round start, again when
 *   the server finds the bid too low;
 * - a live line per bid received (who, never how much: bids are sealed), a
 *   table of the round's bids when it completes, a countdown line to the
 *   round deadline at every 10 s (then 5 s and time-up), and the winner
 *   banner or the final standings.
 *
 * Events while a prompt waits: a prompt owns the terminal line, so events
 * are never printed under it. They are held and printed as soon as the
 * prompt is answered. An event that makes the question moot (the round
 * completed before the bid, the auction was cancelled or ended) ends the
 * prompt at once: the half-typed line is left as it is, a new line says
 * why, and the held events follow. While no prompt is open, events and
 * countdown lines print as they come.
 *
 * Leaving: Ctrl-C or Ctrl-D at a prompt or while waiting for events (keys are
 * read then, in raw mode), end of input, or SIGINT/SIGTERM (runMain) all
 * end the program cleanly, exit code 0; the caller's scope closes the client.
 */
import * as Prompt from "@effect/cli/Prompt"
import * as Terminal from "@effect/platform/Terminal"
import * as Clock from "effect/Clock"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import {
  itemProblem,
  minBiddersDefault,
  minBiddersMax,
  minBiddersMin,
  minBidMax,
  minBidMin,
  minRoundsDefault,
  minRoundsMax,
  minRoundsMin
} from "../../domain/auction/Rules.js"
import type { AuctionId, SessionId } from "../../domain/Ids.js"
import type { AuctionSummary } from "../../domain/Messages.js"
import * as Money from "../../domain/Money.js"
import { formatAddress } from "../../domain/Schemas.js"
import type {
  ClientShape,
  Connected,
  DeliveredNotice,
  LeaderChange,
  Refused,
  RequestError
} from "../../services/Client.js"
import {
  auctionsTable,
  banner,
  cancelReason,
  menu,
  money,
  nextCountdownMark,
  roundTable,
  seconds,
  standings,
  who,
  wonBanner
} from "./Render.js"

export interface InteractiveOptions {
  readonly requestTimeoutMs: number
  /** Where discovery broadcasts go, for the "still looking" line. */
  readonly broadcast: string
  readonly discoveryPort: number
}

type UiEvent =
  | { readonly _tag: "Notice"; readonly delivered: DeliveredNotice }
  | { readonly _tag: "Leader"; readonly change: LeaderChange }

type Notice = DeliveredNotice["notice"]

/** Events waiting for the screen: they only block the client's stream when this many are unread. */
const UiEventsCapacity = 1024
/** Most list pages fetched for one listing. */
const ListPagesMax = 1000

interface RoundView {
  readonly round: number
  readonly minBid: number
  readonly deadlineMs: number
  /** Remaining ms at which the next countdown line is due; null when time-up was shown. */
  markMs: number | null
}

interface AuctionView {
  readonly auction: AuctionId
  readonly item: string
  readonly role: "auctioneer" | "bidder"
  /** This client's session: the participant id the server uses. */
  readonly me: SessionId
  rounds: number | null
  round: RoundView | null
  readonly totals: Map<number, number>
}

const describeError = (error: RequestError | Refused, requestTimeoutMs: number): string => {
  switch (error._tag) {
    case "Refused":
      return `refused (${error.code}): ${error.message}`
    case "Timeout":
      return `no answer within ${seconds(requestTimeoutMs)}: it may or may not have been done`
    case "NotConnected":
      return "no leader reachable: nothing was sent"
    case "ClientBusy":
      return "too many requests waiting: nothing was sent"
  }
}

const noticeAuction = (event: UiEvent): AuctionId | null =>
  event._tag === "Notice" ? event.delivered.auction : null

const isFinal = (notice: Notice): boolean =>
  notice._tag === "AuctionWonNotice" ||
  notice._tag === "AuctionLostNotice" ||
  notice._tag === "AuctionClosedNotice" ||
  notice._tag === "AuctionCancelledNotice"

/** Whole-number text with a default, for prompts that offer one. */
const wholeText =
  (label: string, min: number, max: number) =>
  (text: string): Effect.Effect<string, string> => {
    const value = Number(text.trim())
    return text.trim() !== "" && Number.isSafeInteger(value) && value >= min && value <= max
      ? Effect.succeed(String(value))
      : Effect.fail(`${label} must be a whole number from ${min} to ${max}`)
  }

const wholeBetween =
  (label: string, min: number, max: number) =>
  (value: number): Effect.Effect<number, string> =>
    Number.isSafeInteger(value) && value >= min && value <= max
      ? Effect.succeed(value)
      : Effect.fail(`${label} must be a whole number from ${min} to ${max}`)

/** Ctrl-C / Ctrl-D while no prompt is open: read keys in raw mode until one of them comes. */
const quitKeys: Effect.Effect<never, Terminal.QuitException, Terminal.Terminal> = Effect.scoped(
  Effect.gen(function* () {
    const terminal = yield* Terminal.Terminal
    const input = yield* terminal.readInput
    for (;;) {
      const key = yield* Effect.mapError(input.take, () => new Terminal.QuitException())
      if (key.key.ctrl && (key.key.name === "c" || key.key.name === "d")) {
        return yield* new Terminal.QuitException()
      }
    }
  })
)

/** End of input (piped stdin closed): there is nobody left to answer. */
const stdinEnded: Effect.Effect<never, Terminal.QuitException> = Effect.async((resume) => {
  const stdin = process.stdin
  if (stdin.readableEnded || stdin.destroyed) {
    resume(Effect.fail(new Terminal.QuitException()))
    return
  }
  const onEnd = () => resume(Effect.fail(new Terminal.QuitException()))
  stdin.once("end", onEnd)
  stdin.once("close", onEnd)
  return Effect.sync(() => {
    stdin.off("end", onEnd)
    stdin.off("close", onEnd)
  })
})

/** A prompt that also ends (QuitException) at end of input, where the prompt alone would wait forever. */
const ask = <A>(prompt: Prompt.Prompt<A>): Effect.Effect<A, Terminal.QuitException, Terminal.Terminal> =>
  Effect.raceFirst(prompt, stdinEnded)

/**
 * Waits for the user to leave while `self` runs; whichever ends first wins. Keys are
 * watched only on a terminal: from a pipe, reading here would swallow the answers
 * written for the next prompt (they are read by that prompt, and end of input there).
 */
const leavable = <A, E, R>(
  self: Effect.Effect<A, E, R>
): Effect.Effect<A, E | Terminal.QuitException, R | Terminal.Terminal> =>
  Effect.raceFirst(self, process.stdin.isTTY ? Effect.raceFirst(quitKeys, stdinEnded) : stdinEnded)

export const runInteractive = (
  client: ClientShape,
  options: InteractiveOptions
): Effect.Effect<void, never, Terminal.Terminal | Scope.Scope> =>
  Effect.gen(function* () {
    const events = yield* Queue.bounded<UiEvent>(UiEventsCapacity)
    yield* Effect.forkScoped(
      Stream.runForEach(client.notices, (delivered) => Queue.offer(events, { _tag: "Notice", delivered }))
    )
    yield* Effect.forkScoped(
      Stream.runForEach(client.leaderChanges, (change) => Queue.offer(events, { _tag: "Leader", change }))
    )
    /** Taken from the queue, not yet handled (held while a prompt was open). Handled first, in order. */
    const pending: Array<UiEvent> = []
    /** Takes one event into `pending`; once taken, it is kept even if the taker is interrupted. */
    const takeIntoPending = Effect.uninterruptibleMask((restore) =>
      Effect.flatMap(restore(Queue.take(events)), (event) =>
        Effect.sync(() => {
          pending.push(event)
          return event
        })
      )
    )
    const takeAllIntoPending = Effect.flatMap(Queue.takeAll(events), (taken) =>
      Effect.sync(() => {
        pending.push(...taken)
      })
    )

    /** The next event (none after `timeoutMs`), while Ctrl-C / Ctrl-D are watched. */
    const nextEvent = (
      timeoutMs: number | null
    ): Effect.Effect<Option.Option<UiEvent>, Terminal.QuitException, Terminal.Terminal> =>
      Effect.gen(function* () {
        if (pending.length === 0) {
          const wait =
            timeoutMs === null
              ? Effect.asVoid(takeIntoPending)
              : Effect.asVoid(Effect.timeoutOption(takeIntoPending, timeoutMs))
          yield* leavable(wait)
        }
        return Option.fromNullable(pending.shift())
      })

    /**
     * A prompt while events keep coming: they are held in `pending`; one for which
     * `moot` holds ends the prompt (none). Already-held moot events skip it.
     */
    const promptDuring = <A>(
      prompt: Prompt.Prompt<A>,
      moot: (event: UiEvent) => boolean
    ): Effect.Effect<Option.Option<A>, Terminal.QuitException, Terminal.Terminal> =>
      Effect.gen(function* () {
        yield* takeAllIntoPending
        if (pending.some(moot)) return Option.none()
        const watch = Effect.gen(function* () {
          for (;;) {
            if (moot(yield* takeIntoPending)) return Option.none<A>()
          }
        })
        const answer = yield* Effect.raceFirst(Effect.map(ask(prompt), Option.some), watch)
        if (Option.isNone(answer)) yield* Console.log("")
        return answer
      })

    const leaderLine = (change: LeaderChange) =>
      Console.log(`(the leader is now ${change.leader}, epoch ${change.epoch})`)

    /** Events outside an auction being followed: printed plainly. */
    const printLoose = (event: UiEvent, me: number): Effect.Effect<void> => {
      if (event._tag === "Leader") return leaderLine(event.change)
      const { auction, notice } = event.delivered
      switch (notice._tag) {
        case "AuctionCancelledNotice":
          return Console.log(`(auction ${auction} was cancelled: ${cancelReason(notice.reason)})`)
        case "AuctionWonNotice":
        case "AuctionLostNotice":
        case "AuctionClosedNotice":
          return Console.log(
            `(auction ${auction} ended: ${who(notice.winner, me)} won with ${money(notice.amount)})`
          )
        default:
          return Console.log(`(auction ${auction}: ${notice._tag.replace(/Notice$/, "")})`)
      }
    }

    const session = Effect.map(
      client.connection,
      Option.map((c) => c.session)
    )

    // -- connecting ---------------------------------------------------------------------

    const findServer: Effect.Effect<Connected, Terminal.QuitException, Terminal.Terminal> = Effect.gen(
      function* () {
        yield* Console.log("Finding a server...")
        for (;;) {
          const connected = yield* leavable(Effect.either(client.connect))
          if (connected._tag === "Right") return connected.right
          yield* Console.log(
            `No server answered yet (broadcasting to ${options.broadcast}:${options.discoveryPort}); ` +
              "still looking... (Ctrl-C to leave)"
          )
        }
      }
    )

    // -- listing ------------------------------------------------------------------------

    const listAll: Effect.Effect<ReadonlyArray<AuctionSummary>, RequestError | Refused> = Effect.gen(
      function* () {
        const rows: Array<AuctionSummary> = []
        let page = 0
        for (let pages = 0; pages < ListPagesMax; pages++) {
          const result = yield* client.list(page)
          rows.push(...result.auctions)
          if (result.nextPage === null) break
          page = result.nextPage
        }
        return rows
      }
    )

    // -- following an auction -----------------------------------------------------------

    const countdownLine = (view: AuctionView, round: RoundView, nowMs: number): Effect.Effect<void> => {
      const remainingMs = round.deadlineMs - nowMs
      if (remainingMs <= 0) {
        round.markMs = null
        return Console.log(`round ${round.round}: time is up, waiting for the results...`)
      }
      round.markMs = nextCountdownMark(remainingMs)
      return Console.log(
        `round ${round.round}${view.rounds === null ? "" : ` of ${view.rounds}`}: ${seconds(remainingMs)} left`
      )
    }

    /** After a prompt, the countdown resumes at the next mark still ahead (missed ones are skipped). */
    const resumeCountdown = (round: RoundView, nowMs: number): void => {
      const remainingMs = round.deadlineMs - nowMs
      if (round.markMs !== null && remainingMs > 0) round.markMs = nextCountdownMark(remainingMs)
    }

    const ofAuction = (auction: AuctionId, event: UiEvent, test: (notice: Notice) => boolean): boolean =>
      event._tag === "Notice" && event.delivered.auction === auction && test(event.delivered.notice)

    const askStart = (view: AuctionView): Effect.Effect<void, Terminal.QuitException, Terminal.Terminal> =>
      Effect.gen(function* () {
        const moot = (event: UiEvent) =>
          ofAuction(
            view.auction,
            event,
            (notice) => notice._tag === "AuctionStartedNotice" || isFinal(notice)
          )
        const yesNo = (message: string) =>
          Prompt.confirm({ message, placeholder: { defaultConfirm: "", defaultDeny: "" } })
        for (;;) {
          const start = yield* promptDuring(yesNo("Start auction now? (y/n)"), moot)
          if (Option.isNone(start)) return
          if (start.value) {
            const started = yield* Effect.either(client.start(view.auction))
            if (started._tag === "Right") return yield* Console.log("Starting the auction...")
            return yield* Console.log(
              `Could not start: ${describeError(started.left, options.requestTimeoutMs)}`
            )
          }
          const cancel = yield* promptDuring(yesNo("Cancel the auction instead? (y/n)"), moot)
          if (Option.isNone(cancel)) return
          if (cancel.value) {
            const cancelled = yield* Effect.either(client.cancel(view.auction))
            if (cancelled._tag === "Right") return yield* Console.log("Cancelling the auction...")
            return yield* Console.log(
              `Could not cancel: ${describeError(cancelled.left, options.requestTimeoutMs)}`
            )
          }
        }
      })

    const askBid = (
      view: AuctionView,
      round: RoundView
    ): Effect.Effect<void, Terminal.QuitException, Terminal.Terminal> =>
      Effect.gen(function* () {
        const moot = (event: UiEvent) =>
          ofAuction(
            view.auction,
            event,
            (notice) =>
              (notice._tag === "RoundCompletedNotice" && notice.round >= round.round) || isFinal(notice)
          )
        for (;;) {
          const amount = yield* promptDuring(
            Prompt.integer({
              message: `Your bid (min ${money(round.minBid)}): $`,
              min: round.minBid,
              max: Money.maxValue,
              validate: (value) =>
                value < round.minBid
                  ? Effect.fail(`The minimum bid is ${money(round.minBid)}`)
                  : value > Money.maxValue
                    ? Effect.fail(`At most ${money(Money.maxValue)}`)
                    : Effect.succeed(value)
            }),
            moot
          )
          if (Option.isNone(amount)) {
            return yield* Console.log(`Round ${round.round} closed before your bid was sent.`)
          }
          const placed = yield* Effect.either(client.bid(view.auction, amount.value, round.round))
          if (placed._tag === "Right") {
            return yield* Console.log(`Your bid of ${money(amount.value)} for round ${round.round} is in.`)
          }
          const error = placed.left
          yield* Console.log(`Bid not placed: ${describeError(error, options.requestTimeoutMs)}`)
          // Too low, or never sent: ask again. Anything else (already bid, round over, maybe placed) is final.
          if (!(error._tag === "NotConnected" || (error._tag === "Refused" && error.code === "BidTooLow")))
            return
        }
      })

    /** Handles one event of the followed auction; true when the auction is over. */
    const onEvent = (
      view: AuctionView,
      event: UiEvent
    ): Effect.Effect<boolean, Terminal.QuitException, Terminal.Terminal> =>
      Effect.gen(function* () {
        if (event._tag === "Leader") {
          yield* leaderLine(event.change)
          return false
        }
        if (noticeAuction(event) !== view.auction) {
          yield* printLoose(event, view.me)
          return false
        }
        const notice = event.delivered.notice
        switch (notice._tag) {
          case "ReadyCheckNotice":
            yield* Console.log(`${notice.bidders} bidders have joined auction ${view.auction}.`)
            if (view.role === "auctioneer") yield* askStart(view)
            return false
          case "AuctionStartedNotice":
            view.rounds = notice.rounds
            yield* Console.log(
              `Auction ${view.auction} "${view.item}" started: ${notice.rounds} round(s), bidders ` +
                `${notice.bidders.map((bidder) => who(bidder, view.me)).join(", ")}.`
            )
            return false
          case "RoundStartedNotice": {
            const round: RoundView = {
              round: notice.round,
              minBid: notice.minBid,
              deadlineMs: notice.deadlineMs,
              markMs: null
            }
            view.round = round
            yield* Console.log(
              `\n--- Round ${notice.round}${view.rounds === null ? "" : ` of ${view.rounds}`}: ` +
                `minimum bid ${money(notice.minBid)} ---`
            )
            yield* countdownLine(view, round, yield* Clock.currentTimeMillis)
            if (view.role === "bidder") {
              yield* askBid(view, round)
              resumeCountdown(round, yield* Clock.currentTimeMillis)
            }
            return false
          }
          case "BidReceivedNotice":
            yield* Console.log(`  ${who(notice.bidder, view.me)} has bid in round ${notice.round}`)
            return false
          case "RoundCompletedNotice":
            for (const { bidder, amount } of notice.bids) {
              view.totals.set(bidder, (view.totals.get(bidder) ?? 0) + amount)
            }
            if (view.round?.round === notice.round) view.round = null
            yield* Console.log(roundTable(notice.round, notice.bids, view.totals, view.me))
            return false
          case "AuctionWonNotice":
            yield* Console.log(wonBanner(view.item, notice.amount))
            yield* Console.log(standings(notice.totals, notice.winner, view.me))
            return true
          case "AuctionLostNotice": {
            const mine = notice.totals.find((total) => total.bidder === view.me)?.amount ?? 0
            yield* Console.log(
              `\nAuction over: ${who(notice.winner, view.me)} won "${view.item}" with ${money(notice.amount)}; ` +
                `your total was ${money(mine)}.`
            )
            yield* Console.log(standings(notice.totals, notice.winner, view.me))
            return true
          }
          case "AuctionClosedNotice":
            yield* Console.log(
              `\nAuction over: "${view.item}" goes to ${who(notice.winner, view.me)} for ${money(notice.amount)}.`
            )
            yield* Console.log(standings(notice.totals, notice.winner, view.me))
            return true
          case "AuctionCancelledNotice":
            yield* Console.log(`\nAuction ${view.auction} was cancelled: ${cancelReason(notice.reason)}.`)
            return true
        }
      })

    /** Follows an auction until it ends: prints its events, asks what needs asking. */
    const follow = (view: AuctionView): Effect.Effect<void, Terminal.QuitException, Terminal.Terminal> =>
      Effect.gen(function* () {
        for (;;) {
          const round = view.round
          const nowMs = yield* Clock.currentTimeMillis
          const dueMs = round === null || round.markMs === null ? null : round.deadlineMs - round.markMs
          const event = yield* nextEvent(dueMs === null ? null : Math.max(0, dueMs - nowMs))
          if (Option.isNone(event)) {
            if (round !== null) yield* countdownLine(view, round, yield* Clock.currentTimeMillis)
            continue
          }
          if (yield* onEvent(view, event.value)) return
        }
      })

    // -- menu actions ---------------------------------------------------------------------

    const create = (me: SessionId) =>
      Effect.gen(function* () {
        const item = yield* ask(
          Prompt.text({
            message: "Item name:",
            validate: (text) => {
              const problem = itemProblem(text.trim())
              return problem === undefined ? Effect.succeed(text.trim()) : Effect.fail(`The ${problem}`)
            }
          })
        )
        const minBid = yield* ask(
          Prompt.integer({
            message: "Minimum bid: $",
            min: minBidMin,
            max: minBidMax,
            validate: wholeBetween("The minimum bid", minBidMin, minBidMax)
          })
        )
        const minRounds = yield* ask(
          Prompt.text({
            message: `Rounds (${minRoundsMin}-${minRoundsMax})`,
            default: String(minRoundsDefault),
            validate: wholeText("Rounds", minRoundsMin, minRoundsMax)
          })
        )
        const minBidders = yield* ask(
          Prompt.text({
            message: `Minimum bidders (${minBiddersMin}-${minBiddersMax})`,
            default: String(minBiddersDefault),
            validate: wholeText("Minimum bidders", minBiddersMin, minBiddersMax)
          })
        )
        const created = yield* Effect.either(
          client.create({ item, minBid, minRounds: Number(minRounds), minBidders: Number(minBidders) })
        )
        if (created._tag === "Left") {
          return yield* Console.log(
            `Could not create it: ${describeError(created.left, options.requestTimeoutMs)}`
          )
        }
        const auction = created.right
        yield* Console.log(
          `Auction ${auction} "${item}" created. Waiting for ${minBidders} bidders to join... (Ctrl-C to leave)`
        )
        yield* follow({ auction, item, role: "auctioneer", me, rounds: null, round: null, totals: new Map() })
      })

    const list = (me: SessionId) =>
      Effect.gen(function* () {
        const rows = yield* Effect.either(listAll)
        if (rows._tag === "Left") {
          yield* Console.log(`Could not list: ${describeError(rows.left, options.requestTimeoutMs)}`)
          return []
        }
        yield* Console.log(auctionsTable(rows.right, me))
        return rows.right
      })

    const join = (me: SessionId) =>
      Effect.gen(function* () {
        const rows = yield* list(me)
        if (rows.length === 0) return
        const pick = yield* ask(
          Prompt.integer({
            message: `Join which auction? (# 1-${rows.length}, 0 to go back)`,
            min: 0,
            max: rows.length,
            validate: wholeBetween("The number", 0, rows.length)
          })
        )
        const row = rows[pick - 1]
        if (pick === 0 || row === undefined) return
        const joined = yield* Effect.either(client.join(row.auction))
        if (joined._tag === "Left") {
          return yield* Console.log(`Could not join: ${describeError(joined.left, options.requestTimeoutMs)}`)
        }
        yield* Console.log(
          `Joined auction ${row.auction} "${row.item}". Waiting for it to start... (Ctrl-C to leave)`
        )
        yield* follow({
          auction: row.auction,
          item: row.item,
          role: "bidder",
          me,
          rounds: null,
          round: null,
          totals: new Map()
        })
      })

    // -- main -----------------------------------------------------------------------------------

    const main = Effect.gen(function* () {
      yield* Console.log(banner())
      const connected = yield* findServer
      yield* Console.log(
        `Connected as ${connected.client} (session ${connected.session}) to leader ${connected.leader.id} ` +
          `at ${formatAddress(connected.leader.address)}, epoch ${connected.leader.epoch}.`
      )
      for (;;) {
        const me = Option.getOrElse(yield* session, () => connected.session)
        yield* takeAllIntoPending
        while (pending.length > 0) {
          const event = pending.shift()
          if (event !== undefined) yield* printLoose(event, me)
        }
        yield* Console.log(menu())
        const choice = yield* ask(
          Prompt.integer({
            message: "Choose an option (1-4)",
            min: 1,
            max: 4,
            validate: wholeBetween("The option", 1, 4)
          })
        )
        switch (choice) {
          case 1:
            yield* create(me)
            break
          case 2:
            yield* list(me)
            break
          case 3:
            yield* join(me)
            break
          default:
            return yield* Console.log("Goodbye.")
        }
      }
    })

    yield* main.pipe(Effect.catchTag("QuitException", () => Console.log("\nGoodbye.")))
  })
