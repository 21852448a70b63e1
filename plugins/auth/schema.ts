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
  users: z.array(z.strictObject({
    username: z.string().min(1),
    passwordHash: z.string().regex(PASSWORD_HASH_PATTERN, 'must be "scrypt$N$r$p$salt$hash" (make one with: npm run -s hash-password)'),
    superuser: z.boolean().default(false),
    claims: z.record(z.string(), z.string()).default({})
  })).default([])
})
export type AuthConfig = z.infer<typeof authConfigSchema>
