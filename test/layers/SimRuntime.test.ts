import { describe, expect, it } from "@effect/vitest"
import {
  Cause,
  Clock,
  Data,
  Deferred,
  Effect,
  Exit,
  Fiber,
  Mailbox,
  Option,
  Queue,
  Random,
  Ref,
  Schedule
} from "effect"
import {
  Fnv1a64,
  fnv1a64Hex,
  recordTrace,
  SimClock,
  SimScheduler,
  SimShutdownStuck,
  simStartTimeMsDefault,
  simulate,
  VirtualClock
} from "../../src/layers/SimRuntime.js"

const startTimeMs = simStartTimeMsDefault

/** Virtual ms since the start, as the program sees it. */
const elapsedMs = Effect.map(Clock.currentTimeMillis, (nowMs) => nowMs - startTimeMs)

/** Appends the elapsed virtual time to `times`. */
const stamp = (times: Array<number>) => Effect.map(elapsedMs, (timeMs) => void times.push(timeMs))

class Boom extends Data.TaggedError("Boom")<{ readonly reason: string }> {}

describe("VirtualClock", () => {
  it("wakes timers by wake time, then by creation order, and moves now to each", () => {
    const clock = new VirtualClock(1000)
    const woken: Array<string> = []
    clock.unsafeSchedule(30, () => woken.push(`a@${clock.unsafeCurrentTimeMillis()}`))
    clock.unsafeSchedule(10, () => woken.push(`b@${clock.unsafeCurrentTimeMillis()}`))
    clock.unsafeSchedule(30, () => woken.push(`c@${clock.unsafeCurrentTimeMillis()}`))
    clock.unsafeSchedule(10, () => woken.push(`d@${clock.unsafeCurrentTimeMillis()}`))
    const cancelled = clock.unsafeSchedule(20, () => woken.push("cancelled"))
    clock.unsafeCancel(cancelled)
    expect(clock.unsafeTimersLiveCount()).toBe(4)
    while (clock.unsafeWakeNext()) {
      // wake them all
    }
    expect(woken).toEqual(["b@1010", "d@1010", "a@1030", "c@1030"])
    expect(clock.unsafeTimersLiveCount()).toBe(0)
    expect(clock.unsafeNextWakeTimeMs()).toBeUndefined()
  })

  it("keeps the heap ordered over many random timers and bounded under many cancellations", () => {
    const clock = new VirtualClock(0)
    let state = 12345
    const nextRandom = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0
      return state % 10_000
    }
    const woken: Array<number> = []
    for (let index = 0; index < 5000; index++) {
      const timer = clock.unsafeSchedule(nextRandom(), () => woken.push(clock.unsafeCurrentTimeMillis()))
      if (index % 3 === 0) clock.unsafeCancel(timer)
    }
    expect(clock.unsafeTimersLiveCount()).toBe(3333)
    while (clock.unsafeWakeNext()) {
      // wake them all
    }
    expect(woken).toHaveLength(3333)
    expect(woken).toEqual([...woken].sort((a, b) => a - b))
  })

  it("reports nanoseconds consistent with milliseconds, without floating-point loss", () => {
    const clock = new VirtualClock(1_700_000_000_123)
    expect(clock.unsafeCurrentTimeNanos()).toBe(1_700_000_000_123_000_000n)
  })
})

describe("SimScheduler", () => {
  it("only queues, runs FIFO on drain, and stops at the task limit", () => {
    const scheduler = new SimScheduler()
    const ran: Array<number> = []
    scheduler.scheduleTask(() => {
      ran.push(1)
      scheduler.scheduleTask(() => ran.push(3), 0)
    }, 0)
    scheduler.scheduleTask(() => ran.push(2), 0)
    expect(ran).toEqual([])
    expect(scheduler.drain(2)).toBe(2)
    expect(ran).toEqual([1, 2])
    expect(scheduler.pendingCount).toBe(1)
    expect(scheduler.drain(10)).toBe(1)
    expect(ran).toEqual([1, 2, 3])
    expect(scheduler.pendingCount).toBe(0)
  })
})

