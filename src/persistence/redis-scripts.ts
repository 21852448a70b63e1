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
