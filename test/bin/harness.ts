/**
 * Real `agora` processes on loopback for the command-line tests: servers
 * (bind 127.0.0.1, broadcast 127.255.255.255, a free discovery port per
 * harness, a temporary data dir each), `agora client --json` over pipes, and
 * the interactive client under a pseudo-terminal (`script` from util-linux).
 *
 * Needs `npm run build` first (it runs dist/bin/agora.js). Every process a
 * harness starts is killed by `cleanup()`; call it in afterEach/afterAll.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import * as Dgram from "node:dgram"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join, resolve } from "node:path"

export const agoraJs = resolve(import.meta.dirname, "../../dist/bin/agora.js")

/** Fails the tests early with a clear message when the build is missing. */
export const requireBuild = (): void => {
  if (!existsSync(agoraJs)) throw new Error(`${agoraJs} is missing: run \`npm run build\` first`)
}

/** A discovery port nobody on this host is using (bound exclusively for a moment to check). */
export const freeDiscoveryPort = async (): Promise<number> => {
  for (let attempt = 0; attempt < 50; attempt++) {
    // Below the ephemeral range (32768+), so no unicast socket takes it meanwhile.
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    const free = await new Promise<boolean>((done) => {
      const socket = Dgram.createSocket({ type: "udp4", reuseAddr: false })
      socket.once("error", () => {
        socket.close()
        done(false)
      })
      socket.bind({ address: "0.0.0.0", port, exclusive: true }, () => socket.close(() => done(true)))
    })
    if (free) return port
  }
  throw new Error("no free discovery port found")
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms))

/** Removes terminal control sequences, so a pseudo-terminal's output can be searched as text. */
export const stripAnsi = (text: string): string =>
  text
    // biome-ignore lint/suspicious/noControlCharactersInRegex: these are the escape sequences being removed
    .replace(/\u001b\[[0-9;?]*[ -/]*[@-~]/g, "")
    // biome-ignore lint/suspicious/noControlCharactersInRegex: OSC sequences and lone escapes
    .replace(/\u001b\][^\u0007]*\u0007|\u001b[()][A-Za-z0-9]|\u001b[=>78]/g, "")
    .replace(/\r/g, "")
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the bell of a refused key
    .replace(/\u0007/g, "")

interface Started {
  readonly child: ChildProcess
  readonly name: string
  stdout: string
  stderr: string
  exitCode: number | null
  readonly exited: Promise<number | null>
}

const track = (child: ChildProcess, name: string): Started => {
  const started: Started = {
    child,
    name,
    stdout: "",
    stderr: "",
    exitCode: null,
    exited: new Promise((done) => {
      child.once("exit", (code, signal) => {
        started.exitCode = code ?? (signal === null ? null : -1)
        done(started.exitCode)
      })
    })
  }
  child.stdout?.setEncoding("utf8")
  child.stderr?.setEncoding("utf8")
  child.stdout?.on("data", (chunk: string) => {
    started.stdout += chunk
  })
  child.stderr?.on("data", (chunk: string) => {
    started.stderr += chunk
  })
  // A child that died makes its stdin a broken pipe: never crash the test runner on it.
  child.stdin?.on("error", () => {})
  return started
}

export type JsonObject = Record<string, unknown>

/** `agora client --json`: send lines, wait for matching output lines. */
export class JsonClient {
  /** Lines handed out by `waitFor` (by index), so one line satisfies one wait. */
  private readonly taken = new Set<number>()
  private readonly changed = new Set<() => void>()

  constructor(readonly process: Started) {
    process.child.stdout?.on("data", () => {
      for (const wake of this.changed) wake()
    })
    process.child.once("exit", () => {
      for (const wake of this.changed) wake()
    })
  }

  /** Every complete stdout line so far, parsed (a line that is not JSON fails the test). */
  get lines(): ReadonlyArray<JsonObject> {
    // The text after the last newline is a line still being written.
    return this.process.stdout
      .split("\n")
      .slice(0, -1)
      .map((line) => {
        try {
          return JSON.parse(line) as JsonObject
        } catch {
          throw new Error(`${this.process.name} printed a line that is not JSON: ${line}`)
        }
      })
  }

  send(line: JsonObject | string): void {
    this.process.child.stdin?.write(`${typeof line === "string" ? line : JSON.stringify(line)}\n`)
  }

  /** Closes stdin (end of input = quit). */
  end(): void {
    this.process.child.stdin?.end()
  }