describe("FNV-1a 64", () => {
  it("matches the published test vectors for ASCII", () => {
    expect(fnv1a64Hex("")).toBe("cbf29ce484222325")
    expect(fnv1a64Hex("a")).toBe("af63dc4c8601ec8c")
    expect(fnv1a64Hex("foobar")).toBe("85944171f73967e8")
  })

  it("is incremental: hashing in pieces equals hashing the whole", () => {
    expect(new Fnv1a64().update("foo").update("bar").digestHex()).toBe(fnv1a64Hex("foobar"))
  })
})

describe("simulate: virtual time", () => {
  it("Effect.sleep moves virtual time by exactly the duration", () => {
    const times: Array<number> = []
    const result = simulate(
      Effect.gen(function* () {
        yield* stamp(times)
        yield* Effect.sleep("1500 millis")
        yield* stamp(times)
        yield* Effect.sleep("2 seconds")
        yield* stamp(times)
        return "done"
      }),
      { seed: 1 }
    )
    expect(result.ending).toBe("completed")
    expect(result.exit).toEqual(Exit.succeed("done"))
    expect(times).toEqual([0, 1500, 3500])
    expect(result.elapsedMs).toBe(3500)
    expect(result.endTimeMs).toBe(startTimeMs + 3500)
    expect(result.timersLiveCount).toBe(0)
  })

  it("starts at startTimeMs", () => {
    const result = simulate(Clock.currentTimeMillis, { seed: 1, startTimeMs: 42 })
    expect(result.exit).toEqual(Exit.succeed(42))
  })

  it("Effect.repeat with Schedule.spaced runs at 0, 100, 200, 300", () => {
    const times: Array<number> = []
    const result = simulate(
      Effect.repeat(stamp(times), { schedule: Schedule.spaced("100 millis"), times: 3 }),
      {
        seed: 1
      }
    )
    expect(result.ending).toBe("completed")
    expect(times).toEqual([0, 100, 200, 300])
    expect(result.elapsedMs).toBe(300)
  })

  it("Effect.timeout fires at the deadline and the losing sleep leaves no timer", () => {
    const timedOut = simulate(Effect.sleep("5 seconds").pipe(Effect.timeout("2 seconds")), { seed: 1 })
    expect(timedOut.ending).toBe("completed")
    expect(timedOut.elapsedMs).toBe(2000)
    expect(Exit.isFailure(timedOut.exit)).toBe(true)
    if (Exit.isFailure(timedOut.exit)) {
      expect(Cause.isTimeoutException(Option.getOrThrow(Cause.failureOption(timedOut.exit.cause)))).toBe(true)
    }
    expect(timedOut.timersLiveCount).toBe(0)

    const inTime = simulate(Effect.as(Effect.sleep("1 second"), "ok").pipe(Effect.timeout("2 seconds")), {
      seed: 1
    })
    expect(inTime.exit).toEqual(Exit.succeed("ok"))
    expect(inTime.elapsedMs).toBe(1000)
    // The 2 s timeout timer was cancelled when the sleep won.
    expect(inTime.timersLiveCount).toBe(0)
  })

  it("Queue.take waits for a producer that sleeps between offers", () => {
    const result = simulate(
      Effect.gen(function* () {
        const queue = yield* Queue.bounded<number>(16)
        yield* Effect.fork(
          Effect.forEach([1, 2, 3], (value) =>
            Effect.zipRight(Effect.sleep("250 millis"), Queue.offer(queue, value))
          )
        )
        const received: Array<readonly [number, number]> = []
        for (let index = 0; index < 3; index++) {
          const value = yield* Queue.take(queue)
          received.push([value, yield* elapsedMs])
        }
        return received
      }),
      { seed: 1 }
    )
    expect(result.exit).toEqual(
      Exit.succeed([
        [1, 250],
        [2, 500],
        [3, 750]
      ])
    )
  })

  it("Mailbox.take waits for a producer that sleeps between offers", () => {
    const result = simulate(
      Effect.gen(function* () {
        const mailbox = yield* Mailbox.make<string>({ capacity: 8, strategy: "sliding" })
        yield* Effect.fork(
          Effect.forEach(["a", "b"], (value) =>
            Effect.zipRight(Effect.sleep("40 millis"), mailbox.offer(value))
          )
        )
        const first = yield* mailbox.take
        const firstAtMs = yield* elapsedMs
        const second = yield* mailbox.take
        return [first, firstAtMs, second, yield* elapsedMs]
      }),
      { seed: 1 }
    )
    expect(result.exit).toEqual(Exit.succeed(["a", 40, "b", 80]))
  })

  it("forkScoped children run on virtual time and stop when the scope closes", () => {
    const beats: Array<number> = []
    const once: Array<number> = []
    const result = simulate(
      Effect.scoped(
        Effect.gen(function* () {
          yield* Effect.forkScoped(Effect.repeat(stamp(beats), Schedule.spaced("200 millis")))
          yield* Effect.forkScoped(Effect.zipRight(Effect.sleep("300 millis"), stamp(once)))
          yield* Effect.sleep("1 second")
        })
      ),
      { seed: 1 }
    )
    expect(result.ending).toBe("completed")
    // The beat due at 1000 was registered at 800, after the main fiber's sleep (at 0):
    // equal wake times go in creation order, so the scope closes first and interrupts it.
    expect(beats).toEqual([0, 200, 400, 600, 800])
    expect(once).toEqual([300])
    expect(result.elapsedMs).toBe(1000)
    expect(result.timersLiveCount).toBe(0)
  })

  it("ten simulated hours of sleeping take seconds of wall time, not hours (a generous guard, not a benchmark)", () => {
    const wallStartMs = performance.now()
    const result = simulate(Effect.repeatN(Effect.sleep("1 second"), 36_000 - 1), {
      seed: 1,
      maxTimeMs: 11 * 3_600_000
    })
    const wallMs = performance.now() - wallStartMs
    expect(result.ending).toBe("completed")
    expect(result.elapsedMs).toBe(10 * 3_600_000)
    expect(wallMs).toBeLessThan(10_000)
  })
})

