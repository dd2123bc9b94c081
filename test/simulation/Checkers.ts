/**
 * The checkers: each reads the recorded history of a run (History.ts) and
 * returns what it found wrong, as readable lines. They are plain functions
 * of data, independent of the run, so a test can feed them a corrupted
 * history and watch them fail (STYLE: every checker shown able to fail).
 *
 * What each one holds the system to (DESIGN §1):
 * - leaders-per-epoch (promise 4): at most one server led in any epoch.
 * - committed-prefix (promise 2): every committed entry any server ever
 *   showed, at any time, is the same at its seq; nothing committed vanishes.
 * - durability (promise 1): every seq ever committed is still committed at
 *   the end, and the recorded history has no hole.
 * - requests (promises 1, 5, 7): an acknowledged request's `RequestAnswered`
 *   is in the history exactly once, with the answer the client got, and its
 *   effect is there (a bid's `BidPlaced`, a join's `BidderJoined`, …); a
 *   refused one is committed without any effect; a forged one never; a timed-
 *   out one at most once; nothing is answered that no client asked.
 * - notifications (promise 2): every notification a client received is the
 *   one the committed log numbers so for it (no reordering, no gap, a
 *   duplicate only as an identical copy), and after quiescence it has them
 *   all for every auction it knows it is in.
 * - winner (DESIGN §3): every closed auction's result, recomputed from its
 *   committed bids: the highest total; on a tie the first round-1 bid
 *   committed, then the earliest join; every round completed with exactly its
 *   bids (0 for the missing); exactly `minRounds` rounds.
 * - termination: after healing, a single leader within a bound, and every
 *   auction closed or cancelled within the bound the workload's timeouts give.
 * - defects: no server logged an error (a dead replica loop, a failed invariant).
 * (- run: the simulation itself ended badly — a deadlock, a budget, a defect
 *   in the simulator — reported by the simulator, not computed here.)
 */
import { Either, HashMap, Option } from "effect"
import type { AgoraEvent, AgoraState } from "../../src/domain/agora/Agora.js"
import { agoraMachine } from "../../src/domain/agora/Agora.js"
import type { Auction, AuctionEvent } from "../../src/domain/auction/index.js"
import { notificationsFor } from "../../src/domain/auction/index.js"
import type { SessionId } from "../../src/domain/Ids.js"
import type { ClientOp, ReplyResult } from "../../src/domain/Messages.js"
import type { History, OpRecord } from "./History.js"
import { canonicalJson } from "./History.js"
import { committedPrefixViolations, leadersPerEpochViolations } from "./SimCluster.js"

export const checkerNames = [
  "run",
  "leaders-per-epoch",
  "committed-prefix",
  "durability",
  "requests",
  "notifications",
  "winner",
  "termination",
  "defects"
] as const
export type CheckerName = (typeof checkerNames)[number]

export interface Violation {
  readonly checker: CheckerName
  readonly message: string
}

/** The bounds the termination checker holds the run to (ms of virtual time after healing). */
export interface Bounds {
  readonly leaderAfterHealMs: number
  readonly terminalAfterHealMs: number
}

/** The committed history decoded: every App entry's events, in seq order, and the state they build. */
export interface Decoded {
  readonly entries: ReadonlyArray<{ readonly seq: number; readonly events: ReadonlyArray<AgoraEvent> }>
  readonly state: AgoraState
  /** Each auction's events in log order, with the seq that carried each. */
  readonly auctionEvents: ReadonlyMap<
    number,
    ReadonlyArray<{ readonly seq: number; readonly event: AuctionEvent }>
  >
  readonly problems: ReadonlyArray<string>
}

/** Decodes and folds the committed history from seq 1 to its first hole. */
export const decodeHistory = (history: History): Decoded => {
  const entries: Array<{ seq: number; events: ReadonlyArray<AgoraEvent> }> = []
  const auctionEvents = new Map<number, Array<{ seq: number; event: AuctionEvent }>>()
  const problems: Array<string> = []
  let state = agoraMachine.initial
  for (let seq = 1; history.committed.has(seq); seq++) {
    const seen = history.committed.get(seq)
    if (seen === undefined || seen.entry.body._tag !== "App") continue
    const decoded = agoraMachine.decodeEvents(seen.entry.body.data)
    if (Either.isLeft(decoded)) {
      problems.push(`seq ${seq}: App data does not decode: ${String(decoded.left)}`)
      continue
    }
    entries.push({ seq, events: decoded.right })
    for (const event of decoded.right) {
      try {
        state = agoraMachine.evolve(state, event)
      } catch (error) {
        problems.push(`seq ${seq}: ${event._tag} does not apply: ${String(error)}`)
      }
      if (event._tag === "AuctionHappened") {
        const list = auctionEvents.get(event.event.auction) ?? []
        list.push({ seq, event: event.event })
        auctionEvents.set(event.event.auction, list)
      }
    }
  }
  return { entries, state, auctionEvents, problems }
}

