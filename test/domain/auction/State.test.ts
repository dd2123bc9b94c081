/** DESIGN §5 "Checkpoints": the state round-trips through JSON; reads for `list` and an auction's status. */
import { describe, expect, it } from "@effect/vitest"
import { Either, HashMap, Option, Schema } from "effect"
import {
  AuctionEvent,
  AuctionsStateJson,
  decodeState,
  EvolveDefect,
  encodeState,
  evolve,
  evolveAll,
  initialState,
  joinHistory,
  listOpen,
  lookup,
  splitHistory
} from "../../../src/domain/auction/index.js"
import {
  aid,
  auctioneer,
  bid,
  bidder,
  createCommand,
  emptyWorld,
  money,
  sid,
  stateJson,
  steps
} from "./helpers.js"

/** One auction in each phase: 1 closed, 2 cancelled, 3 running (a sealed bid in), 4 waiting. */
const mixed = () =>
  steps(emptyWorld, [
    createCommand({ minRounds: 1 }),
    { _tag: "JoinAuction", auction: aid(1), bidder: bidder(1) },
    { _tag: "JoinAuction", auction: aid(1), bidder: bidder(2) },
    { _tag: "StartAuction", auction: aid(1), by: auctioneer },
    bid(1, 1, 12),
    bid(2, 1, 11),
    createCommand({ item: "Lamp" }),
    { _tag: "CancelAuction", auction: aid(2), by: auctioneer },
    createCommand({ auctioneer: sid(2), item: "Clock", minBid: 5 }),
    { _tag: "JoinAuction", auction: aid(3), bidder: bidder(1) },
    { _tag: "JoinAuction", auction: aid(3), bidder: bidder(3) },
    { _tag: "StartAuction", auction: aid(3), by: sid(2) },
    bid(3, 1, 7, 3),
    createCommand({ auctioneer: sid(3), item: "Rug" }),
    { _tag: "JoinAuction", auction: aid(4), bidder: bidder(1) }
  ])

describe("state JSON (checkpoints, snapshots)", () => {
  it("a state with auctions in every phase round-trips through JSON text unchanged", () => {
    const { state } = mixed()
    const text = Schema.encodeSync(AuctionsStateJson)(state)
    const decoded = Schema.decodeUnknownSync(AuctionsStateJson)(text)
    expect(stateJson(decoded)).toBe(stateJson(state))
    expect(Schema.encodeSync(AuctionsStateJson)(decoded)).toBe(text)
  })

  it("the decoded state keeps working: deciding on it gives the same events as on the original", () => {
    const { state } = mixed()
    const decoded = Either.getOrThrow(decodeState(JSON.parse(JSON.stringify(encodeState(state)))))
    const next = steps({ state: decoded, log: [] }, [bid(1, 1, 9, 3)])
    const same = steps({ state, log: [] }, [bid(1, 1, 9, 3)])
    expect(next.log).toStrictEqual(same.log)
    expect(stateJson(next.state)).toBe(stateJson(same.state))
  })

  it("replaying the log from the initial state rebuilds the same state", () => {
    const { log, state } = mixed()
    expect(stateJson(evolveAll(initialState, log))).toBe(stateJson(state))
  })

  it("decoding refuses a state whose auction is stored under another id or at or above nextAuctionId", () => {
    const encoded = encodeState(mixed().state)
    const [first, ...rest] = encoded.open
    if (first === undefined) throw new Error("no open auction")
    const moved = { ...encoded, open: [[99, first[1]] as const, ...rest] }
    expect(Either.isLeft(decodeState(moved))).toBe(true)
    expect(Either.isLeft(decodeState({ ...encoded, nextAuctionId: 3 }))).toBe(true)
    expect(Either.isLeft(decodeState({ ...encoded, open: "nope" }))).toBe(true)
  })

  it("decoding refuses amounts that are not money (negative, fractional)", () => {
    const encoded = JSON.parse(JSON.stringify(encodeState(mixed().state)))
    const text = JSON.stringify(encoded).replace('"minBid":5', '"minBid":-5')
    expect(text).not.toBe(JSON.stringify(encoded))
    expect(Either.isLeft(decodeState(JSON.parse(text)))).toBe(true)
    expect(Either.isLeft(decodeState(JSON.parse(text.replace('"minBid":-5', '"minBid":5.5'))))).toBe(true)
  })
})

