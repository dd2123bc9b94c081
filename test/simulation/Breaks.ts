/**
 * Test-only ways to break the system on purpose, one per checker, to show
 * that each checker can fail (STYLE: "every checker shown able to fail").
 * They wrap what the simulator hands a server (its store, what it read from
 * its store, its transport), change the server settings, or corrupt the
 * checkers' input; nothing here is reachable from `src/`.
 */
import { Clock, Effect } from "effect"
import type { AgoraEvent } from "../../src/domain/agora/Agora.js"
import { agoraMachine } from "../../src/domain/agora/Agora.js"
import type { LogStoreShape, StoreOp } from "../../src/services/LogStore.js"
import type { TransportShape } from "../../src/services/Transport.js"
import type { FaultStyle } from "./Faults.js"
import type { History } from "./History.js"
import type { Breaks } from "./Simulator.js"

/**
 * A store whose fsync lies: `write` returns at once, and what it was given
 * reaches the store only every `flushEveryMs` (a page cache flushed now and
 * then). A crash loses everything since the last flush — entries a server
 * acknowledged, the vote it promised — so promise 1 no longer holds.
 */
export const lyingStore = (flushEveryMs: number, faultStyle: FaultStyle = "crash-storm"): Breaks => ({
  name: `store acknowledges writes it flushes only every ${flushEveryMs} ms`,
  faultStyle,
  store: (_id, store): LogStoreShape => {
    let pending: Array<StoreOp> = []
    let flushedMs = Number.NEGATIVE_INFINITY
    return {
      ...store,
      write: (ops) =>
        Effect.flatMap(Clock.currentTimeMillis, (nowMs) => {
          pending.push(...ops)
          if (nowMs - flushedMs < flushEveryMs) return Effect.void
          flushedMs = nowMs
          const batch = pending
          pending = []
          return store.write(batch)
        })
    }
  }
})

/**
 * A store that, on restart, forgets the vote and the epoch it was cast in,
 * together with every log entry of that epoch (the writes of the current
 * epoch, never synced): the server may then grant a pre-vote and accept a
 * second coordinator in an epoch it already voted in, so two candidates can
 * both win one epoch. (Forgetting only the vote and the uncommitted tail is
 * not enough to break the protocol in practice: the new leader's no-op commits
 * within milliseconds, and a restarted server takes its epoch from its log.)
 */
export const forgetfulVote = ((): Breaks => {
  /** Per server, where its log was cut at the last restart: the store is cut there at the first write. */
  const cuts = new Map<string, number>()
  return {
    name: "store forgets the vote, its epoch and that epoch's entries on restart",
    // Three servers in a churn of partitions: a voter that restarted lands on the other side often.
    faultStyle: "churn",
    servers: 3,
    stored: (id, stored) => {
      const hard = stored.hard
      if (hard === null) return stored
      const lastEpoch = stored.entries.at(-1)?.epoch ?? stored.startEpoch
      // Every entry of the newest epoch goes (a checkpoint's entries excepted).
      const kept = stored.entries.filter((entry) => entry.epoch < lastEpoch)
      const lastSeq = kept.at(-1)?.seq ?? stored.startSeq
      cuts.set(id, lastSeq + 1)
      const epoch = Math.min(hard.epoch, kept.at(-1)?.epoch ?? stored.startEpoch)
      return {
        ...stored,
        entries: kept,
        hard: { ...hard, vote: null, epoch, commitSeq: Math.min(hard.commitSeq, lastSeq) }
      }
    },
    store: (id, store): LogStoreShape => {
      const cut = cuts.get(id)
      cuts.delete(id)
      let first = cut !== undefined
      return {
        ...store,
        write: (ops) => {
          if (!first || cut === undefined) return store.write(ops)
          first = false
          return store.write([{ _tag: "Truncate", fromSeq: cut }, ...ops])
        }
      }
    }
  }
})()

/** Servers never send notification number `seq` of any stream: every client sees a gap there. */
export const skipNotice = (seq: number): Breaks => ({
  name: `servers never send notification #${seq}`,
  serverTransport: (_id, transport): TransportShape => ({
    ...transport,
    send: (to, message) =>
      message.body._tag === "Notify" && message.body.seq === seq ? Effect.void : transport.send(to, message)
  })
})

/**
 * Servers answer an accepted bid with an amount one higher than the one
 * committed (an answer built from something other than the committed entry).
 */
export const wrongBidAnswer: Breaks = {
  name: "servers answer accepted bids with the wrong amount",
  serverTransport: (_id, transport): TransportShape => ({
    ...transport,
    send: (to, message) => {
      const body = message.body
      if (body._tag !== "Reply" || body.result._tag !== "BidAccepted") return transport.send(to, message)
      return transport.send(to, {
        ...message,
        body: { ...body, result: { ...body.result, amount: body.result.amount + 1 } }
      })
    }
  })
}

/** Round deadlines of ten minutes: auctions whose bidders stop bidding never end within the bound. */
export const endlessRounds: Breaks = {
  name: "round and start timeouts of ten minutes",
  server: { roundTimeoutMs: 600_000, startTimeoutMs: 600_000 }
}

/** A store that fails for good after `writes` writes: the server's replica loop dies (a defect). */
export const failingStore = (writes: number): Breaks => ({
  name: `store fails after ${writes} writes`,
  store: (_id, store): LogStoreShape => {
    let count = 0
    return {
      ...store,
      write: (ops) => {
        count += 1
        return count > writes ? Effect.dieMessage("the disk is gone") : store.write(ops)
      }
    }
  }
})

/**
 * The winner checker's input corrupted: in the recorded history, every
 * closed auction's `AuctionClosed` names the lowest bidder as the winner.
 */
export const corruptWinners: Breaks = {
  name: "recorded AuctionClosed names the lowest bidder",
  history: (history: History) => {
    for (const [seq, seen] of history.committed) {
      const body = seen.entry.body
      if (body._tag !== "App") continue
      const decoded = agoraMachine.decodeEvents(body.data)
      if (decoded._tag === "Left") continue
      let changed = false
      const events = decoded.right.map((event): AgoraEvent => {
        if (event._tag !== "AuctionHappened" || event.event._tag !== "AuctionClosed") return event
        const closed = event.event
        const lowest = [...closed.totals].sort((a, b) => a.amount - b.amount)[0]
        if (lowest === undefined || lowest.bidder === closed.winner) return event
        changed = true
        return { ...event, event: { ...closed, winner: lowest.bidder, amount: lowest.amount } }
      })
      if (!changed) continue
      const entry = { ...seen.entry, body: { _tag: "App" as const, data: agoraMachine.encodeEvents(events) } }
      history.committed.set(seq, { ...seen, entry, text: JSON.stringify(entry) })
    }
  }
}
