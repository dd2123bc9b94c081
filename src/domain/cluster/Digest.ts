/**
 * A content digest for snapshot transfer: two independent 32-bit FNV-1a lanes
 * over the UTF-16 code units, as 16 hex digits. It detects corruption and
 * mix-ups of chunks (the MAC, when a key is set, covers forgery).
 */
export const digestOf = (text: string): string => {
  let a = 0x811c9dc5
  let b = 0x01000193 ^ 0x5bd1e995
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    a = Math.imul(a ^ code, 0x01000193) >>> 0
    b = Math.imul(b ^ code ^ (i & 0xff), 0x01000193) >>> 0
  }
  return a.toString(16).padStart(8, "0") + b.toString(16).padStart(8, "0")
}
