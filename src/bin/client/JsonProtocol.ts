/**
 * The scripting protocol of `agora client --json` (DESIGN §7), as pure
 * functions: one input line → a request or an `InvalidRequest` naming the
 * field, and every reply and event → the JSON object printed as one line.
 *
 * Choices where DESIGN §7 is silent (the README documents them):
 * - Bidders and auctioneers are session numbers, printed as JSON numbers
 *   everywhere (`bidders`, `bidder`, `winner`, `auctioneer`, and `session` in
 *   `ready` and `status`), so `winner === ready.session` tells a client it won.
 *   In `bids` and `totals` ({bidder: amount}) they are object keys, which JSON
 *   makes strings: `totals[String(winner)]` is the winner's total.
 * - `ready` also carries `session` and `epoch`; `status` answers
 *   `{"type":"status","client","session","leader","epoch","address"}` (null
 *   fields while not connected).
 * - `cancel` is answered `{"type":"cancelled","auction":ID}`; the auction's
 *   participants, the auctioneer included, also get the `auction-cancelled` event.
 * - `quit` has no reply: the client stops reading, answers nothing more, and exits 0.
 * - A request that was never sent because no leader was found within the
 *   request timeout is `{"type":"error","code":"Timeout","sent":false,…}`: it
 *   was certainly not applied. A plain `Timeout` (no `sent`) may have been.
 * - `round-started.deadlineMs` is the deadline as the leader set it: ms since
 *   the Unix epoch by the leader's clock (a new leader restarts it in full).
 * - Blank lines are ignored. Unknown fields of a request are ignored. `ref`
 *   may be any JSON value and is echoed as given, also in `InvalidRequest`
 *   errors when the line was a JSON object.
 */
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
import type { DeliveredNotice } from "../../domain/ClientStreams.js"
import type { AuctionId } from "../../domain/Ids.js"
import type { AuctionSummary, ReplyResult } from "../../domain/Messages.js"
import * as Money from "../../domain/Money.js"

/** A JSON object as printed: one line of stdout. */
export type JsonLine = Readonly<Record<string, unknown>>

/** The longest input line accepted (characters); longer lines are refused as a whole. */
export const LineCharsMax = 65_536

/** `{ ref }` when the request carried one, else nothing: spread into its reply. */
export type RefField = { readonly ref: unknown } | Record<string, never>

export type JsonRequest =
  | {
      readonly op: "create"
      readonly item: string
      readonly minBid: number
      readonly minRounds: number
      readonly minBidders: number
    }
  | { readonly op: "list" }
  | { readonly op: "join"; readonly auction: AuctionId }
  | { readonly op: "start"; readonly auction: AuctionId }
  | { readonly op: "cancel"; readonly auction: AuctionId }
  | {
      readonly op: "bid"
      readonly auction: AuctionId
      readonly amount: number
      /** Absent: the auction's current round as this client knows it. */
      readonly round: number | undefined
    }
  | { readonly op: "status" }
  | { readonly op: "quit" }

export const ops: ReadonlyArray<JsonRequest["op"]> = [
  "create",
  "list",
  "join",
  "start",
  "cancel",
  "bid",
  "status",
  "quit"
]

export type Parsed =
  | { readonly _tag: "Request"; readonly request: JsonRequest; readonly ref: RefField }
  | { readonly _tag: "Invalid"; readonly message: string; readonly ref: RefField }
  /** A blank line: nothing to do. */
  | { readonly _tag: "Blank" }

/** A value shown in a message: short, and never multi-line. */
const shown = (value: unknown): string => {
  const text = value === undefined ? "nothing" : (JSON.stringify(value) ?? String(value))
  return text.length > 40 ? `${text.slice(0, 37)}...` : text
}

type FieldResult<A> =
  | { readonly ok: true; readonly value: A }
  | { readonly ok: false; readonly message: string }

const fail = <A>(message: string): FieldResult<A> => ({ ok: false, message })
const okValue = <A>(value: A): FieldResult<A> => ({ ok: true, value })

