/**
 * What a simulation run records for the checkers (Jepsen's "history"):
 * every client operation from invoke to its end, every notification each
 * client received, every server's committed entries as sampled during the run
 * and at its end, every change of role, and every defect a server logged.
 * All of it is plain data filled in by the run and read after it.
 */
import type { LogEntry } from "../../src/domain/cluster/Entry.js"
import type { ClientOp } from "../../src/domain/Messages.js"
import type { Answer, Delivery } from "./SimClient.js"
import type { RoleEvent } from "./SimCluster.js"

/** One client operation. `endMs` and `result` stay null if the run ended while it was in flight. */
export interface OpRecord {
  readonly index: number
  readonly client: string
  /** The session it was sent under (the victim's, for a forged request). */
  readonly session: number | null
  /** Set when the client has sent it (0 until then). */
  requestId: number
  readonly op: ClientOp
  /** Sent in someone else's name with a made-up token (must be refused, never applied). */
  readonly forged: boolean
  readonly invokeMs: number
  endMs: number | null
  result: Answer | null
}

/** A committed entry as first seen by the sampler. */
export interface SeenEntry {
  readonly entry: LogEntry
  readonly text: string
  /** Which server showed it first, and when (virtual ms since the start). */
  readonly server: string
  readonly atMs: number
}

/** A server's committed entries at the end (only what its log still holds after checkpoints). */
export interface FinalServer {
  readonly id: string
  readonly running: boolean
  readonly role: string
  readonly epoch: number
  readonly commitSeq: number
  readonly entries: ReadonlyArray<LogEntry>
}

export interface ClientRecord {
  readonly name: string
  readonly deliveryKind: "raw" | "ordered"
  session: number | null
  deliveries: ReadonlyArray<Delivery>
}

export interface Defect {
  readonly atMs: number
  readonly node: string
  readonly message: string
}

/** A fault or phase change as it was applied (for the failure summary). */
export interface TimelineEvent {
  readonly atMs: number
  readonly text: string
}

export interface History {
  readonly ops: Array<OpRecord>
  readonly clients: Array<ClientRecord>
  /** Every committed entry any server ever showed, by seq (the first copy seen). */
  readonly committed: Map<number, SeenEntry>
  /** Violations the sampler found while the run went on (an entry changed at a seq, a log shrank). */
  readonly samplerViolations: Array<string>
  /** The highest commit seq any server ever reported. */
  commitSeqMax: number
  /** Every change of role of every server (SimCluster's record, live during the run). */
  roleEvents: ReadonlyArray<RoleEvent>
  readonly defects: Array<Defect>
  readonly timeline: Array<TimelineEvent>
  final: ReadonlyArray<FinalServer>
  /** Virtual ms since the start when the network was healed and every server restarted (null: never). */
  healedAtMs: number | null
  /** Virtual ms since the start when quiescence ended and the final state was read (null: never). */
  endedAtMs: number | null
  /** Virtual ms since the start at which each auction was first seen terminal (closed or cancelled). */
  readonly terminalAtMs: Map<number, number>
  /** Whether a single leader (all others following it) was seen after healing, and when. */
  leaderAfterHealMs: number | null
}

export const makeHistory = (): History => ({
  ops: [],
  clients: [],
  committed: new Map(),
  samplerViolations: [],
  commitSeqMax: 0,
  roleEvents: [],
  defects: [],
  timeline: [],
  final: [],
  healedAtMs: null,
  endedAtMs: null,
  terminalAtMs: new Map(),
  leaderAfterHealMs: null
})

/** JSON with object keys sorted, so two equal values always give the same text. */
export const canonicalJson = (value: unknown): string =>
  JSON.stringify(value, (_key, inner: unknown) =>
    inner !== null && typeof inner === "object" && !Array.isArray(inner)
      ? Object.fromEntries(
          Object.entries(inner as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1))
        )
      : inner
  )
