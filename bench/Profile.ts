/**
 * Reads a V8 `.cpuprofile` (`node --cpu-prof`) and names the hot spots: the
 * functions with the most self time, as a share of the busy (non-idle) time,
 * and the project's own functions by inclusive time.
 */
import { readFileSync } from "node:fs"

interface ProfileNode {
  readonly id: number
  readonly callFrame: {
    readonly functionName: string
    readonly url: string
    readonly lineNumber: number
  }
  readonly children?: ReadonlyArray<number>
}

interface CpuProfile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
  readonly timeDeltas: ReadonlyArray<number>
}

export interface HotSpot {
  readonly name: string
  readonly percent: number
}

export interface ProfileSummary {
  readonly busyMs: number
  readonly idleMs: number
  readonly self: ReadonlyArray<HotSpot>
  /** Project functions (dist/, not node_modules) by inclusive time. */
  readonly ownInclusive: ReadonlyArray<HotSpot>
  /** Shares of busy time by where the self time is spent. */
  readonly byArea: ReadonlyArray<HotSpot>
}

const nameOf = (node: ProfileNode): string => {
  const raw = node.callFrame.url.replace(/^file:\/\//, "")
  // Packages by name (`effect/dist/esm/…`), the project's own files from its dist/.
  const url = raw.includes("/node_modules/")
    ? raw.replace(/^.*\/node_modules\//, "")
    : raw.replace(/^.*\/dist\//, "dist/")
  const where = url === "" ? "" : ` ${url}:${node.callFrame.lineNumber + 1}`
  return `${node.callFrame.functionName === "" ? "(anonymous)" : node.callFrame.functionName}${where}`
}

const areaOf = (node: ProfileNode): string => {
  const url = node.callFrame.url
  const name = node.callFrame.functionName
  if (name === "(garbage collector)") return "garbage collection"
  if (name === "(program)") return "V8/native (program)"
  if (url.includes("/node_modules/effect/")) return "effect runtime and library"
  if (url.includes("/node_modules/@effect/sql") || url.includes("better-sqlite3")) return "SQLite store"
  if (url.includes("/node_modules/")) return "other packages"
  if (url.includes("/dist/domain/")) return "Agora domain (pure)"
  if (url.includes("/dist/")) return "Agora services and layers"
  if (url.startsWith("node:dgram") || name === "doSend") return "node:dgram (UDP sends)"
  if (url.startsWith("node:internal/modules") || url.startsWith("node:internal/deps/cjs"))
    return "module loading"
  if (url.startsWith("node:")) return "node core"
  return "native"
}

export const summarizeProfile = (file: string, top = 15): ProfileSummary => {
  const profile = JSON.parse(readFileSync(file, "utf8")) as CpuProfile
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
  const timeOf = new Map<number, number>()
  profile.samples.forEach((id, i) => {
    timeOf.set(id, (timeOf.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0))
  })
  let busy = 0
  let idle = 0
  const self = new Map<string, number>()
  const area = new Map<string, number>()
  const own = new Map<string, number>()
  for (const [id, time] of timeOf) {
    const node = byId.get(id)
    if (node === undefined) continue
    if (node.callFrame.functionName === "(idle)") {
      idle += time
      continue
    }
    busy += time
    const name = nameOf(node)
    self.set(name, (self.get(name) ?? 0) + time)
    const a = areaOf(node)
    area.set(a, (area.get(a) ?? 0) + time)
    const seen = new Set<string>()
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = byId.get(cur)
      if (frame === undefined) break
      if (!frame.callFrame.url.includes("/dist/") || frame.callFrame.url.includes("/node_modules/")) continue
      const ownName = nameOf(frame)
      if (seen.has(ownName)) continue
      seen.add(ownName)
      own.set(ownName, (own.get(ownName) ?? 0) + time)
    }
  }
  const ranked = (map: Map<string, number>, n: number): Array<HotSpot> =>
    [...map]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, time]) => ({ name, percent: busy === 0 ? 0 : (100 * time) / busy }))
  return {
    busyMs: busy / 1000,
    idleMs: idle / 1000,
    self: ranked(self, top),
    ownInclusive: ranked(own, top),
    byArea: ranked(area, 20)
  }
}

// `node dist/bench/Profile.js FILE.cpuprofile`: print the summary.
if (process.argv[1]?.endsWith("Profile.js") === true && process.argv[2] !== undefined) {
  const summary = summarizeProfile(process.argv[2], Number(process.argv[3] ?? 25))
  const print = (title: string, rows: ReadonlyArray<HotSpot>) => {
    process.stdout.write(`${title}\n`)
    for (const row of rows) process.stdout.write(`${row.percent.toFixed(1).padStart(6)}%  ${row.name}\n`)
  }
  process.stdout.write(`busy ${summary.busyMs.toFixed(0)} ms, idle ${summary.idleMs.toFixed(0)} ms\n`)
  print("by area", summary.byArea)
  print("self time", summary.self)
  print("own functions, inclusive", summary.ownInclusive)
}