/** A whole number field in [min, max]; absent fields take `fallback` when there is one. */
const wholeField = (
  body: Readonly<Record<string, unknown>>,
  field: string,
  min: number,
  max: number,
  fallback?: number
): FieldResult<number> => {
  const value = body[field]
  if (value === undefined) {
    return fallback === undefined
      ? fail(`"${field}" is missing: a whole number from ${min} to ${max}`)
      : okValue(fallback)
  }
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min || value > max) {
    return fail(`"${field}" must be a whole number from ${min} to ${max}, got ${shown(value)}`)
  }
  return okValue(value)
}

const auctionField = (body: Readonly<Record<string, unknown>>): FieldResult<AuctionId> =>
  wholeField(body, "auction", 1, Number.MAX_SAFE_INTEGER) as FieldResult<AuctionId>

const itemField = (body: Readonly<Record<string, unknown>>): FieldResult<string> => {
  const value = body.item
  if (typeof value !== "string")
    return fail(`"item" must be a text of 1 to 200 characters, got ${shown(value)}`)
  const item = value.trim()
  const problem = itemProblem(item)
  return problem === undefined ? okValue(item) : fail(`"item": ${problem.replace(/^item /, "")}`)
}

/** Collects the fields in order; the first bad one is the message. */
const request = (
  fields: ReadonlyArray<readonly [string, FieldResult<unknown>]>,
  build: (values: Readonly<Record<string, unknown>>) => JsonRequest
): FieldResult<JsonRequest> => {
  const values: Record<string, unknown> = {}
  for (const [name, result] of fields) {
    if (!result.ok) return fail(result.message)
    values[name] = result.value
  }
  return okValue(build(values))
}

const parseOp = (body: Readonly<Record<string, unknown>>): FieldResult<JsonRequest> => {
  const op = body.op
  if (op === undefined) return fail(`"op" is missing: one of ${ops.join(", ")}`)
  if (typeof op !== "string" || !(ops as ReadonlyArray<string>).includes(op)) {
    return fail(`"op" must be one of ${ops.join(", ")}, got ${shown(op)}`)
  }
  switch (op as JsonRequest["op"]) {
    case "create":
      return request(
        [
          ["item", itemField(body)],
          ["minBid", wholeField(body, "minBid", minBidMin, minBidMax)],
          ["minRounds", wholeField(body, "minRounds", minRoundsMin, minRoundsMax, minRoundsDefault)],
          ["minBidders", wholeField(body, "minBidders", minBiddersMin, minBiddersMax, minBiddersDefault)]
        ],
        (v) => ({
          op: "create",
          item: v.item as string,
          minBid: v.minBid as number,
          minRounds: v.minRounds as number,
          minBidders: v.minBidders as number
        })
      )
    case "list":
      return okValue({ op: "list" })
    case "join":
    case "start":
    case "cancel": {
      const auction = auctionField(body)
      return auction.ok ? okValue({ op: op as "join" | "start" | "cancel", auction: auction.value }) : auction
    }
    case "bid": {
      const round = body.round === undefined ? okValue(undefined) : wholeField(body, "round", 1, minRoundsMax)
      return request(
        [
          ["auction", auctionField(body)],
          ["amount", wholeField(body, "amount", 0, Money.maxValue)],
          ["round", round]
        ],
        (v) => ({
          op: "bid",
          auction: v.auction as AuctionId,
          amount: v.amount as number,
          round: v.round as number | undefined
        })
      )
    }
    case "status":
      return okValue({ op: "status" })
    case "quit":
      return okValue({ op: "quit" })
  }
}