describe("simulate: determinism and trace", () => {
  /** Five fibers racing: each sleeps random durations and records; one random winner of a race. */
  const racing = Effect.gen(function* () {
    const fibers = yield* Effect.forEach([1, 2, 3, 4, 5], (node) =>
      Effect.fork(
        Effect.forEach(
          Array.from({ length: 20 }, (_, index) => index),
          (round) =>
            Effect.gen(function* () {
              const delayMs = yield* Random.nextIntBetween(1, 50)
              yield* Effect.sleep(delayMs)
              yield* recordTrace(`n${node} round ${round} slept ${delayMs}`)
            }),
          { discard: true }
        )
      )
    )
    const winner = yield* Effect.race(
      Effect.as(Effect.flatMap(Random.nextIntBetween(1, 100), Effect.sleep), "left"),
      Effect.as(Effect.flatMap(Random.nextIntBetween(1, 100), Effect.sleep), "right")
    )
    yield* recordTrace(`race won by ${winner}`)
    yield* Fiber.joinAll(fibers)
  })

  it("the same seed gives an identical trace; another seed a different one", () => {
    const first = simulate(racing, { seed: 42 })
    const second = simulate(racing, { seed: 42 })
    const other = simulate(racing, { seed: 43 })
    expect(first.ending).toBe("completed")
    expect(first.trace.count).toBe(101)
    expect(first.trace.lines).toHaveLength(101)
    expect(second.trace.hash).toBe(first.trace.hash)
    expect(second.trace.lines).toEqual(first.trace.lines)
    expect(second.elapsedMs).toBe(first.elapsedMs)
    expect(second.steps).toBe(first.steps)
    expect(other.trace.count).toBe(101)
    expect(other.trace.hash).not.toBe(first.trace.hash)
    // Lines carry the elapsed virtual time.
    expect(
      first.trace.lines.every((line) => /^\d+ms n\d round \d+ slept \d+$|^\d+ms race won by/.test(line))
    ).toBe(true)
  })

  it("the hash is the FNV-1a 64 of the stamped lines", () => {
    const result = simulate(
      Effect.gen(function* () {
        yield* recordTrace("a")
        yield* Effect.sleep("5 millis")
        yield* recordTrace("b")
      }),
      { seed: 1 }
    )
    expect(result.trace.lines).toEqual(["0ms a", "5ms b"])
    expect(result.trace.hash).toBe(fnv1a64Hex("0ms a\n5ms b\n"))
  })

  it("keeps only the last traceLinesMax lines but counts and hashes them all", () => {
    const program = Effect.forEach(
      Array.from({ length: 10 }, (_, index) => index),
      (index) => recordTrace(`line ${index}`),
      { discard: true }
    )
    const bounded = simulate(program, { seed: 1, traceLinesMax: 3 })
    const unbounded = simulate(program, { seed: 1 })
    expect(bounded.trace.lines).toEqual(["0ms line 7", "0ms line 8", "0ms line 9"])
    expect(bounded.trace.count).toBe(10)
    expect(bounded.trace.droppedCount).toBe(7)
    expect(unbounded.trace.lines).toHaveLength(10)
    expect(unbounded.trace.droppedCount).toBe(0)
    expect(bounded.trace.hash).toBe(unbounded.trace.hash)
  })

  it("recordTrace outside a simulation does nothing", () => {
    expect(Effect.runSync(recordTrace("nobody listens"))).toBeUndefined()
  })
})

