import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { bearerMatches } from '../../src/admin/auth.js'

describe('bearer token check', () => {
  const token = 'abcdefghijklmnop-123'
  it('accepts exactly the token after "Bearer" (scheme case-insensitive, as RFC 7235)', () => {
    assert.equal(bearerMatches(`Bearer ${token}`, token), true)
    assert.equal(bearerMatches(`bearer ${token}`, token), true)
    assert.equal(bearerMatches(`Bearer  ${token} `, token), true)
  })
  it('refuses anything else', () => {
    for (const header of [undefined, '', token, `Basic ${token}`, `Bearer ${token}x`, `Bearer ${token.slice(0, -1)}`, `Bearer ${token} extra`, 'Bearer', `Bearer ${token.toUpperCase()}`]) {
      assert.equal(bearerMatches(header, token), false, String(header))
    }
  })
})
