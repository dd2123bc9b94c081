/**
 * The `agora` command line as a user meets it (DESIGN §7): every bad value,
 * from a flag or from its `AGORA_*` variable, is refused with one line naming
 * the option and what it allows, exit code 1, before anything starts; every
 * command's `--help` has an example; SIGTERM stops a server cleanly (promise 8);
 * `agora demo` exits 0 (it checks the winner itself).
 */
import { execFile } from "node:child_process"
import { afterAll, describe, expect, it } from "@effect/vitest"
import { agoraJs, Harness, requireBuild } from "./harness.js"

requireBuild()

interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const agora = (args: ReadonlyArray<string>, env: Record<string, string> = {}, timeoutMs = 20_000) =>
  new Promise<Ran>((done) => {
    execFile(
      process.execPath,
      [agoraJs, ...args],
      { env: { ...process.env, ...env }, timeout: timeoutMs },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : null
        done({ code, stdout, stderr })
      }
    )
  })

describe.concurrent("agora: bad values are refused with the option, its variable and its range (DESIGN §7)", () => {
  const cases: ReadonlyArray<{
    readonly args: ReadonlyArray<string>
    readonly env?: Record<string, string>
    readonly message: string
  }> = [
    {
      args: ["server", "--data-dir", "/nonexistent/x", "--port", "abc"],
      message: '--port (or AGORA_PORT) must be a whole number from 0 to 65535, not "abc"'
    },
    {
      args: ["server", "--data-dir", "/nonexistent/x"],
      env: { AGORA_PORT: "70000" },
      message: '--port (or AGORA_PORT) must be a whole number from 0 to 65535, not "70000"'
    },
    {
      args: ["server", "--data-dir", "/nonexistent/x", "--heartbeat-interval", "1.5"],
      message: "--heartbeat-interval (or AGORA_HEARTBEAT_INTERVAL) must be a whole number from"
    },
    {
      args: ["server", "--data-dir", "/nonexistent/x", "--sync", "sometimes"],
      message: '--sync (or AGORA_SYNC) must be one of normal, full, not "sometimes"'
    },
    {
      args: ["status", "--json"],
      env: { AGORA_BROADCAST: "10.0.0" },
      message: '--broadcast (or AGORA_BROADCAST) must be an IPv4 address such as 127.0.0.1, not "10.0.0"'
    },
    {
      args: ["client", "--json", "--bind", "localhost"],
      message: '--bind (or AGORA_BIND) must be an IPv4 address such as 127.0.0.1, not "localhost"'
    },
    {
      args: ["client", "--json", "--request-timeout", "0"],
      message: '--request-timeout (or AGORA_REQUEST_TIMEOUT) must be a whole number from 1 to 3600, not "0"'
    },
    {
      args: ["status", "--json"],
      env: { AGORA_LOG_FORMAT: "xml" },
      message: '--log-format (or AGORA_LOG_FORMAT) must be one of pretty, json, not "xml"'
    },
    {
      args: ["status", "--json"],
      env: { AGORA_LOG_LEVEL: "loud" },
      message:
        'AGORA_LOG_LEVEL must be one of all, trace, debug, info, warning, error, fatal, none, not "loud"'
    }
  ]
  for (const { args, env, message } of cases) {
    it(`${args.join(" ")} ${JSON.stringify(env ?? {})}`, async () => {
      const ran = await agora(args, env)
      expect(ran.code).toBe(1)
      expect(ran.stderr).toContain(message)
      // One clear line, not a parse tree or a stack, and nothing on stdout.
      expect(ran.stderr.trim().split("\n")).toHaveLength(1)
      expect(ran.stdout.trim()).toBe("")
    })
  }
})

describe.concurrent("agora --help: every command says what it does, with an example", () => {
  for (const command of ["server", "client", "status", "demo", "bench"]) {
    it(`agora ${command} --help`, async () => {
      const ran = await agora([command, "--help"])
      expect(ran.code).toBe(0)
      expect(ran.stdout).toContain(`Example: agora ${command}`)
    })
  }
  it("agora --help", async () => {
    const ran = await agora(["--help"])
    expect(ran.code).toBe(0)
    expect(ran.stdout).toContain("Example: agora server")
  })
})

describe("promise 8: clean shutdown", () => {
  let harness: Harness | undefined
  afterAll(async () => harness?.cleanup())

  it("SIGTERM stops a leading server with exit code 0, and its store opens again", {
    timeout: 60_000
  }, async () => {
    harness = await Harness.make()
    await harness.startServers(1)
    const server = harness.server("s1")
    if (server === undefined) throw new Error("s1 did not start")
    server.child.kill("SIGTERM")
    expect(await server.exited).toBe(0)
    harness.restartServer("s1")
    const again = await harness.waitForLeader(1, 20_000)
    expect(again.leader).toBe("s1")
  })
})

describe("agora demo", () => {
  it("runs three servers, kills the leader mid-round and exits 0 with the right winner", {
    timeout: 120_000
  }, async () => {
    const ran = await agora(["demo"], {}, 110_000)
    expect(ran.code).toBe(0)
    expect(ran.stdout).toContain("The auction completed correctly")
  })
})
