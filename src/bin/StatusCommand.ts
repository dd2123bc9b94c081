/**
 * `agora status`: the group as its servers see it (DESIGN §7). It broadcasts
 * a StatusRequest a few times, collects every server's StatusReply, and
 * prints a table, or with `--json` the one line of DESIGN §7.
 */
import { randomBytes } from "node:crypto"
import { Command } from "@effect/cli"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as LogLevel from "effect/LogLevel"
import * as Option from "effect/Option"
import * as Stream from "effect/Stream"
import type { ClientId } from "../domain/Ids.js"
import type { Address } from "../domain/Schemas.js"
import { formatAddress } from "../domain/Schemas.js"
import { makeUdp } from "../layers/TransportUdp.js"
import { withLogging } from "./Logging.js"
import { choice, flag, network, requestTimeout } from "./Options.js"

type StatusReply = Extract<import("../domain/Envelope.js").Body, { readonly _tag: "StatusReply" }>

interface Seen {
  readonly reply: StatusReply
  readonly address: Address
}

/**
 * Asks every reachable server for its status, asking again every `askEveryMs`, until every member
 * the answers list has answered, or nothing new came for `quietMs` after a first answer, or
 * `waitMs` passed: a healthy group answers at once, a dead member costs `quietMs`, no group `waitMs`.
 */
export const collectStatus = (options: {
  readonly bind: string
  readonly discoveryPort: number
  readonly broadcast: string
  readonly maxDatagram: number
  readonly waitMs: number
}) =>
  Effect.scoped(
    Effect.gen(function* () {
      const transport = yield* makeUdp({
        identity: { role: "client", id: `status-${randomBytes(4).toString("hex")}` as ClientId },
        boot: 0,
        bindAddress: options.bind,
        port: 0,
        discoveryPort: options.discoveryPort,
        broadcastAddress: options.broadcast,
        maxDatagramBytes: options.maxDatagram,
        listenDiscovery: false
      })
      const seen = new Map<string, Seen>()
      yield* Effect.forkScoped(
        Stream.runForEach(transport.incoming, ({ envelope, source }) =>
          Effect.sync(() => {
            if (envelope.body._tag === "StatusReply")
              seen.set(envelope.body.id, { reply: envelope.body, address: source })
          })
        )
      )
      const askEveryMs = 100
      const quietMs = 500
      let lastNewMs = 0
      let count = 0
      for (let elapsedMs = 0; elapsedMs < options.waitMs; elapsedMs += askEveryMs) {
        if (elapsedMs % (3 * askEveryMs) === 0) {
          yield* transport.broadcast({ body: { _tag: "StatusRequest" } }).pipe(Effect.ignore)
        }
        yield* Effect.sleep(Math.min(askEveryMs, options.waitMs - elapsedMs))
        if (seen.size > count) {
          count = seen.size
          lastNewMs = elapsedMs
        }
        const listed = new Set([...seen.values()].flatMap((s) => s.reply.members.map((m) => m.id)))
        const allListed = count > 0 && [...listed].every((id) => seen.has(id))
        if (allListed || (count > 0 && elapsedMs - lastNewMs >= quietMs)) break
      }
      return [...seen.values()].sort((a, b) => (a.reply.id < b.reply.id ? -1 : 1))
    })
  )

/** The leader most servers agree on at the highest epoch, if any. */
const leaderOf = (servers: ReadonlyArray<Seen>) => {
  const leading = servers
    .filter((s) => s.reply.role === "leader")
    .sort((a, b) => b.reply.epoch - a.reply.epoch)
  return leading[0]?.reply ?? null
}

export const statusCommand = Command.make(
  "status",
  {
    json: flag("json", "print one JSON line instead of a table"),
    requestTimeout,
    logFormat: choice("log-format", ["pretty", "json"], {
      default: "pretty",
      description: "log lines on stderr"
    }),
    ...network
  },
  (o) =>
    Effect.gen(function* () {
      const servers = yield* collectStatus({ ...o, waitMs: o.requestTimeout * 1000 })
      const leader = leaderOf(servers)
      if (o.json) {
        return yield* Console.log(
          JSON.stringify({
            type: "status",
            leader: leader?.id ?? null,
            epoch: leader?.epoch ?? Math.max(0, ...servers.map((s) => s.reply.epoch)),
            servers: servers.map(({ reply, address }) => ({
              id: reply.id,
              address: formatAddress(address),
              role: reply.role,
              epoch: reply.epoch,
              lastSeq: reply.lastSeq,
              commitSeq: reply.commitSeq,
              group: reply.group,
              members: reply.members.length,
              splitGroup: reply.splitGroup
            }))
          })
        )
      }
      if (servers.length === 0)
        return yield* Console.log("no server answered (check --discovery-port and --broadcast)")
      const top = leader?.commitSeq ?? Math.max(...servers.map((s) => s.reply.commitSeq))
      const rows = servers.map(({ reply, address }) => [
        reply.id,
        formatAddress(address),
        reply.role + (reply.splitGroup ? " (SPLIT GROUP)" : ""),
        String(reply.epoch),
        String(reply.lastSeq),
        String(reply.commitSeq),
        String(top - reply.commitSeq),
        reply.group ?? "-"
      ])
      yield* Console.log(
        table(["id", "address", "role", "epoch", "last seq", "commit seq", "lag", "group"], rows)
      )
      yield* Console.log(
        leader === null
          ? "no leader"
          : `leader ${leader.id}, epoch ${leader.epoch}, ${leader.members.length} members`
      )
      const groups = new Set(servers.map((s) => s.reply.group).filter((g) => g !== null))
      if (groups.size > 1)
        yield* Console.log(`WARNING: ${groups.size} groups answered: ${[...groups].join(", ")}`)
      return Option.none()
    }).pipe(withLogging(o.logFormat, LogLevel.Warning))
).pipe(
  Command.withDescription(
    "Show the group as its servers see it: members, leader, epoch, commit seq per server, lag.\n" +
      "Waits until every member answered, at most --request-timeout (a silent member costs 0.5 s).\n" +
      "Example: agora status --broadcast 127.255.255.255 --json"
  )
)

/** A plain text table with aligned columns. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd()
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n")
}
