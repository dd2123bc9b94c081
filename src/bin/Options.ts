/**
 * The options of the `agora` commands (DESIGN §7). Every option reads an
 * `AGORA_*` environment variable when the flag is absent, and every bad value
 * — from the flag or from the environment — is refused with a message that
 * names the option and the range it allows.
 */
import { Options } from "@effect/cli"
import * as Config from "effect/Config"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import { DatagramBytesDefault, DatagramBytesMax, DatagramBytesMin } from "../domain/Envelope.js"
import { envNameOf, type SettingRange } from "../services/Setting.js"

const envName = envNameOf

/**
 * Text parsed by `parse` (null: refused). Every refusal, from the flag or the environment, is
 * the one line "--name (or AGORA_NAME) must be …, not "value"".
 */
const parsed = <A>(name: string, mustBe: string, parse: (text: string) => A | null) => {
  const refusal = (actual: unknown) =>
    `--${name} (or ${envName(name)}) must be ${mustBe}, not ${JSON.stringify(actual)}`
  return Schema.transformOrFail(Schema.String, Schema.Any as Schema.Schema<A>, {
    strict: true,
    decode: (text, _options, ast) => {
      const value = parse(text)
      return value === null ? ParseResult.fail(new ParseResult.Type(ast, text)) : ParseResult.succeed(value)
    },
    encode: (value) => ParseResult.succeed(String(value))
    // The message replaces the whole parse tree: one line, as DESIGN §7 asks.
  }).annotations({ message: (issue) => ({ message: refusal(issue.actual), override: true }) })
}

/**
 * An option read as text, from the flag or else `AGORA_NAME`, then parsed: the fallback comes
 * before the schema, so a bad environment value is refused as clearly as a bad flag.
 */
const fromText = <A>(
  name: string,
  pseudoName: string,
  description: string,
  schema: Schema.Schema<A, string>
) =>
  Options.text(name).pipe(
    Options.withPseudoName(pseudoName),
    Options.withDescription(`${description}; env ${envName(name)})`),
    Options.withFallbackConfig(Config.string(envName(name))),
    Options.withSchema(schema)
  )

/** An integer option in [min, max] with a default, a description and its env fallback. */
export const integer = (
  name: string,
  spec: { min: number; max: number; default: number; description: string }
) =>
  fromText(
    name,
    "N",
    `${spec.description} (${spec.min}–${spec.max}, default ${spec.default}`,
    parsed(name, `a whole number from ${spec.min} to ${spec.max}`, (text) => {
      const value = /^\s*[+-]?\d+\s*$/.test(text) ? Number(text) : Number.NaN
      return Number.isSafeInteger(value) && value >= spec.min && value <= spec.max ? value : null
    })
  ).pipe(Options.withDefault(spec.default))

/** A setting of `agora server` from the shared table (its name, unit and range), with its default in ms. */
export const serverSetting = (range: SettingRange, spec: { defaultMs: number; description: string }) =>
  integer(range.name, {
    min: range.min,
    max: range.max,
    default: spec.defaultMs / range.unitMs,
    description: spec.description
  })

/** A text option with a default and its env fallback. */
export const text = (name: string, spec: { default: string; description: string }) =>
  Options.text(name).pipe(
    Options.withDescription(`${spec.description} (default ${spec.default}; env ${envName(name)})`),
    Options.withFallbackConfig(Config.string(envName(name))),
    Options.withDefault(spec.default)
  )

const ipv4Pattern = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

/** An IPv4 address option (`--bind`, `--broadcast`) with a default and its env fallback. */
export const ipv4 = (name: string, spec: { default: string; description: string }) =>
  fromText(
    name,
    "ADDR",
    `${spec.description} (default ${spec.default}`,
    parsed(name, "an IPv4 address such as 127.0.0.1", (text) => (ipv4Pattern.test(text) ? text : null))
  ).pipe(Options.withDefault(spec.default))

/** One of a few words, with its env fallback. */
export const choice = <const A extends string>(
  name: string,
  choices: ReadonlyArray<A>,
  spec: { default: A; description: string }
) =>
  fromText(
    name,
    choices.join("|"),
    `${spec.description} (${choices.join(" | ")}, default ${spec.default}`,
    parsed(name, `one of ${choices.join(", ")}`, (text) => choices.find((choice) => choice === text) ?? null)
  ).pipe(Options.withDefault(spec.default))

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
  broadcast: ipv4("broadcast", {
    default: "255.255.255.255",
    description: "broadcast address for discovery (use 127.255.255.255 on one host)"
  }),
  bind: ipv4("bind", { default: "0.0.0.0", description: "address of this node's unicast socket" }),
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
