/**
 * The datagram pipeline without sockets (DESIGN §4: no datagram over the
 * limit; bigger messages in parts; promise 7: what is malformed, forged or
 * replayed is dropped and counted).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option, Random, Redacted, TestClock } from "effect"
import { DatagramBytesMax, DatagramBytesMin } from "../../src/domain/Envelope.js"
import { ClientId, type Epoch, GroupId, Incarnation, ServerId } from "../../src/domain/Ids.js"
import type { Address } from "../../src/domain/Schemas.js"
import {
  type DatagramCodec,
  FragmentsMax,
  type Identity,
  MessageBytesMax,
  makeDatagramCodec,
  ReassembliesMax,
  ReassemblyTimeoutMs
} from "../../src/layers/Datagrams.js"
import { dropCount, type Incoming, type Outgoing } from "../../src/services/Transport.js"

const key = Redacted.make("cluster key")
const source: Address = { host: "127.0.0.1", port: 4000 }

const server = (name: string): Identity => ({
  role: "server",
  id: ServerId.make(name),
  incarnation: Incarnation.make(`${name}-inc`)
})
const client = (name: string): Identity => ({ role: "client", id: ClientId.make(name) })

const codec = (identity: Identity, options: { key?: boolean; limit?: number } = {}): DatagramCodec =>
  makeDatagramCodec({
    identity,
    port: 5000,
    boot: 1,
    maxDatagramBytes: options.limit,
    clusterKey: options.key === true ? key : undefined
  })

/** A Replicate whose JSON is about `bytes` long. */
const bigMessage = (bytes: number, group: GroupId = GroupId.make("g1"), epoch: Epoch = 2): Outgoing => ({
  body: {
    _tag: "Replicate",
    prevSeq: 0,
    prevEpoch: 0,
    entries: [{ epoch, seq: 1, body: { _tag: "App", data: "é".repeat(Math.floor(bytes / 2)) } }],
    commitSeq: 0
  },
  group,
  epoch
})

/** Feeds every datagram to `receiver`; returns what was delivered, with the index of the datagram that completed it. */
const feed = (receiver: DatagramCodec, datagrams: ReadonlyArray<Uint8Array>) =>
  Effect.gen(function* () {
    const delivered: Array<{ readonly at: number; readonly incoming: Incoming }> = []
    for (const [at, bytes] of datagrams.entries()) {
      const got = yield* receiver.decode(bytes, source)
      if (Option.isSome(got)) delivered.push({ at, incoming: got.value })
    }
    return delivered
  })

