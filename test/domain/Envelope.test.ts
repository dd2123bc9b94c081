/**
 * The wire schemas (DESIGN §4; §1 promise 7: bad input never hurts): every
 * body round-trips; random bytes and mutated envelopes are refused with a
 * typed error, never an exception; the size check refuses what is over the limit.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck, Schema, SchemaAST } from "effect"
import type { Member } from "../../src/domain/cluster/Entry.js"
import {
  type Body,
  Body as BodySchema,
  DatagramBytesDefault,
  DatagramBytesMax,
  decodeEnvelope,
  decodeEnvelopeText,
  Envelope,
  EnvelopeDecodeError,
  encodeEnvelope,
  encodeEnvelopeText,
  encodeEnvelopeTextChecked,
  Oversize
} from "../../src/domain/Envelope.js"
import {
  AuctionId,
  ClientId,
  GroupId,
  Incarnation,
  RequestId,
  ServerId,
  SessionId,
  SessionToken
} from "../../src/domain/Ids.js"
import * as Money from "../../src/domain/Money.js"

const group = GroupId.make("g-1")
const s1 = ServerId.make("s1")
const s2 = ServerId.make("s2")
const session = SessionId.make(12)
const token = SessionToken.make("tok-abc")
const auction = AuctionId.make(3)
const requestId = RequestId.make(41)
const leaderInfo = { id: s1, address: { host: "10.0.0.1", port: 7001 }, epoch: 4 }
const member = (id: ServerId, voter: boolean): Member => ({
  id,
  incarnation: Incarnation.make(`${id}-inc`),
  voter,
  address: { host: "127.0.0.1", port: 7000 }
})

/** One valid sample of every body (several where a body holds a union). */
const samples: ReadonlyArray<Body> = [
  { _tag: "DiscoveryRequest" },
  { _tag: "DiscoveryResponse", group, leader: leaderInfo, bootstrapping: false },
  { _tag: "DiscoveryResponse", group: null, leader: null, bootstrapping: true },
  { _tag: "LeaderAnnouncement", rank: { holdsClientEntry: true, commitSeq: 99 } },
  { _tag: "JoinRequest", storeGroup: group, dissolvedInto: GroupId.make("g-2"), lastSeq: 10, lastEpoch: 2 },
  { _tag: "JoinRequest", storeGroup: null, dissolvedInto: null, lastSeq: 0, lastEpoch: 0 },
  { _tag: "JoinAnswer", outcome: "Refused", reason: "your store holds another live group", firstEntry: null },
  { _tag: "NotMember" },
  { _tag: "Election", nextEpoch: 5, rank: { lastEpoch: 4, lastSeq: 100 } },
  { _tag: "ElectionAnswer", nextEpoch: 5, granted: true, rank: { lastEpoch: 4, lastSeq: 99 } },
  { _tag: "Coordinator", rank: { lastEpoch: 4, lastSeq: 100 } },
  { _tag: "CoordinatorAck", lastSeq: 100, lastEpoch: 4 },
  { _tag: "Heartbeat", round: 17, commitSeq: 100 },
  { _tag: "HeartbeatAck", round: 17, matchSeq: 100 },
  {
    _tag: "Replicate",
    prevSeq: 10,
    prevEpoch: 3,
    commitSeq: 9,
    entries: [
      {
        epoch: 1,
        seq: 1,
        body: { _tag: "GroupFormed", group, members: [member(s1, true), member(s2, false)] }
      },
      { epoch: 4, seq: 11, body: { _tag: "LeaderElected", leader: s1 } },
      { epoch: 4, seq: 12, body: { _tag: "ServerJoined", member: member(s2, false) } },
      {
        epoch: 4,
        seq: 13,
        body: { _tag: "ServerPromoted", id: s2, incarnation: Incarnation.make("s2-inc") }
      },
      { epoch: 4, seq: 14, body: { _tag: "ServerLeft", id: s2, incarnation: Incarnation.make("s2-inc") } },
      { epoch: 4, seq: 15, body: { _tag: "GroupDissolved", into: GroupId.make("g-2") } },
      { epoch: 4, seq: 16, body: { _tag: "App", data: { _tag: "BidPlaced", amounts: [1, 2], note: null } } }
    ]
  },
  { _tag: "ReplicateAck", success: false, matchSeq: 0, hintSeq: 7 },
  {
    _tag: "SnapshotChunk",
    snapshotSeq: 500,
    snapshotEpoch: 4,
    offset: 1024,
    total: 4096,
    digest: "sha256-abc",
    data: "AAAA"
  },
  { _tag: "SnapshotAck", snapshotSeq: 500, offset: 2048 },
  { _tag: "StatusRequest" },
  {
    _tag: "StatusReply",
    id: s1,
    role: "leader",
    group,
    epoch: 4,
    lastSeq: 100,
    commitSeq: 99,
    leader: s1,
    members: [member(s1, true), member(s2, true)],
    splitGroup: false
  },
  { _tag: "Register", nonce: 1 },
  { _tag: "Registered", nonce: 1, session, token, leader: s1 },
  ...(
    [
      { _tag: "Create", item: "Vase", minBid: 10, minRounds: 3, minBidders: 2 },
      { _tag: "List", page: 0 },
      { _tag: "Join", auction },
      { _tag: "Start", auction },
      { _tag: "Cancel", auction },
      { _tag: "Bid", auction, round: 2, amount: 25 }
    ] as const
  ).map((op): Body => ({ _tag: "Request", session, token, requestId, op })),
  ...(
    [
      { _tag: "Created", auction },
      {
        _tag: "Auctions",
        auctions: [
          {
            auction,
            item: "Vase",
            minBid: 10,
            minRounds: 3,
            minBidders: 2,
            bidders: 1,
            status: "waiting",
            auctioneer: session
          }
        ],
        nextPage: null
      },
      { _tag: "Joined", auction },
      { _tag: "Started", auction },
      { _tag: "Cancelled", auction },
      { _tag: "BidAccepted", auction, round: 2, amount: 25 },
      { _tag: "Failed", code: "BidTooLow", message: "a bid is at least 10" }
    ] as const
  ).map((result): Body => ({ _tag: "Reply", requestId, result })),
  { _tag: "NotLeader", leader: leaderInfo },
  { _tag: "NotLeader", leader: null },
  { _tag: "Ping", session, token },
  { _tag: "Pong", leader: s1, epoch: 4 },
  { _tag: "LeaderChanged", leader: leaderInfo },
  {
    _tag: "Notify",
    auction,
    seq: 1,
    notices: [{ _tag: "BidReceivedNotice", auction, round: 2, bidder: session }]
  },
  {
    _tag: "Notify",
    auction,
    seq: 2,
    notices: [
      { _tag: "BidReceivedNotice", auction, round: 2, bidder: session },
      {
        _tag: "AuctionWonNotice",
        auction,
        winner: session,
        amount: Money.unsafeMake(30),
        totals: [{ bidder: session, amount: Money.unsafeMake(30) }]
      }
    ]
  },
  { _tag: "NotifyAck", session, token, auction, seq: 5 },
  { _tag: "Subscribe", session, token, auction, fromSeq: 6 },
  { _tag: "Subscribed", auction, lastSeq: 5 },
  { _tag: "Fragment", id: "abc", part: 0, parts: 2, data: "eyJ2IjoxfQ==" }
]

