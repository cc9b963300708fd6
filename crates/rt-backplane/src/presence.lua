-- rt's Redis presence and channel registry. Every node writes only its own keys, which
-- expire unless its heartbeat refreshes them, so a dead node's entries disappear by
-- themselves; readers merge the live nodes' keys, a page at a time.
--
-- Keys (all under ARGV[1], the deployment's prefix P; NODE is a node's random id). Each key
-- carries a hash tag, so that the same layout works on one Redis and on Redis Cluster: a
-- channel's keys share its tag {CH} (as its history does on a cluster), a node's registry of
-- channels has the tag {n:NODE}, and the registry of nodes is {nodes}:
--   P:{nodes}            zset node -> deadline (ms): nodes whose heartbeat is recent
--   P:{n:NODE}:ch        hash channel -> the node's subscriptions to it
--   P:{n:NODE}:chl       zset of the same channels, all score 0, for paging by name
--   P:{CH}:p:nodes       zset node -> deadline: nodes with members in CH's presence
--   P:{CH}:p:NODE        zset "CLIENT\tMEMBER-JSON", all score 0: the node's members of CH
--   P:{CH}:p:NODE:s      hash subject -> the node's connections of it in CH
--   P:{CH}:p:subj        hash subject -> nodes holding it in CH (HLEN: distinct subjects)
-- A node's keys live for ttl (its subject counts for 2 ttl, so that whoever finds the node
-- dead can still take them out of P:{CH}:p:subj).
--
-- A call touches the keys of one hash slot only (Redis Cluster refuses more): KEYS[1], a key
-- of that slot, routes it; the node groups its writes by slot (presence.rs), and on one
-- Redis sends them all in one call.
--
-- ARGV: 1 prefix, 2 mode, 3 node, 4 ttl ms, then by mode:
--   write:    ops, each touching one slot's keys:
--             'j' CH ENTRY SUBJECT | 'l' CH ENTRY SUBJECT   join / leave (SUBJECT '' for none)
--             'd' CH      drop the node's members of CH (before writing them again)
--             'b' CH N    heartbeat: take dead nodes out of CH, keep the node's keys of CH,
--                         which should hold its N members
--             'c' CH N    the node's subscriptions to CH are N (absolute)
--             'k' N       keep the node's registry of its N channels alive
--             'r'         keep the node in the registry of nodes
--            Reply: {'1'} when Redis lost some of the node's state, so that the node writes it
--            all again: 'r' found the node unregistered (its first beat, or Redis lost its
--            data), 'b' or 'k' found another number than N (a cluster shard that lost its
--            data or recent writes in a failover: the node's keys there are dropped first,
--            so that nothing it no longer has stays); else {'0'}
--   members:  CH, AFTER ('' from the start), LIMIT. Reply: up to LIMIT+1 entries in order
--   stats:    CH. Reply: {connections, distinct subjects}
--   nodes:    Reply: the live nodes
--   channels: NODE (whose registry to read), PREFIX, EXACT ('1' or '0'), AFTER (''), LIMIT.
--             Reply: channel, count, ... (up to LIMIT+1 channels in order)

local P, mode, node, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + ttl

local function pkey(ch, rest) return P .. ':{' .. ch .. '}:p:' .. rest end
local function nkey(n, rest) return P .. ':{n:' .. n .. '}:' .. rest end
local registry = P .. ':{nodes}'

-- Takes node D out of CH's presence, with its subject counts.
local function remove(ch, d)
  local counts = redis.call('HGETALL', pkey(ch, d .. ':s'))
  for i = 1, #counts, 2 do
    if redis.call('HINCRBY', pkey(ch, 'subj'), counts[i], -1) <= 0 then
      redis.call('HDEL', pkey(ch, 'subj'), counts[i])
    end
  end
  redis.call('DEL', pkey(ch, d), pkey(ch, d .. ':s'))
  redis.call('ZREM', pkey(ch, 'nodes'), d)
end

-- Takes the nodes whose deadline passed out of CH's presence.
local function sweep(ch)
  local dead = redis.call('ZRANGEBYSCORE', pkey(ch, 'nodes'), '-inf', '(' .. now)
  for _, d in ipairs(dead) do remove(ch, d) end
end

-- Keeps this node's keys of CH's presence alive.
local function refresh(ch)
  redis.call('ZADD', pkey(ch, 'nodes'), deadline, node)
  redis.call('PEXPIRE', pkey(ch, 'nodes'), 2 * ttl)
  redis.call('PEXPIRE', pkey(ch, node), ttl)
  redis.call('PEXPIRE', pkey(ch, node .. ':s'), 2 * ttl)
  redis.call('PEXPIRE', pkey(ch, 'subj'), 2 * ttl)
end

