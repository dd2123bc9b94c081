/**
 * SimClock: a virtual `Clock.Clock` for the deterministic simulation runtime
 * (see `SimRuntime.ts`). Time never moves by itself: `sleep` only registers a
 * timer, and the driver moves `now` to the earliest live timer when nothing else
 * can run. So an hour of heartbeats costs only the work the fibers do, not the
 * hour, and the order in which fibers wake is a function of the program alone.
 */
import * as Clock from "effect/Clock"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"

/** The default virtual start: a wall-clock-looking instant (2023-11-14T22:13:20Z), so logged times read plausibly. */
export const simStartTimeMsDefault = 1_700_000_000_000

/**
 * One pending sleep. `seq` (creation order) breaks ties between equal wake
 * times, so two fibers sleeping until the same instant always wake in the
 * order they went to sleep.
 */
export interface SimTimer {
  readonly wakeTimeMs: number
  readonly seq: number
  readonly wake: () => void
  live: boolean
}

const before = (a: SimTimer, b: SimTimer): boolean =>
  a.wakeTimeMs < b.wakeTimeMs || (a.wakeTimeMs === b.wakeTimeMs && a.seq < b.seq)

const nanosPerMs = 1_000_000n

/**
 * A virtual clock. `now` starts at `startTimeMs` and moves only when the
 * driver calls `unsafeWakeNext` / `unsafeAdvanceTo`. Timers sit in a binary
 * min-heap; a cancelled timer is marked dead and skipped (removing it from the
 * middle of a heap would cost as much as the whole sleep), and the heap is
 * rebuilt when dead entries outnumber live ones, so a program that keeps
 * cancelling long timeouts (every `Effect.timeout` that wins) stays bounded in
 * memory.
 */
export class VirtualClock implements Clock.Clock {
  readonly [Clock.ClockTypeId]: Clock.ClockTypeId = Clock.ClockTypeId

  private nowMs: number
  private seqNext = 0
  private heap: Array<SimTimer> = []
  private liveCount = 0

  constructor(readonly startTimeMs: number = simStartTimeMsDefault) {
    this.nowMs = startTimeMs
  }

  unsafeCurrentTimeMillis(): number {
    return this.nowMs
  }

  /** Whole milliseconds, then the fraction, so that 1.7e12 ms does not lose nanoseconds to floating point. */
  unsafeCurrentTimeNanos(): bigint {
    const wholeMs = Math.floor(this.nowMs)
    return BigInt(wholeMs) * nanosPerMs + BigInt(Math.round((this.nowMs - wholeMs) * 1_000_000))
  }

  readonly currentTimeMillis: Effect.Effect<number> = Effect.sync(() => this.nowMs)

  readonly currentTimeNanos: Effect.Effect<bigint> = Effect.sync(() => this.unsafeCurrentTimeNanos())

  /**
   * Registers a timer and suspends until the driver wakes it. Interruption
   * runs the canceller, which removes the timer, so an interrupted sleep (the
   * loser of `Effect.timeout`, a fiber whose scope closed) leaves nothing
   * behind that could move time. An infinite duration registers no timer: it
   * can never wake, and leaving it out lets the driver report a deadlock
   * instead of jumping to the end of time.
   */
  sleep(duration: Duration.Duration): Effect.Effect<void> {
    const delayMs = Duration.toMillis(duration)
    return Effect.async<void>((resume) => {
      if (!Number.isFinite(delayMs)) {
        return
      }
      const timer = this.unsafeSchedule(delayMs, () => resume(Effect.void))
      return Effect.sync(() => this.unsafeCancel(timer))
    })
  }

  /** How many sleeps are pending (registered and neither woken nor cancelled). */
  readonly timersLiveCount: Effect.Effect<number> = Effect.sync(() => this.liveCount)

  /** When the earliest pending sleep wakes, if any. */
  readonly nextWakeTimeMs: Effect.Effect<Option.Option<number>> = Effect.sync(() =>
    Option.fromNullable(this.unsafeNextWakeTimeMs())
  )

  unsafeTimersLiveCount(): number {
    return this.liveCount
  }