const serverEnvelope = (body: Body): Envelope => ({
  v: 1,
  from: { role: "server", id: s1, incarnation: Incarnation.make("s1-inc"), port: 7001 },
  group,
  epoch: 4,
  boot: 2,
  n: 77,
  body
})
const clientEnvelope = (body: Body): Envelope => ({
  v: 1,
  from: { role: "client", id: ClientId.make("c-9"), port: 50123 },
  body
})
const envelopes: ReadonlyArray<Envelope> = samples.flatMap((body) => [
  serverEnvelope(body),
  clientEnvelope(body)
])

const limit = DatagramBytesMax
const utf8 = new TextEncoder()

/**
 * A refusal is a typed error (an exception would fail the test). Its message is short: building
 * Schema's full tree report made each refused datagram cost 250–900 µs.
 */
const expectRefused = (result: Either.Either<Envelope, EnvelopeDecodeError | Oversize>, what: string) => {
  if (Either.isRight(result)) return expect.fail(`accepted ${what}`)
  expect(result.left instanceof EnvelopeDecodeError || result.left instanceof Oversize).toBe(true)
  if (result.left instanceof EnvelopeDecodeError) expect(result.left.message.length).toBeLessThanOrEqual(501)
}

describe("Envelope: round trip (DESIGN §4)", () => {
  it("the table has a sample of every body in the union", () => {
    const tags = BodySchema.members.map((member) => {
      const tag = SchemaAST.getPropertySignatures(member.ast).find((p) => p.name === "_tag")?.type
      return tag !== undefined && SchemaAST.isLiteral(tag) ? tag.literal : undefined
    })
    expect(new Set(samples.map((body) => body._tag))).toEqual(new Set(tags))
  })

  it("the fast encoding (JSON.stringify) gives the same JSON as the schema's encoding for every body", () => {
    for (const envelope of envelopes) {
      const fast = JSON.parse(Either.getOrThrow(encodeEnvelopeText(envelope)))
      expect(fast).toEqual(JSON.parse(Either.getOrThrow(encodeEnvelopeTextChecked(envelope))))
    }
  })

  it("every body round-trips through bytes, from a server and from a client", () => {
    for (const envelope of envelopes) {
      const bytes = Either.getOrThrow(encodeEnvelope(envelope, limit))
      expect(decodeEnvelope(bytes, limit)).toEqual(Either.right(envelope))
    }
  })

  it("the size check: exactly the limit passes, one byte more is Oversize, both ways", () => {
    const chunk = (data: string) =>
      serverEnvelope({
        _tag: "SnapshotChunk",
        snapshotSeq: 1,
        snapshotEpoch: 1,
        offset: 0,
        total: 1,
        digest: "d",
        data
      })
    const emptyBytes = Either.getOrThrow(encodeEnvelope(chunk(""), limit)).byteLength
    const fits = chunk("A".repeat(DatagramBytesDefault - emptyBytes))
    const over = chunk("A".repeat(DatagramBytesDefault - emptyBytes + 1))
    const fitsBytes = Either.getOrThrow(encodeEnvelope(fits, DatagramBytesDefault))
    expect(fitsBytes.byteLength).toBe(DatagramBytesDefault)
    expect(decodeEnvelope(fitsBytes, DatagramBytesDefault)).toEqual(Either.right(fits))
    expect(encodeEnvelope(over, DatagramBytesDefault)).toEqual(
      Either.left(new Oversize({ bytes: DatagramBytesDefault + 1, limitBytes: DatagramBytesDefault }))
    )
    const overBytes = Either.getOrThrow(encodeEnvelope(over, limit))
    expect(decodeEnvelope(overBytes, DatagramBytesDefault)).toEqual(
      Either.left(new Oversize({ bytes: DatagramBytesDefault + 1, limitBytes: DatagramBytesDefault }))
    )
  })
})

