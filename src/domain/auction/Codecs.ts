/**
 * JSON codecs for the persistent collections of the state. `HashMap` and
 * `Chunk` give cheap updates (O(log n) set, cheap append) so `evolve` never
 * copies all auctions or a whole event list; on the wire and on disk they
 * are plain arrays.
 *
 * Unlike `Schema.HashMap` / `Schema.Chunk`, the decoded side is only checked
 * to be a HashMap / Chunk: the elements were already checked while decoding
 * the array, and a checkpoint of 10,000 auctions should not be checked twice.
 * Map entries are encoded sorted by key, so equal states encode to equal JSON
 * (checkpoint digests and test comparisons rely on it).
 */
import * as Chunk from "effect/Chunk"
import * as HashMap from "effect/HashMap"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"

const hashMapSelf = <K, V>() =>
  Schema.declare((u: unknown): u is HashMap.HashMap<K, V> => HashMap.isHashMap(u), {
    identifier: "HashMap"
  })

const chunkSelf = <A>() =>
  Schema.declare((u: unknown): u is Chunk.Chunk<A> => Chunk.isChunk(u), { identifier: "Chunk" })

/** A `HashMap` with numeric keys, encoded as `[key, value]` pairs in ascending key order. */
export const HashMapByNumber = <K extends number, KI, V, VI>(
  key: Schema.Schema<K, KI>,
  value: Schema.Schema<V, VI>
): Schema.Schema<HashMap.HashMap<K, V>, ReadonlyArray<readonly [KI, VI]>> =>
  Schema.transform(Schema.Array(Schema.Tuple(key, value)), hashMapSelf<K, V>(), {
    strict: true,
    decode: (entries) => HashMap.fromIterable(entries),
    encode: (map) => Array.from(map).sort(([a], [b]) => a - b)
  })

/**
 * A `Chunk` of values whose encoding is the identity (refinements and brands
 * only, no transformation — true of the events), encoded as an array.
 * Decoding checks every item; encoding hands the items out as they are: a
 * checkpoint of many events would otherwise spend most of its time
 * re-checking values that `decide` built. A test checks that encoding an
 * event indeed returns it unchanged.
 */
export const ChunkOfPlain = <A, I>(
  item: Schema.Schema<A, I>
): Schema.Schema<Chunk.Chunk<A>, ReadonlyArray<I>> => {
  const items = Schema.Array(item)
  return Schema.transformOrFail(
    Schema.declare((u: unknown): u is ReadonlyArray<I> => Array.isArray(u), { identifier: "Array" }),
    chunkSelf<A>(),
    {
      strict: true,
      decode: (array) => ParseResult.map(ParseResult.decodeUnknown(items)(array), Chunk.fromIterable),
      // Identity encoding (A and I differ only by brands), on a copy: the output must not alias the state.
      encode: (chunk) => ParseResult.succeed(Chunk.toArray(chunk) as unknown as ReadonlyArray<I>)
    }
  )
}

/**
 * `schema` with each value's encoding remembered (by identity, weakly), for values that never
 * change once built: an ended auction is encoded by every checkpoint until it is purged, and
 * encoding all of them again made a checkpoint of 3,000 auctions stall its server
 * 70–80 ms (260 ms under load). The encoded value is shared between encodings, so it must be treated as read-only
 * (it is: it goes to `JSON.stringify` or over the wire). A decoded value remembers its input as
 * its encoding (the input is an earlier encoding: a checkpoint or a snapshot), so a checkpoint
 * after a restart finds the very objects it read and writes none of them again.
 */
export interface EncodedOnce<A, I> {
  readonly schema: Schema.Schema<A, I>
  /** The schema's encoding of `value`, remembered: the same object every time (a lookup after the first). */
  readonly encode: (value: A) => I
}

export const EncodedOnce = <A extends object, I>(schema: Schema.Schema<A, I>): EncodedOnce<A, I> => {
  const remembered = new WeakMap<A, I>()
  const remember = (value: A, encoded: I): I => {
    remembered.set(value, encoded)
    return encoded
  }
  const encodeAnew = ParseResult.encodeSync(schema)
  const encodeEffect = ParseResult.encode(schema)
  const encode = (value: A): I => remembered.get(value) ?? remember(value, encodeAnew(value))
  // Excess properties fail: a remembered input must be exactly what `encode` would give.
  const decode = ParseResult.decodeUnknown(schema, { onExcessProperty: "error" })
  const isObject = (u: unknown): u is object => typeof u === "object" && u !== null
  return {
    schema: Schema.transformOrFail(
      Schema.declare((u: unknown): u is I => isObject(u), { identifier: "Object" }),
      Schema.declare((u: unknown): u is A => isObject(u), { identifier: "Object" }),
      {
        strict: true,
        decode: (encoded) =>
          ParseResult.map(decode(encoded), (value) => {
            remember(value, encoded)
            return value
          }),
        encode: (value) => {
          const known = remembered.get(value)
          if (known !== undefined) return ParseResult.succeed(known)
          return ParseResult.map(encodeEffect(value), (encoded) => remember(value, encoded))
        }
      }
    ),
    encode
  }
}
