/**
 * The pieces of `agora client` that need no process: request parsing and
 * the reply/event lines of the scripting protocol (DESIGN §7), the screens
 * of the interactive client, and the bounded stdin line reader.
 */
import { PassThrough } from "node:stream"
import { Effect, Option } from "effect"
import { describe, expect, it } from "vitest"
import { noticeLine, parseLine, replyLine } from "../../src/bin/client/JsonProtocol.js"
import { auctionsTable, nextCountdownMark, roundTable, standings, who } from "../../src/bin/client/Render.js"
import { type LineItem, readLines } from "../../src/bin/client/StdinLines.js"
import type { Notice } from "../../src/domain/auction/Notifications.js"
import type { AuctionId, SessionId } from "../../src/domain/Ids.js"
import type { ReplyResult } from "../../src/domain/Messages.js"
import type { Money } from "../../src/domain/Money.js"

const auction = 4 as AuctionId
const s = (n: number) => n as SessionId
const m = (n: number) => n as Money

describe("parseLine", () => {
  it("reads every request of DESIGN §7, with defaults and the round optional", () => {
    expect(parseLine('{"op":"create","item":" Vase ","minBid":10,"ref":"a"}')).toEqual({
      _tag: "Request",
      request: { op: "create", item: "Vase", minBid: 10, minRounds: 3, minBidders: 2 },
      ref: { ref: "a" }
    })
    expect(parseLine('{"op":"create","item":"Vase","minBid":10,"minRounds":1,"minBidders":5}')).toMatchObject(
      {
        request: { minRounds: 1, minBidders: 5 },
        ref: {}
      }
    )
    expect(parseLine('{"op":"list"}')).toMatchObject({ request: { op: "list" } })
    for (const op of ["join", "start", "cancel"]) {
      expect(parseLine(`{"op":"${op}","auction":7}`)).toMatchObject({ request: { op, auction: 7 } })
    }
    expect(parseLine('{"op":"bid","auction":7,"amount":25}')).toMatchObject({
      request: { op: "bid", auction: 7, amount: 25, round: undefined }
    })
    expect(parseLine('{"op":"bid","auction":7,"amount":25,"round":2,"ref":null}')).toMatchObject({
      request: { round: 2 },
      ref: { ref: null }
    })
    expect(parseLine('{"op":"status","extra":true}')).toMatchObject({ request: { op: "status" } })
    expect(parseLine('{"op":"quit"}')).toMatchObject({ request: { op: "quit" } })
    expect(parseLine("   ")).toEqual({ _tag: "Blank" })
  })

  it("refuses bad lines naming the field, echoing ref when there is one", () => {
    const cases: ReadonlyArray<readonly [string, RegExp]> = [
      ["{", /^not JSON/],
      ["42", /JSON object/],
      ["null", /JSON object/],
      ['{"op":3}', /"op" must be one of/],
      ['{"op":"create","item":7,"minBid":1}', /"item"/],
      ['{"op":"create","item":"a\\u0007b","minBid":1}', /"item".*control/],
      ['{"op":"create","item":"Vase"}', /"minBid" is missing/],
      ['{"op":"create","item":"Vase","minBid":-5}', /"minBid".*got -5/],
      ['{"op":"create","item":"Vase","minBid":1,"minRounds":101}', /"minRounds".*1 to 100/],
      ['{"op":"create","item":"Vase","minBid":1,"minBidders":1001}', /"minBidders".*2 to 1000/],
      ['{"op":"join","auction":0}', /"auction"/],
      ['{"op":"join","auction":1.5}', /"auction"/],
      ['{"op":"bid","auction":1,"amount":null}', /"amount"/],
      ['{"op":"bid","auction":1,"amount":1,"round":101}', /"round"/]
    ]
    for (const [line, message] of cases) {
      const parsed = parseLine(line)
      expect(parsed._tag, line).toBe("Invalid")
      if (parsed._tag === "Invalid") expect(parsed.message, line).toMatch(message)
    }
    expect(parseLine('{"op":"join","ref":{"k":1}}')).toMatchObject({
      _tag: "Invalid",
      ref: { ref: { k: 1 } }
    })
    expect(parseLine(`{"op":"list","x":"${"z".repeat(70_000)}"}`)).toMatchObject({
      _tag: "Invalid",
      message: expect.stringMatching(/longer than/)
    })
  })
})

