-- rt's Redis presence and channel registry. Every node writes only its own keys, which
-- expire unless its heartbeat refreshes them, so a dead node's entries disappear by
-- themselves; readers merge the live nodes' keys, a page at a time.
--
-- Keys (all under ARGV[1], the deployment's prefix P; NODE is a node's random id):
--   P:nodes            zset node -> deadline (ms): nodes whose heartbeat is recent
--   P:n:NODE:ch        hash channel -> the node's subscriptions to it
--   P:n:NODE:chl       zset of the same channels, all score 0, for paging by name
--   P:p:CH:nodes       zset node -> deadline: nodes with members in CH's presence
--   P:p:CH:NODE        zset "CLIENT\tMEMBER-JSON", all score 0: the node's members of CH
--   P:p:CH:NODE:s      hash subject -> the node's connections of it in CH
--   P:p:CH:subj        hash subject -> nodes holding it in CH (HLEN: distinct subjects)
-- A node's keys live for ttl (its subject counts for 2 ttl, so that whoever finds the node
-- dead can still take them out of P:p:CH:subj).
--
-- ARGV: 1 prefix, 2 mode, 3 node, 4 ttl ms, then by mode:
--   write:   ops: 'j' CH CLIENT ENTRY SUBJECT | 'l' CH CLIENT ENTRY SUBJECT | 'c' CH COUNT
--            | 'd' CH (SUBJECT '' for none; COUNT is the node's absolute count; 'd' drops
--            the node's members of CH, before writing them again). Reply: {}
--   beat:    channels with members on this node. Reply: {'1'} when the node had to be
--            registered anew (first beat, or Redis lost its data): it then writes everything
--            again; else {'0'}
--   members: CH, AFTER ('' from the start), LIMIT. Reply: up to LIMIT+1 entries in order
--   stats:   CH. Reply: {connections, distinct subjects}
--   channels: PREFIX, EXACT ('1' or '0'), AFTER (''), LIMIT. Reply: channel, count, ...
--            (up to LIMIT+1 channels in order)

local P, mode, node, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local deadline = now + ttl

local function pkey(ch, rest) return P .. ':p:' .. ch .. ':' .. rest end

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

-- The first LIMIT+1 of several sorted lists, merged, without repeats.
local function merged(lists, limit)
  local all, seen = {}, {}
  for _, list in ipairs(lists) do
    for _, v in ipairs(list) do
      if not seen[v] then seen[v] = true; all[#all + 1] = v end
    end
  end
  table.sort(all)
  local out = {}
  for i = 1, math.min(#all, limit + 1) do out[i] = all[i] end
  return out
end

local chk, chl = P .. ':n:' .. node .. ':ch', P .. ':n:' .. node .. ':chl'

if mode == 'write' then
  local i, touched = 5, {}
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
      i = i + 3
    elseif op == 'd' then
      remove(ch, node)
      i = i + 2
    else
      local entry, subject = ARGV[i + 3], ARGV[i + 4]
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
      i = i + 5
    end
  end
  for ch in pairs(touched) do refresh(ch) end
  redis.call('ZADD', P .. ':nodes', deadline, node)
  redis.call('PEXPIRE', chk, ttl)
  redis.call('PEXPIRE', chl, ttl)
  return {}
elseif mode == 'beat' then
  redis.call('ZREMRANGEBYSCORE', P .. ':nodes', '-inf', '(' .. now)
  local fresh = redis.call('ZADD', P .. ':nodes', deadline, node)
  redis.call('PEXPIRE', chk, ttl)
  redis.call('PEXPIRE', chl, ttl)
  for i = 5, #ARGV do
    sweep(ARGV[i])
    refresh(ARGV[i])
  end
  return {tostring(fresh)}
elseif mode == 'members' then
  local ch, after, limit = ARGV[5], ARGV[6], tonumber(ARGV[7])
  local min = '-'
  -- Entries are "CLIENT\t...": everything of AFTER sorts below "AFTER\n".
  if after ~= '' then min = '[' .. after .. '\n' end
  local lists = {}
  for _, n in ipairs(live(pkey(ch, 'nodes'))) do
    lists[#lists + 1] = redis.call('ZRANGEBYLEX', pkey(ch, n), min, '+', 'LIMIT', 0, limit + 1)
  end
  return merged(lists, limit)
elseif mode == 'stats' then
  local ch = ARGV[5]
  sweep(ch)
  local connections = 0
  for _, n in ipairs(live(pkey(ch, 'nodes'))) do
    connections = connections + redis.call('ZCARD', pkey(ch, n))
  end
  return {tostring(connections), tostring(redis.call('HLEN', pkey(ch, 'subj')))}
elseif mode == 'channels' then
  local prefix, exact, after, limit = ARGV[5], ARGV[6], ARGV[7], tonumber(ARGV[8])
  local min, max = '-', '+'
  if exact == '1' then
    min, max = '[' .. prefix, '[' .. prefix
  elseif prefix ~= '' then
    -- Channel names are printable ASCII: every name with the prefix sorts below PREFIX\127.
    min, max = '[' .. prefix, '(' .. prefix .. '\127'
  end
  if after ~= '' and after >= prefix then min = '(' .. after end
  local nodes = live(P .. ':nodes')
  local lists = {}
  for _, n in ipairs(nodes) do
    lists[#lists + 1] = redis.call('ZRANGEBYLEX', P .. ':n:' .. n .. ':chl', min, max,
      'LIMIT', 0, limit + 1)
  end
  local reply = {}
  for _, ch in ipairs(merged(lists, limit)) do
    local count = 0
    for _, n in ipairs(nodes) do
      count = count + (tonumber(redis.call('HGET', P .. ':n:' .. n .. ':ch', ch)) or 0)
    end
    reply[#reply + 1] = ch
    reply[#reply + 1] = tostring(count)
  end
  return reply
end
return redis.error_reply('unknown mode ' .. mode)