// ---------------------------------------------------------------------------
// Mutations

type Json = null | boolean | number | string | ReadonlyArray<Json> | { readonly [key: string]: Json }
type Path = ReadonlyArray<string | number>

interface Node {
  readonly path: Path
  readonly value: Json
  /** A key of an object that may be left out (the envelope's optional fields). */
  readonly optional: boolean
}

const optionalRootKeys = new Set(["group", "epoch", "boot", "n"])

/** Every node of an encoded envelope, except the free-form data of `App` entries (Schema.Unknown). */
const nodesOf = (root: Json): Array<Node> => {
  const nodes: Array<Node> = []
  const visit = (value: Json, path: Path, optional: boolean) => {
    nodes.push({ path, value, optional })
    if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) visit(item, [...path, i], false)
    } else if (typeof value === "object" && value !== null) {
      const record = value as { readonly [key: string]: Json }
      for (const [key, child] of Object.entries(record)) {
        if (record._tag === "App" && key === "data") continue
        visit(child, [...path, key], path.length === 0 && optionalRootKeys.has(key))
      }
    }
  }
  visit(root, [], false)
  return nodes
}

/** Raw JSON tokens, spliced into the text in place of a marker (JSON.stringify cannot write them). */
const rawTokens = ["NaN", "Infinity", "-Infinity", "1e400", "-1", "1.5", "1e300", "9007199254740993", "-0.5"]
const marker = (token: string) => `\u0000raw:${token}\u0000`
const nestedGarbage: Json = { a: [1, { b: null, c: [[["deep"]]] }], d: "e" }

