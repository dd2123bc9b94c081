/**
 * The Agora load: `auctions` auction slots, each with one auctioneer and
 * `bidders` bidders, every one a `Client` service of its own (its own UDP
 * socket and session, one request in flight: load comes from many clients,
 * DESIGN §5). A slot runs auctions back to back: create, joins, ready check,
 * start, then `rounds` rounds in which every bidder waits for the round's
 * `RoundStartedNotice` and bids; the last round closes the auction and the
 * slot creates the next one. Each acknowledged bid is a committed bid (the
 * server answers only once a majority stored it).
 */
import { performance } from "node:perf_hooks"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import type { Notice } from "../../domain/auction/Notifications.js"
import type { DeliveredNotice } from "../../domain/ClientStreams.js"
import type { AuctionId, ClientId } from "../../domain/Ids.js"
import { makeUdp, type UdpBindError } from "../../layers/TransportUdp.js"
import { type ClientShape, make as makeClient } from "../../services/Client.js"
import { Transport } from "../../services/Transport.js"
import type { Stats } from "./Stats.js"

export interface AgoraLoadOptions {
  readonly idPrefix: string
  readonly auctions: number
  readonly bidders: number
  readonly rounds: number
  readonly bind: string
  readonly discoveryPort: number
  readonly broadcast: string
  readonly maxDatagram: number
  readonly requestTimeoutMs: number
  /** How long a participant waits for a notice before the slot gives the auction up. */
  readonly noticeTimeoutMs: number
  /** Clients connecting at once. */
  readonly connectConcurrency: number
}

/** A participant's delivered notices, waited for by (auction, predicate). */
class NoticeBox {
  /** Notices no waiter took yet, per auction (bounded: the oldest go first). */
  private readonly kept = new Map<number, Array<Notice>>()
  private readonly waiters = new Set<{
    readonly auction: number
    readonly match: (notice: Notice) => boolean
    readonly resume: (notice: Notice) => void
  }>()

  push({ auction, notice }: DeliveredNotice): void {
    for (const waiter of this.waiters) {
      if (waiter.auction === auction && waiter.match(notice)) {
        this.waiters.delete(waiter)
        waiter.resume(notice)
        return
      }
    }
    let list = this.kept.get(auction)
    if (list === undefined) {
      list = []
      this.kept.set(auction, list)
    }
    list.push(notice)
    if (list.length > 256) list.shift()
  }

  /**
   * The first notice of `auction` that matches, kept or to come; none within `timeoutMs`. The
   * timeout is a bare timer: an Effect timeout race per wait cost the load generator more CPU
   * than the bid it waits to send.
   */
  wait(
    auction: number,
    match: (notice: Notice) => boolean,
    timeoutMs: number
  ): Effect.Effect<Option.Option<Notice>> {
    return Effect.async<Option.Option<Notice>>((resume) => {
      const list = this.kept.get(auction)
      const index = list?.findIndex(match) ?? -1
      if (list !== undefined && index >= 0) {
        const [notice] = list.splice(index, 1)
        if (notice !== undefined) return resume(Effect.succeedSome(notice))
      }
      const waiter = {
        auction,
        match,
        resume: (notice: Notice) => {
          clearTimeout(timer)
          resume(Effect.succeedSome(notice))
        }
      }
      const timer = setTimeout(() => {
        this.waiters.delete(waiter)
        resume(Effect.succeedNone)
      }, timeoutMs)
      this.waiters.add(waiter)
      return Effect.sync(() => {
        clearTimeout(timer)
        this.waiters.delete(waiter)
      })
    })
  }

  forget(auction: number): void {
    this.kept.delete(auction)
  }
}

interface Participant {
  readonly client: ClientShape
  readonly box: NoticeBox
}

/** Why a slot gave an auction up; counted by code. */
class SlotFailure {
  constructor(readonly code: string) {}
}

const requestErrorCode = (error: { readonly _tag: string; readonly code?: string }): string =>
  error._tag === "Refused" && error.code !== undefined ? error.code : error._tag

export interface AgoraLoad {
  readonly clients: number
  /** Runs every slot until interrupted (or `stopAfterAuctions` auctions completed: then it returns). */
  readonly run: (options: {
    readonly pace: Effect.Effect<void>
    readonly stopAfterAuctions: number
  }) => Effect.Effect<void>
  /** The leader and epoch the first client knows now. */
  readonly leader: Effect.Effect<Option.Option<{ readonly id: string; readonly epoch: number }>>
}