export const checkLeadersPerEpoch = (history: History): ReadonlyArray<string> =>
  leadersPerEpochViolations(history.roleEvents)

export const checkCommittedPrefix = (history: History): ReadonlyArray<string> => [
  ...history.samplerViolations,
  ...committedPrefixViolations(new Map(history.final.map((server) => [server.id, server.entries])))
]

export const checkDurability = (history: History): ReadonlyArray<string> => {
  const found: Array<string> = []
  const finalCommit = Math.max(0, ...history.final.filter((s) => s.running).map((s) => s.commitSeq))
  if (history.final.length > 0 && finalCommit < history.commitSeqMax) {
    found.push(
      `seq ${history.commitSeqMax} was committed during the run, but at the end the highest commit seq is ${finalCommit}`
    )
  }
  for (let seq = 1; seq <= history.commitSeqMax; seq++) {
    if (!history.committed.has(seq)) {
      found.push(
        `the recorded history has no entry at seq ${seq} (committed up to ${history.commitSeqMax}); if no server ever held it, it was lost, else the sampler missed it`
      )
      break
    }
  }
  return found
}

/** Answers that are not the committed client table's: the request was not decided by the rules. */
const undecidedCodes = new Set(["SessionExpired", "BadToken", "SplitGroup", "Timeout"])

const isDecidedAnswer = (result: ReplyResult): boolean =>
  result._tag !== "Auctions" && !(result._tag === "Failed" && undecidedCodes.has(result.code))

/** Whether an entry's events show the effect an accepted answer promises. */
const effectOf = (
  op: ClientOp,
  session: number,
  answer: ReplyResult,
  events: ReadonlyArray<AgoraEvent>
): string | undefined => {
  const auctionEvents = events.flatMap((event) => (event._tag === "AuctionHappened" ? [event.event] : []))
  switch (answer._tag) {
    case "Failed":
      return auctionEvents.length === 0
        ? undefined
        : `refused (${answer.code}) but its entry holds ${auctionEvents.map((e) => e._tag).join(", ")}`
    case "Created":
      return auctionEvents.some(
        (e) => e._tag === "AuctionCreated" && e.auction === answer.auction && e.auctioneer === session
      )
        ? undefined
        : `answered Created ${answer.auction} without its AuctionCreated`
    case "Joined":
      return auctionEvents.some(
        (e) => e._tag === "BidderJoined" && e.auction === answer.auction && e.bidder === session
      )
        ? undefined
        : `answered Joined ${answer.auction} without its BidderJoined`
    case "Started":
      return auctionEvents.some((e) => e._tag === "AuctionStarted" && e.auction === answer.auction)
        ? undefined
        : `answered Started ${answer.auction} without its AuctionStarted`
    case "Cancelled":
      return auctionEvents.some((e) => e._tag === "AuctionCancelled" && e.auction === answer.auction)
        ? undefined
        : `answered Cancelled ${answer.auction} without its AuctionCancelled`
    case "BidAccepted":
      return op._tag === "Bid" &&
        op.amount === answer.amount &&
        op.round === answer.round &&
        auctionEvents.some(
          (e) =>
            e._tag === "BidPlaced" &&
            e.auction === answer.auction &&
            e.bidder === session &&
            e.round === answer.round &&
            e.amount === answer.amount
        )
        ? undefined
        : `answered BidAccepted ${canonicalJson(answer)} without the matching BidPlaced`
    case "Auctions":
      return `a read's answer in the log`
  }
}

/** The answers an op may get from the rules (besides Failed). */
const answerFits = (op: ClientOp, answer: ReplyResult): boolean => {
  if (answer._tag === "Failed") return true
  switch (op._tag) {
    case "Create":
      return answer._tag === "Created"
    case "Join":
      return answer._tag === "Joined" && answer.auction === op.auction
    case "Start":
      return answer._tag === "Started" && answer.auction === op.auction
    case "Cancel":
      return answer._tag === "Cancelled" && answer.auction === op.auction
    case "Bid":
      return answer._tag === "BidAccepted" && answer.auction === op.auction
    case "List":
      return false
  }
}

