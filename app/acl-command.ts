import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { parse as yamlParse, parseDocument } from 'yaml'
import { aclConfigSchema } from '../plugins/acl/schema.js'
import { AclFileError, AclRules } from '../plugins/acl/rules.js'
import { aclCasesFileSchema, aclQuestionSchema, describeAnswer, explain, loadAclPolicy, type AclPolicy } from '../plugins/acl/decide.js'
import { builtinPlugins } from '../plugins/index.js'
import { ConfigError, loadConfigFile } from '../src/config/load.js'
import { formatZodIssues } from '../src/config/zod-issues.js'

export const ACL_USAGE = `usage: mqtt-gateway acl check --config FILE --clientid C [--username U] [--claim k=v ...]
                            [--superuser] [--listener mqtt] --action publish|subscribe --topic T [--json]
       mqtt-gateway acl test FILE CASES.yaml
  FILE: a gateway config with an acl section, or an ACL rules file (then acl.noMatch: deny)
  Both answer with the code the running gateway decides with (plugins/acl/decide.ts).`

class UsageError extends Error {}

interface Loaded { policy: AclPolicy, rulesFile: string }

/** The rules and settings a gateway started with FILE would use. */
function loadPolicy (file: string): Loaded {
  let raw: unknown
  try {
    raw = yamlParse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new UsageError(`${file}: ${(err as Error).message.split('\n')[0]}`)
  }
  const doc = (raw ?? {}) as Record<string, unknown>
  if ('rules' in doc && !('acl' in doc)) {
    // A bare rules file: its callbacks are whatever it names (the gateway config defines them).
    const names = new Set<string>()
    if (Array.isArray(doc.rules)) for (const r of doc.rules as Array<{ callback?: unknown }>) if (typeof r?.callback === 'string') names.add(r.callback)
    const rulesFile = resolve(file)
    return { policy: { rules: AclRules.load(rulesFile, names), noMatch: 'deny', sysTopics: 'superuser' }, rulesFile }
  }
  const loaded = loadConfigFile(file, { plugins: builtinPlugins })
  if (loaded.config.acl === undefined) throw new UsageError(`${file}: no acl section (the ACL plugin is off)`)
  const { policy, file: rulesFile } = loadAclPolicy(aclConfigSchema.parse(loaded.config.acl), loaded.baseDir)
  return { policy, rulesFile }
}

function check (argv: string[], out: (s: string) => void): number {
  const { values } = parseArgs({
    args: argv,
    options: {
      config: { type: 'string', short: 'c' }, username: { type: 'string' }, clientid: { type: 'string' },
      claim: { type: 'string', multiple: true }, superuser: { type: 'boolean' }, listener: { type: 'string' },
      action: { type: 'string' }, topic: { type: 'string' }, json: { type: 'boolean' }
    },
    strict: true
  })
  if (values.config === undefined) throw new UsageError('--config FILE is required')
  const claims: Record<string, string> = {}
  for (const c of values.claim ?? []) {
    const eq = c.indexOf('=')
    if (eq <= 0) throw new UsageError(`--claim ${c}: expected NAME=VALUE`)
    claims[c.slice(0, eq)] = c.slice(eq + 1)
  }
  const question = aclQuestionSchema.safeParse({
    clientid: values.clientid, username: values.username, claims, superuser: values.superuser ?? false,
    listener: values.listener ?? 'mqtt', action: values.action, topic: values.topic
  })
  if (!question.success) throw new UsageError(`--${formatZodIssues(question.error.issues)[0] ?? 'invalid arguments'}`)
  const { policy, rulesFile } = loadPolicy(values.config)
  const answer = explain(policy, rulesFile, question.data)
  out(values.json ? JSON.stringify(answer) : describeAnswer(answer))
  return 0
}

function test (argv: string[], out: (s: string) => void): number {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, strict: true, options: {} })
  if (positionals.length !== 2) throw new UsageError('acl test takes FILE and CASES.yaml')
  const [file, casesFile] = positionals as [string, string]
  const { policy, rulesFile } = loadPolicy(file)
  let text: string
  try {
    text = readFileSync(casesFile, 'utf8')
  } catch (err) {
    throw new UsageError(`cannot read ${casesFile}: ${(err as Error).message}`)
  }
  const doc = parseDocument(text, { uniqueKeys: true })
  if (doc.errors.length > 0) throw new UsageError(`${casesFile}: invalid YAML: ${doc.errors[0]!.message.split('\n')[0]}`)
  const parsed = aclCasesFileSchema.safeParse(doc.toJS() ?? {})
  if (!parsed.success) throw new UsageError(`${casesFile}: ${formatZodIssues(parsed.error.issues)[0] ?? 'invalid'}`)
  let failed = 0
  parsed.data.cases.forEach((c, i) => {
    const answer = explain(policy, rulesFile, c)
    const ruleOk = c.rule === undefined || answer.rule?.index === c.rule
    const ok = answer.decision === c.expect && ruleOk
    if (!ok) failed++
    const label = c.name ?? `${c.username ?? '(anonymous)'} ${c.clientid} ${c.action} ${c.topic}`
    const expected = `${c.expect}${c.rule !== undefined ? ` by rule ${c.rule}` : ''}`
    out(`${ok ? 'ok  ' : 'FAIL'} cases[${i}] ${label}: ${describeAnswer(answer)}${ok ? '' : ` (expected ${expected})`}`)
  })
  out(`${parsed.data.cases.length} cases, ${failed} failed`)
  return failed === 0 ? 0 : 1
}

/** `mqtt-gateway acl ...`: 0 answered / all cases as expected; 1 a mismatch or bad input. */
export function aclCommand (argv: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n'), err: (s: string) => void = (s) => process.stderr.write(s + '\n')): number {
  const [sub, ...rest] = argv
  try {
    if (sub === 'check') return check(rest, out)
    if (sub === 'test') return test(rest, out)
    throw new UsageError(sub === undefined ? 'acl needs a subcommand' : `unknown acl subcommand "${sub}"`)
  } catch (e) {
    if (e instanceof UsageError || e instanceof ConfigError || e instanceof AclFileError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      err(`mqtt-gateway acl: ${(e as Error).message}`)
      if (e instanceof UsageError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) err(ACL_USAGE)
      return 1
    }
    throw e
  }
}
