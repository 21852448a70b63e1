import { z } from 'zod'
import { resolve } from 'node:path'
import { isSysTopic, isValidTopicFilter } from '../../src/topic.js'
import { AclRules, type AclDecision, type AclAction, type AclIdentity } from './rules.js'
import type { AclConfig } from './schema.js'

/**
 * The ACL's decision, shared by the running plugin (every PUBLISH, SUBSCRIBE and delivery),
 * the admin API (POST /api/v1/acl/check) and `mqtt-gateway acl check|test`, so that a dry
 * run answers exactly what the gateway would.
 */
export interface AclPolicy {
  rules: AclRules
  noMatch: 'allow' | 'deny'
  sysTopics: 'superuser' | 'rules'
}

export interface AclVerdict {
  permission: 'allow' | 'deny'
  /** Index of the deciding rule in the file. */
  rule: number | undefined
  /** An allow that this callback must confirm. */
  callback: string | undefined
  by: AclDecision['by'] | 'superuser' | 'sysTopics'
}

const SUPERUSER: AclVerdict = Object.freeze({ permission: 'allow', rule: undefined, callback: undefined, by: 'superuser' })
const SYS_TOPICS: AclVerdict = Object.freeze({ permission: 'deny', rule: undefined, callback: undefined, by: 'sysTopics' })

/**
 * The policy an `acl` section describes, loaded as the running gateway loads it: the rules
 * file relative to the config file's directory, callbacks by the names the section defines.
 * Throws on a bad rules file. Shared by the plugin (start, reload) and `mqtt-gateway acl`.
 */
export function loadAclPolicy (section: AclConfig, configDir: string): { policy: AclPolicy, file: string } {
  const file = resolve(configDir, section.file)
  const rules = AclRules.load(file, new Set(Object.keys(section.callbacks)))
  return { policy: { rules, noMatch: section.noMatch, sysTopics: section.sysTopics }, file }
}

/** Decides without side effects: superusers pass, `$SYS` is theirs alone (sysTopics: superuser), then the rules. */
export function decide (policy: AclPolicy, id: AclIdentity, action: AclAction, topic: string, levels: readonly string[]): AclVerdict {
  if (id.superuser) return SUPERUSER
  if (policy.sysTopics === 'superuser' && isSysTopic(topic)) return SYS_TOPICS
  return policy.rules.check(id, action, levels, policy.noMatch)
}

const questionFields = {
  clientid: z.string().min(1),
  username: z.string().min(1).optional(),
  claims: z.record(z.string(), z.string()).default({}),
  superuser: z.boolean().default(false),
  listener: z.string().min(1).default('mqtt'),
  action: z.enum(['publish', 'subscribe']),
  topic: z.string().min(1)
}

const topicFits = (q: { action: AclAction, topic: string }, ctx: z.RefinementCtx): void => {
  if (q.action === 'publish' ? /[+#]/.test(q.topic) : !isValidTopicFilter(q.topic)) {
    ctx.addIssue({ code: 'custom', path: ['topic'], message: q.action === 'publish' ? 'a PUBLISH topic has no wildcards' : 'not a valid MQTT topic filter' })
  }
}

/** A question to the ACL ("may U with client id C and claims X publish T?"), as the API takes it. */
export const aclQuestionSchema = z.strictObject(questionFields).superRefine(topicFits)

/** A row of `mqtt-gateway acl test` cases: a question and the expected answer. */
export const aclCaseSchema = z.strictObject({
  ...questionFields,
  name: z.string().optional(),
  expect: z.enum(['allow', 'deny', 'callback']),
  /** Optionally also the index of the rule expected to decide. */
  rule: z.number().int().min(0).optional()
}).superRefine(topicFits)
export const aclCasesFileSchema = z.strictObject({ cases: z.array(aclCaseSchema).min(1) })

export type AclQuestion = z.output<typeof aclQuestionSchema>

export const aclAnswerSchema = z.object({
  /** `callback`: the rules allow it if the named callback confirms (not called: a dry run has no side effects). */
  decision: z.enum(['allow', 'deny', 'callback']),
  by: z.enum(['rule', 'noMatch', 'superuser', 'sysTopics']),
  rule: z.object({
    file: z.string(),
    index: z.number().int(),
    permission: z.enum(['allow', 'deny']),
    action: z.enum(['publish', 'subscribe', 'all']),
    topics: z.array(z.string())
  }).optional(),
  callback: z.string().optional()
})
export type AclAnswer = z.output<typeof aclAnswerSchema>

/** Answers a question with the deciding rule (file and index) or callback. */
export function explain (policy: AclPolicy, file: string, q: AclQuestion): AclAnswer {
  const id: AclIdentity = { clientid: q.clientid, username: q.username, claims: q.claims, superuser: q.superuser, listener: q.listener }
  const v = decide(policy, id, q.action, q.topic, q.topic.split('/'))
  const spec = v.rule === undefined ? undefined : policy.rules.specs[v.rule]
  return {
    decision: v.permission === 'allow' && v.callback !== undefined ? 'callback' : v.permission,
    by: v.by,
    ...(spec !== undefined && v.rule !== undefined ? { rule: { file, index: v.rule, permission: spec.permission, action: spec.action, topics: spec.topics } } : {}),
    ...(v.callback !== undefined ? { callback: v.callback } : {})
  }
}

/** One line for people: `allow by rule 3 of acl.yaml (allow subscribe user/${username}/inbox)`. */
export function describeAnswer (a: AclAnswer): string {
  const what = a.decision === 'callback' ? `allow if callback "${a.callback}" confirms` : a.decision
  if (a.rule) return `${what} by rule ${a.rule.index} of ${a.rule.file} (${a.rule.permission} ${a.rule.action} ${a.rule.topics.join(', ')})`
  if (a.by === 'noMatch') return `${what}: no rule matched (acl.noMatch)`
  if (a.by === 'superuser') return `${what}: superuser`
  return `${what}: $SYS topics are for superusers only (acl.sysTopics)`
}