describe("simulate: how runs end", () => {
  it("reports a deadlock on a Deferred nobody completes, interrupts it and runs its finalizers", () => {
    const result = simulate(
      Effect.gen(function* () {
        const deferred = yield* Deferred.make<void>()
        yield* Effect.sleep("500 millis")
        yield* Deferred.await(deferred)
      }).pipe(Effect.ensuring(recordTrace("finalizer ran"))),
      { seed: 1 }
    )
    expect(result.ending).toBe("deadlock")
    expect(result.elapsedMs).toBe(500)
    expect(Exit.isInterrupted(result.exit)).toBe(true)
    expect(result.trace.lines).toEqual(["500ms finalizer ran"])
  })

  it("reports a deadlock on Effect.never", () => {
    const result = simulate(Effect.never, { seed: 1 })
    expect(result.ending).toBe("deadlock")
    expect(result.elapsedMs).toBe(0)
    expect(Exit.isInterrupted(result.exit)).toBe(true)
  })

  it("reports a fiber waiting on a real promise as deadlocked: simulate returns before it resolves", () => {
    const result = simulate(
      Effect.promise(() => Promise.resolve(1)),
      { seed: 1 }
    )
    expect(result.ending).toBe("deadlock")
    expect(Exit.isInterrupted(result.exit)).toBe(true)
  })

  it("the time budget interrupts a program that never ends, at exactly the budget", () => {
    let wakeCount = 0
    const result = simulate(
      Effect.forever(
        Effect.zipRight(
          Effect.sleep("1 second"),
          Effect.sync(() => {
            wakeCount += 1
          })
        )
      ),
      { seed: 1, maxTimeMs: 10_500 }
    )
    expect(result.ending).toBe("time-budget")
    expect(result.elapsedMs).toBe(10_500)
    expect(wakeCount).toBe(10)
    expect(Exit.isInterrupted(result.exit)).toBe(true)
    expect(result.timersLiveCount).toBe(0)
  })

  it("an interrupted sleep leaves no live timer", () => {
    const result = simulate(
      Effect.gen(function* () {
        const clock = yield* SimClock
        const sleeper = yield* Effect.fork(Effect.sleep("1 hour"))
        yield* Effect.yieldNow()
        const whileSleeping = [yield* clock.timersLiveCount, yield* clock.nextWakeTimeMs] as const
        yield* Fiber.interrupt(sleeper)
        const afterInterrupt = [yield* clock.timersLiveCount, yield* clock.nextWakeTimeMs] as const
        return { whileSleeping, afterInterrupt }
      }),
      { seed: 1 }
    )
    expect(result.exit).toEqual(
      Exit.succeed({
        whileSleeping: [1, Option.some(startTimeMs + 3_600_000)],
        afterInterrupt: [0, Option.none()]
      })
    )
    expect(result.elapsedMs).toBe(0)
  })

  it("reports a livelock: effects that never let time move", () => {
    const result = simulate(Effect.forever(Effect.yieldNow()), { seed: 1, maxStepsPerInstant: 10_000 })
    expect(result.ending).toBe("livelock")
    expect(result.steps).toBeGreaterThanOrEqual(10_000)
    expect(Exit.isInterrupted(result.exit)).toBe(true)
  })

  it("stops at the step budget", () => {
    const result = simulate(Effect.forever(Effect.sleep("1 millis")), { seed: 1, maxSteps: 100 })
    expect(result.ending).toBe("step-budget")
    expect(result.steps).toBeGreaterThanOrEqual(100)
    expect(result.steps).toBeLessThan(110)
  })

  it("reports a shutdown that cannot finish as a SimShutdownStuck defect", () => {
    const result = simulate(
      Effect.never.pipe(Effect.onInterrupt(() => Effect.forever(Effect.sleep("1 second")))),
      { seed: 1, shutdownGraceMs: 5000 }
    )
    expect(result.ending).toBe("deadlock")
    expect(result.elapsedMs).toBe(5000)
    expect(Exit.isFailure(result.exit)).toBe(true)
    if (Exit.isFailure(result.exit)) {
      const defect = Option.getOrThrow(Cause.dieOption(result.exit.cause))
      expect(defect).toBeInstanceOf(SimShutdownStuck)
      expect(defect).toMatchObject({ ending: "deadlock", stuck: "time-budget" })
    }
  })

  it("returns a failing program's Exit with its Cause", () => {
    const result = simulate(
      Effect.zipRight(Effect.sleep("10 millis"), Effect.fail(new Boom({ reason: "no" }))),
      {
        seed: 1
      }
    )
    expect(result.ending).toBe("completed")
    expect(result.elapsedMs).toBe(10)
    expect(result.exit).toEqual(Exit.fail(new Boom({ reason: "no" })))
  })

  it("returns a defect's Exit with its Cause", () => {
    const error = new Error("invariant broken")
    const result = simulate(Effect.zipRight(Effect.sleep("10 millis"), Effect.die(error)), { seed: 1 })
    expect(result.ending).toBe("completed")
    expect(Exit.isFailure(result.exit)).toBe(true)
    if (Exit.isFailure(result.exit)) {
      expect(Cause.dieOption(result.exit.cause)).toEqual(Option.some(error))
    }
  })
})