describe("checkpoint parts: the history apart, one part per ended auction (DESIGN §5, Checkpoints)", () => {
  const parsed = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

  it("split, then joined on the encoded root, decodes to the same state", () => {
    const { state } = mixed()
    const { rest, parts } = splitHistory(state)
    expect([...parts.keys()]).toEqual(["1", "2"])
    expect(HashMap.size(rest.history)).toBe(0)
    const joined = decodeState(
      joinHistory(parsed(encodeState(rest)), new Map(parsed([...parts]) as Array<[string, unknown]>))
    )
    expect(stateJson(Either.getOrThrow(joined))).toBe(stateJson(state))
  })

  it("every split gives the same part objects, also for a state decoded from those parts", () => {
    const { state } = mixed()
    const first = splitHistory(state).parts
    expect(splitHistory(state).parts.get("1")).toBe(first.get("1"))
    const stored = new Map(parsed([...first]) as Array<[string, unknown]>)
    const decoded = Either.getOrThrow(
      decodeState(joinHistory(parsed(encodeState(splitHistory(state).rest)), stored))
    )
    const again = splitHistory(decoded).parts
    expect(again.get("1")).toBe(stored.get("1"))
    expect(again.get("2")).toBe(stored.get("2"))
  })

  it("a whole state (a checkpoint from before parts) joins with no parts unchanged", () => {
    const encoded = encodeState(mixed().state)
    expect(joinHistory(encoded, new Map())).toBe(encoded)
  })

  it("a part under a key that is not its id, or with a field too many, does not decode", () => {
    const { state } = mixed()
    const { rest, parts } = splitHistory(state)
    const root = encodeState(rest)
    const one = parts.get("1")
    const decodes = (entries: ReadonlyArray<readonly [string, unknown]>) =>
      Either.isRight(decodeState(joinHistory(root, new Map(entries))))
    expect(decodes([["1", one]])).toBe(true)
    expect(decodes([["01", one]])).toBe(false)
    expect(decodes([["2", one]])).toBe(false)
    expect(decodes([["1", { ...(one as object), extra: true }]])).toBe(false)
  })
})

describe("events are checked when decoded, trusted when applied", () => {
  const created = {
    _tag: "AuctionCreated",
    auction: 1,
    auctioneer: 1,
    item: "Vase",
    minBid: 10,
    minRounds: 2,
    minBidders: 2,
    roundTimeoutMs: 1000,
    startTimeoutMs: 1000,
    createdAtMs: 0
  }

  it("decoding an event refuses what decide never produces: an empty or untrimmed item, a float amount, round 0", () => {
    const decode = Schema.decodeUnknownEither(AuctionEvent)
    expect(Either.isRight(decode(created))).toBe(true)
    expect(Either.isLeft(decode({ ...created, item: "" }))).toBe(true)
    expect(Either.isLeft(decode({ ...created, item: " Vase" }))).toBe(true)
    expect(Either.isLeft(decode({ ...created, minBid: 0.5 }))).toBe(true)
    expect(Either.isLeft(decode({ _tag: "BidPlaced", auction: 1, round: 0, bidder: 2, amount: 10 }))).toBe(
      true
    )
  })

  it("evolve throws EvolveDefect on an event that cannot apply, instead of corrupting the state silently", () => {
    const { state } = mixed()
    expect(() =>
      evolve(state, { _tag: "BidPlaced", auction: aid(9), round: 1, bidder: bidder(1), amount: money(10) })
    ).toThrow(EvolveDefect)
    expect(() =>
      evolve(state, { _tag: "BidPlaced", auction: aid(3), round: 1, bidder: bidder(3), amount: money(10) })
    ).toThrow("bid twice")
    expect(() => evolve(state, { _tag: "AuctionPurged", auction: aid(3) })).toThrow(EvolveDefect)
  })
})

describe("reads: list and lookup", () => {
  it("list shows the open auctions (waiting and running) in id order with their bidder counts; ended ones are not listed", () => {
    expect(listOpen(mixed().state)).toStrictEqual([
      {
        auction: aid(3),
        item: "Clock",
        minBid: 5,
        minRounds: 2,
        minBidders: 2,
        bidders: 2,
        status: "running",
        auctioneer: sid(2)
      },
      {
        auction: aid(4),
        item: "Rug",
        minBid: 10,
        minRounds: 2,
        minBidders: 2,
        bidders: 1,
        status: "waiting",
        auctioneer: sid(3)
      }
    ])
  })

  it("list pages by auction id", () => {
    const { state } = mixed()
    expect(listOpen(state, { limit: 1 }).map((s) => s.auction)).toStrictEqual([3])
    expect(listOpen(state, { after: aid(3) }).map((s) => s.auction)).toStrictEqual([4])
    expect(listOpen(initialState)).toStrictEqual([])
  })

  it("lookup finds an ended auction in the history with its result or reason", () => {
    const { state } = mixed()
    expect(Option.getOrThrow(lookup(state, aid(1)))).toMatchObject({
      status: "closed",
      round: 1,
      result: {
        winner: bidder(1),
        amount: 12,
        totals: [
          { bidder: bidder(1), amount: 12 },
          { bidder: bidder(2), amount: 11 }
        ]
      },
      reason: null
    })
    expect(Option.getOrThrow(lookup(state, aid(2)))).toMatchObject({
      status: "cancelled",
      result: null,
      reason: "cancelled-by-auctioneer"
    })
    expect(lookup(state, aid(9))).toStrictEqual(Option.none())
  })

  it("lookup of a running auction reveals no totals (they include the sealed bids of the current round)", () => {
    const details = Option.getOrThrow(lookup(mixed().state, aid(3)))
    expect(details).toStrictEqual({
      auction: aid(3),
      item: "Clock",
      minBid: 5,
      minRounds: 2,
      minBidders: 2,
      bidders: 2,
      status: "running",
      auctioneer: sid(2),
      round: 1,
      result: null,
      reason: null
    })
  })
})