const opLabel = (op: OpRecord) =>
  `${op.client} request ${op.requestId} (session ${op.session ?? "none"}${op.forged ? ", forged" : ""}) ${canonicalJson(op.op)}`

export const checkRequests = (history: History, decoded: Decoded): ReadonlyArray<string> => {
  const found: Array<string> = []
  const answered = new Map<
    string,
    Array<{ seq: number; answer: ReplyResult; events: ReadonlyArray<AgoraEvent> }>
  >()
  for (const { seq, events } of decoded.entries) {
    for (const event of events) {
      if (event._tag !== "RequestAnswered") continue
      const key = `${event.session}/${event.requestId}`
      const list = answered.get(key) ?? []
      list.push({ seq, answer: event.answer, events })
      answered.set(key, list)
    }
  }
  const asked = new Map<string, OpRecord>()
  for (const op of history.ops) {
    if (op.session === null || op.requestId === 0) continue
    const key = `${op.session}/${op.requestId}`
    asked.set(key, op)
    const copies = answered.get(key) ?? []
    const result = op.result
    if (copies.length > 1) {
      found.push(
        `${opLabel(op)}: answered ${copies.length} times in the log (seqs ${copies.map((c) => c.seq).join(", ")})`
      )
      continue
    }
    const copy = copies[0]
    if (op.forged) {
      if (copy !== undefined) found.push(`${opLabel(op)}: a forged request was applied at seq ${copy.seq}`)
      if (
        result !== null &&
        result !== "timeout" &&
        !(result._tag === "Failed" && result.code === "BadToken")
      ) {
        found.push(`${opLabel(op)}: a forged request got ${canonicalJson(result)}`)
      }
      continue
    }
    if (result === null || result === "timeout" || op.op._tag === "List") continue
    if (result._tag === "Failed" && result.code === "SplitGroup") {
      found.push(`${opLabel(op)}: answered SplitGroup: two groups met`)
      continue
    }
    if (result._tag === "Failed" && result.code === "BadToken") {
      found.push(`${opLabel(op)}: the client's own token was refused`)
      continue
    }
    if (!isDecidedAnswer(result)) continue
    if (copy === undefined) {
      found.push(`${opLabel(op)}: acknowledged ${canonicalJson(result)} but not in the committed history`)
      continue
    }
    if (canonicalJson(copy.answer) !== canonicalJson(result)) {
      found.push(
        `${opLabel(op)}: the client got ${canonicalJson(result)} but seq ${copy.seq} answered ${canonicalJson(copy.answer)}`
      )
    }
  }
  // Every answer in the log: asked by someone, fitting the op, with its effect and nothing else.
  for (const [key, copies] of answered) {
    const op = asked.get(key)
    const first = copies[0]
    if (first === undefined) continue
    if (op === undefined) {
      found.push(`seq ${first.seq}: RequestAnswered ${key} answers a request no client sent`)
      continue
    }
    if (!answerFits(op.op, first.answer)) {
      found.push(
        `seq ${first.seq}: ${opLabel(op)} answered ${canonicalJson(first.answer)}, which does not fit`
      )
      continue
    }
    const problem = effectOf(op.op, op.session ?? 0, first.answer, first.events)
    if (problem !== undefined) found.push(`seq ${first.seq}: ${opLabel(op)}: ${problem}`)
  }
  return found
}

const findAuction = (state: AgoraState, auction: number): Auction | undefined => {
  const open = HashMap.get(state.auctions.open, auction as never)
  return Option.isSome(open)
    ? open.value
    : Option.getOrUndefined(HashMap.get(state.auctions.history, auction as never))
}

