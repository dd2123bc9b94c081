/**
 * A small seeded generator for the simulator's own choices (the fault plan,
 * the workload's decisions), kept apart from Effect's `Random`, which the
 * servers draw from: a different number of draws by the servers never shifts
 * the plan, and the plan can be made and printed before the run starts.
 */
import { PCGRandom } from "effect/Utils"

export interface Rng {
  /** Uniform in [0, 1). */
  readonly next: () => number
  /** A whole number in [min, max] (both included). */
  readonly int: (min: number, max: number) => number
  /** True with probability `p`. */
  readonly chance: (p: number) => boolean
  /** One element (the array must not be empty). */
  readonly pick: <A>(items: ReadonlyArray<A>) => A
  /** One key by weight (weights ≥ 0, not all 0). */
  readonly weighted: <K extends string>(weights: Readonly<Record<K, number>>) => K
  /** A shuffled copy. */
  readonly shuffle: <A>(items: ReadonlyArray<A>) => Array<A>
  /** An independent generator derived from this one's seed and `stream` (same inputs → same stream). */
  readonly fork: (stream: number) => Rng
}

export const makeRng = (seed: number, stream = 0): Rng => {
  // Two 32-bit halves: the seed (which may exceed 2^32 on the command line) and the stream.
  const pcg = new PCGRandom(Math.floor(seed / 0x1_0000_0000) >>> 0, seed >>> 0, stream >>> 0, 0x5851f42d)
  const next = () => pcg.number()
  const int = (min: number, max: number) => (max <= min ? min : min + pcg.integer(max - min + 1))
  const pick = <A>(items: ReadonlyArray<A>): A => {
    const item = items[int(0, items.length - 1)]
    if (item === undefined) throw new Error("Rng.pick: empty array")
    return item
  }
  const weighted = <K extends string>(weights: Readonly<Record<K, number>>): K => {
    const entries = Object.entries(weights) as Array<[K, number]>
    const total = entries.reduce((sum, [, weight]) => sum + weight, 0)
    let roll = next() * total
    for (const [key, weight] of entries) {
      roll -= weight
      if (roll < 0) return key
    }
    const last = entries.at(-1)
    if (last === undefined) throw new Error("Rng.weighted: no weights")
    return last[0]
  }
  const shuffle = <A>(items: ReadonlyArray<A>): Array<A> => {
    const copy = [...items]
    for (let index = copy.length - 1; index > 0; index--) {
      const other = int(0, index)
      const a = copy[index] as A
      copy[index] = copy[other] as A
      copy[other] = a
    }
    return copy
  }
  return {
    next,
    int,
    chance: (p) => next() < p,
    pick,
    weighted,
    shuffle,
    fork: (child) => makeRng(seed, stream * 7919 + child + 1)
  }
}