  /** The first line not yet taken that matches, waiting up to `timeoutMs` for it. */
  async waitFor(match: (line: JsonObject) => boolean, what: string, timeoutMs = 15_000): Promise<JsonObject> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const lines = this.lines
      for (let index = 0; index < lines.length; index++) {
        const line = lines[index]
        if (line !== undefined && !this.taken.has(index) && match(line)) {
          this.taken.add(index)
          return line
        }
      }
      const left = deadline - Date.now()
      if (left <= 0 || this.process.exitCode !== null) {
        throw new Error(
          `${this.process.name}: no ${what} within ${timeoutMs} ms` +
            (this.process.exitCode === null ? "" : ` (exited ${this.process.exitCode})`) +
            `\nstdout:\n${this.process.stdout}\nstderr:\n${this.process.stderr.slice(-2000)}`
        )
      }
      await new Promise<void>((done) => {
        const wake = () => {
          clearTimeout(timer)
          this.changed.delete(wake)
          done()
        }
        const timer = setTimeout(wake, Math.min(left, 200))
        this.changed.add(wake)
      })
    }
  }

  /** Waits for a line of this type (and this ref, when given). */
  waitType(type: string, ref?: unknown, timeoutMs?: number): Promise<JsonObject> {
    return this.waitFor(
      (line) => line.type === type && (ref === undefined || line.ref === ref),
      ref === undefined ? `"${type}" line` : `"${type}" line with ref ${JSON.stringify(ref)}`,
      timeoutMs
    )
  }

  /** Sends a request with a ref and waits for the line that echoes it. */
  async request(request: JsonObject, timeoutMs?: number): Promise<JsonObject> {
    const ref = `r${Math.random().toString(36).slice(2, 10)}`
    this.send({ ...request, ref })
    return this.waitFor((line) => line.ref === ref, `reply to ${JSON.stringify(request)}`, timeoutMs)
  }

  /** The events of one auction in the order printed (lines with a `seq`). */
  events(auction: number): ReadonlyArray<JsonObject> {
    return this.lines.filter((line) => line.auction === auction && typeof line.seq === "number")
  }
}

/** The interactive client under a pseudo-terminal: read its screen, type answers. */
export class Screen {
  /** Where the next `expect` starts looking in the screen text. */
  private cursor = 0

  constructor(readonly process: Started) {}

  /** Everything shown so far, without control sequences. */
  get text(): string {
    return stripAnsi(this.process.stdout)
  }

  /** Waits until `pattern` shows up after what earlier expects matched; returns the match. */
  async expect(pattern: string | RegExp, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const text = this.text
      const rest = text.slice(this.cursor)
      const found =
        typeof pattern === "string"
          ? (() => {
              const at = rest.indexOf(pattern)
              return at === -1 ? null : { at, match: pattern }
            })()
          : (() => {
              const match = pattern.exec(rest)
              return match === null ? null : { at: match.index, match: match[0] }
            })()
      if (found !== null) {
        this.cursor += found.at + found.match.length
        return found.match
      }
      if (Date.now() > deadline || this.process.exitCode !== null) {
        throw new Error(
          `${this.process.name}: ${String(pattern)} not shown within ${timeoutMs} ms` +
            (this.process.exitCode === null ? "" : ` (exited ${this.process.exitCode})`) +
            `\nscreen after the last match:\n${rest}\nstderr:\n${this.process.stderr.slice(-2000)}`
        )
      }
      await sleep(50)
    }
  }

  /** Types text, as keys (an answer's Enter is "\r"). Send it only once its prompt is shown. */
  type(keys: string): void {
    this.process.child.stdin?.write(keys)
  }
}

export class Harness {
  readonly dir: string
  private readonly processes: Array<Started> = []
  private serverCount = 0

  private constructor(readonly discoveryPort: number) {
    this.dir = mkdtempSync(join(tmpdir(), "agora-bin-"))
  }

  static async make(): Promise<Harness> {
    requireBuild()
    return new Harness(await freeDiscoveryPort())
  }

  /** The network options every process of this harness gets. */
  get network(): ReadonlyArray<string> {
    return [
      "--bind",
      "127.0.0.1",
      "--broadcast",
      "127.255.255.255",
      "--discovery-port",
      String(this.discoveryPort)
    ]
  }

