import { z } from 'zod'
import { ClientIdBinding } from './client-id-binding.js'

const callbackSchema = z.strictObject({
  url: z.url(),
  timeoutMs: z.number().int().min(1).default(1000),
  cacheTtlMs: z.number().int().min(0).default(30000),
  /** How long a deny is cached; default: the same as cacheTtlMs. */
  denyCacheTtlMs: z.number().int().min(0).optional()
})

/** The `acl` section of the gateway config. */
export const aclConfigSchema = z.strictObject({
  /** Rules file (relative paths resolve against the working directory); hot-reloaded on change and SIGHUP. */
  file: z.string().min(1),
  noMatch: z.enum(['allow', 'deny']).default('deny'),
  /** A denied QoS 1/2 PUBLISH: `ignore` drops it and still acknowledges (MQTT 3.1.1 has no negative PUBACK); `disconnect` closes the connection. */
  denyAction: z.enum(['ignore', 'disconnect']).default('ignore'),
  /** `superuser`: only superusers reach `$SYS/` topics, whatever the rules say; `rules`: the rules decide. */
  sysTopics: z.enum(['superuser', 'rules']).default('superuser'),
  callbacks: z.record(z.string().regex(/^[A-Za-z0-9_-]+$/), callbackSchema).default({}),
  /**
   * Client ids an identity may use, as templates: `${username}`, `${clientid}` is not
   * allowed, `${claims.NAME}` (e.g. a device id the auth callback returns), and `*` for any
   * run of characters, e.g. `${username}-*`. A client id must match one of them, else
   * CONNACK 5. Empty: any client id. Superusers are exempt.
   */
  clientIds: z.array(z.string().min(1)).default([]).superRefine((sources, ctx) => {
    try {
      // Compiling the templates is the validation.
      void new ClientIdBinding(sources)
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message })
    }
  })
})
export type AclConfig = z.infer<typeof aclConfigSchema>
export type AclCallbackConfig = z.infer<typeof callbackSchema>

const stringOrList = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).transform((v) => Array.isArray(v) ? v : [v])
const regex = z.string().min(1).refine((source) => {
  try {
    RegExp(source)
    return true
  } catch {
    return false
  }
}, 'not a valid regular expression')

export const whoSchema = z.strictObject({
  username: stringOrList.optional(),
  usernameRegex: regex.optional(),
  clientid: stringOrList.optional(),
  clientidRegex: regex.optional(),
  superuser: z.boolean().optional(),
  listener: stringOrList.optional()
})

export const ruleSchema = z.strictObject({
  permission: z.enum(['allow', 'deny']),
  action: z.enum(['publish', 'subscribe', 'all']),
  topics: z.array(z.string().min(1)).min(1),
  who: whoSchema.optional(),
  /** Name of an entry in acl.callbacks: an allow by this rule is confirmed by the business service. */
  callback: z.string().optional()
})

/** The rules file (e.g. config/acl.yaml), relative to the config file's directory. */
export const aclFileSchema = z.strictObject({
  rules: z.array(ruleSchema)
})
export type AclRuleSpec = z.infer<typeof ruleSchema>