local function live(key)
  return redis.call('ZRANGEBYSCORE', key, now, '+inf')
end

if mode == 'write' then
  local chk, chl = nkey(node, 'ch'), nkey(node, 'chl')
  local i, touched, registered, lost = 5, {}, false, '0'
  while i <= #ARGV do
    local op, ch = ARGV[i], ARGV[i + 1]
    if op == 'c' then
      local n = tonumber(ARGV[i + 2])
      if n > 0 then
        redis.call('HSET', chk, ch, n)
        redis.call('ZADD', chl, 0, ch)
      else
        redis.call('HDEL', chk, ch)
        redis.call('ZREM', chl, ch)
      end
      registered = true
      i = i + 3
    elseif op == 'k' then
      if redis.call('ZCARD', chl) ~= tonumber(ARGV[i + 1]) then
        redis.call('DEL', chk, chl)
        lost = '1'
      end
      registered = true
      i = i + 2
    elseif op == 'r' then
      redis.call('ZREMRANGEBYSCORE', registry, '-inf', '(' .. now)
      if redis.call('ZADD', registry, deadline, node) == 1 then lost = '1' end
      i = i + 1
    elseif op == 'd' then
      remove(ch, node)
      i = i + 2
    elseif op == 'b' then
      sweep(ch)
      if redis.call('ZCARD', pkey(ch, node)) ~= tonumber(ARGV[i + 2]) then
        remove(ch, node)
        lost = '1'
      end
      touched[ch] = true
      i = i + 3
    else
      local entry, subject = ARGV[i + 2], ARGV[i + 3]
      local s, subj = pkey(ch, node .. ':s'), pkey(ch, 'subj')
      if op == 'j' then
        if redis.call('ZADD', pkey(ch, node), 0, entry) == 1 and subject ~= '' then
          if redis.call('HINCRBY', s, subject, 1) == 1 then
            redis.call('HINCRBY', subj, subject, 1)
          end
        end
      elseif redis.call('ZREM', pkey(ch, node), entry) == 1 and subject ~= '' then
        if redis.call('HINCRBY', s, subject, -1) <= 0 then
          redis.call('HDEL', s, subject)
          if redis.call('HINCRBY', subj, subject, -1) <= 0 then
            redis.call('HDEL', subj, subject)
          end
        end
      end
      touched[ch] = true
      i = i + 4
    end
  end
  for ch in pairs(touched) do refresh(ch) end
  if registered then
    redis.call('PEXPIRE', chk, ttl)
    redis.call('PEXPIRE', chl, ttl)
  end
  return {lost}
elseif mode == 'members' then
  local ch, after, limit = ARGV[5], ARGV[6], tonumber(ARGV[7])
  local min = '-'
  -- Entries are "CLIENT\t...": everything of AFTER sorts below "AFTER\n".
  if after ~= '' then min = '[' .. after .. '\n' end
  local all, seen = {}, {}
  for _, n in ipairs(live(pkey(ch, 'nodes'))) do
    local page = redis.call('ZRANGEBYLEX', pkey(ch, n), min, '+', 'LIMIT', 0, limit + 1)
    for _, v in ipairs(page) do
      if not seen[v] then seen[v] = true; all[#all + 1] = v end
    end
  end
  -- The first LIMIT+1 of the nodes' sorted pages, merged.
  table.sort(all)
  local out = {}
  for i = 1, math.min(#all, limit + 1) do out[i] = all[i] end
  return out
elseif mode == 'stats' then
  local ch = ARGV[5]
  sweep(ch)
  local connections = 0
  for _, n in ipairs(live(pkey(ch, 'nodes'))) do
    connections = connections + redis.call('ZCARD', pkey(ch, n))
  end
  return {tostring(connections), tostring(redis.call('HLEN', pkey(ch, 'subj')))}
elseif mode == 'nodes' then
  return live(registry)
elseif mode == 'channels' then
  local n, prefix, exact, after, limit = ARGV[5], ARGV[6], ARGV[7], ARGV[8], tonumber(ARGV[9])
  local min, max = '-', '+'
  if exact == '1' then
    min, max = '[' .. prefix, '[' .. prefix
  elseif prefix ~= '' then
    -- Channel names are printable ASCII: every name with the prefix sorts below PREFIX\127.
    min, max = '[' .. prefix, '(' .. prefix .. '\127'
  end
  if after ~= '' and after >= prefix then min = '(' .. after end
  local reply = {}
  for _, ch in ipairs(redis.call('ZRANGEBYLEX', nkey(n, 'chl'), min, max, 'LIMIT', 0, limit + 1)) do
    reply[#reply + 1] = ch
    reply[#reply + 1] = redis.call('HGET', nkey(n, 'ch'), ch) or '0'
  end
  return reply
end
return redis.error_reply('unknown mode ' .. mode)