describe("Datagrams: fragments (DESIGN §4: anything bigger than a datagram is split)", () => {
  for (const keyed of [false, true]) {
    it.effect(`fragments reassemble in any order and with duplicates (${keyed ? "signed" : "no key"})`, () =>
      Effect.gen(function* () {
        const message = bigMessage(20_000)
        for (let seed = 1; seed <= 20; seed++) {
          const sender = codec(server(`ord-s${seed}`), { key: keyed })
          const receiver = codec(server(`ord-r${keyed}${seed}`), { key: keyed })
          const fragments = yield* sender.encode(message)
          expect(fragments.length).toBeGreaterThan(10)
          // A random order; copies of random fragments before the last new one.
          const order = [...(yield* Random.shuffle(fragments))]
          const last = order.pop()
          if (last === undefined) return expect.unreachable()
          for (let copies = 0; copies < 10; copies++) {
            const copy = order[yield* Random.nextIntBetween(0, order.length)]
            if (copy === undefined) return expect.unreachable()
            order.splice(yield* Random.nextIntBetween(0, order.length + 1), 0, copy)
          }
          order.push(last)
          const delivered = yield* feed(receiver, order)
          expect(delivered.map((d) => d.at)).toEqual([order.length - 1])
          expect(delivered[0]?.incoming.envelope.body).toEqual(message.body)
          expect(delivered[0]?.incoming.envelope.group).toBe(message.group)
          // Signed duplicates are replays of the same (boot, n); unsigned ones are simply ignored.
          expect(yield* dropCount(`ord-r${keyed}${seed}`, "replay")).toBe(keyed ? 10 : 0)
        }
      }).pipe(Effect.withRandom(Random.make("fragments")))
    )
  }

  it.effect("a resent copy completes a partly received message", () =>
    Effect.gen(function* () {
      const message = bigMessage(30_000)
      const sender = codec(server("resend-s"), { key: true })
      const receiver = codec(server("resend-r"), { key: true })
      const first = yield* sender.encode(message)
      const second = yield* sender.encode(message)
      expect(second.length).toBe(first.length)
      const half = Math.floor(first.length / 2)
      const delivered = yield* feed(receiver, [...first.slice(0, half), ...second.slice(half)])
      expect(delivered.map((d) => d.at)).toEqual([first.length - 1])
      expect(delivered[0]?.incoming.envelope.body).toEqual(message.body)
      expect(yield* dropCount("resend-r", "replay")).toBe(0)
    })
  )

  it.effect("every datagram is within the limit, with and without a key, at the widest envelope", () =>
    Effect.gen(function* () {
      const wide = "w".repeat(64)
      const message = bigMessage(50_000, GroupId.make(wide), Number.MAX_SAFE_INTEGER)
      const identities: Array<Identity> = [
        { role: "server", id: ServerId.make(wide), incarnation: Incarnation.make(wide) },
        { role: "client", id: ClientId.make(wide) }
      ]
      for (const limit of [DatagramBytesMin, 1400, 9000, DatagramBytesMax]) {
        for (const keyed of [false, true]) {
          for (const identity of identities) {
            const sender = codec(identity, { key: keyed, limit })
            const receiver = codec(server(`limit-r${limit}${keyed}${identity.role}`), { key: keyed, limit })
            const datagrams = yield* sender.encode(message)
            expect(datagrams.length).toBeGreaterThan(limit === DatagramBytesMax ? 0 : 1)
            for (const bytes of datagrams) expect(bytes.byteLength).toBeLessThanOrEqual(limit)
            const delivered = yield* feed(receiver, datagrams)
            expect(delivered.map((d) => d.at)).toEqual([datagrams.length - 1])
            expect(delivered[0]?.incoming.envelope.body).toEqual(message.body)
          }
        }
      }
    })
  )

  it.effect(
    "a message just under 1 MiB arrives whole, even at the smallest limit with the widest envelope",
    () =>
      Effect.gen(function* () {
        const wide = "w".repeat(64)
        const message = bigMessage(MessageBytesMax - 2_000, GroupId.make(wide), Number.MAX_SAFE_INTEGER)
        const identity: Identity = {
          role: "server",
          id: ServerId.make(wide),
          incarnation: Incarnation.make(wide)
        }
        const sender = codec(identity, { key: true, limit: DatagramBytesMin })
        // The receiver has a larger limit: the bound on parts must not depend on its own.
        const receiver = codec(server("huge-r"), { key: true, limit: 1400 })
        const datagrams = yield* sender.encode(message)
        expect(datagrams.length).toBeGreaterThan(20_000)
        expect(datagrams.length).toBeLessThanOrEqual(FragmentsMax)
        const delivered = yield* feed(receiver, datagrams)
        expect(delivered.map((d) => d.at)).toEqual([datagrams.length - 1])
        expect(delivered[0]?.incoming.envelope.body).toEqual(message.body)
        expect(yield* dropCount("huge-r", "fragment")).toBe(0)
      })
  )

  it.effect("a message over 1 MiB is refused with MessageTooLarge", () =>
    Effect.gen(function* () {
      const sender = codec(client("toolarge-c"))
      const error = yield* Effect.flip(sender.encode(bigMessage(MessageBytesMax + 10)))
      expect(error._tag).toBe("MessageTooLarge")
      expect(error.limitBytes).toBe(MessageBytesMax)
      expect(error.bytes).toBeGreaterThan(MessageBytesMax)
    })
  )

  it.effect("too many partial messages: the next is dropped as overflow until the partial ones expire", () =>
    Effect.gen(function* () {
      const receiver = codec(server("overflow-r"))
      const senders = Array.from({ length: ReassembliesMax + 2 }, (_, i) => codec(client(`overflow-c${i}`)))
      const messages = yield* Effect.forEach(senders, (sender) => sender.encode(bigMessage(5_000)))
      // The first fragment of each: ReassembliesMax of them fit, the next two do not.
      for (const datagrams of messages) {
        const first = datagrams[0]
        if (first === undefined) return expect.unreachable()
        expect(Option.isNone(yield* receiver.decode(first, source))).toBe(true)
      }
      expect(yield* dropCount("overflow-r", "overflow")).toBe(2)
      // A message already in reassembly still completes.
      const delivered = yield* feed(receiver, messages[0]?.slice(1) ?? [])
      expect(delivered.length).toBe(1)
      // Once the partial messages have expired, there is room again.
      yield* TestClock.adjust(ReassemblyTimeoutMs + 1)
      const late = yield* feed(receiver, messages[ReassembliesMax + 1] ?? [])
      expect(late.length).toBe(1)
      expect(yield* dropCount("overflow-r", "overflow")).toBe(2)
    })
  )

  it.effect("fragment numbers out of range are dropped", () =>
    Effect.gen(function* () {
      const sender = codec(client("range-c"))
      const receiver = codec(server("range-r"))
      for (const [part, parts] of [
        [3, 3],
        [0, FragmentsMax + 1]
      ] as const) {
        const datagrams = yield* sender.encode({
          body: { _tag: "Fragment", id: "abc", part, parts, data: "AAAA" }
        })
        expect(yield* feed(receiver, datagrams)).toEqual([])
      }
      expect(yield* dropCount("range-r", "fragment")).toBe(2)
    })
  )
})

