/**
 * Logs go to stderr, pretty or as JSON lines, so stdout carries only what a
 * command prints (for `agora client --json`, protocol lines only). The level
 * is @effect/cli's built-in `--log-level`; `AGORA_LOG_LEVEL` is honoured when
 * that flag is absent.
 */
import * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import * as Logger from "effect/Logger"
import * as LogLevel from "effect/LogLevel"
import { UsageError } from "./UsageError.js"

export type LogFormat = "pretty" | "json"

const levels: Record<string, LogLevel.LogLevel> = {
  all: LogLevel.All,
  trace: LogLevel.Trace,
  debug: LogLevel.Debug,
  info: LogLevel.Info,
  warning: LogLevel.Warning,
  error: LogLevel.Error,
  fatal: LogLevel.Fatal,
  none: LogLevel.None
}

/** The stderr logger in the given format. */
export const loggerLayer = (format: LogFormat): Layer.Layer<never> =>
  Logger.replace(
    Logger.defaultLogger,
    // The pretty logger writes by itself (to stderr when asked); the JSON logger returns its line.
    format === "json"
      ? Logger.withConsoleError(Logger.jsonLogger)
      : Logger.prettyLogger({ stderr: true, colors: "auto" })
  )

/**
 * Runs `effect` with the stderr logger, at `AGORA_LOG_LEVEL` unless `--log-level`
 * was given (the built-in flag sets the level itself), else at `fallback`.
 */
export const withLogging =
  (format: LogFormat, fallback: LogLevel.LogLevel) =>
  <A, E, R>(effect: Effect.Effect<A, E | UsageError, R>): Effect.Effect<A, E | UsageError, R> => {
    const flagGiven = process.argv.some((arg) => arg === "--log-level" || arg.startsWith("--log-level="))
    const fromEnv = process.env.AGORA_LOG_LEVEL
    const envLevel = fromEnv === undefined || fromEnv === "" ? fallback : levels[fromEnv.toLowerCase()]
    if (!flagGiven && envLevel === undefined) {
      return Effect.fail(
        new UsageError({
          message: `AGORA_LOG_LEVEL must be one of ${Object.keys(levels).join(", ")}, not ${JSON.stringify(fromEnv)}`
        })
      )
    }
    const withLevel = flagGiven ? effect : Logger.withMinimumLogLevel(effect, envLevel ?? fallback)
    return Effect.provide(withLevel, loggerLayer(format))
  }
