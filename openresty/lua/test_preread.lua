-- Test driver for the preread handlers with a mock of the ngx API (no nginx):
--   luajit test_preread.lua [MODULE] < lines        (run from openresty/lua/)
-- MODULE: mqtt_preread (MQTT/TCP, the default) or mqtt_ws_preread (WebSocket upgrade).
-- Each input line: HEX MAX — the bytes the client has sent, and $mqtt_connect_max
-- ($mqtt_ws_head_max for the WebSocket handler).
-- Each output line: RESULT|LARGEST_PEEK, where RESULT is "var=VALUE" ($mqtt_client_id as
-- set by the handler) or "stalled" (the handler asked for more bytes than the client sent:
-- in nginx it waits until preread_timeout, then the stream core closes the connection).
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path

local STALLED = {}
local session -- the current mock connection

ngx = {
  var = setmetatable({}, {
    __index = function (_, k) return session.vars[k] end,
    __newindex = function (_, k, v) session.vars[k] = v; session.set = true end,
  }),
  req = {
    socket = function ()
      return {
        peek = function (_, n)
          if n > session.largest then session.largest = n end
          if n > session.max then error("peek past preread_buffer_size") end
          if n > #session.data then error(STALLED) end
          return session.data:sub(1, n)
        end,
      }
    end,
  },
}

local preread = require(arg[1] or "mqtt_preread")

local function unhex(h)
  return (h:gsub("%x%x", function (c) return string.char(tonumber(c, 16)) end))
end

for line in io.lines() do
  local hex, max = line:match("^(%x*)%s+(%d+)%s*$")
  session = {
    data = unhex(hex), max = tonumber(max), largest = 0, set = false,
    vars = { remote_addr = "10.1.2.3", mqtt_connect_max = max, mqtt_ws_head_max = max },
  }
  local ok, err = pcall(preread.run)
  if ok then
    io.write("var=", tostring(session.vars.mqtt_client_id), "|", session.largest, "\n")
  elseif err == STALLED and not session.set then
    io.write("stalled|", session.largest, "\n")
  else
    io.write("error ", tostring(err), "|", session.largest, "\n")
  end
end