export const checkNotifications = (history: History, decoded: Decoded): ReadonlyArray<string> => {
  const found: Array<string> = []
  const report = (line: string) => {
    if (found.length < 40) found.push(line)
  }
  for (const client of history.clients) {
    const session = client.session
    if (session === null) continue
    const byAuction = new Map<number, Array<{ seq: number; text: string }>>()
    for (const delivery of client.deliveries) {
      const list = byAuction.get(delivery.auction) ?? []
      list.push({ seq: delivery.seq, text: canonicalJson(delivery.notice) })
      byAuction.set(delivery.auction, list)
    }
    // The auctions it knows it is in: created or joined with an answer, or told of.
    const knows = new Set<number>(byAuction.keys())
    for (const op of history.ops) {
      if (op.client !== client.name || op.forged || op.result === null || op.result === "timeout") continue
      if (op.result._tag === "Created" || op.result._tag === "Joined") knows.add(op.result.auction)
    }
    for (const auction of [...knows].sort((a, b) => a - b)) {
      const state = findAuction(decoded.state, auction)
      const expected =
        state === undefined
          ? []
          : notificationsFor(state, session as SessionId, 1).notifications.map((n) => canonicalJson(n.notice))
      const got = byAuction.get(auction) ?? []
      const where = `${client.name} (session ${session}) auction ${auction}`
      if (client.deliveryKind === "ordered") {
        got.forEach((item, index) => {
          if (item.seq !== index + 1) report(`${where}: delivered #${item.seq} in position ${index + 1}`)
          else if (item.text !== expected[index])
            report(`${where}: #${item.seq} is ${item.text}, the log says ${expected[index] ?? "nothing"}`)
        })
      } else {
        const bySeq = new Map<number, string>()
        for (const item of got) {
          const other = bySeq.get(item.seq)
          if (other !== undefined && other !== item.text) {
            report(`${where}: two different notices numbered ${item.seq}: ${other} and ${item.text}`)
          }
          bySeq.set(item.seq, item.text)
          if (item.seq > expected.length) {
            report(
              `${where}: received #${item.seq} ${item.text}, but the log numbers only ${expected.length}`
            )
          } else if (item.text !== expected[item.seq - 1]) {
            report(`${where}: #${item.seq} is ${item.text}, the log says ${expected[item.seq - 1]}`)
          }
        }
        const top = Math.max(0, ...bySeq.keys())
        const missing = Array.from({ length: top }, (_, i) => i + 1).filter((seq) => !bySeq.has(seq))
        if (missing.length > 0)
          report(`${where}: gap: received up to #${top} but never #${missing.join(", #")}`)
      }
      const count = new Set(got.map((item) => item.seq)).size
      if (count < expected.length) {
        report(
          `${where}: after quiescence has ${count} of the ${expected.length} notices the log holds for it`
        )
      }
    }
  }
  return found
}

/** An independent recomputation of a closed auction's result from its committed events. */
export const checkWinners = (decoded: Decoded): ReadonlyArray<string> => {
  const found: Array<string> = []
  for (const [auction, events] of decoded.auctionEvents) {
    const created = events.find((e) => e.event._tag === "AuctionCreated")?.event
    const started = events.find((e) => e.event._tag === "AuctionStarted")?.event
    const closed = events.find((e) => e.event._tag === "AuctionClosed")?.event
    if (closed?._tag !== "AuctionClosed") continue
    if (started?._tag !== "AuctionStarted" || created?._tag !== "AuctionCreated") {
      found.push(`auction ${auction}: closed without being created and started`)
      continue
    }
    const bidders = started.bidders
    const totals = new Map<number, number>(bidders.map((bidder) => [bidder, 0]))
    const firstBidOrder = new Map<number, number>()
    const roundBids = new Map<number, Map<number, number>>()
    let roundsCompleted = 0
    for (const { event } of events) {
      if (event._tag === "BidPlaced") {
        totals.set(event.bidder, (totals.get(event.bidder) ?? Number.NaN) + event.amount)
        if (event.round === 1 && !firstBidOrder.has(event.bidder))
          firstBidOrder.set(event.bidder, firstBidOrder.size)
        const round = roundBids.get(event.round) ?? new Map<number, number>()
        round.set(event.bidder, event.amount)
        roundBids.set(event.round, round)
      } else if (event._tag === "RoundCompleted") {
        roundsCompleted += 1
        const bids = roundBids.get(event.round) ?? new Map<number, number>()
        const want = bidders.map((bidder) => ({ bidder, amount: bids.get(bidder) ?? 0 }))
        if (canonicalJson(want) !== canonicalJson(event.bids)) {
          found.push(
            `auction ${auction} round ${event.round}: completed with ${canonicalJson(event.bids)}, its bids were ${canonicalJson(want)}`
          )
        }
      }
    }
    if (roundsCompleted !== created.minRounds) {
      found.push(
        `auction ${auction}: closed after ${roundsCompleted} rounds, minRounds is ${created.minRounds}`
      )
    }
    // Highest total; tie: earliest round-1 bid (none = after all with one); then join order.
    let best: { bidder: number; amount: number; first: number; join: number } | undefined
    bidders.forEach((bidder, join) => {
      const amount = totals.get(bidder) ?? 0
      const first = firstBidOrder.get(bidder) ?? Number.POSITIVE_INFINITY
      if (
        best === undefined ||
        amount > best.amount ||
        (amount === best.amount && (first < best.first || (first === best.first && join < best.join)))
      ) {
        best = { bidder, amount, first, join }
      }
    })
    const wantTotals = bidders.map((bidder) => ({ bidder, amount: totals.get(bidder) ?? 0 }))
    if (best === undefined) {
      found.push(`auction ${auction}: closed without bidders`)
    } else if (closed.winner !== best.bidder || closed.amount !== best.amount) {
      found.push(
        `auction ${auction}: winner ${closed.winner} with ${closed.amount}, but the bids make ${best.bidder} the winner with ${best.amount} (totals ${canonicalJson(wantTotals)})`
      )
    }
    if (canonicalJson(closed.totals) !== canonicalJson(wantTotals)) {
      found.push(
        `auction ${auction}: totals ${canonicalJson(closed.totals)}, the bids sum to ${canonicalJson(wantTotals)}`
      )
    }
  }
  return found
}

