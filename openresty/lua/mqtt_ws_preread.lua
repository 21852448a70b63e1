-- mqtt_ws_preread.lua: the stream preread handler of the MQTT over WebSocket listener
-- (OpenResty only: uses the ngx API; parse() and key() are pure Lua, tested under luajit).
--
--   preread_by_lua_block { require("mqtt_ws_preread").run() }
--
-- WebSocket is routed in the stream subsystem, like MQTT/TCP, so that both go through one
-- hash ring (mqtt_nodes.lua) and one client id lands on one node over both. The CONNECT
-- travels inside WebSocket frames after the HTTP upgrade, so the client id comes from the
-- upgrade request head, peeked without consuming it (the node reads it as sent):
--   1. the query argument "clientid" (ws://host:8083/mqtt?clientid=ID), percent-decoded;
--   2. else the header "X-MQTT-Client-Id";
--   3. else $mqtt_client_id keeps the client address.
-- An id must be what a CONNECT may carry: non-empty well-formed UTF-8 without U+0000, at most
-- 65535 bytes. It is a routing hint only: the node uses the id in the CONNECT.
--
-- The head must arrive whole within preread_timeout and within $mqtt_ws_head_max bytes
-- (at most preread_buffer_size); longer heads and non-HTTP first bytes are routed by
-- address. Peeks ask only for bytes the head must still have (a head ends with CRLF CRLF),
-- because a client sends nothing more until the upgrade is answered.
local parser = require "mqtt_connect"
local peek = require "mqtt_peek"

local ngx, tonumber, char = ngx, tonumber, string.char

local M = { DEFAULT_MAX_LEN = 8192 }

local function decode(s)
  if s:find("%%[^%x]") or s:find("%%%x[^%x]") or s:find("%%%x?$") then return nil end
  return (s:gsub("%%(%x%x)", function (h) return char(tonumber(h, 16)) end))
end

local function usable(id)
  return id ~= nil and id ~= "" and #id <= 65535 and parser.utf8_ok(id)
end

-- The routing key of a complete request head (request line and headers), or nil.
function M.key(head)
  local target = head:match("^GET ([^ \r\n]+) HTTP/1%.%d\r\n")
  if not target then return nil end
  local query = target:match("%?(.*)$")
  if query then
    for pair in query:gmatch("[^&]+") do
      local v = pair:match("^clientid=(.*)$")
      if v then
        local id = decode(v)
        if usable(id) then return id end
        break
      end
    end
  end
  for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]-)[ \t]*%f[\r]") do
    if name:lower() == "x-mqtt-client-id" then
      if usable(value) then return value end
      break
    end
  end
  return nil
end

-- "ok", key-or-nil | "more", bytes_needed | "invalid", reason.
function M.parse(data, max_len)
  max_len = max_len or M.DEFAULT_MAX_LEN
  local n = #data
  if n >= 4 and data:sub(1, 4) ~= "GET " then return "invalid", "not a GET request" end
  local e = data:find("\r\n\r\n", 1, true)
  if e then return "ok", M.key(data:sub(1, e + 3)) end
  local need
  if n < 4 then need = 4
  elseif data:sub(-3) == "\r\n\r" then need = n + 1
  elseif data:sub(-2) == "\r\n" then need = n + 2
  elseif data:sub(-1) == "\r" then need = n + 3
  else need = n + 4 end
  if need > max_len then return "invalid", "request head longer than " .. max_len .. " bytes" end
  return "more", need
end

function M.run()
  local var = ngx.var
  local max_len = tonumber(var.mqtt_ws_head_max) or M.DEFAULT_MAX_LEN
  local sock = ngx.req.socket()
  if sock then
    local id = peek.read(sock, 4, max_len, M.parse)
    if id then
      var.mqtt_client_id = id
      return
    end
  end
  var.mqtt_client_id = var.remote_addr
end

return M
