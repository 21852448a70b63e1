import { createHash, timingSafeEqual } from 'node:crypto'

/**
 * `Authorization: Bearer <token>` against the configured token, in constant time (both
 * sides hashed first so that the comparison does not leak the token's length either).
 */
export function bearerMatches (header: string | undefined, token: string): boolean {
  if (header === undefined) return false
  const m = /^Bearer +(\S+) *$/i.exec(header)
  if (!m) return false
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest()
  return timingSafeEqual(digest(m[1]!), digest(token))
}
