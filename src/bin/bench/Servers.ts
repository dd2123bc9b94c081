/**
 * The `agora server` processes a bench starts on loopback (like `agora demo`):
 * each its own process with its own data dir, so a leader can be killed with
 * SIGKILL and restarted on the same dir. Also reads each process's resident
 * memory and CPU time from /proc (Linux), for memory and CPU per committed bid.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createSocket } from "node:dgram"
import { mkdirSync, openSync, readFileSync } from "node:fs"
import { join } from "node:path"
import * as Effect from "effect/Effect"

/** Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`: 100 on Linux/x86-64). */
const ClockTicksPerSecond = 100

export const loopback = "127.0.0.1"
export const loopbackBroadcast = "127.255.255.255"

/** A free UDP port on this host, for a discovery port no other group uses. */
export const freeUdpPort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const socket = createSocket("udp4")
  socket.bind(0, "0.0.0.0", () => {
    const { port } = socket.address()
    socket.close(() => resume(Effect.succeed(port)))
  })
})

export interface ProcessSample {
  /** Resident set size (VmRSS), KiB; null when the process is gone. */
  readonly rssKb: number | null
  /** user + system CPU time, ms; null when the process is gone. */
  readonly cpuMs: number | null
}

/** VmRSS and utime+stime of a process, from /proc. */
export const sampleProcess = (pid: number): ProcessSample => {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
    // utime and stime are fields 14 and 15 of the whole line, so 12 and 13 after the name.
    const ticks = Number(fields[11]) + Number(fields[12])
    return {
      rssKb: rss?.[1] === undefined ? null : Number(rss[1]),
      cpuMs: Number.isFinite(ticks) ? (ticks * 1000) / ClockTicksPerSecond : null
    }
  } catch {
    return { rssKb: null, cpuMs: null }
  }
}

export interface ServerGroupOptions {
  readonly count: number
  readonly dir: string
  readonly discoveryPort: number
  readonly sync: "normal" | "full"
  readonly maxDatagram: number
  /** A directory for `node --cpu-prof` profiles (written when a server exits cleanly). */
  readonly cpuProfDir?: string | undefined
  readonly extraArgs?: ReadonlyArray<string> | undefined
  /**
   * Restart a killed server on a new unicast port (`--port 0`) instead of its own. Default
   * false: each server keeps the port it was first given, as a deployment with `--port` does.
   */
  readonly freshPorts?: boolean | undefined
}

export interface ServerGroup {
  readonly ids: ReadonlyArray<string>
  readonly pidOf: (id: string) => number | null
  /** SIGKILL: a crash. */
  readonly kill: (id: string) => void
  /** Starts the server again on its data dir (after a kill). */
  readonly restart: (id: string) => void
  /** Every live server's memory and CPU. */
  readonly sample: () => ReadonlyArray<{ readonly id: string; readonly pid: number } & ProcessSample>
}

/**
 * Starts `count` servers (`s1`…) on loopback in the current scope; closing the scope sends
 * SIGTERM to every one still running and waits (at most 5 s each) for it to exit, so
 * CPU profiles get written.
 */
export const startServerGroup = (options: ServerGroupOptions) =>
  Effect.gen(function* () {
    const ids = Array.from({ length: options.count }, (_, i) => `s${i + 1}`)
    const ports = new Map<string, number>()
    if (options.freshPorts !== true) for (const id of ids) ports.set(id, yield* freeUdpPort)
    const running = new Map<string, ChildProcess>()
    const spawnOne = (id: string) => {
      mkdirSync(options.dir, { recursive: true })
      const log = openSync(join(options.dir, `${id}.log`), "a")
      const profile =
        options.cpuProfDir === undefined
          ? []
          : [
              "--cpu-prof",
              "--cpu-prof-dir",
              options.cpuProfDir,
              "--cpu-prof-name",
              `${id}-${Date.now()}.cpuprofile`
            ]
      const child = spawn(
        process.execPath,
        [
          ...profile,
          process.argv[1] ?? "agora",
          "server",
          "--id",
          id,
          "--data-dir",
          join(options.dir, id),
          "--expect",
          String(options.count),
          "--sync",
          options.sync,
          "--log-format",
          "json",
          "--bind",
          loopback,
          "--broadcast",
          loopbackBroadcast,
          "--discovery-port",
          String(options.discoveryPort),
          "--max-datagram",
          String(options.maxDatagram),
          "--port",
          String(ports.get(id) ?? 0),
          ...(options.extraArgs ?? [])
        ],
        { stdio: ["ignore", log, log] }
      )
      running.set(id, child)
    }
    yield* Effect.addFinalizer(() =>
      Effect.promise(() =>
        Promise.all(
          [...running.values()].map(
            (child) =>
              new Promise<void>((resolve) => {
                if (child.exitCode !== null || child.signalCode !== null) return resolve()
                const timer = setTimeout(() => {
                  child.kill("SIGKILL")
                  resolve()
                }, 5_000)
                child.once("exit", () => {
                  clearTimeout(timer)
                  resolve()
                })
                child.kill("SIGTERM")
              })
          )
        )
      )
    )
    for (const id of ids) spawnOne(id)
    return {
      ids,
      pidOf: (id) => {
        const child = running.get(id)
        return child?.pid !== undefined && child.exitCode === null && child.signalCode === null
          ? child.pid
          : null
      },
      kill: (id) => {
        running.get(id)?.kill("SIGKILL")
      },
      restart: (id) => spawnOne(id),
      sample: () =>
        ids.flatMap((id) => {
          const child = running.get(id)
          if (child?.pid === undefined || child.exitCode !== null || child.signalCode !== null) return []
          return [{ id, pid: child.pid, ...sampleProcess(child.pid) }]
        })
    } satisfies ServerGroup
  })