describe("Datagrams: authentication (DESIGN §4; promise 7)", () => {
  it.effect("a client's fragments cannot carry a server envelope past the MAC check", () =>
    Effect.gen(function* () {
      const receiver = codec(server("forge-r"), { key: true })
      // What a client would have to send: the text of a server envelope, in its own fragments.
      const inner = JSON.stringify({
        v: 1,
        from: { role: "server", id: "forge-c", incarnation: "i1", port: 1 },
        body: { _tag: "NotMember" },
        pad: "x".repeat(3_000)
      })
      const data = Buffer.from(inner, "utf8").toString("base64")
      const sender = codec(client("forge-c"))
      const step = 800
      const parts = Math.ceil(data.length / step)
      const datagrams: Array<Uint8Array> = []
      for (let part = 0; part < parts; part++) {
        const chunk = data.slice(part * step, (part + 1) * step)
        datagrams.push(
          ...(yield* sender.encode({ body: { _tag: "Fragment", id: "f1", part, parts, data: chunk } }))
        )
      }
      expect(yield* feed(receiver, datagrams)).toEqual([])
      expect(yield* dropCount("forge-r", "fragment")).toBe(1)
    })
  )

  it.effect("a client without the key reads a keyed server's datagrams, whole and in fragments", () =>
    Effect.gen(function* () {
      const sender = codec(server("keyed-s"), { key: true })
      const receiver = codec(client("keyless-c"))
      // Many small ones: whatever the MAC's first bytes are.
      for (let round = 0; round < 2_000; round++) {
        const datagrams = yield* sender.encode({ body: { _tag: "Heartbeat", round, commitSeq: 1 } })
        const delivered = yield* feed(receiver, datagrams)
        expect(delivered.map((d) => d.incoming.envelope.body)).toEqual([
          { _tag: "Heartbeat", round, commitSeq: 1 }
        ])
      }
      const message = bigMessage(10_000)
      const delivered = yield* feed(receiver, yield* sender.encode(message))
      expect(delivered.map((d) => d.incoming.envelope.body)).toEqual([message.body])
      expect(yield* dropCount("keyless-c", "undecodable")).toBe(0)
    })
  )

  it.effect("with a key: a bad MAC, a missing MAC and a replay are each dropped and counted once", () =>
    Effect.gen(function* () {
      const receiver = codec(server("auth-r"), { key: true })
      const heartbeat: Outgoing = { body: { _tag: "Heartbeat", round: 1, commitSeq: 0 } }
      const [signed] = yield* codec(server("auth-s"), { key: true }).encode(heartbeat)
      const [unsigned] = yield* codec(server("auth-s"), { key: false }).encode(heartbeat)
      if (signed === undefined || unsigned === undefined) return expect.unreachable()
      const tampered = Uint8Array.from(signed)
      tampered[tampered.length - 2] = 0x30 // a digit of the payload, so the MAC no longer matches
      expect(yield* feed(receiver, [tampered, unsigned])).toEqual([])
      expect((yield* feed(receiver, [signed, signed])).map((d) => d.at)).toEqual([0])
      expect(yield* dropCount("auth-r", "bad-mac")).toBe(1)
      expect(yield* dropCount("auth-r", "unsigned")).toBe(1)
      expect(yield* dropCount("auth-r", "replay")).toBe(1)
    })
  )
})