/** One input line as a request, or why it is not one (naming the field). Never throws. */
export const parseLine = (line: string): Parsed => {
  if (line.trim().length === 0) return { _tag: "Blank" }
  if (line.length > LineCharsMax) {
    return {
      _tag: "Invalid",
      message: `the line is longer than ${LineCharsMax} characters`,
      ref: {}
    }
  }
  let body: unknown
  try {
    body = JSON.parse(line)
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    return { _tag: "Invalid", message: `not JSON: ${reason}`, ref: {} }
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return {
      _tag: "Invalid",
      message: `a request is a JSON object like {"op":"list"}, got ${shown(body)}`,
      ref: {}
    }
  }
  const record = body as Readonly<Record<string, unknown>>
  const ref: RefField = "ref" in record ? { ref: record.ref } : {}
  const parsed = parseOp(record)
  return parsed.ok
    ? { _tag: "Request", request: parsed.value, ref }
    : { _tag: "Invalid", message: parsed.message, ref }
}

// ---------------------------------------------------------------------------
// Output

export const errorLine = (
  ref: RefField,
  code: string,
  message: string,
  extra: Readonly<Record<string, unknown>> = {}
): JsonLine => ({ type: "error", code, message, ...extra, ...ref })

/** `{bidder: amount}`; JSON object keys are strings, so bidder 7 is the key "7". */
export const amountsObject = (
  amounts: ReadonlyArray<{ readonly bidder: number; readonly amount: number }>
): Record<string, number> => {
  const out: Record<string, number> = {}
  for (const { bidder, amount } of amounts) out[String(bidder)] = amount
  return out
}

export const auctionRow = (row: AuctionSummary): JsonLine => ({
  auction: row.auction,
  item: row.item,
  minBid: row.minBid,
  minRounds: row.minRounds,
  minBidders: row.minBidders,
  bidders: row.bidders,
  status: row.status,
  auctioneer: row.auctioneer
})

/** The reply to a request the server answered (list pages are gathered by the caller). */
export const replyLine = (ref: RefField, result: ReplyResult): JsonLine => {
  switch (result._tag) {
    case "Created":
      return { type: "created", auction: result.auction, ...ref }
    case "Joined":
      return { type: "joined", auction: result.auction, ...ref }
    case "Started":
      return { type: "started", auction: result.auction, ...ref }
    case "Cancelled":
      return { type: "cancelled", auction: result.auction, ...ref }
    case "BidAccepted":
      return {
        type: "bid-accepted",
        auction: result.auction,
        round: result.round,
        amount: result.amount,
        ...ref
      }
    case "Auctions":
      return { type: "auctions", auctions: result.auctions.map(auctionRow), ...ref }
    case "Failed":
      return errorLine(ref, result.code, result.message)
  }
}

/** An auction event as its line: `type`, `auction`, `seq`, then the event's fields. */
export const noticeLine = ({ auction, seq, notice }: DeliveredNotice): JsonLine => {
  const head = { auction, seq }
  switch (notice._tag) {
    case "ReadyCheckNotice":
      return { type: "ready-check", ...head, bidders: notice.bidders }
    case "AuctionStartedNotice":
      return { type: "auction-started", ...head, bidders: notice.bidders, rounds: notice.rounds }
    case "RoundStartedNotice":
      return {
        type: "round-started",
        ...head,
        round: notice.round,
        minBid: notice.minBid,
        deadlineMs: notice.deadlineMs
      }
    case "BidReceivedNotice":
      return { type: "bid-received", ...head, round: notice.round, bidder: notice.bidder }
    case "RoundCompletedNotice":
      return { type: "round-completed", ...head, round: notice.round, bids: amountsObject(notice.bids) }
    case "AuctionWonNotice":
    case "AuctionLostNotice":
    case "AuctionClosedNotice":
      return {
        type:
          notice._tag === "AuctionWonNotice"
            ? "auction-won"
            : notice._tag === "AuctionLostNotice"
              ? "auction-lost"
              : "auction-closed",
        ...head,
        winner: notice.winner,
        amount: notice.amount,
        totals: amountsObject(notice.totals)
      }
    case "AuctionCancelledNotice":
      return { type: "auction-cancelled", ...head, reason: notice.reason }
  }
}
