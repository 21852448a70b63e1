-- mqtt_ring.lua: the consistent-hash ring of the access layer, pure LuaJIT (no nginx API),
-- so that it runs the same under nginx and under a plain `luajit` in the tests.
--
-- Each node is placed on a 32-bit ring at `vnodes` points, murmur3(name .. "#" .. i). A key
-- (the client id, or the client address as the fallback) belongs to the node of the first
-- point at or after murmur3(key), wrapping around. The points depend on node NAMES only,
-- never on addresses or ports: every transport (TCP, TLS, WebSocket, WSS) and every node
-- address change keep a client id on the same node, and adding or removing one node of N
-- moves only the keys of the arcs it takes or gives back, about 1/N of them. With 1000
-- points per node the arcs even out: each node's share stays within a few percent of 1/N.
--
-- order(key) lists all the nodes in ring order from the key's point: the first is the
-- key's home, the next ones are where it goes when the home is out (not ready) or refuses
-- the connection. Every key always gets the same list, so a moved client id keeps landing
-- on the same neighbour.
local bit = require "bit"

local band, bor, bxor, rshift, lshift, tobit = bit.band, bit.bor, bit.bxor, bit.rshift, bit.lshift, bit.tobit
local byte, floor, sort = string.byte, math.floor, table.sort

local M = {}

-- a * b mod 2^32 for 32-bit a and b: the product needs 64 bits, more than a double holds
-- exactly, so multiply by 16-bit halves.
local function mul32(a, b)
  a = band(a, 0xFFFFFFFF) % 0x100000000
  b = band(b, 0xFFFFFFFF) % 0x100000000
  local ah, al = floor(a / 0x10000), a % 0x10000
  return tobit((ah * b % 0x10000) * 0x10000 + al * b)
end

local function rotl(x, r)
  return bor(lshift(x, r), rshift(x, 32 - r))
end

-- MurmurHash3 x86_32 (Austin Appleby), as an unsigned number in [0, 2^32).
function M.murmur3(s, seed)
  local h = tobit(seed or 0)
  local n = #s
  local c1, c2 = 0xcc9e2d51, 0x1b873593
  local i = 1
  while i + 3 <= n do
    local b1, b2, b3, b4 = byte(s, i, i + 3)
    local k = bor(b1, lshift(b2, 8), lshift(b3, 16), lshift(b4, 24))
    k = mul32(rotl(mul32(k, c1), 15), c2)
    h = bxor(h, k)
    h = tobit(mul32(rotl(h, 13), 5) + 0xe6546b64)
    i = i + 4
  end
  local rest = n - i + 1
  if rest > 0 then
    local k = 0
    if rest == 3 then k = bxor(k, lshift(byte(s, i + 2), 16)) end
    if rest >= 2 then k = bxor(k, lshift(byte(s, i + 1), 8)) end
    k = bxor(k, byte(s, i))
    k = mul32(rotl(mul32(k, c1), 15), c2)
    h = bxor(h, k)
  end
  h = bxor(h, n)
  h = bxor(h, rshift(h, 16))
  h = mul32(h, 0x85ebca6b)
  h = bxor(h, rshift(h, 13))
  h = mul32(h, 0xc2b2ae35)
  h = bxor(h, rshift(h, 16))
  return h % 0x100000000
end

local Ring = {}
Ring.__index = Ring

-- names: the node names (unique, non-empty); vnodes: points per node.
function M.new(names, vnodes)
  vnodes = vnodes or 1000
  assert(type(names) == "table" and #names > 0, "the ring needs at least one node")
  local points = {}
  local seen = {}
  for idx, name in ipairs(names) do
    assert(type(name) == "string" and name ~= "", "a node name must be a non-empty string")
    assert(not seen[name], "node name " .. name .. " given twice")
    seen[name] = true
    for v = 1, vnodes do
      points[#points + 1] = { M.murmur3(name .. "#" .. v), idx }
    end
  end
  -- Equal hashes (rare) are ordered by node name so the ring never depends on input order.
  sort(points, function (a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return names[a[2]] < names[b[2]]
  end)
  local hashes, owners = {}, {}
  for i, p in ipairs(points) do
    hashes[i], owners[i] = p[1], p[2]
  end
  return setmetatable({ names = names, hashes = hashes, owners = owners, n = #names }, Ring)
end

-- Index of the first point at or after h (wrapping to 1).
function Ring:find(h)
  local hashes = self.hashes
  local lo, hi = 1, #hashes
  if h > hashes[hi] then return 1 end
  while lo < hi do
    local mid = floor((lo + hi) / 2)
    if hashes[mid] < h then lo = mid + 1 else hi = mid end
  end
  return lo
end

-- Node indexes (into names) in ring order from key: the home first, each node once.
function Ring:order(key)
  local owners, total, n = self.owners, #self.owners, self.n
  local i = self:find(M.murmur3(key))
  local out, seen = {}, {}
  for _ = 1, total do
    local o = owners[i]
    if not seen[o] then
      seen[o] = true
      out[#out + 1] = o
      if #out == n then break end
    end
    i = i + 1
    if i > total then i = 1 end
  end
  return out
end

-- The home node's name.
function Ring:home(key)
  return self.names[self:order(key)[1]]
end

return M