/** Values that are invalid wherever a node of this kind stands (never null where a field may be null). */
const replacementsFor = (value: Json): ReadonlyArray<Json> => {
  const common: Array<Json> = [[], nestedGarbage, [nestedGarbage]]
  if (typeof value === "number") return [...common, "1", true, ...rawTokens.map(marker)]
  if (typeof value === "string") return [...common, 5, false, ...rawTokens.map(marker)]
  if (typeof value === "boolean") return [...common, "true", 1, null, ...rawTokens.map(marker)]
  // Nullable fields hold ids, counts or structs: a boolean, a negative, a fraction or a name with
  // a space is none of them.
  if (value === null) return [...common, true, "not an id", marker("-1"), marker("1.5"), marker("1e400")]
  if (Array.isArray(value)) return [{}, "x", 5, true, nestedGarbage]
  return ["x", 5, true, [], [nestedGarbage]]
}

const setAt = (root: Json, path: Path, replacement: Json | undefined): Json => {
  if (path.length === 0) return replacement ?? null
  const copy = structuredClone(root) as Record<string | number, Json>
  let parent: Record<string | number, Json> = copy
  for (const key of path.slice(0, -1)) parent = parent[key] as Record<string | number, Json>
  const last = path[path.length - 1] as string | number
  if (replacement === undefined) {
    if (Array.isArray(parent)) parent.splice(last as number, 1)
    else delete parent[last]
  } else parent[last] = replacement
  return copy
}

const toText = (json: Json): string =>
  JSON.stringify(json).replace(/"\\u0000raw:([^"\\]*)\\u0000"/g, (_, token: string) => token)

const encoded: ReadonlyArray<Json> = envelopes.map((envelope) =>
  Either.getOrThrowWith(
    Schema.encodeEither(Envelope)(envelope),
    () => new Error(`the sample ${envelope.body._tag} is not valid: update the table`)
  )
) as ReadonlyArray<Json>

