/**
 * The steady traffic of a few nodes: every transport sends a `Heartbeat` to every other one
 * every 50 ms, in fibers of the current scope. What the transport speed figures measure.
 */
import { Effect, type Scope } from "effect"
import type { TransportShape } from "../../src/services/Transport.js"

export const heartbeatAllToAll = (
  transports: ReadonlyArray<TransportShape>
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.forEach(
    transports,
    (from) => {
      const peers = transports.filter((peer) => peer !== from)
      let round = 0
      return Effect.forkScoped(
        Effect.forever(
          Effect.zipRight(
            Effect.sleep("50 millis"),
            Effect.suspend(() => {
              round += 1
              const beat = { body: { _tag: "Heartbeat", round, commitSeq: 0 }, epoch: 1 } as const
              return Effect.forEach(peers, (peer) => Effect.orDie(from.send(peer.address, beat)), {
                discard: true
              })
            })
          )
        )
      )
    },
    { discard: true }
  )
