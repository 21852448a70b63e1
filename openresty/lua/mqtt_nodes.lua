-- mqtt_nodes.lua: the gateway nodes behind the access layer (OpenResty stream subsystem).
--
--   init_by_lua_block        { require("mqtt_nodes").configure({ nodes = {...}, ... }) }
--   init_worker_by_lua_block { require("mqtt_nodes").start_checks() }
--   upstream mqtt_tcp { server 0.0.0.1:1; balancer_by_lua_block { require("mqtt_nodes").balance("mqtt") } }
--
-- One hash ring (mqtt_ring.lua, keyed by node name) for every transport: balance(port)
-- picks the node of $mqtt_client_id and connects to that node's `port` (mqtt: MQTT/TCP,
-- also behind the TLS listener; ws: WebSocket, also behind WSS). So one client id lands on
-- one node whatever the transport.
--
-- Readiness: one worker process polls every node's admin GET /readyz every
-- `check_interval` seconds; a node is out after `fall` consecutive answers other than 200
-- (503 while Redis is down or the node drains, a refused connection, a timeout), and in again
-- after `rise` consecutive 200s. The state lives in `lua_shared_dict mqtt_nodes`, read by
-- every worker. A client id whose home node is out goes to the next node on the ring that
-- is in (the same one every time), and returns home when the node is back. If every node
-- is out, the ring order is used as is: better to try than to refuse everyone.
-- A connection that a node refuses or does not accept within proxy_connect_timeout is
-- retried on the next node of the same order (proxy_next_upstream).
local ring_mod = require "mqtt_ring"

local ngx = ngx
local M = {}

local nodes    -- { { name, host, addr, mqtt, ws, admin }, ... }
local ring
local opts = { check_interval = 1, check_timeout = 0.5, fall = 2, rise = 1 }
local DICT = "mqtt_nodes"

-- IPv4 address of a host name, through the C library's resolver (/etc/hosts, DNS): this
-- runs in init_by_lua (the master process, at start and at every reload), where blocking
-- is fine and the cosocket API does not exist. ngx.balancer needs an address, not a name.
local resolve
do
  local ffi = require "ffi"
  pcall(ffi.cdef, [[
    struct mqgw_addrinfo {
      int ai_flags; int ai_family; int ai_socktype; int ai_protocol;
      uint32_t ai_addrlen; void *ai_addr; char *ai_canonname; struct mqgw_addrinfo *ai_next;
    };
    int getaddrinfo(const char *node, const char *service, const struct mqgw_addrinfo *hints, struct mqgw_addrinfo **res);
    void freeaddrinfo(struct mqgw_addrinfo *res);
    const char *gai_strerror(int errcode);
  ]])
  local AF_INET, SOCK_STREAM = 2, 1
  resolve = function (host)
    if host:match("^%d+%.%d+%.%d+%.%d+$") then return host end
    local hints = ffi.new("struct mqgw_addrinfo")
    hints.ai_family, hints.ai_socktype = AF_INET, SOCK_STREAM
    local res = ffi.new("struct mqgw_addrinfo *[1]")
    local rc = ffi.C.getaddrinfo(host, nil, hints, res)
    if rc ~= 0 then return nil, ffi.string(ffi.C.gai_strerror(rc)) end
    -- struct sockaddr_in: family (2 bytes), port (2), address (4)
    local b = ffi.cast("const uint8_t *", res[0].ai_addr)
    local addr = string.format("%d.%d.%d.%d", b[4], b[5], b[6], b[7])
    ffi.C.freeaddrinfo(res[0])
    return addr
  end
end

