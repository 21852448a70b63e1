import { defineRoute, type AdminRoute } from '../../src/admin/router.js'
import { aclAnswerSchema, aclQuestionSchema, explain, type AclPolicy } from './decide.js'

/**
 * POST /api/v1/acl/check: the running gateway's rules (as last loaded) asked without side
 * effects: no counter, no log line of a denial, no callback call, no cache entry.
 */
export function aclCheckRoute (policy: () => AclPolicy, file: string): AdminRoute {
  return defineRoute({
    method: 'POST',
    path: '/acl/check',
    scope: 'node',
    tag: 'acl',
    summary: 'May this identity publish or subscribe this topic? The decision and the rule (file, index) or callback that decides',
    body: aclQuestionSchema,
    response: aclAnswerSchema,
    handler: ({ body }) => explain(policy(), file, body)
  })
}
