import { z } from 'zod'
import { PASSWORD_HASH_PATTERN } from './password-hash.js'

/** The `auth` section of the gateway config. */
export const authConfigSchema = z.strictObject({
  /** Allow a CONNECT without user name (after the callback, if any, answered "ignore"). */
  anonymous: z.boolean().default(false),
  http: z.strictObject({
    url: z.url(),
    timeoutMs: z.number().int().min(1).default(2000),
    /** How long an allow is cached; the key includes a hash of the password. */
    cacheTtlMs: z.number().int().min(0).default(60000),
    /** How long a deny (or ignore) is cached: short, so a fixed password works soon. */
    denyCacheTtlMs: z.number().int().min(0).default(5000)
  }).optional(),
  /**
   * Bounds on static-user password checks (scrypt, ~40 ms of CPU each on libuv's thread pool),
   * so a wrong-password flood cannot queue minutes of work ahead of real logins and log writes.
   */
  passwordChecks: z.strictObject({
    /** Hashes computed at once (libuv's pool has 4 threads, shared with file I/O and DNS). */
    concurrency: z.number().int().min(1).default(2),
    /** Checks waiting for a hash slot; beyond this, CONNACK 3 (server unavailable). */
    queue: z.number().int().min(0).default(32),
    /** Window in which failures are counted for the two limits below. */
    failureWindowMs: z.number().int().min(1000).default(60000),
    /** Failures (plus checks in flight) from one address in the window before it is refused (CONNACK 5) without hashing; 0 = no limit. */
    maxFailuresPerAddress: z.number().int().min(0).default(10),
    /** Failures for one user name in the window after which addresses that failed for it are refused (CONNACK 5) without hashing; 0 = no limit. */
    maxFailuresPerUser: z.number().int().min(0).default(10),
    /** The same wrong password for the same user is refused (CONNACK 4) without hashing for this long; 0 = off. */
    failureCacheTtlMs: z.number().int().min(0).default(5000)
  }).prefault({}),
  users: z.array(z.strictObject({
    username: z.string().min(1),
    passwordHash: z.string().regex(PASSWORD_HASH_PATTERN, 'must be "scrypt$N$r$p$salt$hash" (make one with: npm run -s hash-password)'),
    superuser: z.boolean().default(false),
    claims: z.record(z.string(), z.string()).default({})
  })).default([])
})
export type AuthConfig = z.infer<typeof authConfigSchema>
