/**
 * SimTrace: what happened in a simulation, line by line ("s1 -> s2 Heartbeat
 * delivered", "s3 crashed"), for two uses: a readable tail to print when a
 * checker fails, and a hash of the whole run so that "same seed, same run"
 * is one string comparison. Lines are stamped with the elapsed virtual time,
 * so a run that does the same things at different times hashes differently.
 */
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

const fnvOffsetHi = 0xcbf29ce4
const fnvOffsetLo = 0x84222325
/** The 64-bit FNV prime is 2^40 + 0x1b3: multiplying is `h * 0x1b3 + (h << 40)`. */
const fnvPrimeLow = 0x1b3
const twoPow32 = 0x1_0000_0000

/**
 * Incremental 64-bit FNV-1a, kept as two 32-bit halves in plain numbers
 * (BigInt would allocate per character). Each UTF-16 code unit is xored in as
 * one unit, so for ASCII text this is exactly the standard FNV-1a 64 of the
 * bytes. Not cryptographic: it only has to make accidental equality of two
 * different traces unlikely.
 */
export class Fnv1a64 {
  private hi = fnvOffsetHi
  private lo = fnvOffsetLo

  update(text: string): this {
    let hi = this.hi
    let lo = this.lo
    for (let index = 0; index < text.length; index++) {
      lo = (lo ^ text.charCodeAt(index)) >>> 0
      // lo * 0x1b3 < 2^41 and hi * 0x1b3 + carry + 2^32 < 2^53: exact in a double.
      const loProduct = lo * fnvPrimeLow
      const carry = Math.floor(loProduct / twoPow32)
      hi = (hi * fnvPrimeLow + carry + ((lo << 8) >>> 0)) >>> 0
      lo = loProduct >>> 0
    }
    this.hi = hi
    this.lo = lo
    return this
  }

  /** 16 lowercase hex digits. */
  digestHex(): string {
    return this.hi.toString(16).padStart(8, "0") + this.lo.toString(16).padStart(8, "0")
  }
}

/** FNV-1a 64 of `text`, as 16 hex digits. */
export const fnv1a64Hex = (text: string): string => new Fnv1a64().update(text).digestHex()

export interface SimTraceShape {
  /** Appends `line`, stamped with the elapsed virtual time. */
  readonly record: (line: string) => Effect.Effect<void>
  /** The same, for synchronous callbacks (`Effect.async` registrations, Mailbox listeners). */
  readonly unsafeRecord: (line: string) => void
}

/** The trace of the running simulation; `simulate` provides it. */
export class SimTrace extends Context.Tag("agora/SimTrace")<SimTrace, SimTraceShape>() {}

/**
 * Records `line` into the simulation's trace, or does nothing outside a
 * simulation, so code shared by the real and simulated deployments (the
 * simulated network, a node's crash hook) can record without requiring
 * `SimTrace`.
 */
export const recordTrace = (line: string): Effect.Effect<void> =>
  Effect.flatMap(Effect.serviceOption(SimTrace), (trace) =>
    Option.isSome(trace) ? trace.value.record(line) : Effect.void
  )

/** What `simulate` returns about the trace. */
export interface SimTraceSummary {
  /** The last `linesMax` lines (all of them if fewer were recorded), oldest first. */
  readonly lines: ReadonlyArray<string>
  /** Every line recorded, kept or not. */
  readonly count: number
  /** Lines recorded but no longer kept (`count - lines.length`). */
  readonly droppedCount: number
  /** FNV-1a 64 over every recorded line (each followed by "\n"), kept or not. */
  readonly hash: string
}

/** The default number of lines kept: enough to read the lead-up to a failure, bounded in memory. */
export const simTraceLinesMaxDefault = 10_000

/**
 * The recorder behind `SimTrace`. Memory is bounded: past `linesMax` lines it
 * keeps only the most recent ones (a ring), because the lead-up to a failure
 * is what one reads, while the count and the hash keep covering every line.
 */
export class SimTraceRecorder {
  private readonly ring: Array<string> = []
  private ringNext = 0
  private count = 0
  private readonly hasher = new Fnv1a64()

  constructor(
    private readonly elapsedMs: () => number,
    readonly linesMax: number = simTraceLinesMaxDefault
  ) {
    if (!Number.isInteger(linesMax) || linesMax < 0) {
      throw new RangeError(`SimTrace: linesMax must be a non-negative integer, got ${linesMax}`)
    }
  }

  readonly unsafeRecord = (line: string): void => {
    const stamped = `${this.elapsedMs()}ms ${line}`
    this.hasher.update(stamped).update("\n")
    this.count += 1
    if (this.linesMax === 0) {
      return
    }
    if (this.ring.length < this.linesMax) {
      this.ring.push(stamped)
    } else {
      this.ring[this.ringNext] = stamped
      this.ringNext = (this.ringNext + 1) % this.linesMax
    }
  }

  readonly service: SimTraceShape = {
    record: (line) => Effect.sync(() => this.unsafeRecord(line)),
    unsafeRecord: this.unsafeRecord
  }

  summary(): SimTraceSummary {
    const lines =
      this.ring.length < this.linesMax
        ? this.ring.slice()
        : [...this.ring.slice(this.ringNext), ...this.ring.slice(0, this.ringNext)]
    return {
      lines,
      count: this.count,
      droppedCount: this.count - lines.length,
      hash: this.hasher.digestHex()
    }
  }
}
