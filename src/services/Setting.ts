/**
 * The numeric settings of `agora server` (DESIGN §7), one table for the command line and for the
 * services' `Config`s, so a name, a unit or a range is written once.
 */
import * as Config from "effect/Config"

/** A setting: `--name` on the command line, `AGORA_NAME` in the environment, a whole number of units of `unitMs` in [min, max]. */
export interface SettingRange {
  readonly name: string
  readonly unitMs: number
  readonly min: number
  readonly max: number
}

export const serverSettings = {
  expect: { name: "expect", unitMs: 1, min: 1, max: 15 },
  minServers: { name: "min-servers", unitMs: 1, min: 1, max: 15 },
  heartbeatInterval: { name: "heartbeat-interval", unitMs: 1, min: 5, max: 10_000 },
  failureTimeout: { name: "failure-timeout", unitMs: 1, min: 20, max: 60_000 },
  removalTimeout: { name: "removal-timeout", unitMs: 1000, min: 1, max: 86_400 },
  roundTimeout: { name: "round-timeout", unitMs: 1000, min: 1, max: 86_400 },
  startTimeout: { name: "start-timeout", unitMs: 1000, min: 1, max: 86_400 }
} as const satisfies Record<string, SettingRange>

/** `--discovery-port` → `AGORA_DISCOVERY_PORT`. */
export const envNameOf = (name: string): string => `AGORA_${name.toUpperCase().replaceAll("-", "_")}`

/** The setting from its `AGORA_*` variable, in ms (`defaultMs` when absent). */
export const setting = (range: SettingRange, defaultMs: number): Config.Config<number> => {
  const env = envNameOf(range.name)
  return Config.integer(env).pipe(
    Config.validate({
      message: `${env} must be a whole number from ${range.min} to ${range.max}`,
      validation: (value) => value >= range.min && value <= range.max
    }),
    Config.map((value) => value * range.unitMs),
    Config.withDefault(defaultMs)
  )
}
