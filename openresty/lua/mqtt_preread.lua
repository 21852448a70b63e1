-- mqtt_preread.lua: the stream preread handler (OpenResty only: uses the ngx API).
--
--   preread_by_lua_block { require("mqtt_preread").run() }
--
-- Peeks at the connection's first bytes without consuming them (they still go to the
-- gateway node), lets mqtt_connect.parse() decide how many bytes the CONNECT needs, and
-- sets $mqtt_client_id (declared with `set $mqtt_client_id $remote_addr;`) to the client
-- id, or to the remote address when there is none: not a CONNECT, malformed, empty client
-- id, or a CONNECT longer than $mqtt_connect_max bytes. $mqtt_connect_max must not exceed
-- preread_buffer_size: peeking past that buffer makes the stream core end the session
-- ("preread buffer full"), so the handler never asks for more. A client that does not
-- complete its CONNECT within preread_timeout is closed by the stream core (stream-lua's
-- reqsock:peek() semantics); the gateway would close it too (limits.connectTimeoutMs).
local parser = require "mqtt_connect"
local peek = require "mqtt_peek"

local ngx, tonumber = ngx, tonumber

local M = {}

function M.run()
  local var = ngx.var
  local fallback = var.remote_addr
  local max_len = tonumber(var.mqtt_connect_max) or parser.DEFAULT_MAX_LEN

  local sock = ngx.req.socket()
  if sock then
    -- the fixed header is at least 2 bytes
    local id = peek.read(sock, 2, max_len, parser.parse)
    if id and id ~= "" then
      var.mqtt_client_id = id
      return
    end
  end
  var.mqtt_client_id = fallback
end

return M
