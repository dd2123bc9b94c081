/** Runs a cluster scenario in the simulation runtime and returns its value, or throws with the trace's tail. */
import { Effect, Exit, Logger, LogLevel, type Scope } from "effect"
import { simulate } from "../../src/layers/SimRuntime.js"
import { type LinkConditions, SimNetwork } from "../../src/layers/TransportSim.js"

export interface RunOptions {
  readonly seed?: number
  readonly link?: Partial<LinkConditions>
  readonly maxTimeMs?: number
  /** Show logs at this level and above (default: only errors). */
  readonly logLevel?: LogLevel.LogLevel
}

export const runScenario = <A, E>(
  program: Effect.Effect<A, E, SimNetwork | Scope.Scope>,
  options: RunOptions = {}
): A => {
  const result = simulate(
    program.pipe(
      Effect.scoped,
      Effect.provide(SimNetwork.layer({ link: options.link })),
      Logger.withMinimumLogLevel(options.logLevel ?? LogLevel.Error)
    ),
    { seed: options.seed ?? 1, maxTimeMs: options.maxTimeMs ?? 600_000 }
  )
  if (!Exit.isSuccess(result.exit)) {
    throw new Error(
      `simulation (seed ${options.seed ?? 1}) ended ${result.ending} at +${result.elapsedMs} ms: ${String(result.exit.cause)}\n` +
        result.trace.lines.slice(-30).join("\n")
    )
  }
  return result.exit.value
}
