/** One numeric setting from the environment, for the services' `Config`s (the same names and ranges as the CLI). */
import { Config } from "effect"

/** `AGORA_<name>` (a whole number of units of `unitMs`, within [min, max]) times `unitMs`. */
export const setting = (
  name: string,
  unitMs: number,
  min: number,
  max: number,
  defaultMs: number
): Config.Config<number> =>
  Config.integer(name).pipe(
    Config.validate({
      message: `${name} must be a whole number from ${min} to ${max}`,
      validation: (value) => value >= min && value <= max
    }),
    Config.map((value) => value * unitMs),
    Config.withDefault(defaultMs)
  )
