-- Test driver for mqtt_ring.lua under a plain luajit (no nginx):
--   luajit test_ring.lua NAMES VNODES < keys      (run from openresty/lua/)
-- NAMES: comma-separated node names. Each input line is a key; each output line is the
-- key's node order (names, comma-separated, the home first). A line "#murmur3 SEED HEX"
-- instead prints murmur3 of the bytes HEX with SEED, as 8 hex digits.
local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local ring_mod = require "mqtt_ring"

local names = {}
for n in (arg[1] or ""):gmatch("[^,]+") do names[#names + 1] = n end
local ring = ring_mod.new(names, tonumber(arg[2]) or 1000)

local function unhex(h)
  return (h:gsub("%x%x", function (c) return string.char(tonumber(c, 16)) end))
end

for line in io.lines() do
  local seed, hex = line:match("^#murmur3 (%d+) (%x*)$")
  if seed then
    io.write(string.format("%08x", ring_mod.murmur3(unhex(hex), tonumber(seed))), "\n")
  else
    local out = {}
    for i, idx in ipairs(ring:order(line)) do out[i] = names[idx] end
    io.write(table.concat(out, ","), "\n")
  end
end
