import { isUtf8 } from 'node:buffer'
import { createHmac, randomBytes } from 'node:crypto'
import { Counter } from 'prom-client'
import type { AuthVerdict } from '../../src/hooks/types.js'
import { definePlugin } from '../../src/plugin.js'
import { CallbackError, HttpCallback, callbackMetrics } from '../shared/http-callback.js'
import { verifyPassword } from './password-hash.js'
import { PasswordGuard } from './password-guard.js'
import { authConfigSchema } from './schema.js'

type CallbackAnswer =
  | { result: 'allow', superuser: boolean, claims: Record<string, string> }
  | { result: 'deny' }
  | { result: 'ignore' }

function parseAnswer (body: unknown): CallbackAnswer {
  if (typeof body !== 'object' || body === null) throw new CallbackError('answer must be a JSON object')
  const { result, superuser, claims } = body as { result?: unknown, superuser?: unknown, claims?: unknown }
  if (result === 'deny' || result === 'ignore') return { result }
  if (result !== 'allow') throw new CallbackError('result must be "allow", "deny" or "ignore"')
  const flat: Record<string, string> = {}
  if (typeof claims === 'object' && claims !== null) {
    for (const [k, v] of Object.entries(claims)) {
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') flat[k] = String(v)
    }
  }
  return { result, superuser: superuser === true, claims: flat }
}

/** What the callback is told (README, "Authentication"): every field is also part of the cache key. */
export interface CallbackRequest {
  clientid: string
  username: string | null
  /** The password as text when its bytes are valid UTF-8; null when absent or not UTF-8 (never a lossy decode). */
  password: string | null
  /** The exact password bytes (MQTT passwords are binary data); null when absent. */
  password_base64: string | null
  peerhost: string
  protocol: 'mqtt3.1' | 'mqtt3.1.1'
  listener: string
}

export function callbackRequest (clientId: string, username: string | undefined, password: Buffer | undefined, info: { remoteAddress: string, protocolVersion?: number, listener: string }): CallbackRequest {
  return {
    clientid: clientId,
    username: username ?? null,
    password: password !== undefined && isUtf8(password) ? password.toString('utf8') : null,
    password_base64: password?.toString('base64') ?? null,
    peerhost: info.remoteAddress,
    protocol: info.protocolVersion === 3 ? 'mqtt3.1' : 'mqtt3.1.1',
    listener: info.listener
  }
}

/**
 * Authentication: an HTTP callback to a business service, then static users, then
 * anonymous, in that order (as an EMQX authenticator chain). The callback's `ignore`
 * hands the client to the next authenticator; when none accepts, the client is refused.
 */
export const authPlugin = definePlugin({
  name: 'auth',
  configKey: 'auth',
  schema: authConfigSchema,
  envOverrides: [{ env: 'MQGW_AUTH_HTTP_URL', path: ['auth', 'http', 'url'], parse: 'string' }],
  setup: (ctx) => {
    const config = ctx.config
    const results = new Counter({ name: 'mqgw_auth_results_total', help: 'Authentication results, by source and outcome', labelNames: ['source', 'outcome'], registers: [ctx.metrics.registry] })
    const users = new Map(config.users.map((u) => [u.username, u]))
    const hashes = new Counter({ name: 'mqgw_auth_hashes_total', help: 'Static-user password hashes (scrypt) computed', registers: [ctx.metrics.registry] })
    const throttled = new Counter({ name: 'mqgw_auth_throttled_total', help: 'Static-user logins answered without a hash, by reason (address, user, known_failure, overload)', labelNames: ['reason'], registers: [ctx.metrics.registry] })
    const guard = new PasswordGuard(config.passwordChecks, verifyPassword, {
      hashed: () => hashes.inc(),
      throttled: (reason) => throttled.inc({ reason }),
      warn: (fields, msg) => ctx.log.warn(fields, msg)
    })
    const http = config.http
    const callback = http
      ? new HttpCallback<CallbackAnswer>({ name: 'auth', url: http.url, timeoutMs: http.timeoutMs }, callbackMetrics(ctx.metrics.registry), parseAnswer,
        (answer) => answer.result === 'allow' ? http.cacheTtlMs : http.denyCacheTtlMs)
      : undefined
    // Cache keys are an HMAC under a key that lives only in this process: the cache never holds
    // a password, nor a plain SHA-256 of one that a heap dump would let anyone brute-force offline.
    const cacheKeySecret = randomBytes(32)

    ctx.hook('authenticate', async ({ clientId, username, password, info }): Promise<AuthVerdict> => {
      if (callback) {
        const body = callbackRequest(clientId, username, password, info)
        // The key covers every field the callback is told (its answer may depend on any of them:
        // address, listener, protocol), JSON-encoded so that no two bodies share an encoding.
        const key = createHmac('sha256', cacheKeySecret).update(JSON.stringify(body)).digest('base64')
        let answer: CallbackAnswer
        try {
          answer = await callback.decide(key, () => body)
        } catch (err) {
          results.inc({ source: 'http', outcome: 'error' })
          // Fail closed with "not authorized": the credentials may be fine, the service is not.
          return { result: 'deny', reason: (err as Error).message, returnCode: 5 }
        }
        if (answer.result === 'allow') {
          results.inc({ source: 'http', outcome: 'allow' })
          return { result: 'allow', superuser: answer.superuser, claims: answer.claims }
        }
        if (answer.result === 'deny') {
          results.inc({ source: 'http', outcome: 'deny' })
          return { result: 'deny', reason: 'auth callback denied the credentials', returnCode: 4 }
        }
        results.inc({ source: 'http', outcome: 'ignore' })
      }
      if (username !== undefined) {
        const user = users.get(username)
        if (user) {
          const verdict = await guard.check(username, user.passwordHash, password, info.remoteAddress)
          results.inc({ source: 'users', outcome: verdict.ok ? 'allow' : verdict.returnCode === 3 ? 'error' : 'deny' })
          return verdict.ok
            ? { result: 'allow', superuser: user.superuser, claims: user.claims }
            : { result: 'deny', reason: verdict.reason, returnCode: verdict.returnCode }
        }
        results.inc({ source: 'users', outcome: 'deny' })
        return { result: 'deny', reason: 'no authenticator accepted this user name', returnCode: 5 }
      }
      if (config.anonymous) {
        results.inc({ source: 'anonymous', outcome: 'allow' })
        return { result: 'allow' }
      }
      results.inc({ source: 'anonymous', outcome: 'deny' })
      return { result: 'deny', reason: 'anonymous connections are not allowed', returnCode: 5 }
    })
  }
})
