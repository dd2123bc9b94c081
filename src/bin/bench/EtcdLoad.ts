/**
 * The etcd side of the comparison: the same number of concurrent clients as
 * Agora's bidders, each with one request in flight, each write a bid-sized
 * value put through etcd's v3 HTTP/JSON gateway (`POST /v3/kv/put`) over a
 * keep-alive connection. etcd answers a put once the entry is committed by a
 * majority of its members (Raft), so an answered put is the counterpart of an
 * acknowledged bid. Each answer's `header.raft_term` is the etcd epoch used
 * for failover (first put answered under a newer term).
 *
 * A client talks to one member (spread round-robin, as clientv3's balancer
 * does); when its member fails (refused, reset, timed out) it moves to the
 * next one, as clientv3 does.
 */
import { Agent, request } from "node:http"
import { performance } from "node:perf_hooks"
import * as Effect from "effect/Effect"
import type { Stats } from "./Stats.js"

export interface EtcdLoadOptions {
  readonly endpoints: ReadonlyArray<string>
  readonly clients: number
  readonly valueBytes: number
  readonly requestTimeoutMs: number
}

interface PutAnswer {
  readonly status: number
  readonly term: number | null
  readonly error: string | null
}

const put = (
  agent: Agent,
  endpoint: URL,
  body: string,
  timeoutMs: number
): Effect.Effect<PutAnswer, { readonly code: string }> =>
  Effect.async<PutAnswer, { readonly code: string }>((resume) => {
    const req = request(
      {
        agent,
        host: endpoint.hostname,
        port: endpoint.port,
        path: "/v3/kv/put",
        method: "POST",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
        timeout: timeoutMs
      },
      (res) => {
        const chunks: Array<Buffer> = []
        res.on("data", (chunk: Buffer) => chunks.push(chunk))
        res.on("error", (error: NodeJS.ErrnoException) =>
          resume(Effect.fail({ code: error.code ?? "ResponseError" }))
        )
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8")
          try {
            const json = JSON.parse(text) as {
              header?: { raft_term?: string }
              error?: string
              message?: string
            }
            const term = json.header?.raft_term === undefined ? null : Number(json.header.raft_term)
            resume(
              Effect.succeed({ status: res.statusCode ?? 0, term, error: json.error ?? json.message ?? null })
            )
          } catch {
            resume(Effect.succeed({ status: res.statusCode ?? 0, term: null, error: "bad JSON" }))
          }
        })
      }
    )
    req.on("timeout", () => req.destroy(Object.assign(new Error("timeout"), { code: "Timeout" })))
    req.on("error", (error: NodeJS.ErrnoException) =>
      resume(Effect.fail({ code: error.code ?? "RequestError" }))
    )
    req.end(body)
    return Effect.sync(() => {
      req.destroy()
    })
  })

/** Runs `clients` put loops until interrupted. */
export const runEtcdLoad = (
  options: EtcdLoadOptions,
  stats: Stats,
  pace: Effect.Effect<void>
): Effect.Effect<void> =>
  Effect.suspend(() => {
    const agent = new Agent({ keepAlive: true, maxSockets: options.clients * 2 })
    const endpoints = options.endpoints.map((url) => new URL(url))
    const value = Buffer.alloc(options.valueBytes, "b").toString("base64")
    const client = (index: number): Effect.Effect<void> =>
      Effect.gen(function* () {
        let target = index % endpoints.length
        let n = 0
        for (;;) {
          const endpoint = endpoints[target]
          if (endpoint === undefined) return
          yield* pace
          n += 1
          const key = Buffer.from(`bid/${index}/${n}`).toString("base64")
          const body = `{"key":"${key}","value":"${value}"}`
          const t0 = performance.now()
          const answer = yield* Effect.either(put(agent, endpoint, body, options.requestTimeoutMs))
          const t1 = performance.now()
          if (answer._tag === "Right" && answer.right.status === 200 && answer.right.error === null) {
            stats.ack((t1 - t0) * 1000, Date.now(), answer.right.term)
            continue
          }
          stats.error(
            answer._tag === "Left"
              ? answer.left.code
              : `HTTP ${answer.right.status}: ${answer.right.error ?? ""}`
          )
          // This member cannot serve now: the next one (clientv3 fails over the same way).
          target = (target + 1) % endpoints.length
          yield* Effect.sleep(10)
        }
      })
    return Effect.forEach(
      Array.from({ length: options.clients }, (_, i) => i),
      client,
      { concurrency: "unbounded", discard: true }
    ).pipe(Effect.ensuring(Effect.sync(() => agent.destroy())))
  })
