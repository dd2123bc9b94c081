/**
 * The deterministic simulation runtime: run any Effect on virtual time, with a
 * seeded `Random`, one fiber slice at a time in a fixed order, and get back
 * how it ended, when, and a trace whose hash is the same for the same seed.
 *
 * How: the program is forked with `Effect.runFork(program, { scheduler })`
 * where the scheduler only queues (`SimScheduler`), under `Effect.withClock`
 * of a `VirtualClock` whose `sleep` only registers a timer. Child fibers
 * inherit both, so `Effect.sleep`, `Schedule`, `Effect.timeout`, `Queue`,
 * `Deferred`, `Mailbox`, `forkScoped` loops all run on virtual time. The
 * driver below is plain synchronous code: run queued work until none is left;
 * stop if the program exited; else move time to the earliest timer and wake
 * it; no timer and not exited is a deadlock. Jumping from timer to timer is why
 * this is fast where `TestClock` is not: `TestClock.adjust` waits on real
 * `setTimeout`s to decide that fibers are idle, while here "idle" is simply
 * "the queue is empty".
 *
 * Rules for programs (what breaks determinism or the run):
 * - No real I/O, real timers or promises: `simulate` is synchronous and returns
 *   before any of them could call back, so a fiber waiting on one is reported
 *   as deadlocked (and interrupted). `Effect.promise(() => Promise.resolve(1))`
 *   counts. Use the simulated network and stores instead.
 * - No `Date.now`, `Math.random`, `crypto`: use `Clock` and `Random`.
 * - Don't put fiber ids, real timestamps, global `Metric` values or object
 *   identity hashes in trace lines: they differ between runs in one process.
 * - `forkDaemon` fibers still running when the program exits are abandoned,
 *   not interrupted (their timers are counted in `timersLiveCount`). If such a
 *   fiber sits in `Effect.never`, the real `setInterval` Effect uses to keep
 *   the process alive is never cleared.
 * - A synchronous infinite loop in plain code hangs the driver; an effectful
 *   one is caught by `maxStepsPerInstant`.
 */
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Random from "effect/Random"
import * as Schema from "effect/Schema"
import { SimClock, simStartTimeMsDefault, VirtualClock } from "./SimClock.js"
import { SimScheduler, simOpsBeforeYieldMaxDefault } from "./SimScheduler.js"
import { SimTrace, SimTraceRecorder, type SimTraceSummary, simTraceLinesMaxDefault } from "./SimTrace.js"

export * from "./SimClock.js"
export * from "./SimScheduler.js"
export * from "./SimTrace.js"

/** The services `simulate` provides to the program. */
export type SimServices = SimTrace | SimClock

export interface SimOptions {
  /** Seeds `Random`; the same seed (and program) gives the same run. */
  readonly seed: number
  /** Virtual `now` at the start. Default `simStartTimeMsDefault` (November 2023). */
  readonly startTimeMs?: number | undefined
  /**
   * Virtual-time budget, from the start. When the next timer would wake past
   * it, `now` is set to exactly `startTimeMs + maxTimeMs`, the program is
   * interrupted, and the run ends as "time-budget". Default one hour.
   */
  readonly maxTimeMs?: number | undefined
  /** Budget of scheduler tasks (fiber slices) over the whole run; past it: "step-budget". Default unlimited. */
  readonly maxSteps?: number | undefined
  /**
   * Tasks allowed without virtual time moving; past it the program is
   * livelocked (e.g. `Effect.forever(Effect.yieldNow())`, or a retry loop
   * without a delay) and the run ends as "livelock". Default 1,000,000.
   */
  readonly maxStepsPerInstant?: number | undefined
  /**
   * After a deadlock or a budget the program is interrupted so its finalizers
   * run; they get this much more virtual time (and `maxStepsPerInstant`) to
   * finish. Default 60,000.
   */
  readonly shutdownGraceMs?: number | undefined
  /** Trace lines kept (the most recent); count and hash cover all of them. Default `simTraceLinesMaxDefault`. */
  readonly traceLinesMax?: number | undefined
  /** Operations a fiber runs before yielding to the others. Default 2048, as in Effect. */
  readonly opsBeforeYieldMax?: number | undefined
}

/**
 * How the run ended.
 * - "completed": the program exited on its own (success, failure or defect).
 * - "deadlock": nothing could run and no timer was pending, but the program had not exited.
 * - "time-budget": the next timer was past `maxTimeMs`.
 * - "step-budget": more than `maxSteps` tasks ran.
 * - "livelock": more than `maxStepsPerInstant` tasks ran without time moving.
 * In all but "completed" the program was then interrupted, and `exit` is
 * what interruption produced.
 */
export type SimEnding = "completed" | "deadlock" | "time-budget" | "step-budget" | "livelock"

/**
 * The defect in `exit` when the program, interrupted after a deadlock or a
 * budget, did not finish its finalizers within `shutdownGraceMs` (a finalizer
 * that deadlocks or loops): there is no real Exit to return.
 */
export class SimShutdownStuck extends Schema.TaggedError<SimShutdownStuck>()("SimShutdownStuck", {
  /** Why the program was interrupted. */
  ending: Schema.Literal("deadlock", "time-budget", "step-budget", "livelock"),
  /** Why its shutdown did not finish. */
  stuck: Schema.Literal("deadlock", "time-budget", "step-budget", "livelock"),
  message: Schema.String
}) {}

