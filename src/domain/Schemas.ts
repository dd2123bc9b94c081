/**
 * Small shared schemas for wire fields: bounded integers and strings, so that
 * no decoded number is NaN, infinite, fractional or unsafe and no decoded
 * string is unbounded.
 */
import * as Schema from "effect/Schema"

/** A non-negative safe integer (counts, offsets, rounds). */
export const Count = Schema.Int.pipe(
  Schema.greaterThanOrEqualTo(0),
  Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER)
)

/** A positive safe integer. */
export const Positive = Schema.Int.pipe(
  Schema.greaterThanOrEqualTo(1),
  Schema.lessThanOrEqualTo(Number.MAX_SAFE_INTEGER)
)

/** A UDP port; 0 means "any" where a port is bound, and is never a destination. */
export const Port = Schema.Int.pipe(Schema.between(0, 65535))

/** A host as it appears in a socket address: an IPv4/IPv6 literal or a short name. */
export const Host = Schema.String.pipe(Schema.minLength(1), Schema.maxLength(255))

/** A unicast address as seen by the receiver (`rinfo`) or advertised by a peer. */
export const Address = Schema.Struct({ host: Host, port: Port })
export type Address = typeof Address.Type

/** Formats an address the way `agora status` and the logs print it. */
export const formatAddress = (address: Address): string =>
  address.host.includes(":") ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`

/** Free text from the wire (reasons, messages): bounded so a datagram can hold it. */
export const Text = Schema.String.pipe(Schema.maxLength(1000))
