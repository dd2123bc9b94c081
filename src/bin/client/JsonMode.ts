/**
 * `agora client --json`: the scripting protocol of DESIGN §7 over stdin and
 * stdout (formats in JsonProtocol.ts).
 *
 * - Requests are handled one at a time, in input order: each gets its reply
 *   line before the next is looked at (the Client has one request in flight
 *   anyway, DESIGN §5). Events and `leader-changed` are printed as they are
 *   delivered, so they may appear between replies.
 * - `ready` is printed once a leader and a session are found. Lines read
 *   meanwhile wait, for at most the request timeout; after that they are
 *   handled (and answered `Timeout` with `"sent":false` while no leader is
 *   known) and `ready` follows whenever the connection comes.
 * - End of input, or `quit`: the lines before it are answered (or time out),
 *   then the client closes its session's sockets and the process exits 0.
 * - stdout is the protocol only; logs go to stderr.
 */
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Option from "effect/Option"
import type * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import { formatAddress } from "../../domain/Schemas.js"
import type { ClientShape, Connected, RequestError } from "../../services/Client.js"
import {
  errorLine,
  type JsonLine,
  type JsonRequest,
  LineCharsMax,
  noticeLine,
  parseLine,
  type RefField,
  replyLine
} from "./JsonProtocol.js"
import { readLines } from "./StdinLines.js"

/** Most list pages fetched for one `list` (each page is at most one datagram of auctions). */
const ListPagesMax = 10_000

export interface JsonModeOptions {
  readonly requestTimeoutMs: number
}

/** Writes one protocol line. A closed stdout (EPIPE) ends the program through `stdoutClosed`. */
const emit = (line: JsonLine): Effect.Effect<void> =>
  Effect.sync(() => {
    if (process.stdout.writable) process.stdout.write(`${JSON.stringify(line)}\n`)
  })

const readyLine = (connected: Connected): JsonLine => ({
  type: "ready",
  client: connected.client,
  leader: connected.leader.id,
  session: connected.session,
  epoch: connected.leader.epoch
})

const requestErrorLine = (ref: RefField, error: RequestError): JsonLine => {
  switch (error._tag) {
    case "Timeout":
      return errorLine(ref, "Timeout", error.message)
    case "NotConnected":
      // Never sent: certainly not applied (a plain Timeout may have been).
      return errorLine(ref, "Timeout", error.message, { sent: false })
    case "ClientBusy":
      return errorLine(ref, "ClientBusy", `too many requests waiting (${error.capacity}): not sent`)
  }
}

/** The one reply line of a request (list: all pages gathered). */
const answer = (client: ClientShape, request: JsonRequest, ref: RefField): Effect.Effect<JsonLine> => {
  const ask = (op: Parameters<ClientShape["request"]>[0]) =>
    client.request(op).pipe(
      Effect.map((result) => replyLine(ref, result)),
      Effect.catchAll((error) => Effect.succeed(requestErrorLine(ref, error)))
    )
  switch (request.op) {
    case "create":
      return ask({
        _tag: "Create",
        item: request.item,
        minBid: request.minBid,
        minRounds: request.minRounds,
        minBidders: request.minBidders
      })
    case "join":
      return ask({ _tag: "Join", auction: request.auction })
    case "start":
      return ask({ _tag: "Start", auction: request.auction })
    case "cancel":
      return ask({ _tag: "Cancel", auction: request.auction })
    case "bid":
      return Effect.gen(function* () {
        const round = request.round ?? Option.getOrUndefined(yield* client.currentRound(request.auction))
        if (round === undefined) {
          return errorLine(
            ref,
            "WrongRound",
            `no round of auction ${request.auction} has started that this client knows of: nothing was sent`
          )
        }
        return yield* ask({ _tag: "Bid", auction: request.auction, round, amount: request.amount })
      })
    case "list":
      return listAll(client, ref)
    case "status":
      return Effect.map(client.connection, (connection) =>
        Option.match(connection, {
          onNone: (): JsonLine => ({
            type: "status",
            client: client.id,
            session: null,
            leader: null,
            epoch: null,
            address: null,
            ...ref
          }),
          onSome: (c): JsonLine => ({
            type: "status",
            client: c.client,
            session: c.session,
            leader: c.leader.id,
            epoch: c.leader.epoch,
            address: formatAddress(c.leader.address),
            ...ref
          })
        })
      )
    case "quit":
      // The loop stops at `quit` before asking for an answer.
      return Effect.dieMessage("JsonMode: quit has no answer")
  }
}

/** Every page of the list, as one `auctions` line; the first failing page is the answer. */
const listAll = (client: ClientShape, ref: RefField): Effect.Effect<JsonLine> =>
  Effect.gen(function* () {
    const rows: Array<JsonLine> = []
    let page = 0
    for (let pages = 0; pages < ListPagesMax; pages++) {
      const result = yield* Effect.either(client.request({ _tag: "List", page }))
      if (result._tag === "Left") return requestErrorLine(ref, result.left)
      const reply = result.right
      if (reply._tag !== "Auctions") return replyLine(ref, reply)
      const line = replyLine({}, reply)
      rows.push(...(line.auctions as ReadonlyArray<JsonLine>))
      if (reply.nextPage === null) return { type: "auctions", auctions: rows, ...ref }
      page = reply.nextPage
    }
    return errorLine(ref, "InvalidRequest", `the list has more than ${ListPagesMax} pages`)
  })

/** Runs the protocol until end of input or `quit`. */
export const runJson = (
  client: ClientShape,
  options: JsonModeOptions
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.gen(function* () {
    // A reader that went away: stop, as at end of input (nobody is left to answer).
    const stdoutClosed = yield* Effect.makeLatch(false)
    const onStdoutError = () => stdoutClosed.unsafeOpen()
    yield* Effect.acquireRelease(
      Effect.sync(() => process.stdout.on("error", onStdoutError)),
      () => Effect.sync(() => process.stdout.off("error", onStdoutError))
    )

    yield* Effect.forkScoped(Stream.runForEach(client.notices, (delivered) => emit(noticeLine(delivered))))
    yield* Effect.forkScoped(
      Stream.runForEach(client.leaderChanges, (change) =>
        emit({ type: "leader-changed", leader: change.leader, epoch: change.epoch })
      )
    )

    // Keep looking for a leader until one answers, then say `ready` once.
    const ready = yield* Effect.forkScoped(
      Effect.gen(function* () {
        for (;;) {
          const connected = yield* Effect.either(client.connect)
          if (connected._tag === "Right") return yield* emit(readyLine(connected.right))
          yield* Effect.logWarning(`still looking for a leader: ${connected.left.message}`)
        }
      })
    )
    yield* Effect.asVoid(Effect.timeoutOption(Fiber.await(ready), options.requestTimeoutMs))

    const lines = yield* readLines({ maxChars: LineCharsMax })
    const loop = Effect.gen(function* () {
      for (;;) {
        const next = yield* lines.take
        if (Option.isNone(next)) return
        const item = next.value
        if (item._tag === "TooLong") {
          yield* emit(errorLine({}, "InvalidRequest", `the line is longer than ${LineCharsMax} characters`))
          continue
        }
        const parsed = parseLine(item.text)
        if (parsed._tag === "Blank") continue
        if (parsed._tag === "Invalid") {
          yield* emit(errorLine(parsed.ref, "InvalidRequest", parsed.message))
          continue
        }
        if (parsed.request.op === "quit") return
        yield* emit(yield* answer(client, parsed.request, parsed.ref))
      }
    })
    yield* Effect.raceFirst(loop, stdoutClosed.await)
  })
