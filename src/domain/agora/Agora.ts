/**
 * What Agora replicates: client sessions (VR Revisited's client table) around
 * the auctions (DESIGN §5, Client sessions). It is the state machine the
 * cluster is given.
 *
 * - A committed `ClientRegistered` opens a session with the client's address
 *   and a random token; session ids are handed out in order by the state.
 * - Request ids rise strictly per session. The table keeps, per session, the
 *   highest request id and its answer: a lower id is stale (dropped), an equal
 *   one gets the stored answer, a higher one is decided. Refusals are answers
 *   too, committed like successes, so a retry or a delayed duplicate can never
 *   be decided twice with two different answers — not even across failover.
 * - Sessions end only through a committed `SessionExpired`.
 */
import * as Either from "effect/Either"
import * as HashMap from "effect/HashMap"
import * as Option from "effect/Option"
import * as Schema from "effect/Schema"
import { HashMapByNumber } from "../auction/Codecs.js"
import type { AuctionCommand, AuctionError } from "../auction/index.js"
import {
  AuctionCommand as AuctionCommandSchema,
  AuctionEvent,
  AuctionsState,
  initialState as auctionsInitial,
  decide as decideAuction,
  evolve as evolveAuction,
  joinHistory,
  splitHistory
} from "../auction/index.js"
import type { StateMachine } from "../cluster/StateMachine.js"
import { ClientId, RequestId, SessionId, SessionToken } from "../Ids.js"
import type { ClientOp, ReplyResult } from "../Messages.js"
import { ReplyResult as ReplyResultSchema } from "../Messages.js"
import { Address, Count, Positive } from "../Schemas.js"

// ---------------------------------------------------------------------------
// State

export const Session = Schema.Struct({
  client: ClientId,
  /** Registration attempt of the client process: a retried Register finds its session again. */
  nonce: Positive,
  address: Address,
  token: SessionToken,
  /** The highest request id decided for this session (0: none yet) and its answer. */
  lastRequest: Count,
  answer: Schema.NullOr(ReplyResultSchema)
})
export type Session = typeof Session.Type

export const AgoraState = Schema.Struct({
  auctions: AuctionsState,
  sessions: HashMapByNumber(SessionId, Session),
  nextSession: SessionId
})
export type AgoraState = typeof AgoraState.Type

export const initialAgora: AgoraState = {
  auctions: auctionsInitial,
  sessions: HashMap.empty(),
  nextSession: SessionId.make(1)
}

// ---------------------------------------------------------------------------
// Commands

/** Server-side durations put into auction commands (the deciding leader's settings). */
export interface AuctionTimeouts {
  readonly roundTimeoutMs: number
  readonly startTimeoutMs: number
}

export const RegisterClient = Schema.TaggedStruct("RegisterClient", {
  client: ClientId,
  nonce: Positive,
  address: Address,
  token: SessionToken
})

export const ClientRequest = Schema.TaggedStruct("ClientRequest", {
  session: SessionId,
  token: SessionToken,
  requestId: RequestId,
  command: AuctionCommandSchema
})

export const ExpireSession = Schema.TaggedStruct("ExpireSession", { session: SessionId })

/** A command of the leader's own: a deadline that passed, a retention period that ended. */
export const SystemCommand = Schema.TaggedStruct("SystemCommand", { command: AuctionCommandSchema })

/** The new leader restarts every open deadline in full from this entry (DESIGN §5, Timers). */
export const RestartDeadlines = Schema.TaggedStruct("RestartDeadlines", {})

export type AgoraCommand =
  | typeof RegisterClient.Type
  | typeof ClientRequest.Type
  | typeof ExpireSession.Type
  | typeof SystemCommand.Type
  | typeof RestartDeadlines.Type

// ---------------------------------------------------------------------------
// Events

export const ClientRegistered = Schema.TaggedStruct("ClientRegistered", {
  session: SessionId,
  client: ClientId,
  nonce: Positive,
  address: Address,
  token: SessionToken
})

export const SessionExpired = Schema.TaggedStruct("SessionExpired", { session: SessionId })