describe("simulate: speed", () => {
  it("5 fibers heartbeating every 50 ms for 60 s of virtual time run far faster than real time", () => {
    const nodes = [0, 1, 2, 3, 4]
    const simulatedMs = 60_000
    const heartbeats = Effect.gen(function* () {
      const members = yield* Effect.forEach(nodes, (node) =>
        Effect.map(Queue.bounded<number>(1024), (inbox) => ({ node, inbox }))
      )
      const receivedCount = yield* Ref.make(0)
      for (const { node, inbox } of members) {
        const peers = members.filter((member) => member.node !== node)
        // Heartbeat: every 50 ms, offer this node's id to every other node's inbox.
        yield* Effect.forkScoped(
          Effect.forever(
            Effect.zipRight(
              Effect.sleep("50 millis"),
              Effect.forEach(peers, (peer) => Queue.offer(peer.inbox, node), { discard: true })
            )
          )
        )
        // Receiver: take from this node's inbox, record and count.
        yield* Effect.forkScoped(
          Effect.forever(
            Effect.flatMap(Queue.take(inbox), (from) =>
              Effect.zipRight(
                recordTrace(`n${from} -> n${node} heartbeat`),
                Ref.update(receivedCount, (count) => count + 1)
              )
            )
          )
        )
      }
      yield* Effect.sleep(simulatedMs)
      return yield* Ref.get(receivedCount)
    })

    // Warm the JIT so the measured run is the steady state.
    simulate(Effect.scoped(heartbeats), { seed: 7, maxTimeMs: 2 * simulatedMs })
    const result = simulate(Effect.scoped(heartbeats), { seed: 7, maxTimeMs: 2 * simulatedMs })
    const ratio = simulatedMs / result.wallMs
    console.log(
      `SimRuntime speed: ${simulatedMs / 1000} s of 5 heartbeating fibers simulated in ${result.wallMs.toFixed(1)} ms ` +
        `of wall time: ${ratio.toFixed(0)}x real time (${result.steps} steps, ${result.trace.count} trace lines)`
    )
    expect(result.ending).toBe("completed")
    // Beats at 50, 100, ..., 59,950 ms: the one due at 60,000 loses the tie to the main sleep (created first).
    expect(result.exit).toEqual(Exit.succeed(5 * 4 * 1199))
    expect(result.trace.count).toBe(5 * 4 * 1199)
    expect(ratio).toBeGreaterThan(5)
  })
})
