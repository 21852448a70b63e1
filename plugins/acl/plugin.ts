import { watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'
import { Counter } from 'prom-client'
import type { ClientInfo } from '../../src/client-info.js'
import { ALLOW, PASS, deny, type PublishVerdict, type SubscribeVerdict, type Verdict } from '../../src/hooks/types.js'
import { covers } from '../../src/topic.js'
import { definePlugin } from '../../src/plugin.js'
import { CallbackError, HttpCallback, callbackMetrics } from '../shared/http-callback.js'
import { aclCheckRoute } from './admin-route.js'
import { ClientIdBinding } from './client-id-binding.js'
import { decide as decideLocally, loadAclPolicy, type AclPolicy } from './decide.js'
import type { AclAction, AclIdentity } from './rules.js'
import { aclConfigSchema } from './schema.js'

interface CallbackAnswer { allow: boolean }

function parseAnswer (body: unknown): CallbackAnswer {
  const result = (body as { result?: unknown } | null)?.result
  if (result !== 'allow' && result !== 'deny') throw new CallbackError('result must be "allow" or "deny"')
  return { allow: result === 'allow' }
}

/**
 * Topic-template ACL (Zhihu's design: the user's identity is in the topic, so most
 * checks are local) with HTTP callbacks for the special cases, hot-reloaded rules,
 * and a forward-time check so that no path (restored persistent subscriptions,
 * retained messages, the offline queue, aedes#200) delivers what the rules forbid.
 */
export const aclPlugin = definePlugin({
  name: 'acl',
  configKey: 'acl',
  schema: aclConfigSchema,
  setup: (ctx) => {
    const config = ctx.config
    const log = ctx.log
    // Relative to the config file, as certificate paths are (not to the working directory).
    // A bad file at start is a configuration error: refuse to start rather than run open.
    // One policy object per rules version (not per check: decide runs on every delivery).
    let { policy: current, file } = loadAclPolicy(config, ctx.configDir)
    log.info({ file, rules: current.rules.size }, 'ACL rules loaded')

    const denials = new Counter({ name: 'mqgw_acl_denials_total', help: 'ACL denials, by action (publish, subscribe, forward, connect)', labelNames: ['action'], registers: [ctx.metrics.registry] })
    const reloads = new Counter({ name: 'mqgw_acl_reloads_total', help: 'ACL file reloads, by result (ok, rejected)', labelNames: ['result'], registers: [ctx.metrics.registry] })
    const metrics = callbackMetrics(ctx.metrics.registry)
    const callbacks = new Map<string, HttpCallback<CallbackAnswer>>()
    for (const [name, cb] of Object.entries(config.callbacks)) {
      callbacks.set(name, new HttpCallback<CallbackAnswer>({ name: `acl:${name}`, url: cb.url, timeoutMs: cb.timeoutMs }, metrics, parseAnswer,
        (answer) => answer.allow ? cb.cacheTtlMs : (cb.denyCacheTtlMs ?? cb.cacheTtlMs)))
    }

    const identityOf = (clientId: string, info: ClientInfo): AclIdentity => ({
      clientid: clientId, username: info.username, claims: info.claims, superuser: info.superuser, listener: info.listener
    })
    const policy = (): AclPolicy => current
    /**
     * The callback cache key: everything the callback is told, so that a decision made for
     * one identity is never reused for another that holds the same client id later.
     * Forward-time lookups find what SUBSCRIBE cached for an exact filter.
     */
    const callbackKey = (clientId: string, info: ClientInfo, action: AclAction, topic: string): string =>
      JSON.stringify([clientId, info.username ?? null, info.claims, action, topic])
    // authorizeForward runs once per subscriber of a message, in a row for the same topic:
    // split it once, not once per subscriber.
    let lastTopic = ''
    let lastLevels: string[] = ['']
    const levelsOf = (topic: string): string[] => {
      if (topic !== lastTopic) {
        lastTopic = topic
        lastLevels = topic.split('/')
      }
      return lastLevels
    }

    /** Decides locally; returns a promise only when a callback must confirm an allow. */
    const decide = (clientId: string, info: ClientInfo, action: AclAction, topic: string): boolean | Promise<boolean> => {
      const decision = decideLocally(policy(), identityOf(clientId, info), action, topic, levelsOf(topic))
      if (decision.permission === 'deny') return false
      if (decision.callback === undefined) return true
      const callback = callbacks.get(decision.callback)!
      return callback.decide(callbackKey(clientId, info, action, topic), () => ({ clientid: clientId, username: info.username ?? null, action, topic, claims: info.claims }))
        .then((answer) => answer.allow, (err: Error) => {
          log.warn({ clientId, username: info.username, action, topic, callback: decision.callback, err: err.message }, 'ACL callback failed; denying')
          return false
        })
    }

    const grantedCovers = (info: ClientInfo, topic: readonly string[]): boolean => {
      if (!info.granted) return false
      for (const filter of info.granted.keys()) if (covers(filter.split('/'), topic)) return true
      return false
    }

    // Which client ids an identity may use (acl.clientIds); checked once authentication allowed it.
    const binding = new ClientIdBinding(config.clientIds)
    if (binding.size > 0) {
      ctx.hook('authorizeConnect', ({ clientId, info }): Verdict => {
        if (info.superuser || binding.allows(clientId, info)) return PASS
        log.info({ clientId, username: info.username }, 'client id not bound to this identity (acl.clientIds)')
        denials.inc({ action: 'connect' })
        return deny('client id not allowed for this identity (acl.clientIds)')
      })
    }

    const logDenial = (action: string, clientId: string, info: ClientInfo | undefined, topic: string): void => {
      denials.inc({ action })
      log.info({ clientId, username: info?.username, action, topic }, 'ACL denied')
    }

    // Handlers answer synchronously unless a callback is involved: no promise or timer
    // on the per-PUBLISH path for rules decided locally.
    ctx.hook('authorizePublish', ({ info, packet, clientId }) => {
      // Without a client (a will published for a dead node) the core passes the identity
      // stored with the will; a publish with no identity at all is never allowed.
      if (clientId === undefined || !info) {
        logDenial('publish', clientId ?? '', info, packet.topic)
        return deny('ACL: publish without an identity')
      }
      const verdict = (allowed: boolean): PublishVerdict => {
        if (allowed) return ALLOW
        logDenial('publish', clientId, info, packet.topic)
        return { result: 'deny', reason: 'ACL', disconnect: packet.qos > 0 && config.denyAction === 'disconnect' }
      }
      const allowed = decide(clientId, info, 'publish', packet.topic)
      return typeof allowed === 'boolean' ? verdict(allowed) : allowed.then(verdict)
    })

    ctx.hook('authorizeSubscribe', ({ client, info, subscription }) => {
      const verdict = (allowed: boolean): SubscribeVerdict => {
        if (allowed) return ALLOW
        logDenial('subscribe', client.id, info, subscription.topic)
        return deny('ACL')
      }
      const allowed = decide(client.id, info, 'subscribe', subscription.topic)
      return typeof allowed === 'boolean' ? verdict(allowed) : allowed.then(verdict)
    })

    // Synchronous: rules are local. A callback rule uses the decision SUBSCRIBE cached for this
    // very topic (an exact filter); without one (a wildcard filter, or the entry expired) the
    // SUBSCRIBE decision stands only if the gateway granted this connection a filter that
    // covers the topic: a filter that was refused, or never asked for, forwards nothing.
    ctx.hook('authorizeForward', ({ client, info, packet }): Verdict => {
      if (!info || info.superuser) return PASS
      const topic = packet.topic
      const decision = decideLocally(policy(), identityOf(client.id, info), 'subscribe', topic, levelsOf(topic))
      let allowed = decision.permission === 'allow'
      if (allowed && decision.callback !== undefined) {
        allowed = callbacks.get(decision.callback)!.peek(callbackKey(client.id, info, 'subscribe', topic))?.allow ?? grantedCovers(info, levelsOf(topic))
      }
      if (allowed) return PASS
      denials.inc({ action: 'forward' })
      return deny('ACL')
    })

    const reload = (why: string): { ok: boolean, error?: string } => {
      try {
        const next = loadAclPolicy(config, ctx.configDir)
        current = next.policy
        file = next.file
        reloads.inc({ result: 'ok' })
        log.info({ file, rules: current.rules.size, why }, 'ACL rules reloaded')
        return { ok: true }
      } catch (err) {
        reloads.inc({ result: 'rejected' })
        log.error({ file, why, err: (err as Error).message }, 'ACL file rejected; previous rules stay in force')
        return { ok: false, error: (err as Error).message }
      }
    }
    ctx.admin.route(aclCheckRoute(policy, file))

    // Watch the directory, not the file: editors and config management replace files by
    // rename, which ends a watch on the old inode.
    let timer: NodeJS.Timeout | undefined
    let watcher: FSWatcher | undefined
    try {
      watcher = watch(dirname(file), (_event, name) => {
        if (name !== null && name !== basename(file)) return
        clearTimeout(timer)
        timer = setTimeout(() => { reload('file changed') }, 100)
      })
      watcher.on('error', (err) => log.warn({ err: err.message }, 'ACL file watch failed; SIGHUP still reloads'))
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'cannot watch the ACL file; SIGHUP still reloads')
    }

    return {
      reload: () => reload('SIGHUP'),
      close: () => {
        clearTimeout(timer)
        watcher?.close()
      }
    }
  }
})
