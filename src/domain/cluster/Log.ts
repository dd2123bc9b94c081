/**
 * The in-memory log of one server: entries after its snapshot point. The
 * replica mutates it as it decides (etcd's `raftLog`), and reports every
 * change as an output the service persists before sending anything.
 */
import type { Epoch, Seq } from "../Ids.js"
import type { LogEntry } from "./Entry.js"

/** UTF-8 length of a string without allocating: batches are sized in bytes. */
export const utf8Length = (text: string): number => {
  let bytes = text.length
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    if (code >= 0x80) bytes += code >= 0x800 && (code < 0xd800 || code > 0xdbff) ? 2 : 1
  }
  return bytes
}

export class MemoryLog {
  /** Entries [startSeq + 1, lastSeq]; entries[i].seq === startSeq + 1 + i. */
  private entries: Array<LogEntry> = []
  private sizes: Array<number> = []

  /**
   * @param startSeq the seq of the snapshot this log continues (0: none)
   * @param startEpoch the epoch of the entry at startSeq (0: none)
   */
  constructor(
    private start: Seq = 0,
    private startEpochValue: Epoch = 0
  ) {}

  get startSeq(): Seq {
    return this.start
  }

  get startEpoch(): Epoch {
    return this.startEpochValue
  }

  get lastSeq(): Seq {
    return this.start + this.entries.length
  }

  get lastEpoch(): Epoch {
    return this.entries.at(-1)?.epoch ?? this.startEpochValue
  }

  /** The epoch of the entry at `seq`; the snapshot point counts; undefined outside the log. */
  epochAt(seq: Seq): Epoch | undefined {
    if (seq === this.start) return this.startEpochValue
    return this.entry(seq)?.epoch
  }

  entry(seq: Seq): LogEntry | undefined {
    return seq > this.start ? this.entries[seq - this.start - 1] : undefined
  }

  /** Encoded size of the entry at `seq`, in bytes. */
  sizeAt(seq: Seq): number {
    return this.sizes[seq - this.start - 1] ?? 0
  }

  /** Entries from `fromSeq` on, at most `bytesMax` of them (at least one) and at most `countMax`. */
  slice(fromSeq: Seq, bytesMax: number, countMax: number): ReadonlyArray<LogEntry> {
    const first = fromSeq - this.start - 1
    if (first < 0 || first >= this.entries.length) return []
    let end = first
    let bytes = 0
    while (end < this.entries.length && end - first < countMax) {
      const size = (this.sizes[end] ?? 0) + 1
      if (end > first && bytes + size > bytesMax) break
      bytes += size
      end += 1
    }
    return this.entries.slice(first, end)
  }

  /** Entries in (afterSeq, toSeq]. */
  range(afterSeq: Seq, toSeq: Seq): ReadonlyArray<LogEntry> {
    return this.entries.slice(Math.max(0, afterSeq - this.start), Math.max(0, toSeq - this.start))
  }

  append(entry: LogEntry): void {
    if (entry.seq !== this.lastSeq + 1) {
      throw new Error(`log append out of order: seq ${entry.seq} after ${this.lastSeq}`)
    }
    this.entries.push(entry)
    this.sizes.push(utf8Length(JSON.stringify(entry)))
  }

  /** Removes every entry at or after `fromSeq`. */
  truncateFrom(fromSeq: Seq): void {
    const keep = Math.max(0, fromSeq - this.start - 1)
    this.entries.length = Math.min(this.entries.length, keep)
    this.sizes.length = this.entries.length
  }

  /** Drops entries up to `seq` (now covered by a snapshot whose last entry had `epoch`). */
  compactTo(seq: Seq, epoch: Epoch): void {
    const drop = Math.min(this.entries.length, Math.max(0, seq - this.start))
    this.entries = this.entries.slice(drop)
    this.sizes = this.sizes.slice(drop)
    this.start = seq
    this.startEpochValue = epoch
  }

  /** Replaces the whole log by a snapshot point and nothing after it. */
  resetTo(seq: Seq, epoch: Epoch): void {
    this.entries = []
    this.sizes = []
    this.start = seq
    this.startEpochValue = epoch
  }
}