export const checkTermination = (
  history: History,
  decoded: Decoded,
  bounds: Bounds
): ReadonlyArray<string> => {
  const found: Array<string> = []
  const healedAtMs = history.healedAtMs
  if (healedAtMs === null || history.endedAtMs === null) return ["the run ended before quiescence"]
  if (history.leaderAfterHealMs === null) {
    found.push(`no single leader (with every server following it) after healing at ${healedAtMs} ms`)
  } else if (history.leaderAfterHealMs - healedAtMs > bounds.leaderAfterHealMs) {
    found.push(
      `a single leader only ${history.leaderAfterHealMs - healedAtMs} ms after healing (bound ${bounds.leaderAfterHealMs} ms)`
    )
  }
  for (const auction of decoded.auctionEvents.keys()) {
    const state = findAuction(decoded.state, auction)
    if (state === undefined) continue
    const terminal = state.phase === "closed" || state.phase === "cancelled"
    const atMs = history.terminalAtMs.get(auction)
    if (!terminal || atMs === undefined) {
      found.push(
        `auction ${auction} is still ${state.phase} at the end (${history.endedAtMs - healedAtMs} ms after healing)`
      )
    } else if (atMs - healedAtMs > bounds.terminalAfterHealMs) {
      found.push(
        `auction ${auction} ended ${atMs - healedAtMs} ms after healing (bound ${bounds.terminalAfterHealMs} ms)`
      )
    }
  }
  return found
}

export const checkDefects = (history: History): ReadonlyArray<string> =>
  history.defects.map((defect) => `${defect.atMs} ms ${defect.node}: ${defect.message}`)

/** Every checker over one run's history. */
export const checkAll = (history: History, bounds: Bounds): ReadonlyArray<Violation> => {
  const decoded = decodeHistory(history)
  const tag =
    (checker: CheckerName) =>
    (lines: ReadonlyArray<string>): ReadonlyArray<Violation> =>
      lines.map((message) => ({ checker, message }))
  return [
    ...tag("leaders-per-epoch")(checkLeadersPerEpoch(history)),
    ...tag("committed-prefix")(checkCommittedPrefix(history)),
    ...tag("durability")([...checkDurability(history), ...decoded.problems]),
    ...tag("requests")(checkRequests(history, decoded)),
    ...tag("notifications")(checkNotifications(history, decoded)),
    ...tag("winner")(checkWinners(decoded)),
    ...tag("termination")(checkTermination(history, decoded, bounds)),
    ...tag("defects")(checkDefects(history))
  ]
}

/** Auctions in the decoded history by how they stand at the end. */
export const auctionOutcomes = (decoded: Decoded): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const auction of decoded.auctionEvents.keys()) {
    const phase = findAuction(decoded.state, auction)?.phase ?? "purged"
    counts[phase] = (counts[phase] ?? 0) + 1
  }
  return counts
}
