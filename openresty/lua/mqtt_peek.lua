-- mqtt_peek.lua: the peek loop both preread handlers share (no ngx API: takes the socket).
--
-- Peeks at a stream socket's first bytes without consuming them and lets `parse(data,
-- max_len)` decide: it answers "ok", value when it has its answer (value may be nil or ""
-- for "no client id"), "more", n when it needs n bytes, anything else to give up.
local pcall = pcall

local M = {}

--- The value parse() found, or nil (socket closed, parse error, gave up).
function M.read(sock, want, max_len, parse)
  while true do
    local data = sock:peek(want)
    if not data then return nil end
    local ok, status, value = pcall(parse, data, max_len)
    if not ok then return nil end
    if status == "ok" then return value end
    -- "more": parse() asks for more than it has and never more than max_len; checked anyway
    -- so that a bug can never loop or peek past the buffer (preread buffer full).
    if status ~= "more" or value <= #data or value > max_len then return nil end
    want = value
  end
end

return M
