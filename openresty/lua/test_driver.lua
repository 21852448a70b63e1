-- Test driver for mqtt_connect.lua under a plain luajit (no nginx):
--   luajit openresty/lua/test_driver.lua < lines
-- Each input line: HEX [MAX_LEN]. Each output line, in order:
--   STATUS|VALUE|CLIENT_ID_HEX
-- STATUS|VALUE from parse() ("ok" with the id in hex, "more" with a byte count, "invalid"
-- with a reason); CLIENT_ID_HEX is client_id() in hex ("unknown" → 756e6b6e6f776e).
-- parse() runs under the driver's own pcall, so an error inside the parser is reported
-- as "error|MESSAGE|" instead of being hidden by client_id()'s pcall.
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local parser = require "mqtt_connect"

local function unhex(h)
  return (h:gsub("%x%x", function (c) return string.char(tonumber(c, 16)) end))
end
local function tohex(s)
  return (s:gsub(".", function (c) return string.format("%02x", string.byte(c)) end))
end

for line in io.lines() do
  local hex, max = line:match("^(%x*)%s*(%d*)%s*$")
  if hex == nil or #hex % 2 == 1 then
    io.write("error|bad input line|\n")
  else
    local data = unhex(hex)
    local max_len = tonumber(max)
    local ok, status, value = pcall(parser.parse, data, max_len)
    local id_ok, id = pcall(parser.client_id, data, max_len)
    if not ok then
      io.write("error|", tostring(status):gsub("[|\n]", " "), "|\n")
    elseif not id_ok then
      io.write("error|client_id: ", tostring(id):gsub("[|\n]", " "), "|\n")
    else
      if status == "ok" then value = tohex(value) end
      io.write(status, "|", tostring(value):gsub("[|\n]", " "), "|", tohex(id), "\n")
    end
  end
end
