/**
 * `agora client` (DESIGN §7): a client of the group, interactive (the
 * original's menu, client/Interactive.ts) or, with `--json`, the scripting
 * protocol (client/JsonMode.ts, formats in client/JsonProtocol.ts).
 *
 * The client's id is `--id` or `client-` + 8 random hex digits, new per
 * process (DESIGN §5). It binds one unicast UDP socket (`--bind`, any port),
 * broadcasts discovery to `--broadcast`:`--discovery-port`, and keeps no
 * discovery socket of its own. There is no `--cluster-key`: clients never
 * hold the servers' key (their requests are authenticated by the session
 * token), so the option is left out rather than accepted and ignored.
 *
 * Logs go to stderr, at warning level unless `--log-level` / AGORA_LOG_LEVEL
 * say otherwise, so neither the protocol on stdout nor the prompts are
 * disturbed. The scope of the command holds the socket and the client's
 * fibers: end of input, Exit, Ctrl-C/Ctrl-D and SIGINT/SIGTERM all close it.
 */
import { randomBytes } from "node:crypto"
import { Command } from "@effect/cli"
import * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import type { ClientId } from "../domain/Ids.js"
import { makeUdp } from "../layers/TransportUdp.js"
import { make as makeClient } from "../services/Client.js"
import { Transport } from "../services/Transport.js"
import { runInteractive } from "./client/Interactive.js"
import { runJson } from "./client/JsonMode.js"
import { withLogging } from "./Logging.js"
import { choice, flag, network, optionalId, requestTimeout } from "./Options.js"

const options = {
  id: optionalId("this client's id (default: client- and random hex digits, new per process)"),
  json: flag("json", "speak the JSON scripting protocol on stdin/stdout instead of the menu"),
  requestTimeout,
  logFormat: choice("log-format", ["pretty", "json"], {
    default: "pretty",
    description: "log lines on stderr"
  }),
  discoveryPort: network.discoveryPort,
  broadcast: network.broadcast,
  bind: network.bind,
  maxDatagram: network.maxDatagram
}

export const clientCommand = Command.make("client", options, (o) =>
  Effect.gen(function* () {
    const id = Option.getOrElse(o.id, () => `client-${randomBytes(4).toString("hex")}`) as ClientId
    const requestTimeoutMs = o.requestTimeout * 1000
    const transport = yield* makeUdp({
      identity: { role: "client", id },
      boot: 0,
      bindAddress: o.bind,
      port: 0,
      discoveryPort: o.discoveryPort,
      broadcastAddress: o.broadcast,
      maxDatagramBytes: o.maxDatagram,
      listenDiscovery: false
    })
    const client = yield* makeClient({ id, requestTimeoutMs }).pipe(
      Effect.provideService(Transport, transport)
    )
    if (o.json) return yield* runJson(client, { requestTimeoutMs })
    return yield* runInteractive(client, {
      requestTimeoutMs,
      broadcast: o.broadcast,
      discoveryPort: o.discoveryPort
    })
  }).pipe(Effect.scoped, withLogging(o.logFormat, LogLevel.Warning))
).pipe(
  Command.withDescription(
    "Take part in auctions: the interactive menu (1 Create, 2 List, 3 Join, 4 Exit), or with --json\n" +
      "the scripting protocol, one JSON object per line on stdin and stdout.\n" +
      "Example: agora client --broadcast 127.255.255.255\n" +
      'Example: echo \'{"op":"list"}\' | agora client --json --broadcast 127.255.255.255'
  )
)
