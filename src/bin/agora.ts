#!/usr/bin/env node
/** The `agora` command line (DESIGN §7). */
import { Command } from "@effect/cli"
// Subpaths, not the package index: the index loads the cluster, RPC and SQL modules too (~18 MiB of RSS).
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import { benchCommand } from "./BenchCommand.js"
import { clientCommand } from "./ClientCommand.js"
import { demoCommand } from "./DemoCommand.js"
import { serverCommand } from "./ServerCommand.js"
import { statusCommand } from "./StatusCommand.js"

const root = Command.make("agora").pipe(
  Command.withDescription(
    "Agora: a fault-tolerant distributed auction system over UDP.\n" +
      "Example: agora server --id s1 --data-dir ./s1 --broadcast 127.255.255.255 (then agora client)"
  ),
  Command.withSubcommands([serverCommand, clientCommand, statusCommand, demoCommand, benchCommand])
)

const cli = Command.run(root, { name: "agora", version: "0.1.0" })

cli(process.argv).pipe(
  Effect.catchTags({
    UsageError: (error) =>
      Effect.zipRight(
        Console.error(`agora: ${error.message}`),
        Effect.sync(() => {
          process.exitCode = 1
        })
      ),
    StoreError: (error) =>
      Effect.zipRight(
        Console.error(`agora: ${error.message}`),
        Effect.sync(() => {
          process.exitCode = 1
        })
      ),
    UdpBindError: (error) =>
      Effect.zipRight(
        Console.error(`agora: ${error.message}`),
        Effect.sync(() => {
          process.exitCode = 1
        })
      )
  }),
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
)