export const RequestAnswered = Schema.TaggedStruct("RequestAnswered", {
  session: SessionId,
  requestId: RequestId,
  answer: ReplyResultSchema
})

export const AuctionHappened = Schema.TaggedStruct("AuctionHappened", { event: AuctionEvent })

export const DeadlinesRestarted = Schema.TaggedStruct("DeadlinesRestarted", {})

export const AgoraEvent = Schema.Union(
  ClientRegistered,
  SessionExpired,
  RequestAnswered,
  AuctionHappened,
  DeadlinesRestarted
)
export type AgoraEvent = typeof AgoraEvent.Type

// ---------------------------------------------------------------------------
// Refusals that are not answers of the client table

/** The session does not exist (expired, or never registered): answered `SessionExpired`. */
export class UnknownSession extends Schema.TaggedError<UnknownSession>()("UnknownSession", {
  session: Schema.Number
}) {}
/** The request's token is not its session's: answered `BadToken`. */
export class BadToken extends Schema.TaggedError<BadToken>()("BadToken", { session: Schema.Number }) {}
/** A request id below the session's highest: a delayed duplicate, dropped without an answer. */
export class StaleRequest extends Schema.TaggedError<StaleRequest>()("StaleRequest", {
  requestId: Schema.Number
}) {}

export type AgoraRefusal = UnknownSession | BadToken | StaleRequest | AuctionError

// ---------------------------------------------------------------------------
// Rules

/** The auction command a client operation asks for, on behalf of `session`. */
export const commandOf = (
  op: Exclude<ClientOp, { readonly _tag: "List" }>,
  session: SessionId,
  timeouts: AuctionTimeouts
): AuctionCommand => {
  switch (op._tag) {
    case "Create":
      return {
        _tag: "CreateAuction",
        auctioneer: session,
        item: op.item,
        minBid: op.minBid,
        minRounds: op.minRounds,
        minBidders: op.minBidders,
        roundTimeoutMs: timeouts.roundTimeoutMs,
        startTimeoutMs: timeouts.startTimeoutMs
      }
    case "Join":
      return { _tag: "JoinAuction", auction: op.auction, bidder: session }
    case "Start":
      return { _tag: "StartAuction", auction: op.auction, by: session }
    case "Cancel":
      return { _tag: "CancelAuction", auction: op.auction, by: session }
    case "Bid":
      return { _tag: "PlaceBid", auction: op.auction, bidder: session, round: op.round, amount: op.amount }
  }
}

/** The answer a client gets for a command that was accepted with these events. */
const answerOf = (command: AuctionCommand, events: ReadonlyArray<typeof AuctionEvent.Type>): ReplyResult => {
  switch (command._tag) {
    case "CreateAuction": {
      const created = events.find((event) => event._tag === "AuctionCreated")
      if (created === undefined) throw new Error("invariant: CreateAuction accepted without AuctionCreated")
      return { _tag: "Created", auction: created.auction }
    }
    case "JoinAuction":
      return { _tag: "Joined", auction: command.auction }
    case "StartAuction":
      return { _tag: "Started", auction: command.auction }
    case "CancelAuction":
      return { _tag: "Cancelled", auction: command.auction }
    case "PlaceBid":
      return { _tag: "BidAccepted", auction: command.auction, round: command.round, amount: command.amount }
    default:
      throw new Error(`invariant: ${command._tag} is not a client command`)
  }
}

const refusalAnswer = (error: AuctionError): ReplyResult => ({
  _tag: "Failed",
  code: error._tag,
  message: error.message
})

