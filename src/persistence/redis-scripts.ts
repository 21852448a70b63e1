/**
 * Lua scripts over aedes-persistence-redis 12's key layout (see its asyncPersistence.js):
 *   outgoing:<encodeURIComponent(clientId)>    LIST of packet keys queued for the client
 *   packet:<brokerId>:<counter>                the packet; `…:offlineCount` its reference count
 *   outgoing:<id>:<brokerId>:<counter>         QoS 2 state after PUBREC (no reference count)
 * Run atomically so that a trim never races a PUBACK on another node.
 */

/**
 * KEYS[1] outgoing list; ARGV[1] how many entries to keep (0 = all go).
 * Pops the oldest entries beyond the bound and releases what they reference.
 * Returns how many were dropped.
 */
export const TRIM_QUEUE = `
local keep = tonumber(ARGV[1])
local dropped = 0
while redis.call('LLEN', KEYS[1]) > keep do
  local key = redis.call('LPOP', KEYS[1])
  if not key then break end
  dropped = dropped + 1
  if string.sub(key, 1, 7) == 'packet:' then
    local count = redis.call('DECR', key .. ':offlineCount')
    if count <= 0 then redis.call('DEL', key, key .. ':offlineCount') end
  else
    redis.call('DEL', key)
  end
end
return dropped
`

/**
 * KEYS[1] online hash, KEYS[2] offline sorted set; ARGV: clientId, connection token, now (ms).
 * Marks a session offline only if the connection going away is still the one on record:
 * a takeover by another node must not mark the new connection's session offline.
 */
export const MARK_OFFLINE = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current == ARGV[2] or not current then
  if current then redis.call('HDEL', KEYS[1], ARGV[1]) end
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 1
end
return 0
`

/**
 * KEYS[1] online hash, KEYS[2] offline sorted set; ARGV: clientId, connection token.
 * Marks a session online again for a connection still open on this node, unless another
 * connection (a takeover on another node) is on record. Returns 1 when it did.
 */
export const MARK_ONLINE = `
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current == ARGV[2] or not current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
`

/**
 * The retained ledger (src/persistence/ledgers.ts) in Redis, one hash tag for its three keys:
 *   KEYS[1] topics HASH topic -> "<bytes>|<owner>"; KEYS[2] totals HASH count, bytes;
 *   KEYS[3] owners HASH owner -> retained topics it set.
 * ARGV: topic, bytes, owner, maxMessages, maxBytes, maxPerClient (0 = no limit).
 * Returns 'ok' (recorded) or the limit that refused: 'count', 'bytes', 'client'.
 */
export const RETAINED_ADMIT = `
local prev = redis.call('HGET', KEYS[1], ARGV[1])
local pbytes, powner = 0, false
if prev then
  local sep = string.find(prev, '|', 1, true)
  pbytes = tonumber(string.sub(prev, 1, sep - 1))
  powner = string.sub(prev, sep + 1)
end
local bytes = tonumber(ARGV[2])
local owner = ARGV[3]
local maxc, maxb, maxo = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local count = tonumber(redis.call('HGET', KEYS[2], 'count') or '0')
local total = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
if (not prev) and maxc > 0 and count + 1 > maxc then return 'count' end
if maxb > 0 and total - pbytes + bytes > maxb then return 'bytes' end
if powner ~= owner and maxo > 0 and tonumber(redis.call('HGET', KEYS[3], owner) or '0') + 1 > maxo then return 'client' end
if not prev then redis.call('HINCRBY', KEYS[2], 'count', 1) end
redis.call('HINCRBY', KEYS[2], 'bytes', bytes - pbytes)
if powner ~= owner then
  if powner and redis.call('HINCRBY', KEYS[3], powner, -1) <= 0 then redis.call('HDEL', KEYS[3], powner) end
  redis.call('HINCRBY', KEYS[3], owner, 1)
end
redis.call('HSET', KEYS[1], ARGV[1], bytes .. '|' .. owner)
return 'ok'
`

/** Same keys as RETAINED_ADMIT; ARGV[1] topic. Forgets the topic's retained message. */
export const RETAINED_RELEASE = `
local prev = redis.call('HGET', KEYS[1], ARGV[1])
if not prev then return 0 end
local sep = string.find(prev, '|', 1, true)
local owner = string.sub(prev, sep + 1)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HINCRBY', KEYS[2], 'count', -1)
redis.call('HINCRBY', KEYS[2], 'bytes', -tonumber(string.sub(prev, 1, sep - 1)))
if redis.call('HINCRBY', KEYS[3], owner, -1) <= 0 then redis.call('HDEL', KEYS[3], owner) end
return 1
`

/**
 * KEYS[1] client registry hash (clientId -> node id); ARGV: clientId, node id.
 * Records that the client is now on this node; returns the node that had it before (or nil).
 */
export const CLAIM_CLIENT = `
local previous = redis.call('HGET', KEYS[1], ARGV[1])
if previous ~= ARGV[2] then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return previous
`

/**
 * KEYS[1] client registry hash; ARGV: clientId, node id.
 * Removes the entry only if it still names that node (a takeover elsewhere must stay on record).
 */
export const RELEASE_CLIENT = `
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`

/**
 * KEYS[1] client registry hash, KEYS[2] online hash; ARGV: clientId.
 * Removes an expired session's entry unless the client is online again (it reconnected
 * after the expiry sweep read the online hash).
 */
export const FORGET_EXPIRED_CLIENT = `
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
`