export interface SimResult<A, E> {
  /** The program's Exit; after an interruption, the interruption's (with whatever the finalizers added). */
  readonly exit: Exit.Exit<A, E>
  readonly ending: SimEnding
  /** Virtual time from the start to the end of the run, shutdown included. */
  readonly elapsedMs: number
  /** Virtual `now` at the end. */
  readonly endTimeMs: number
  /** Scheduler tasks (fiber slices) run. Deterministic, like the trace. */
  readonly steps: number
  /** Timers still pending at the end: 0 unless daemon fibers outlived the program. */
  readonly timersLiveCount: number
  /** Real milliseconds the run took (the only field that varies between runs). */
  readonly wallMs: number
  readonly trace: SimTraceSummary
}

const maxTimeMsDefault = 3_600_000
const maxStepsPerInstantDefault = 1_000_000
const shutdownGraceMsDefault = 60_000

type Stop = Exclude<SimEnding, "completed">

const checkNonNegative = (name: string, value: number): number => {
  if (!(value >= 0)) {
    throw new RangeError(`simulate: ${name} must be >= 0, got ${value}`)
  }
  return value
}

/**
 * Runs `program` to its end on virtual time and returns how it ended.
 * Synchronous: it is pure computation, and returns only when the program has
 * exited or a deadlock or budget ended the run, never hangs on an effectful
 * program (see the module comment for the rules a program must follow).
 */
export const simulate = <A, E>(
  program: Effect.Effect<A, E, SimServices>,
  options: SimOptions
): SimResult<A, E> => {
  const wallStartMs = performance.now()
  const startTimeMs = options.startTimeMs ?? simStartTimeMsDefault
  const maxTimeMs = checkNonNegative("maxTimeMs", options.maxTimeMs ?? maxTimeMsDefault)
  const maxSteps = checkNonNegative("maxSteps", options.maxSteps ?? Number.POSITIVE_INFINITY)
  const maxStepsPerInstant = checkNonNegative(
    "maxStepsPerInstant",
    options.maxStepsPerInstant ?? maxStepsPerInstantDefault
  )
  const shutdownGraceMs = checkNonNegative(
    "shutdownGraceMs",
    options.shutdownGraceMs ?? shutdownGraceMsDefault
  )

  const clock = new VirtualClock(startTimeMs)
  const scheduler = new SimScheduler(options.opsBeforeYieldMax ?? simOpsBeforeYieldMaxDefault)
  const trace = new SimTraceRecorder(
    () => clock.unsafeCurrentTimeMillis() - startTimeMs,
    options.traceLinesMax ?? simTraceLinesMaxDefault
  )

  const fiber = Effect.runFork(
    program.pipe(
      Effect.provideService(SimTrace, trace.service),
      Effect.provideService(SimClock, clock),
      Effect.withRandom(Random.make(options.seed)),
      Effect.withClock(clock)
    ),
    { scheduler }
  )

  let steps = 0
  let stepsAtInstant = 0

  /**
   * The driver loop, until the program exits or `timeEndMs` / `stepsEnd` /
   * the per-instant budget / a deadlock stops it. Returns undefined when the
   * program exited, else why it stopped.
   */
  const drive = (timeEndMs: number, stepsEnd: number): Stop | undefined => {
    for (;;) {
      // Run at most what is left of either budget; work still queued after that is over budget.
      const ranCount = scheduler.drain(Math.min(maxStepsPerInstant - stepsAtInstant, stepsEnd - steps))
      steps += ranCount
      stepsAtInstant += ranCount
      if (scheduler.pendingCount > 0) {
        return steps >= stepsEnd ? "step-budget" : "livelock"
      }
      if (fiber.unsafePoll() !== null) {
        return undefined
      }
      const wakeTimeMs = clock.unsafeNextWakeTimeMs()
      if (wakeTimeMs === undefined) {
        return "deadlock"
      }
      if (wakeTimeMs > timeEndMs) {
        clock.unsafeAdvanceTo(timeEndMs)
        return "time-budget"
      }
      if (wakeTimeMs > clock.unsafeCurrentTimeMillis()) {
        stepsAtInstant = 0
      }
      clock.unsafeWakeNext()
    }
  }

  const stop = drive(startTimeMs + maxTimeMs, maxSteps)
  let exit = fiber.unsafePoll()
  if (stop !== undefined) {
    // Interrupt so finalizers run (and `Effect.never` clears its real interval), then drive the shutdown.
    fiber.unsafeInterruptAsFork(FiberId.none)
    stepsAtInstant = 0
    const stuck = drive(clock.unsafeCurrentTimeMillis() + shutdownGraceMs, steps + maxStepsPerInstant)
    exit = fiber.unsafePoll()
    if (stuck !== undefined || exit === null) {
      const why = stuck ?? "deadlock"
      exit = Exit.die(
        new SimShutdownStuck({
          ending: stop,
          stuck: why,
          message: `the program, interrupted after ${stop}, did not finish its finalizers (${why})`
        })
      )
    }
  }
  if (exit === null) {
    // drive returned undefined only after unsafePoll saw an exit.
    throw new Error("simulate: the program neither exited nor was stopped")
  }

  const endTimeMs = clock.unsafeCurrentTimeMillis()
  return {
    exit,
    ending: stop ?? "completed",
    elapsedMs: endTimeMs - startTimeMs,
    endTimeMs,
    steps,
    timersLiveCount: clock.unsafeTimersLiveCount(),
    wallMs: performance.now() - wallStartMs,
    trace: trace.summary()
  }
}