describe("Envelope: bad input is a typed error, never an exception (promise 7)", () => {
  it.prop(
    "10,000 random byte strings are refused",
    [FastCheck.uint8Array({ maxLength: 1_500 })],
    ([bytes]) => {
      expectRefused(decodeEnvelope(bytes, DatagramBytesDefault), "random bytes")
    },
    { fastCheck: { numRuns: 10_000 } }
  )

  it.prop(
    "random JSON, and random objects shaped like envelopes, are refused",
    [
      FastCheck.json(),
      FastCheck.record({
        v: FastCheck.oneof(FastCheck.constant(1), FastCheck.anything()),
        from: FastCheck.anything(),
        body: FastCheck.anything()
      })
    ],
    ([json, shaped]) => {
      expectRefused(decodeEnvelope(utf8.encode(json), limit), json)
      expectRefused(decodeEnvelopeText(JSON.stringify(shaped) ?? "undefined"), "shaped object")
    },
    { fastCheck: { numRuns: 2_000 } }
  )

  it("every node of every sample, replaced by a wrong type, NaN, Infinity, 1e400, -1, 1.5 or a huge number, is refused", () => {
    let cases = 0
    for (const root of encoded) {
      for (const node of nodesOf(root)) {
        for (const replacement of replacementsFor(node.value)) {
          const text = toText(setAt(root, node.path, replacement))
          expectRefused(decodeEnvelope(utf8.encode(text), limit), `${JSON.stringify(node.path)} := ${text}`)
          cases += 1
        }
      }
    }
    expect(cases).toBeGreaterThan(10_000)
  })

  it("NaN and infinities as values (not text) are refused by the schema too", () => {
    for (const root of encoded) {
      for (const node of nodesOf(root).filter((n) => typeof n.value === "number")) {
        for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** 60, 0.5]) {
          const mutated = setAt(root, node.path, bad as Json)
          const result = Schema.decodeUnknownEither(Envelope)(mutated)
          expect(Either.isLeft(result), JSON.stringify(node.path)).toBe(true)
        }
      }
    }
  })

  it("every required field, left out, is refused; the envelope's optional ones may be", () => {
    for (const [i, root] of encoded.entries()) {
      for (const node of nodesOf(root)) {
        if (node.path.length === 0 || typeof node.path[node.path.length - 1] === "number") continue
        const result = decodeEnvelopeText(toText(setAt(root, node.path, undefined)))
        if (node.optional) {
          expect(Either.isRight(result), JSON.stringify(node.path)).toBe(true)
          expect(Either.getOrThrow(result).body).toEqual(envelopes[i]?.body)
        } else expectRefused(result, `without ${JSON.stringify(node.path)}`)
      }
    }
  })

  it("a 1 MB string anywhere is refused (over the limit), and where strings are bounded, by the schema too", () => {
    const huge = "x".repeat(1_000_000)
    for (const root of encoded.slice(0, 12)) {
      for (const node of nodesOf(root)) {
        if (node.path.length === 0) continue
        const text = toText(setAt(root, node.path, huge))
        expect(decodeEnvelope(utf8.encode(text), limit)).toEqual(
          Either.left(new Oversize({ bytes: utf8.encode(text).byteLength, limitBytes: limit }))
        )
      }
    }
    // Ids, tags, reasons, item names: bounded by the schema whatever the datagram limit.
    for (const path of [["from", "id"], ["body", "_tag"], ["group"]] as const) {
      expectRefused(decodeEnvelopeText(toText(setAt(encoded[0] ?? null, path, huge))), path.join("."))
    }
    const join = encoded.find((e) => toText(e).includes("JoinAnswer")) ?? null
    expectRefused(decodeEnvelopeText(toText(setAt(join, ["body", "reason"], huge))), "reason")
  })

  it("extra fields anywhere are ignored: the envelope still decodes, to the same value", () => {
    for (const [i, root] of encoded.entries()) {
      for (const node of nodesOf(root)) {
        if (typeof node.value !== "object" || node.value === null || Array.isArray(node.value)) continue
        const mutated = setAt(root, [...node.path, "extraField"], nestedGarbage)
        expect(decodeEnvelopeText(toText(mutated))).toEqual(Either.right(envelopes[i]))
      }
    }
  })

  it.prop(
    "random stacks of mutations of random samples are refused",
    [
      FastCheck.nat(envelopes.length - 1),
      FastCheck.array(FastCheck.tuple(FastCheck.nat(), FastCheck.nat()), { minLength: 1, maxLength: 4 })
    ],
    ([sample, mutations]) => {
      const original = encoded[sample] ?? null
      const nodes = nodesOf(original).filter((n) => n.path.length > 0)
      let json = original
      const mutated: Array<Path> = []
      for (const [nodeIndex, replacementIndex] of mutations) {
        const node = nodes[nodeIndex % nodes.length]
        if (node === undefined) break
        // Only nodes of the sample itself: re-mutating inserted garbage could make it valid again.
        if (mutated.some((path) => path.every((key, i) => node.path[i] === key))) continue
        const replacements = replacementsFor(node.value)
        json = setAt(json, node.path, replacements[replacementIndex % replacements.length] ?? null)
        mutated.push(node.path)
      }
      expectRefused(decodeEnvelope(utf8.encode(toText(json)), limit), toText(json))
    },
    { fastCheck: { numRuns: 3_000 } }
  )
})
