/**
 * What a load generator measures, the same for Agora and for etcd: committed
 * writes (acknowledged bids / puts) with their acknowledgement latency, a
 * per-100 ms timeline of them, notifications delivered, errors by code, and,
 * for failover, the wall time of the first acknowledgement seen under each
 * leader epoch (Agora's epoch, etcd's raft term).
 */
import { Histogram, type HistogramJson } from "./Histogram.js"

export const TimelineBucketMs = 100

export interface LatencySummaryMs {
  readonly count: number
  readonly mean: number
  readonly p50: number
  readonly p90: number
  readonly p99: number
  readonly p999: number
  readonly max: number
}

export const summarize = (histogram: Histogram): LatencySummaryMs => {
  const ms = (us: number) => Math.round(us) / 1000
  return {
    count: histogram.total,
    mean: ms(histogram.mean()),
    p50: ms(histogram.quantile(0.5)),
    p90: ms(histogram.quantile(0.9)),
    p99: ms(histogram.quantile(0.99)),
    p999: ms(histogram.quantile(0.999)),
    max: ms(histogram.max)
  }
}

export class Stats {
  /** Acknowledgement latency of committed writes, µs. */
  readonly latencyUs = new Histogram()
  /** Latency of the other requests (create, join, start), µs. */
  readonly otherLatencyUs = new Histogram()
  acks = 0
  notifications = 0
  auctionsCompleted = 0
  /** Counted in and out of the window: progress and `--stop-after-auctions`. */
  acksAll = 0
  auctionsCompletedAll = 0
  readonly errors = new Map<string, number>()
  /** Acks per 100 ms bucket, keyed by floor(wall ms / 100). */
  readonly timeline = new Map<number, number>()
  readonly firstAckByEpoch = new Map<number, number>()
  /** Only what happens inside the window counts toward the totals (the timeline keeps everything). */
  measuring = false

  ack(latencyUs: number, wallMs: number, epoch: number | null): void {
    const bucket = Math.floor(wallMs / TimelineBucketMs)
    this.timeline.set(bucket, (this.timeline.get(bucket) ?? 0) + 1)
    if (epoch !== null && !this.firstAckByEpoch.has(epoch)) this.firstAckByEpoch.set(epoch, wallMs)
    this.acksAll += 1
    if (!this.measuring) return
    this.acks += 1
    this.latencyUs.record(latencyUs)
  }

  other(latencyUs: number): void {
    if (this.measuring) this.otherLatencyUs.record(latencyUs)
  }

  completed(): void {
    this.auctionsCompletedAll += 1
    if (this.measuring) this.auctionsCompleted += 1
  }

  notice(): void {
    if (this.measuring) this.notifications += 1
  }

  error(code: string): void {
    if (this.measuring) this.errors.set(code, (this.errors.get(code) ?? 0) + 1)
  }

  /** The first ack under an epoch above `epoch`, at or after `afterMs`. */
  firstAckAfter(epoch: number, afterMs: number): number | null {
    let first: number | null = null
    for (const [e, ms] of this.firstAckByEpoch) {
      if (e > epoch && ms >= afterMs && (first === null || ms < first)) first = ms
    }
    return first
  }
}

/** One generator's report: JSON-serializable, so generators in several processes add up. */
export interface LoadReport {
  readonly target: "agora" | "etcd"
  readonly clients: number
  /** The measured window. */
  readonly startMs: number
  readonly endMs: number
  readonly acks: number
  readonly latencyUs: HistogramJson
  readonly otherLatencyUs: HistogramJson
  readonly notifications: number
  readonly auctionsCompleted: number
  readonly errors: Record<string, number>
  /** [bucket = floor(wall ms / 100), acks]. */
  readonly timeline: ReadonlyArray<readonly [number, number]>
  readonly firstAckByEpoch: ReadonlyArray<readonly [number, number]>
  /** The generator process's own CPU time over the window, ms. */
  readonly loadCpuMs: number
}

export const reportOf = (
  stats: Stats,
  target: "agora" | "etcd",
  clients: number,
  startMs: number,
  endMs: number,
  loadCpuMs: number
): LoadReport => ({
  target,
  clients,
  startMs,
  endMs,
  acks: stats.acks,
  latencyUs: stats.latencyUs.toJSON(),
  otherLatencyUs: stats.otherLatencyUs.toJSON(),
  notifications: stats.notifications,
  auctionsCompleted: stats.auctionsCompleted,
  errors: Object.fromEntries(stats.errors),
  timeline: [...stats.timeline].sort((a, b) => a[0] - b[0]),
  firstAckByEpoch: [...stats.firstAckByEpoch].sort((a, b) => a[0] - b[0]),
  loadCpuMs
})

/** Adds up the reports of several generators run over the same window. */
export const mergeReports = (reports: ReadonlyArray<LoadReport>): LoadReport => {
  const first = reports[0]
  if (first === undefined) throw new Error("mergeReports: no report")
  const latency = new Histogram()
  const other = new Histogram()
  const errors = new Map<string, number>()
  const timeline = new Map<number, number>()
  const epochs = new Map<number, number>()
  for (const report of reports) {
    latency.merge(report.latencyUs)
    other.merge(report.otherLatencyUs)
    for (const [code, count] of Object.entries(report.errors))
      errors.set(code, (errors.get(code) ?? 0) + count)
    for (const [bucket, count] of report.timeline) timeline.set(bucket, (timeline.get(bucket) ?? 0) + count)
    for (const [epoch, ms] of report.firstAckByEpoch) epochs.set(epoch, Math.min(epochs.get(epoch) ?? ms, ms))
  }
  const sum = (f: (r: LoadReport) => number) => reports.reduce((total, r) => total + f(r), 0)
  return {
    target: first.target,
    clients: sum((r) => r.clients),
    startMs: Math.min(...reports.map((r) => r.startMs)),
    endMs: Math.max(...reports.map((r) => r.endMs)),
    acks: sum((r) => r.acks),
    latencyUs: latency.toJSON(),
    otherLatencyUs: other.toJSON(),
    notifications: sum((r) => r.notifications),
    auctionsCompleted: sum((r) => r.auctionsCompleted),
    errors: Object.fromEntries(errors),
    timeline: [...timeline].sort((a, b) => a[0] - b[0]),
    firstAckByEpoch: [...epochs].sort((a, b) => a[0] - b[0]),
    loadCpuMs: sum((r) => r.loadCpuMs)
  }
}
