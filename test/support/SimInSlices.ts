/**
 * `runScenario` for long simulations: the same run (same runtime pieces, same
 * driver steps, so the same seed gives the same run), but driven in slices of
 * real time with a turn of the Node event loop between them.
 *
 * Why: `simulate` is one synchronous call. A simulation that takes a minute of
 * CPU blocks the vitest worker's event loop that long, and the worker's RPC to
 * the main process ("onTaskUpdate") times out after 60 s, failing the run even
 * though every test passed. Nothing of the program runs between slices: all
 * its work is queued on the simulation scheduler, which only the driver drains.
 *
 * Only what these tests need: no step budgets; a deadlock or the time budget
 * interrupts the program and rejects.
 */
import { Effect, Exit, FiberId, Logger, LogLevel, Random, type Scope } from "effect"
import {
  SimClock,
  SimScheduler,
  SimTrace,
  SimTraceRecorder,
  simStartTimeMsDefault,
  VirtualClock
} from "../../src/layers/SimRuntime.js"
import { SimNetwork } from "../../src/layers/TransportSim.js"

export interface SliceOptions {
  readonly seed?: number
  /** Virtual-time budget from the start (default 1 h). */
  readonly maxTimeMs?: number
  /** Real time one slice may run before the event loop gets a turn (default 1 s). */
  readonly sliceWallMs?: number
}

/** Scheduler tasks between two looks at the wall clock. */
const TasksPerCheck = 10_000
/** Tasks at one virtual instant past which the program is livelocked (as `simulate`'s default). */
const TasksPerInstantMax = 1_000_000

const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

export const runScenarioInSlices = async <A, E>(
  program: Effect.Effect<A, E, SimNetwork | Scope.Scope>,
  options: SliceOptions = {}
): Promise<A> => {
  const seed = options.seed ?? 1
  const startMs = simStartTimeMsDefault
  const endMs = startMs + (options.maxTimeMs ?? 3_600_000)
  const sliceWallMs = options.sliceWallMs ?? 1_000
  const clock = new VirtualClock(startMs)
  const scheduler = new SimScheduler()
  const trace = new SimTraceRecorder(() => clock.unsafeCurrentTimeMillis() - startMs)
  const fiber = Effect.runFork(
    program.pipe(
      Effect.scoped,
      Effect.provide(SimNetwork.layer()),
      Logger.withMinimumLogLevel(LogLevel.Error),
      Effect.provideService(SimTrace, trace.service),
      Effect.provideService(SimClock, clock),
      Effect.withRandom(Random.make(seed)),
      Effect.withClock(clock)
    ),
    { scheduler }
  )
  let tasksAtInstant = 0
  let stop: string | undefined
  for (;;) {
    const sliceStartMs = performance.now()
    while (stop === undefined && performance.now() - sliceStartMs < sliceWallMs) {
      const ran = scheduler.drain(TasksPerCheck)
      tasksAtInstant += ran
      if (scheduler.pendingCount > 0) {
        if (tasksAtInstant > TasksPerInstantMax) stop = "livelock"
        continue
      }
      if (fiber.unsafePoll() !== null) break
      const wakeMs = clock.unsafeNextWakeTimeMs()
      if (wakeMs === undefined) stop = "deadlock"
      else if (wakeMs > endMs) stop = "time-budget"
      else {
        if (wakeMs > clock.unsafeCurrentTimeMillis()) tasksAtInstant = 0
        clock.unsafeWakeNext()
      }
    }
    const exit = fiber.unsafePoll()
    if (exit !== null) {
      if (Exit.isSuccess(exit)) return exit.value
      throw new Error(
        `simulation (seed ${seed}) failed: ${String(exit.cause)}\n${trace.summary().lines.slice(-30).join("\n")}`
      )
    }
    if (stop !== undefined) {
      fiber.unsafeInterruptAsFork(FiberId.none)
      scheduler.drain(TasksPerInstantMax)
      throw new Error(
        `simulation (seed ${seed}) ended by ${stop} at +${clock.unsafeCurrentTimeMillis() - startMs} ms\n${trace
          .summary()
          .lines.slice(-30)
          .join("\n")}`
      )
    }
    await turn()
  }
}