/** Connects every client (in the current scope), ready to run. */
export const makeAgoraLoad = (
  options: AgoraLoadOptions,
  stats: Stats
): Effect.Effect<AgoraLoad, UdpBindError | import("../../services/Client.js").NotConnected, Scope.Scope> =>
  Effect.gen(function* () {
    const participant = (name: string) =>
      Effect.gen(function* () {
        const id = `${options.idPrefix}-${name}` as ClientId
        const transport = yield* makeUdp({
          identity: { role: "client", id },
          boot: 0,
          bindAddress: options.bind,
          port: 0,
          discoveryPort: options.discoveryPort,
          broadcastAddress: options.broadcast,
          maxDatagramBytes: options.maxDatagram,
          listenDiscovery: false
        })
        const box = new NoticeBox()
        const client = yield* makeClient({
          id,
          requestTimeoutMs: options.requestTimeoutMs,
          onNotice: (delivered) => {
            stats.notice()
            box.push(delivered)
          }
        }).pipe(Effect.provideService(Transport, transport))
        yield* client.connect
        return { client, box } satisfies Participant
      })

    const slots = yield* Effect.forEach(
      Array.from({ length: options.auctions }, (_, slot) => slot),
      (slot) =>
        Effect.all(
          {
            auctioneer: participant(`a${slot}`),
            bidders: Effect.forEach(
              Array.from({ length: options.bidders }, (_, b) => b),
              (b) => participant(`a${slot}b${b}`)
            )
          },
          { concurrency: "unbounded" }
        ),
      { concurrency: Math.max(1, Math.floor(options.connectConcurrency / (options.bidders + 1))) }
    )

    /** A request, timed into `other`, with its failure turned into a SlotFailure. */
    const timed = <A, E extends { readonly _tag: string; readonly code?: string }>(
      effect: Effect.Effect<A, E>
    ): Effect.Effect<A, SlotFailure> =>
      Effect.suspend(() => {
        const t0 = performance.now()
        return effect.pipe(
          Effect.tap(() => Effect.sync(() => stats.other((performance.now() - t0) * 1000))),
          Effect.mapError((error) => new SlotFailure(requestErrorCode(error)))
        )
      })

    const awaitNotice = (
      who: Participant,
      auction: AuctionId,
      match: (notice: Notice) => boolean,
      what: string
    ) =>
      Effect.flatMap(who.box.wait(auction, match, options.noticeTimeoutMs), (found) =>
        Option.isSome(found)
          ? Effect.succeed(found.value)
          : Effect.fail(new SlotFailure(`NoticeTimeout(${what})`))
      )

    const bidLoop = (who: Participant, auction: AuctionId, pace: Effect.Effect<void>) =>
      Effect.gen(function* () {
        for (let round = 1; round <= options.rounds; round++) {
          yield* awaitNotice(
            who,
            auction,
            (n) => n._tag === "RoundStartedNotice" && n.round === round,
            "RoundStarted"
          )
          yield* pace
          const amount = 10 + Math.floor(Math.random() * 1000)
          const t0 = performance.now()
          const accepted = yield* Effect.either(who.client.bid(auction, amount, round))
          const t1 = performance.now()
          if (accepted._tag === "Left")
            return yield* Effect.fail(new SlotFailure(requestErrorCode(accepted.left)))
          const connected = yield* who.client.connection
          stats.ack(
            (t1 - t0) * 1000,
            Date.now(),
            Option.isSome(connected) ? connected.value.leader.epoch : null
          )
        }
      })

    const runAuction = (index: number, pace: Effect.Effect<void>) =>
      Effect.gen(function* () {
        const slot = slots[index]
        if (slot === undefined) return
        const { auctioneer, bidders } = slot
        const auction = yield* timed(
          auctioneer.client.create({
            item: `bench lot ${index}`,
            minBid: 10,
            minRounds: options.rounds,
            minBidders: bidders.length
          })
        )
        const forget = Effect.sync(() => {
          for (const p of [auctioneer, ...bidders]) p.box.forget(auction)
        })
        yield* Effect.gen(function* () {
          yield* Effect.forEach(bidders, (b) => timed(b.client.join(auction)), { concurrency: "unbounded" })
          yield* awaitNotice(auctioneer, auction, (n) => n._tag === "ReadyCheckNotice", "ReadyCheck")
          yield* timed(auctioneer.client.start(auction))
          yield* Effect.forEach(bidders, (b) => bidLoop(b, auction, pace), { concurrency: "unbounded" })
          yield* awaitNotice(auctioneer, auction, (n) => n._tag === "AuctionClosedNotice", "AuctionClosed")
          stats.completed()
        }).pipe(Effect.ensuring(forget))
      })

    const run = (runOptions: { readonly pace: Effect.Effect<void>; readonly stopAfterAuctions: number }) => {
      const done = () =>
        runOptions.stopAfterAuctions > 0 && stats.auctionsCompletedAll >= runOptions.stopAfterAuctions
      const slotLoop = (index: number): Effect.Effect<void> =>
        Effect.gen(function* () {
          while (!done()) {
            const outcome = yield* Effect.either(runAuction(index, runOptions.pace))
            if (outcome._tag === "Left") {
              stats.error(outcome.left.code)
              // Give the group a moment (a failover, a deadline) before the next auction.
              yield* Effect.sleep(100)
            }
          }
        })
      return Effect.forEach(slots, (_, index) => slotLoop(index), { concurrency: "unbounded", discard: true })
    }

    const first = slots[0]?.auctioneer.client
    const leader =
      first === undefined
        ? Effect.succeed(Option.none())
        : Effect.map(
            first.connection,
            Option.map((c) => ({ id: c.leader.id as string, epoch: c.leader.epoch as number }))
          )

    return { clients: slots.length * (options.bidders + 1), run, leader } satisfies AgoraLoad
  })
