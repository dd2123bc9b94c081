/**
 * A small HDR-style latency histogram: log-bucketed with 64 linear
 * sub-buckets per power of two, so every recorded value is kept within 1/64
 * (≈1.6 %) of itself, whatever its magnitude, in a fixed few KiB. Values are
 * whole microseconds from 0 to 2^31 − 1 (≈ 36 minutes); larger ones are
 * clamped (and counted as such). Histograms of several load generators merge
 * by adding their counts, which percentiles of percentiles cannot do.
 */

/** Values below this are counted exactly, one bucket each. */
const LinearBuckets = 128
/** Sub-buckets per power of two above the linear range: 1/64 relative precision. */
const SubBuckets = 64
/** Powers of two above the linear range, up to 2^31. */
const Magnitudes = 31 - 7 + 1
const BucketCount = LinearBuckets + Magnitudes * SubBuckets
/** The largest value recorded as itself. */
export const HistogramValueMax = 2 ** 31 - 1

/** The bucket of a whole value in [0, HistogramValueMax]. */
export const bucketOf = (value: number): number => {
  if (value < LinearBuckets) return value
  const exponent = 31 - Math.clz32(value) // floor(log2(value)) ≥ 7
  const shift = exponent - 6
  return LinearBuckets + (shift - 1) * SubBuckets + ((value >>> shift) - SubBuckets)
}

/** The highest value a bucket holds (percentiles report it: never optimistic). */
export const bucketHigh = (bucket: number): number => {
  if (bucket < LinearBuckets) return bucket
  const shift = Math.floor((bucket - LinearBuckets) / SubBuckets) + 1
  const sub = ((bucket - LinearBuckets) % SubBuckets) + SubBuckets
  return (sub + 1) * 2 ** shift - 1
}

/** The histogram as JSON: sparse [bucket, count] pairs plus exact extremes. */
export interface HistogramJson {
  readonly counts: ReadonlyArray<readonly [number, number]>
  readonly total: number
  readonly min: number
  readonly max: number
  readonly sum: number
  readonly clamped: number
}

export class Histogram {
  private readonly counts = new Float64Array(BucketCount)
  total = 0
  min = Number.POSITIVE_INFINITY
  max = 0
  sum = 0
  clamped = 0

  /** Records one value (rounded to a whole number; negatives count as 0). */
  record(value: number): void {
    let whole = Math.round(value)
    if (!(whole >= 0)) whole = 0
    if (whole > HistogramValueMax) {
      whole = HistogramValueMax
      this.clamped += 1
    }
    this.counts[bucketOf(whole)] = (this.counts[bucketOf(whole)] ?? 0) + 1
    this.total += 1
    this.sum += whole
    if (whole < this.min) this.min = whole
    if (whole > this.max) this.max = whole
  }

  /** The value at quantile q (0–1): the top of the bucket holding it, never above the exact max. */
  quantile(q: number): number {
    if (this.total === 0) return 0
    const rank = Math.max(1, Math.ceil(Math.min(1, Math.max(0, q)) * this.total))
    let seen = 0
    for (let bucket = 0; bucket < BucketCount; bucket++) {
      seen += this.counts[bucket] ?? 0
      if (seen >= rank) return Math.min(bucketHigh(bucket), this.max)
    }
    return this.max
  }

  mean(): number {
    return this.total === 0 ? 0 : this.sum / this.total
  }

  /** Adds another histogram's counts to this one. */
  merge(other: Histogram | HistogramJson): this {
    const json = other instanceof Histogram ? other.toJSON() : other
    for (const [bucket, count] of json.counts) {
      if (bucket >= 0 && bucket < BucketCount) this.counts[bucket] = (this.counts[bucket] ?? 0) + count
    }
    this.total += json.total
    this.sum += json.sum
    this.clamped += json.clamped
    if (json.total > 0) {
      this.min = Math.min(this.min, json.min)
      this.max = Math.max(this.max, json.max)
    }
    return this
  }

  toJSON(): HistogramJson {
    const counts: Array<readonly [number, number]> = []
    for (let bucket = 0; bucket < BucketCount; bucket++) {
      const count = this.counts[bucket] ?? 0
      if (count > 0) counts.push([bucket, count])
    }
    return {
      counts,
      total: this.total,
      min: this.total === 0 ? 0 : this.min,
      max: this.max,
      sum: this.sum,
      clamped: this.clamped
    }
  }

  static fromJSON(json: HistogramJson): Histogram {
    return new Histogram().merge(json)
  }
}