-- opts.nodes: { { name = "gw-1", host = "gw-1", mqtt = 1883, ws = 8083, admin = 9100 }, ... }
-- opts.vnodes (1000), check_interval (s), check_timeout (s), fall, rise.
function M.configure(o)
  assert(type(o) == "table" and type(o.nodes) == "table" and #o.nodes > 0, "mqtt_nodes.configure: nodes = { ... } needed")
  for _, k in ipairs({ "check_interval", "check_timeout", "fall", "rise" }) do
    if o[k] ~= nil then opts[k] = assert(tonumber(o[k]), k .. " must be a number") end
  end
  nodes = {}
  local names = {}
  for i, n in ipairs(o.nodes) do
    assert(type(n.name) == "string" and n.name ~= "", "node " .. i .. ": name needed")
    assert(type(n.host) == "string" and n.host ~= "", "node " .. n.name .. ": host needed")
    for _, p in ipairs({ "mqtt", "ws", "admin" }) do
      assert(tonumber(n[p]), "node " .. n.name .. ": port " .. p .. " needed")
    end
    local addr, err = resolve(n.host)
    if not addr then error("node " .. n.name .. ": cannot resolve " .. n.host .. ": " .. tostring(err)) end
    nodes[i] = { name = n.name, host = n.host, addr = addr, mqtt = tonumber(n.mqtt), ws = tonumber(n.ws), admin = tonumber(n.admin) }
    names[i] = n.name
  end
  ring = ring_mod.new(names, o.vnodes or 1000)
end

local function is_out(dict, name)
  return dict:get("out:" .. name) == true
end

-- balancer_by_lua: `port` is "mqtt" or "ws".
function M.balance(port)
  local balancer = require "ngx.balancer"
  local ctx = ngx.ctx
  local order = ctx.mqtt_order
  if not order then
    order = ring:order(ngx.var.mqtt_client_id or "")
    ctx.mqtt_order = order
    ctx.mqtt_tried = {}
    if #order > 1 then balancer.set_more_tries(#order - 1) end
  end
  local tried = ctx.mqtt_tried
  local dict = ngx.shared[DICT]
  local pick
  for _, idx in ipairs(order) do
    if not tried[idx] and not is_out(dict, nodes[idx].name) then pick = idx; break end
  end
  if not pick then
    for _, idx in ipairs(order) do
      if not tried[idx] then pick = idx; break end
    end
  end
  if not pick then return ngx.exit(ngx.ERROR) end
  tried[pick] = true
  local node = nodes[pick]
  local ok, err = balancer.set_current_peer(node.addr, node[port])
  if not ok then
    ngx.log(ngx.ERR, "mqtt_nodes: cannot use node ", node.name, ": ", err)
    return ngx.exit(ngx.ERROR)
  end
end

-- One GET /readyz; true when the answer is 200.
local function ready(node)
  local sock = ngx.socket.tcp()
  local ms = opts.check_timeout * 1000
  sock:settimeouts(ms, ms, ms)
  local ok, err = sock:connect(node.addr, node.admin)
  if not ok then return false, "connect: " .. tostring(err) end
  local _, serr = sock:send("GET /readyz HTTP/1.0\r\nHost: " .. node.host .. "\r\nUser-Agent: mqtt-access\r\n\r\n")
  if serr then sock:close(); return false, "send: " .. serr end
  local line, rerr = sock:receive("*l")
  sock:close()
  if not line then return false, "receive: " .. tostring(rerr) end
  local status = line:match("^HTTP/1%.%d (%d%d%d)")
  return status == "200", "status " .. tostring(status)
end

local function check(node, dict)
  local ok, why = ready(node)
  local name = node.name
  if ok then
    dict:set("fails:" .. name, 0)
    local rises = (dict:get("rises:" .. name) or 0) + 1
    dict:set("rises:" .. name, rises)
    if is_out(dict, name) and rises >= opts.rise then
      dict:set("out:" .. name, false)
      ngx.log(ngx.WARN, "mqtt_nodes: node ", name, " is in again (/readyz 200)")
    end
  else
    dict:set("rises:" .. name, 0)
    local fails = (dict:get("fails:" .. name) or 0) + 1
    dict:set("fails:" .. name, fails)
    if not is_out(dict, name) and fails >= opts.fall then
      dict:set("out:" .. name, true)
      ngx.log(ngx.WARN, "mqtt_nodes: node ", name, " is out: /readyz not 200 ", fails, " times (", why, ")")
    end
  end
end

-- A round of checks can outlast the interval (timeouts): the next round is skipped rather
-- than run alongside, which would count one failure twice.
local checking = false
local function check_all(premature)
  if premature or checking then return end
  checking = true
  local dict = ngx.shared[DICT]
  local threads = {}
  for i, node in ipairs(nodes) do
    threads[i] = ngx.thread.spawn(check, node, dict)
  end
  for _, t in ipairs(threads) do ngx.thread.wait(t) end
  checking = false
end

-- init_worker_by_lua: one worker (id 0) checks for all; the others read the shared dict.
function M.start_checks()
  if not ngx.shared[DICT] then error("mqtt_nodes: lua_shared_dict " .. DICT .. " is not declared") end
  if ngx.worker.id() ~= 0 then return end
  local ok, err = ngx.timer.every(opts.check_interval, check_all)
  if not ok then ngx.log(ngx.ERR, "mqtt_nodes: cannot start the readiness checks: ", err) end
  ngx.timer.at(0, check_all)
end

return M