  private spawnNode(name: string, args: ReadonlyArray<string>): Started {
    const child = spawn(process.execPath, [agoraJs, ...args], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, AGORA_LOG_LEVEL: process.env.AGORA_LOG_LEVEL ?? "warning" }
    })
    const started = track(child, name)
    this.processes.push(started)
    return started
  }

  /** Starts `count` servers together (`--expect count`) and waits until they agree on a leader. */
  async startServers(
    count: number,
    extra: ReadonlyArray<string> = [],
    timeoutMs = 20_000
  ): Promise<JsonObject> {
    for (let i = 0; i < count; i++) {
      this.serverCount += 1
      const id = `s${this.serverCount}`
      this.spawnNode(id, [
        "server",
        "--id",
        id,
        "--data-dir",
        join(this.dir, id),
        "--expect",
        String(count),
        ...this.network,
        ...extra
      ])
    }
    return this.waitForLeader(count, timeoutMs)
  }

  /** `agora status --json` once. */
  status(timeoutS = 2): Promise<JsonObject> {
    return new Promise((done, failed) => {
      execFile(
        process.execPath,
        [agoraJs, "status", "--json", "--request-timeout", String(timeoutS), ...this.network],
        // Generous: on a loaded machine starting node alone can take seconds.
        { timeout: 20_000 },
        (error, stdout, stderr) => {
          if (error !== null) return failed(new Error(`${error.message} (signal ${error.signal}) ${stderr}`))
          try {
            done(JSON.parse(stdout.trim()) as JsonObject)
          } catch (parse) {
            failed(parse)
          }
        }
      )
    })
  }

  /** Polls `agora status --json` until a leader is named and `servers` servers follow it. */
  async waitForLeader(servers: number, timeoutMs = 30_000): Promise<JsonObject> {
    const deadline = Date.now() + timeoutMs
    let last: JsonObject | string | null = null
    while (Date.now() < deadline) {
      try {
        const status = await this.status()
        last = status
        const list = (status.servers ?? []) as ReadonlyArray<JsonObject>
        const ready = list.filter((s) => s.role === "leader" || s.role === "follower")
        if (typeof status.leader === "string" && ready.length >= servers) return status
      } catch (error) {
        // A status run that failed (a loaded machine, a stray signal) is only a missed poll.
        last = `status failed: ${String(error)}`
      }
      await sleep(200)
    }
    const logs = this.processes.map((p) => `--- ${p.name}\n${p.stderr.slice(-1500)}`).join("\n")
    throw new Error(`no leader within ${timeoutMs} ms; last status ${JSON.stringify(last)}\n${logs}`)
  }

  /** `agora client --json` with this harness's network. */
  jsonClient(name: string, extra: ReadonlyArray<string> = []): JsonClient {
    return new JsonClient(this.spawnNode(name, ["client", "--json", "--id", name, ...this.network, ...extra]))
  }

  /** The interactive client under a pseudo-terminal of 120×40 (so prompts do not wrap). */
  interactiveClient(name: string, extra: ReadonlyArray<string> = []): Screen {
    const args = ["client", "--id", name, ...this.network, ...extra].map((arg) => `'${arg}'`).join(" ")
    const command = `stty cols 120 rows 40 2>/dev/null; exec '${process.execPath}' '${agoraJs}' ${args}`
    // -q quiet, -e exit with the child's code, -f flush at once, -c the command; no typescript file.
    const child = spawn("script", ["-qefc", command, "/dev/null"], {
      stdio: ["pipe", "pipe", "pipe"],
      env: { ...process.env, AGORA_LOG_LEVEL: process.env.AGORA_LOG_LEVEL ?? "warning", TERM: "xterm" }
    })
    const started = track(child, name)
    this.processes.push(started)
    return new Screen(started)
  }

  /** A server process started by this harness, by id. */
  server(id: string): Started | undefined {
    return this.processes.filter((p) => p.name === id).at(-1)
  }

  /** Kills a server with SIGKILL (a crash) and waits until it is gone. */
  async crashServer(id: string): Promise<void> {
    const server = this.server(id)
    if (server === undefined || server.exitCode !== null) return
    server.child.kill("SIGKILL")
    await server.exited
  }

  /** Starts a server again on its data dir (as a restarted process would). */
  restartServer(id: string, extra: ReadonlyArray<string> = []): void {
    this.spawnNode(id, ["server", "--id", id, "--data-dir", join(this.dir, id), ...this.network, ...extra])
  }

  /** Kills what is still running (SIGTERM, then SIGKILL), waits for every exit, removes the data dirs. */
  async cleanup(): Promise<void> {
    const running = this.processes.filter((p) => p.exitCode === null)
    for (const p of running) p.child.kill("SIGTERM")
    await Promise.race([Promise.all(running.map((p) => p.exited)), sleep(3_000)])
    for (const p of running) if (p.exitCode === null) p.child.kill("SIGKILL")
    await Promise.all(running.map((p) => p.exited))
    this.processes.length = 0
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** Kills only clients (processes not named s1, s2, …), for afterEach when servers are shared. */
  async killClients(): Promise<void> {
    const clients = this.processes.filter((p) => !/^s\d+$/.test(p.name) && p.exitCode === null)
    for (const p of clients) p.child.kill("SIGKILL")
    await Promise.all(clients.map((p) => p.exited))
  }
}
