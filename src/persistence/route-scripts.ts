/**
 * Lua scripts of the cluster route table (route-table.ts). Keys share the `{routes}` hash tag
 * (one slot on Redis Cluster); a node's filters are `mqgw:{routes}:node:<node>`, reached from
 * the scripts by name (same slot). Each change is written and announced in one script, so a
 * node that loads the table after subscribing to the control channel sees every change either
 * in what it loads or as a message after it, and the per-node version tells which.
 *
 * Control message (cjson): { n: node, v: version, o: op, f: filter(s), r: request id }
 *   o '+' / '-': one filter added / removed; '=': the node's whole set (f a list; an empty
 *   list is encoded by cjson as {}); 'x': the node left (or was swept as dead).
 */

/**
 * KEYS members, versions, routes of the node, tick counts; ARGV node, request id, channel, then
 * op ('+'|'-') and filter pairs: the route changes of one event-loop turn in one call. Each
 * change is its own control message with its own version, so every node, also one of an earlier
 * version, applies them one by one; only the last carries the request id, so each node
 * acknowledges the whole batch once (Redis delivers the messages in order: the last one's ack
 * means all were applied). Returns [members hash, tick counts hash], or nil when this node is
 * not a member (swept: join again).
 */
export const ROUTE_CHANGE = `
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return false end
for i = 4, #ARGV, 2 do
  local op, filter = ARGV[i], ARGV[i + 1]
  if op == '+' then redis.call('HSET', KEYS[3], filter, '1') else redis.call('HDEL', KEYS[3], filter) end
  local v = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
  local r = ''
  if i + 1 == #ARGV then r = ARGV[2] end
  redis.call('PUBLISH', ARGV[3], cjson.encode({ n = ARGV[1], v = v, o = op, f = filter, r = r }))
end
return { redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[4]) }
`

/** KEYS members, versions, routes of the node, tick counts; ARGV node, mode ('a' acks | 'p' passive), request id, channel, filters... Returns [members hash, tick counts hash]. */
export const ROUTE_JOIN = `
redis.call('DEL', KEYS[3])
local f = {}
for i = 5, #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], '1')
  f[#f + 1] = ARGV[i]
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
local v = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('PUBLISH', ARGV[4], cjson.encode({ n = ARGV[1], v = v, o = '=', f = f, r = ARGV[3] }))
return { redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[4]) }
`

/** KEYS members, versions, routes of the node; ARGV node, channel. 1 if it was a member. The version stays (it only grows). */
export const ROUTE_LEAVE = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('DEL', KEYS[3])
local v = redis.call('HINCRBY', KEYS[2], ARGV[1], 1)
redis.call('PUBLISH', ARGV[2], cjson.encode({ n = ARGV[1], v = v, o = 'x', r = '' }))
return 1
`

/** KEYS members, versions; ARGV prefix of the routes keys. Returns [node, mode, version, [filters...], ...]. */
export const ROUTE_LOAD = `
local out = {}
local m = redis.call('HGETALL', KEYS[1])
for i = 1, #m, 2 do
  out[#out + 1] = m[i]
  out[#out + 1] = m[i + 1]
  out[#out + 1] = redis.call('HGET', KEYS[2], m[i]) or '0'
  out[#out + 1] = redis.call('HKEYS', ARGV[1] .. m[i])
end
return out
`

/**
 * KEYS members (only to pin the slot), tick counts; ARGV channel, message, node. A tick goes
 * out from the same Redis node as the route changes: on Redis Cluster a PUBLISH reaches other
 * nodes' subscribers over the cluster bus, in order only among messages published on one node.
 * It also counts the node's ticks (never reset: a count seen twice means no tick in between)
 * and returns every node's count, so each node sees every 500 ms which others still tick.
 */
export const ROUTE_TICK = `
redis.call('PUBLISH', ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[3], 1)
return redis.call('HGETALL', KEYS[2])
`
