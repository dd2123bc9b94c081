/**
 * An etcd cluster on loopback for the side-by-side runs: Debian's
 * `etcd-server` (installed with apt-get when missing), N members with their
 * default timings (heartbeat 100 ms, election timeout 1,000 ms), each its own
 * process and data dir, so the leader can be killed with SIGKILL and
 * restarted on the same dir.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { mkdirSync, openSync } from "node:fs"
import { join } from "node:path"

export const etcdVersion = (): string | null => {
  try {
    return execFileSync("etcd", ["--version"], { encoding: "utf8" }).split("\n")[0]?.trim() ?? null
  } catch {
    return null
  }
}

/** Installs Debian's etcd-server and etcd-client if `etcd` is not on the PATH. */
export const ensureEtcd = (): string => {
  const found = etcdVersion()
  if (found !== null) return found
  process.stderr.write(
    "bench: etcd not found; installing Debian's etcd-server and etcd-client with apt-get\n"
  )
  const install = () =>
    execFileSync("apt-get", ["install", "-y", "etcd-server", "etcd-client"], {
      stdio: ["ignore", "inherit", "inherit"],
      env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
    })
  try {
    install()
  } catch {
    execFileSync("apt-get", ["update"], { stdio: ["ignore", "inherit", "inherit"] })
    install()
  }
  const installed = etcdVersion()
  if (installed === null) throw new Error("etcd is still missing after apt-get install")
  return installed
}

export interface EtcdMember {
  readonly name: string
  readonly clientUrl: string
  readonly peerUrl: string
}

export interface EtcdCluster {
  readonly members: ReadonlyArray<EtcdMember>
  readonly endpoints: string
  readonly pidOf: (name: string) => number | null
  readonly kill: (name: string) => void
  readonly restart: (name: string) => void
  /** The leader as its members report it, with its raft term; null if none answers. */
  readonly leader: () => Promise<{ readonly name: string; readonly term: number } | null>
  readonly waitHealthy: (timeoutMs: number) => Promise<void>
  readonly stop: () => Promise<void>
}

interface StatusJson {
  readonly header?: { readonly member_id?: string; readonly raft_term?: string }
  readonly leader?: string
}

const postJson = async (url: string, body: unknown, timeoutMs: number): Promise<unknown> => {
  const response = await fetch(url, {
    method: "POST",
    body: JSON.stringify(body),
    headers: { "content-type": "application/json" },
    signal: AbortSignal.timeout(timeoutMs)
  })
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`)
  return response.json()
}

/** Starts `count` members (client ports basePort+1…, peer ports basePort+101…) under `dir`. */
export const startEtcd = (options: {
  readonly count: number
  readonly dir: string
  readonly basePort: number
}) => {
  const members: Array<EtcdMember> = Array.from({ length: options.count }, (_, i) => ({
    name: `e${i + 1}`,
    clientUrl: `http://127.0.0.1:${options.basePort + 1 + i}`,
    peerUrl: `http://127.0.0.1:${options.basePort + 101 + i}`
  }))
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(",")
  const running = new Map<string, ChildProcess>()
  const spawnOne = (member: EtcdMember) => {
    mkdirSync(options.dir, { recursive: true })
    const log = openSync(join(options.dir, `${member.name}.log`), "a")
    const child = spawn(
      "etcd",
      [
        "--name",
        member.name,
        "--data-dir",
        join(options.dir, member.name),
        "--listen-client-urls",
        member.clientUrl,
        "--advertise-client-urls",
        member.clientUrl,
        "--listen-peer-urls",
        member.peerUrl,
        "--initial-advertise-peer-urls",
        member.peerUrl,
        "--initial-cluster",
        initialCluster,
        "--initial-cluster-state",
        "new",
        "--initial-cluster-token",
        `agora-bench-${process.pid}`,
        "--logger",
        "zap",
        "--log-level",
        "warn"
      ],
      { stdio: ["ignore", log, log] }
    )
    running.set(member.name, child)
  }
  for (const member of members) spawnOne(member)

  const memberIdOf = new Map<string, string>()
  const status = async (member: EtcdMember): Promise<StatusJson | null> => {
    try {
      return (await postJson(`${member.clientUrl}/v3/maintenance/status`, {}, 500)) as StatusJson
    } catch {
      return null
    }
  }
  const alive = (name: string) => {
    const child = running.get(name)
    return child !== undefined && child.exitCode === null && child.signalCode === null
  }
  const cluster: EtcdCluster = {
    members,
    endpoints: members.map((m) => m.clientUrl).join(","),
    pidOf: (name) => (alive(name) ? (running.get(name)?.pid ?? null) : null),
    kill: (name) => {
      running.get(name)?.kill("SIGKILL")
    },
    restart: (name) => {
      const member = members.find((m) => m.name === name)
      if (member !== undefined) spawnOne(member)
    },
    leader: async () => {
      let best: { name: string; term: number } | null = null
      for (const member of members) {
        if (!alive(member.name)) continue
        const s = await status(member)
        const id = s?.header?.member_id
        if (s === null || id === undefined) continue
        memberIdOf.set(id, member.name)
        const term = Number(s.header?.raft_term ?? 0)
        if (s.leader === id && (best === null || term > best.term)) best = { name: member.name, term }
      }
      return best
    },
    waitHealthy: async (timeoutMs) => {
      const deadline = Date.now() + timeoutMs
      while (Date.now() < deadline) {
        const healthy = await Promise.all(
          members.map(async (m) => {
            try {
              const response = await fetch(`${m.clientUrl}/health`, { signal: AbortSignal.timeout(500) })
              const json = (await response.json()) as { health?: string }
              return json.health === "true"
            } catch {
              return false
            }
          })
        )
        if (healthy.every((h) => h)) return
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
      throw new Error(`etcd not healthy within ${timeoutMs} ms (logs in ${options.dir})`)
    },
    stop: () =>
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
      ).then(() => undefined)
  }
  return cluster
}
