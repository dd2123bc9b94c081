/**
 * Anti-replay (DESIGN §4), IPsec style: per sender the highest `boot` seen and
 * a sliding window over the datagram numbers `n` of that boot. A datagram of
 * an older boot, below the window, or already seen is a replay.
 *
 * Deterministic and free of I/O; mutable for speed because it sits on the
 * receive path of every datagram.
 */

/** How many datagram numbers below the highest one are still accepted out of order. */
export const ReplayWindowSize = 1024

/** At most this many senders are tracked; the least recently seen is forgotten first. */
export const ReplaySendersMax = 1024

const WORD_BITS = 32
const WORDS = ReplayWindowSize / WORD_BITS

interface SenderWindow {
  boot: number
  /** The highest n accepted in this boot. */
  top: number
  /** Bit i set: datagram top - i was accepted. */
  readonly seen: Uint32Array
}

export class ReplayWindow {
  private readonly senders = new Map<string, SenderWindow>()

  /** Accepts (and records) the datagram, or returns false for a replay. */
  accept(sender: string, boot: number, n: number): boolean {
    const window = this.senders.get(sender)
    if (window === undefined || boot > window.boot) {
      this.remember(sender, { boot, top: n, seen: markedFirst() })
      return true
    }
    if (boot < window.boot) return false
    // Refresh recency so active senders are the last to be forgotten.
    this.senders.delete(sender)
    this.senders.set(sender, window)
    if (n > window.top) {
      shift(window.seen, n - window.top)
      window.top = n
      setBit(window.seen, 0)
      return true
    }
    const age = window.top - n
    if (age >= ReplayWindowSize || getBit(window.seen, age)) return false
    setBit(window.seen, age)
    return true
  }

  private remember(sender: string, window: SenderWindow): void {
    this.senders.delete(sender)
    if (this.senders.size >= ReplaySendersMax) {
      const oldest = this.senders.keys().next()
      if (oldest.done !== true) this.senders.delete(oldest.value)
    }
    this.senders.set(sender, window)
  }
}

const markedFirst = (): Uint32Array => {
  const seen = new Uint32Array(WORDS)
  seen[0] = 1
  return seen
}

const getBit = (seen: Uint32Array, index: number): boolean =>
  (((seen[index >>> 5] ?? 0) >>> (index & 31)) & 1) === 1

const setBit = (seen: Uint32Array, index: number): void => {
  const word = index >>> 5
  seen[word] = ((seen[word] ?? 0) | (1 << (index & 31))) >>> 0
}

/** Moves every bit `by` places up (older); bits past the window fall off. */
const shift = (seen: Uint32Array, by: number): void => {
  if (by >= ReplayWindowSize) {
    seen.fill(0)
    return
  }
  const words = Math.floor(by / WORD_BITS)
  const bits = by % WORD_BITS
  for (let i = WORDS - 1; i >= 0; i--) {
    const from = i - words
    const low = from >= 0 ? (seen[from] ?? 0) : 0
    const lower = from - 1 >= 0 ? (seen[from - 1] ?? 0) : 0
    seen[i] = bits === 0 ? low : ((low << bits) | (lower >>> (WORD_BITS - bits))) >>> 0
  }
}
