-- mqtt_connect.lua: reads the client id from the first bytes of an MQTT connection.
--
-- Pure Lua (LuaJIT 2.1 / OpenResty's LuaJIT): no nginx API in here, so it runs and is
-- tested under a plain `luajit` (openresty/lua/test_driver.lua). The nginx glue is
-- mqtt_preread.lua, and the same file runs under nginx in the end-to-end tests.
--
-- A connection's first packet must be a CONNECT (MQTT 3.1.1 [MQTT-3.1.0-1]). Accepted:
--   MQTT 3.1   protocol name "MQIsdp", level 3
--   MQTT 3.1.1 protocol name "MQTT",   level 4
--   MQTT 5.0   protocol name "MQTT",   level 5 (CONNECT properties, will properties)
-- (the 0x80 "bridge" bit of the level, sent by Mosquitto bridges, is ignored).
-- The whole packet is checked, not just up to the client id: fixed header flags, the
-- remaining length (1 to 4 bytes), connect flags (reserved bit, will QoS/retain without
-- will, password without user name before 5.0), every length-prefixed field within
-- the packet, v5 property identifiers, lengths and duplicates, and nothing left over
-- after the last field. The client id must be well-formed UTF-8 without U+0000
-- ([MQTT-1.5.3-1/2]; the gateway closes such connections anyway), so the id that is
-- hashed is the exact byte string the gateway will see.
--
-- API (nothing here raises an error on any input: every read is bounds-checked, and
-- client_id() also runs parse() under pcall):
--   parse(data, max_len) -> status, value
--     "ok",      client id (may be "")           a complete, valid CONNECT
--     "more",    n (> #data)                     valid so far; at least n bytes needed
--     "invalid", reason                          garbage, not a CONNECT, malformed, or the
--                                                packet is longer than max_len bytes
--   client_id(data, max_len) -> the client id, or "unknown" for anything but a complete,
--     valid CONNECT with a non-empty client id (truncated, oversized, garbage, ...).
-- max_len defaults to 16384 (nginx's default preread_buffer_size).

local bit = require "bit"

local band, rshift = bit.band, bit.rshift
local byte, sub = string.byte, string.sub
local type, pcall = type, pcall

local M = {
  _VERSION = "1.0",
  UNKNOWN = "unknown",
  DEFAULT_MAX_LEN = 16384,
}

local MAX_VARINT_BYTES = 4 -- remaining length and property length: at most 268,435,455

-- Variable byte integer at data[p]; reads no byte beyond `last`.
-- Returns value, next position | nil, "more" (runs past last) | nil, "invalid".
local function varint(data, p, last)
  local value, mult = 0, 1
  for i = 0, MAX_VARINT_BYTES - 1 do
    if p + i > last then return nil, "more" end
    local b = byte(data, p + i)
    value = value + band(b, 127) * mult
    if band(b, 128) == 0 then return value, p + i + 1 end
    mult = mult * 128
  end
  return nil, "invalid"
end

-- Two-byte big-endian integer at data[p] within last. Returns value, next | nil.
local function u16(data, p, last)
  if p + 1 > last then return nil end
  local hi, lo = byte(data, p, p + 1)
  return hi * 256 + lo, p + 2
end

-- Length-prefixed field (string or binary data) at data[p] within last.
-- Returns first byte, last byte (first - 1 when empty), next position | nil.
local function field(data, p, last)
  local len, q = u16(data, p, last)
  if len == nil then return nil end
  local e = q + len - 1
  if e > last then return nil end
  return q, e, e + 1
end

local function cont(c)
  return c ~= nil and c >= 0x80 and c <= 0xBF
end

-- Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, <= U+10FFFF) without U+0000.
local function utf8_ok(data, s, e)
  local i = s
  while i <= e do
    local c = byte(data, i)
    if c == 0 then
      return false
    elseif c < 0x80 then
      i = i + 1
    elseif c >= 0xC2 and c <= 0xDF then
      if i + 1 > e or not cont(byte(data, i + 1)) then return false end
      i = i + 2
    elseif c >= 0xE0 and c <= 0xEF then
      if i + 2 > e then return false end
      local c2, c3 = byte(data, i + 1, i + 2)
      if not cont(c2) or not cont(c3) then return false end
      if c == 0xE0 and c2 < 0xA0 then return false end -- overlong
      if c == 0xED and c2 >= 0xA0 then return false end -- UTF-16 surrogate
      i = i + 3
    elseif c >= 0xF0 and c <= 0xF4 then
      if i + 3 > e then return false end
      local c2, c3, c4 = byte(data, i + 1, i + 3)
      if not cont(c2) or not cont(c3) or not cont(c4) then return false end
      if c == 0xF0 and c2 < 0x90 then return false end -- overlong
      if c == 0xF4 and c2 >= 0x90 then return false end -- above U+10FFFF
      i = i + 4
    else
      return false
    end
  end
  return true
end

-- v5 property types: value kinds by identifier.
-- BYTE, TWO and FOUR are also their sizes in bytes.
local BYTE, TWO, FOUR, STRING, BINARY, PAIR = 1, 2, 4, 6, 7, 8
local CONNECT_PROPS = {
  [0x11] = FOUR,   -- session expiry interval
  [0x21] = TWO,    -- receive maximum
  [0x27] = FOUR,   -- maximum packet size
  [0x22] = TWO,    -- topic alias maximum
  [0x19] = BYTE,   -- request response information
  [0x17] = BYTE,   -- request problem information
  [0x26] = PAIR,   -- user property (may repeat)
  [0x15] = STRING, -- authentication method
  [0x16] = BINARY, -- authentication data
}
local WILL_PROPS = {
  [0x18] = FOUR,   -- will delay interval
  [0x01] = BYTE,   -- payload format indicator
  [0x02] = FOUR,   -- message expiry interval
  [0x03] = STRING, -- content type
  [0x08] = STRING, -- response topic
  [0x09] = BINARY, -- correlation data
  [0x26] = PAIR,   -- user property (may repeat)
}
local USER_PROPERTY = 0x26

-- Properties block (length, then properties) at data[p] within last.
-- Returns next position | nil, reason.
local function properties(data, p, last, allowed)
  local len, q = varint(data, p, last)
  if len == nil then return nil, "malformed property length" end
  local pend = q + len - 1
  if pend > last then return nil, "property length beyond packet" end
  local seen = {}
  while q <= pend do
    -- Identifiers are variable byte integers; every defined one fits in one byte.
    local id = byte(data, q)
    local kind = allowed[id]
    if kind == nil then return nil, "unknown property" end
    if id ~= USER_PROPERTY then
      if seen[id] then return nil, "duplicate property" end
      seen[id] = true
    end
    q = q + 1
    if kind == BYTE or kind == TWO or kind == FOUR then
      q = q + kind
      if q - 1 > pend then return nil, "truncated property" end
    elseif kind == STRING or kind == BINARY then
      local _, _, n = field(data, q, pend)
      if n == nil then return nil, "truncated property" end
      q = n
    else -- PAIR
      local _, _, n = field(data, q, pend)
      if n == nil then return nil, "truncated property" end
      _, _, n = field(data, n, pend)
      if n == nil then return nil, "truncated property" end
      q = n
    end
  end
  return pend + 1
end

-- Variable header and payload of a CONNECT, data[p .. last]. Returns id | nil, reason.
local function connect_body(data, p, last)
  local ns, ne, q = field(data, p, last)
  if ns == nil then return nil, "truncated protocol name" end
  local name = sub(data, ns, ne)
  if q + 3 > last then return nil, "truncated variable header" end
  local level = band(byte(data, q), 0x7F) -- 0x80: bridge bit
  local flags = byte(data, q + 1)
  q = q + 4 -- level, flags, keepalive (2)
  if name == "MQTT" then
    if level ~= 4 and level ~= 5 then return nil, "unsupported protocol level" end
  elseif name == "MQIsdp" then
    if level ~= 3 then return nil, "unsupported protocol level" end
  else
    return nil, "unknown protocol name"
  end

  if band(flags, 0x01) ~= 0 then return nil, "reserved connect flag set" end
  local will = band(flags, 0x04) ~= 0
  local will_qos = band(rshift(flags, 3), 0x03)
  local will_retain = band(flags, 0x20) ~= 0
  local has_password = band(flags, 0x40) ~= 0
  local has_username = band(flags, 0x80) ~= 0
  if will_qos == 3 then return nil, "will QoS 3" end
  if not will and (will_qos ~= 0 or will_retain) then return nil, "will QoS/retain without will" end
  if has_password and not has_username and level < 5 then return nil, "password without user name" end

  local err
  if level == 5 then
    q, err = properties(data, q, last, CONNECT_PROPS)
    if q == nil then return nil, err end
  end

  local cs, ce
  cs, ce, q = field(data, q, last)
  if cs == nil then return nil, "truncated client id" end
  if not utf8_ok(data, cs, ce) then return nil, "client id is not well-formed UTF-8" end

  if will then
    if level == 5 then
      q, err = properties(data, q, last, WILL_PROPS)
      if q == nil then return nil, err end
    end
    local _
    _, _, q = field(data, q, last)
    if q == nil then return nil, "truncated will topic" end
    _, _, q = field(data, q, last)
    if q == nil then return nil, "truncated will payload" end
  end
  if has_username then
    local _
    _, _, q = field(data, q, last)
    if q == nil then return nil, "truncated user name" end
  end
  if has_password then
    local _
    _, _, q = field(data, q, last)
    if q == nil then return nil, "truncated password" end
  end
  if q ~= last + 1 then return nil, "bytes left after the last field" end
  return sub(data, cs, ce)
end

function M.parse(data, max_len)
  if type(data) ~= "string" then return "invalid", "not a string" end
  if type(max_len) ~= "number" or max_len < 2 then max_len = M.DEFAULT_MAX_LEN end
  local n = #data
  if n == 0 then return "more", 2 end
  if byte(data, 1) ~= 0x10 then return "invalid", "first packet is not a CONNECT" end
  local remaining, p = varint(data, 2, n)
  if remaining == nil then
    if p == "more" then return "more", n + 1 end
    return "invalid", "malformed remaining length"
  end
  local total = p - 1 + remaining
  if total > max_len then return "invalid", "CONNECT longer than " .. max_len .. " bytes" end
  if n < total then return "more", total end
  -- Bytes after the CONNECT (a pipelined SUBSCRIBE, ...) are not looked at.
  local id, reason = connect_body(data, p, total)
  if id == nil then return "invalid", reason end
  return "ok", id
end

-- The same rule for a client id that came another way (the WebSocket upgrade request):
-- well-formed UTF-8 without U+0000, as in a CONNECT.
function M.utf8_ok(s)
  return type(s) == "string" and utf8_ok(s, 1, #s)
end

function M.client_id(data, max_len)
  local ok, status, value = pcall(M.parse, data, max_len)
  if ok and status == "ok" and value ~= "" then return value end
  return M.UNKNOWN
end

return M
