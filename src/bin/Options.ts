/**
 * The options of the `agora` commands (DESIGN §7). Every option reads an
 * `AGORA_*` environment variable when the flag is absent, and every bad value
 * — from the flag or from the environment — is refused with a message that
 * names the option and the range it allows.
 */
import { Options } from "@effect/cli"
import { Config, Schema } from "effect"
import { DatagramBytesDefault, DatagramBytesMax, DatagramBytesMin } from "../domain/Envelope.js"

const envName = (name: string) => `AGORA_${name.toUpperCase().replaceAll("-", "_")}`

/** An integer option in [min, max] with a default, a description and its env fallback. */
export const integer = (
  name: string,
  spec: { min: number; max: number; default: number; description: string }
) =>
  Options.integer(name).pipe(
    Options.withDescription(
      `${spec.description} (${spec.min}–${spec.max}, default ${spec.default}; env ${envName(name)})`
    ),
    // The fallback comes before the schema, so a bad environment value is checked too.
    Options.withFallbackConfig(Config.integer(envName(name))),
    Options.withSchema(
      Schema.Int.pipe(
        Schema.between(spec.min, spec.max, {
          message: () => `--${name} must be a whole number from ${spec.min} to ${spec.max}`
        })
      )
    ),
    Options.withDefault(spec.default)
  )

/** A text option with a default and its env fallback. */
export const text = (name: string, spec: { default: string; description: string }) =>
  Options.text(name).pipe(
    Options.withDescription(`${spec.description} (default ${spec.default}; env ${envName(name)})`),
    Options.withFallbackConfig(Config.string(envName(name))),
    Options.withDefault(spec.default)
  )

/** One of a few words, with its env fallback. */
export const choice = <const A extends string>(
  name: string,
  choices: ReadonlyArray<A>,
  spec: { default: A; description: string }
) =>
  Options.choice(name, choices).pipe(
    Options.withDescription(
      `${spec.description} (${choices.join(" | ")}, default ${spec.default}; env ${envName(name)})`
    ),
    Options.withFallbackConfig(Config.literal(...choices)(envName(name))),
    Options.withDefault(spec.default)
  )

/** A flag, with its env fallback (`AGORA_JSON=true`). */
export const flag = (name: string, description: string) =>
  Options.boolean(name).pipe(
    Options.withDescription(`${description} (env ${envName(name)})`),
    Options.withFallbackConfig(Config.boolean(envName(name))),
    Options.withDefault(false)
  )

const idPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/

/** An optional id (`--id`): 1–64 letters, digits, '_', '.', '-'. */
export const optionalId = (description: string) =>
  Options.text("id").pipe(
    Options.withDescription(`${description} (1–64 of letters, digits, '_', '.', '-'; env AGORA_ID)`),
    Options.withFallbackConfig(Config.string("AGORA_ID")),
    Options.withSchema(
      Schema.String.pipe(
        Schema.pattern(idPattern, {
          message: () => "--id must be 1–64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        })
      )
    ),
    Options.optional
  )

/** The network options every command has (DESIGN §7). */
export const network = {
  discoveryPort: integer("discovery-port", {
    min: 1,
    max: 65535,
    default: 12345,
    description: "UDP port of discovery broadcasts, shared by the servers of a host"
  }),
  broadcast: text("broadcast", {
    default: "255.255.255.255",
    description: "broadcast address for discovery (use 127.255.255.255 on one host)"
  }),
  bind: text("bind", { default: "0.0.0.0", description: "address of this node's unicast socket" }),
  clusterKey: Options.redacted("cluster-key").pipe(
    Options.withDescription(
      "shared secret: servers sign and check every datagram with HMAC-SHA256 (env AGORA_CLUSTER_KEY)"
    ),
    Options.withFallbackConfig(Config.redacted("AGORA_CLUSTER_KEY")),
    Options.optional
  ),
  maxDatagram: integer("max-datagram", {
    min: DatagramBytesMin,
    max: DatagramBytesMax,
    default: DatagramBytesDefault,
    description: "largest datagram in bytes; larger messages travel in fragments"
  })
}

/** `--request-timeout S` for every command that talks to the cluster. */
export const requestTimeout = integer("request-timeout", {
  min: 1,
  max: 3600,
  default: 10,
  description: "seconds a request may take, retries included, before it is reported as Timeout"
})
