/**
 * Every ended auction of a server's history shares one hidden class per phase. In V8 (Node 20) an
 * object spread followed by new fields gives each object a map of its own: 10,049 ended auctions
 * had 10,049 maps in a server's heap snapshot, memory and megamorphic property access for each.
 */
import { setFlagsFromString } from "node:v8"
import { describe, expect, it } from "@effect/vitest"
import { Either, HashMap } from "effect"
import type { AuctionCommand, AuctionsState } from "../../../src/domain/auction/index.js"
import { decide, evolveAll, initialState } from "../../../src/domain/auction/index.js"
import { aid, auctioneer, bidder, createCommand, T0 } from "./helpers.js"

setFlagsFromString("--allow-natives-syntax")
const haveSameMap = new Function("a", "b", "return %HaveSameMap(a, b)") as (a: unknown, b: unknown) => boolean

describe("ended auctions in memory", () => {
  it("closed auctions share one hidden class, and cancelled ones another", () => {
    let state: AuctionsState = initialState
    const run = (command: AuctionCommand) => {
      const decided = decide(state, command, T0)
      if (Either.isLeft(decided)) throw new Error(`refused: ${decided.left._tag}`)
      state = evolveAll(state, decided.right)
    }
    for (let a = 1; a <= 40; a++) {
      run(createCommand({ minRounds: 1 + (a % 3) }))
      run({ _tag: "JoinAuction", auction: aid(a), bidder: bidder(1) })
      run({ _tag: "JoinAuction", auction: aid(a), bidder: bidder(2) })
      if (a % 5 === 0) {
        run({ _tag: "CancelAuction", auction: aid(a), by: auctioneer })
        continue
      }
      run({ _tag: "StartAuction", auction: aid(a), by: auctioneer })
      for (let round = 1; round <= 1 + (a % 3); round++) {
        run({ _tag: "PlaceBid", auction: aid(a), bidder: bidder(1), round, amount: 10 + a })
        run({ _tag: "PlaceBid", auction: aid(a), bidder: bidder(2), round, amount: 30 })
      }
    }
    const ended = [...HashMap.values(state.history)]
    const closed = ended.filter((auction) => auction.phase === "closed")
    const cancelled = ended.filter((auction) => auction.phase === "cancelled")
    expect([closed.length, cancelled.length]).toEqual([32, 8])
    expect(closed.filter((auction) => !haveSameMap(auction, closed[0])).length).toBe(0)
    expect(cancelled.filter((auction) => !haveSameMap(auction, cancelled[0])).length).toBe(0)
  })
})