  unsafeNextWakeTimeMs(): number | undefined {
    this.dropDeadTop()
    return this.heap[0]?.wakeTimeMs
  }

  /**
   * Moves `now` to the earliest live timer and calls its wake-up (which, for a
   * sleep, only queues the sleeping fiber on the scheduler). Returns false when
   * there is no live timer. Wakes one timer at a time so that the fibers woken
   * at one instant run in creation order with the queue drained in between.
   */
  unsafeWakeNext(): boolean {
    this.dropDeadTop()
    const timer = this.popTop()
    if (timer === undefined) {
      return false
    }
    timer.live = false
    this.liveCount -= 1
    // Timers are never registered in the past, so time cannot go backwards; assert it anyway.
    if (timer.wakeTimeMs < this.nowMs) {
      throw new Error(`VirtualClock: timer at ${timer.wakeTimeMs} is before now ${this.nowMs}`)
    }
    this.nowMs = timer.wakeTimeMs
    timer.wake()
    return true
  }

  /** Moves `now` forward without waking anything (the driver uses it to end a time budget exactly). */
  unsafeAdvanceTo(timeMs: number): void {
    if (timeMs < this.nowMs) {
      throw new Error(`VirtualClock: cannot move back from ${this.nowMs} to ${timeMs}`)
    }
    const next = this.unsafeNextWakeTimeMs()
    if (next !== undefined && next < timeMs) {
      throw new Error(`VirtualClock: cannot skip the timer at ${next} on the way to ${timeMs}`)
    }
    this.nowMs = timeMs
  }

  /** Registers `wake` to run `delayMs` from now; negative delays count as zero. */
  unsafeSchedule(delayMs: number, wake: () => void): SimTimer {
    const timer: SimTimer = {
      wakeTimeMs: this.nowMs + Math.max(0, delayMs),
      seq: this.seqNext,
      wake,
      live: true
    }
    this.seqNext += 1
    this.liveCount += 1
    this.push(timer)
    return timer
  }

  /** Cancels a timer; a timer that already woke or was cancelled is left alone. */
  unsafeCancel(timer: SimTimer): void {
    if (!timer.live) {
      return
    }
    timer.live = false
    this.liveCount -= 1
    const deadCount = this.heap.length - this.liveCount
    if (deadCount > 1024 && deadCount > this.liveCount) {
      this.rebuild()
    }
  }

  private dropDeadTop(): void {
    while (this.heap.length > 0 && this.heap[0]?.live === false) {
      this.popTop()
    }
  }

  private rebuild(): void {
    const live = this.heap.filter((timer) => timer.live)
    this.heap = []
    for (const timer of live) {
      this.push(timer)
    }
  }

  private push(timer: SimTimer): void {
    const heap = this.heap
    let index = heap.length
    heap.push(timer)
    while (index > 0) {
      const parentIndex = (index - 1) >> 1
      const parent = heap[parentIndex]
      if (parent === undefined || !before(timer, parent)) {
        break
      }
      heap[index] = parent
      index = parentIndex
    }
    heap[index] = timer
  }

  private popTop(): SimTimer | undefined {
    const heap = this.heap
    const top = heap[0]
    const last = heap.pop()
    if (top === undefined || last === undefined || heap.length === 0) {
      return top
    }
    // Sift `last` down from the root.
    const length = heap.length
    let index = 0
    for (;;) {
      const leftIndex = 2 * index + 1
      if (leftIndex >= length) {
        break
      }
      const left = heap[leftIndex]
      const right = heap[leftIndex + 1]
      if (left === undefined) {
        break
      }
      const rightWins = right !== undefined && before(right, left)
      const childIndex = rightWins ? leftIndex + 1 : leftIndex
      const child = rightWins ? right : left
      if (!before(child, last)) {
        break
      }
      heap[index] = child
      index = childIndex
    }
    heap[index] = last
    return top
  }
}

/**
 * The simulation's clock, for code that wants to look at pending timers
 * (tests of "no timer left behind", progress reports). `Clock.Clock` itself is
 * the same object; ordinary code should keep using `Clock` / `Effect.sleep`.
 */
export class SimClock extends Context.Tag("agora/SimClock")<SimClock, VirtualClock>() {}