export const decide = (
  state: AgoraState,
  command: AgoraCommand,
  nowMs: number
): Either.Either<ReadonlyArray<AgoraEvent>, AgoraRefusal> => {
  switch (command._tag) {
    case "RegisterClient": {
      for (const [, session] of state.sessions) {
        // A retried registration of the same process gets the same session.
        if (session.client === command.client && session.nonce === command.nonce) return Either.right([])
      }
      return Either.right([
        {
          _tag: "ClientRegistered",
          session: state.nextSession,
          client: command.client,
          nonce: command.nonce,
          address: command.address,
          token: command.token
        }
      ])
    }
    case "ClientRequest": {
      const session = HashMap.get(state.sessions, command.session)
      if (Option.isNone(session)) return Either.left(new UnknownSession({ session: command.session }))
      if (session.value.token !== command.token)
        return Either.left(new BadToken({ session: command.session }))
      if (command.requestId < session.value.lastRequest) {
        return Either.left(new StaleRequest({ requestId: command.requestId }))
      }
      if (command.requestId === session.value.lastRequest) return Either.right([])
      const decision = decideAuction(state.auctions, command.command, nowMs)
      const answered = (answer: ReplyResult): AgoraEvent => ({
        _tag: "RequestAnswered",
        session: command.session,
        requestId: command.requestId,
        answer
      })
      return Either.right(
        Either.isLeft(decision)
          ? [answered(refusalAnswer(decision.left))]
          : [
              ...decision.right.map((event): AgoraEvent => ({ _tag: "AuctionHappened", event })),
              answered(answerOf(command.command, decision.right))
            ]
      )
    }
    case "ExpireSession": {
      if (!HashMap.has(state.sessions, command.session))
        return Either.left(new UnknownSession({ session: command.session }))
      const ended = decideAuction(state.auctions, { _tag: "SessionEnded", session: command.session }, nowMs)
      const auctionEvents = Either.isRight(ended) ? ended.right : []
      return Either.right([
        ...auctionEvents.map((event): AgoraEvent => ({ _tag: "AuctionHappened", event })),
        { _tag: "SessionExpired", session: command.session }
      ])
    }
    case "SystemCommand":
      return Either.map(decideAuction(state.auctions, command.command, nowMs), (events) =>
        events.map((event): AgoraEvent => ({ _tag: "AuctionHappened", event }))
      )
    case "RestartDeadlines":
      return Either.right([{ _tag: "DeadlinesRestarted" }])
  }
}

export const evolve = (state: AgoraState, event: AgoraEvent): AgoraState => {
  switch (event._tag) {
    case "ClientRegistered":
      return {
        ...state,
        nextSession: SessionId.make(event.session + 1),
        sessions: HashMap.set(state.sessions, event.session, {
          client: event.client,
          nonce: event.nonce,
          address: event.address,
          token: event.token,
          lastRequest: 0,
          answer: null
        })
      }
    case "SessionExpired":
      return { ...state, sessions: HashMap.remove(state.sessions, event.session) }
    case "RequestAnswered":
      return {
        ...state,
        sessions: HashMap.modify(state.sessions, event.session, (session) => ({
          ...session,
          lastRequest: event.requestId,
          answer: event.answer
        }))
      }
    case "AuctionHappened":
      return { ...state, auctions: evolveAuction(state.auctions, event.event) }
    case "DeadlinesRestarted":
      return state
  }
}

const encodeState = Schema.encodeSync(AgoraState)
const decodeState = Schema.decodeUnknownEither(AgoraState)
const decodeEvents = Schema.decodeUnknownEither(Schema.Array(AgoraEvent))

/** The Agora state machine, as the cluster runs it. */
export const agoraMachine: StateMachine<AgoraState, AgoraCommand, AgoraEvent, AgoraRefusal> = {
  initial: initialAgora,
  decide,
  evolve,
  // Agora events are plain values the schema encodes to themselves (property-tested), so the
  // log holds them as they are and the leader applies its own without decoding them.
  encodeEvents: (events) => events,
  decodeEvents: (data) => decodeEvents(data),
  holdsClientData: (state) => state.nextSession > 1,
  encodeState: (state) => encodeState(state),
  decodeState: (data) => decodeState(data),
  encodeStored: (state) => {
    const { rest, parts } = splitHistory(state.auctions)
    return { root: encodeState({ ...state, auctions: rest }), parts }
  },
  decodeStored: ({ root, parts }) => {
    if (parts.size === 0 || typeof root !== "object" || root === null) return decodeState(root)
    const auctions: unknown = (root as { readonly auctions?: unknown }).auctions
    return decodeState({ ...root, auctions: joinHistory(auctions, parts) })
  }
}