describe("reply and event lines", () => {
  it("names replies as DESIGN §7 does and echoes ref", () => {
    const ref = { ref: 9 }
    const cases: ReadonlyArray<readonly [ReplyResult, object]> = [
      [
        { _tag: "Created", auction },
        { type: "created", auction, ref: 9 }
      ],
      [
        { _tag: "Joined", auction },
        { type: "joined", auction, ref: 9 }
      ],
      [
        { _tag: "Started", auction },
        { type: "started", auction, ref: 9 }
      ],
      [
        { _tag: "Cancelled", auction },
        { type: "cancelled", auction, ref: 9 }
      ],
      [
        { _tag: "BidAccepted", auction, round: 2, amount: 25 },
        { type: "bid-accepted", auction, round: 2, amount: 25, ref: 9 }
      ],
      [
        { _tag: "Failed", code: "BidTooLow", message: "too low" },
        { type: "error", code: "BidTooLow", message: "too low", ref: 9 }
      ]
    ]
    for (const [result, line] of cases) expect(replyLine(ref, result)).toEqual(line)
    expect(replyLine({}, { _tag: "Created", auction })).toEqual({ type: "created", auction })
  })

  it("prints events with auction and seq; bidders as session numbers, amounts keyed by them", () => {
    const line = (notice: Notice, seq = 3) => noticeLine({ auction, seq, notice })
    expect(line({ _tag: "ReadyCheckNotice", auction, bidders: 2 })).toEqual({
      type: "ready-check",
      auction,
      seq: 3,
      bidders: 2
    })
    expect(line({ _tag: "AuctionStartedNotice", auction, bidders: [s(5), s(2)], rounds: 3 })).toEqual({
      type: "auction-started",
      auction,
      seq: 3,
      bidders: [5, 2],
      rounds: 3
    })
    expect(line({ _tag: "RoundStartedNotice", auction, round: 1, minBid: m(10), deadlineMs: 1234 })).toEqual({
      type: "round-started",
      auction,
      seq: 3,
      round: 1,
      minBid: 10,
      deadlineMs: 1234
    })
    expect(line({ _tag: "BidReceivedNotice", auction, round: 1, bidder: s(5) })).toEqual({
      type: "bid-received",
      auction,
      seq: 3,
      round: 1,
      bidder: 5
    })
    const bids = [
      { bidder: s(5), amount: m(30) },
      { bidder: s(2), amount: m(0) }
    ]
    expect(line({ _tag: "RoundCompletedNotice", auction, round: 1, bids })).toEqual({
      type: "round-completed",
      auction,
      seq: 3,
      round: 1,
      bids: { "5": 30, "2": 0 }
    })
    const result = { auction, winner: s(5), amount: m(30), totals: bids }
    const expected = { auction, seq: 3, winner: 5, amount: 30, totals: { "5": 30, "2": 0 } }
    expect(line({ _tag: "AuctionWonNotice", ...result })).toEqual({ type: "auction-won", ...expected })
    expect(line({ _tag: "AuctionLostNotice", ...result })).toEqual({ type: "auction-lost", ...expected })
    expect(line({ _tag: "AuctionClosedNotice", ...result })).toEqual({ type: "auction-closed", ...expected })
    expect(line({ _tag: "AuctionCancelledNotice", auction, reason: "start-timeout" })).toEqual({
      type: "auction-cancelled",
      auction,
      seq: 3,
      reason: "start-timeout"
    })
  })
})

describe("interactive screens", () => {
  it("tables: list, round, standings (winner marked, you marked)", () => {
    expect(auctionsTable([], 1)).toBe("No open auctions.")
    const list = auctionsTable(
      [
        {
          auction,
          item: "Vase",
          minBid: m(10),
          minRounds: 3,
          minBidders: 2,
          bidders: 1,
          status: "waiting",
          auctioneer: s(1)
        }
      ],
      1
    )
    expect(list).toMatch(/#\s+Auction\s+Item\s+Min Bid\s+Rounds\s+Bidders\s+Status/)
    expect(list).toMatch(/1\s+4\s+Vase \(yours\)\s+\$10\s+3\s+1\/2\s+waiting/)
    const round = roundTable(
      2,
      [
        { bidder: 5, amount: 30 },
        { bidder: 2, amount: 0 }
      ],
      new Map([
        [5, 50],
        [2, 10]
      ]),
      2
    )
    expect(round).toMatch(/Round 2 results:/)
    expect(round).toMatch(/bidder 5\s+\$30\s+\$50/)
    expect(round).toMatch(/bidder 2 \(you\)\s+\$0\s+\$10/)
    const final = standings(
      [
        { bidder: 2, amount: 10 },
        { bidder: 5, amount: 50 }
      ],
      5,
      2
    )
    expect(final.split("\n")[3]).toMatch(/^1\s+bidder 5\s+<- winner\s+\$50$/)
    expect(final.split("\n")[4]).toMatch(/^2\s+bidder 2 \(you\)\s+\$10$/)
    expect(who(3, 3)).toBe("bidder 3 (you)")
  })

  it("countdown marks: every 10 s, then 5 s, then time-up", () => {
    expect(nextCountdownMark(60_000)).toBe(50_000)
    expect(nextCountdownMark(45_300)).toBe(40_000)
    expect(nextCountdownMark(10_001)).toBe(10_000)
    expect(nextCountdownMark(10_000)).toBe(5_000)
    expect(nextCountdownMark(5_000)).toBe(0)
    expect(nextCountdownMark(1)).toBe(0)
  })
})

describe("readLines", () => {
  const readAll = (chunks: ReadonlyArray<string>, maxChars: number) =>
    Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const input = new PassThrough()
          const lines = yield* readLines({ maxChars, highWater: 2 }, input)
          for (const chunk of chunks) input.write(chunk)
          input.end()
          const out: Array<LineItem> = []
          for (;;) {
            const next = yield* lines.take
            if (Option.isNone(next)) return out
            out.push(next.value)
          }
        })
      )
    )

  it("splits lines across chunks, drops CR, keeps a last line without newline", async () => {
    expect(await readAll(['{"a"', ':1}\r\n{"b":2}\n\n', "tail"], 100)).toEqual([
      { _tag: "Line", text: '{"a":1}' },
      { _tag: "Line", text: '{"b":2}' },
      { _tag: "Line", text: "" },
      { _tag: "Line", text: "tail" }
    ])
  })

  it("reports an over-long line as a whole, without holding it, and goes on", async () => {
    expect(await readAll(["short\n", "x".repeat(8), "y".repeat(8), "z\nok\n"], 10)).toEqual([
      { _tag: "Line", text: "short" },
      { _tag: "TooLong", chars: 17 },
      { _tag: "Line", text: "ok" }
    ])
  })
})
