-- rt's Redis backplane: every position is assigned and every page of history is read here, in
-- one atomic step, so that all nodes agree on each channel's order and offsets.
--
-- Keys (all under ARGV[1], the deployment's prefix P):
--   P:epoch            the current epoch (hex). Created with ARGV[4] when missing, which is
--                      how a flushed or restarted Redis is detected: the epoch changes, and
--                      every key below belongs to the new epoch, so offsets restart at 1.
--   P:E:heads          hash channel -> latest offset (kept forever: offsets are never reused)
--   P:E:s:CHANNEL      stream of retained events, entry id OFFSET-0, field m = the message
--   P:E:t:CHANNEL      list of the retained events' times (ms), aligned with the stream, so
--                      trimming by age reads small numbers instead of whole events
--   P:E:i:LEN:CHANNEL:ID   idempotency key: the first publish's message, expiring
--   P:c:CHANNEL        the pub/sub channel every node subscribes to
--
-- On Redis Cluster, KEYS[1] is the epoch key of the channel's hash slot (P:{TAG}:epoch, TAG
-- any string of that slot), which replaces P:epoch: a shard that loses its data loses its
-- slots' epochs with it, so its channels, and only they, start a new epoch. Every other key
-- of a channel carries the hash tag {CHANNEL} (P:{CHANNEL}:E:heads, P:{CHANNEL}:E:s:CHANNEL,
-- ...), so a channel lives in one slot; a call then works on one channel only, and events
-- travel by sharded pub/sub (SPUBLISH P:c:{CHANNEL}) in the separate `deliver` mode, which
-- the node calls once the events are on a replica (see cluster.rs).
--
-- A message is "EPOCH OFFSET TIME KIND NAME CHANNEL\nPAYLOAD" (KIND: t text, b binary); names
-- and channels never contain spaces or newlines.
--
-- ARGV: 1 prefix, 2 mode (publish|read|join|deliver), 3 channel ('' for publish and join), 4 fresh
--   epoch, 5 max_len, 6 max_age_ms,
--   publish: 7 idempotency window ms, then per event, in order: channel, name, kind, payload,
--            message id ('' for none)
--   read:    7 after, 8 limit
--   join:    7 limit, then per channel: channel, from ('' head only, 'e' the oldest retained
--            event, else the offset to read after)
--   deliver: 7... the messages to send on the channel's sharded pub/sub channel (Cluster)
-- Replies are arrays of strings:
--   publish: per event: '0' new, message, events the channel retains | '1' duplicate,
--            message, '0'
--   read:    {epoch, head, oldest retained offset, messages after `after`...}
--   join:    {epoch, then per channel: head, oldest retained offset, count, count messages}
--   deliver: {}

-- Redis before 5 replicates scripts verbatim and then refuses writes after TIME; replicating
-- the effects instead is the default since Redis 5 (and the call a no-op there).
if redis.replicate_commands then
  redis.replicate_commands()
end

local prefix, mode = ARGV[1], ARGV[2]
local max_len, max_age = tonumber(ARGV[5]), tonumber(ARGV[6])
local cluster = #KEYS > 0

if mode == 'deliver' then
  for i = 7, #ARGV do
    redis.call('SPUBLISH', prefix .. ':c:{' .. ARGV[3] .. '}', ARGV[i])
  end
  return {}
end

local epoch_key = prefix .. ':epoch'
if cluster then
  epoch_key = KEYS[1]
end
local epoch = redis.call('GET', epoch_key)
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', epoch_key, epoch)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- The channel the helpers below work on; join moves it from channel to channel.
local channel, base, hkey, skey, tkey, head
local function use(name)
  channel = name
  if cluster then
    base = prefix .. ':{' .. channel .. '}:' .. epoch
  else
    base = prefix .. ':' .. epoch
  end
  hkey = base .. ':heads'
  skey = base .. ':s:' .. channel
  tkey = base .. ':t:' .. channel
  head = tonumber(redis.call('HGET', hkey, channel) or '0')
end

local function int(n)
  return string.format('%d', n)
end

-- Applies the retention; returns how many events are retained.
local function prune()
  local n = redis.call('LLEN', tkey)
  if n > max_len then
    redis.call('LTRIM', tkey, n - max_len, -1)
    n = max_len
  end
  local cutoff = now - max_age
  local expired = 0
  -- Most calls expire nothing: one look at the oldest time tells.
  local oldest_time = redis.call('LINDEX', tkey, 0)
  while oldest_time and tonumber(oldest_time) < cutoff and expired < n do
    local times = redis.call('LRANGE', tkey, expired, expired + 63)
    local stop = false
    for _, time in ipairs(times) do
      if tonumber(time) >= cutoff then
        stop = true
        break
      end
      expired = expired + 1
    end
    if stop or #times == 0 then
      break
    end
  end
  if expired > 0 then
    redis.call('LTRIM', tkey, expired, -1)
    n = n - expired
  end
  -- Entries below the oldest retained offset go; XTRIM MINID keeps ids >= the one given.
  redis.call('XTRIM', skey, 'MINID', int(head - n + 1) .. '-0')
  return n
end

-- Appends to `reply` the retained messages after `after`, at most `limit` of them; returns how
-- many it appended.
local function page(reply, after, limit, oldest)
  if limit <= 0 or after + 1 < oldest or after >= head then
    return 0
  end
  local entries = redis.call('XRANGE', skey, int(after + 1) .. '-0', '+', 'COUNT', limit)
  for _, entry in ipairs(entries) do
    reply[#reply + 1] = entry[2][2]
  end
  return #entries
end

if mode == 'join' then
  -- One call answers every channel of a subscribe: a round trip per channel would make
  -- resuming many channels slow.
  local limit = tonumber(ARGV[7])
  local reply = {epoch}
  for i = 8, #ARGV - 1, 2 do
    use(ARGV[i])
    local from = ARGV[i + 1]
    local oldest = head - prune() + 1
    local at = #reply
    reply[at + 1], reply[at + 2], reply[at + 3] = int(head), int(oldest), '0'
    local count = 0
    if from == 'e' then
      count = page(reply, oldest - 1, limit, oldest)
    elseif from ~= '' then
      count = page(reply, tonumber(from), limit, oldest)
    end
    reply[at + 3] = int(count)
  end
  return reply
end

if mode == 'publish' then
  -- A batch: the node sends the publishes queued while its previous batch was in the air in
  -- one call, so the script's fixed cost is paid once per batch.
  local window = tonumber(ARGV[7])
  local reply = {}
  for i = 8, #ARGV - 4, 5 do
    use(ARGV[i])
    local name, kind, payload, id = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    local ikey = nil
    local first = nil
    if id ~= '' then
      ikey = base .. ':i:' .. int(#channel) .. ':' .. channel .. ':' .. id
      first = redis.call('GET', ikey)
    end
    if first then
      reply[#reply + 1], reply[#reply + 2], reply[#reply + 3] = '1', first, '0'
    else
      head = redis.call('HINCRBY', hkey, channel, 1)
      local retained = 0
      local msg = epoch .. ' ' .. int(head) .. ' ' .. int(now) .. ' ' .. kind .. ' ' .. name
        .. ' ' .. channel .. '\n' .. payload
      if max_len > 0 then
        redis.call('XADD', skey, int(head) .. '-0', 'm', msg)
        redis.call('RPUSH', tkey, int(now))
        retained = prune()
        -- A channel that goes quiet lets its history expire by itself.
        redis.call('PEXPIRE', skey, max_age + 1000)
        redis.call('PEXPIRE', tkey, max_age + 1000)
      end
      if ikey and window > 0 then
        redis.call('SET', ikey, msg, 'PX', window)
      end
      if not cluster then
        redis.call('PUBLISH', prefix .. ':c:' .. channel, msg)
      end
      -- The retained count feeds the node's history gauge without another round trip.
      reply[#reply + 1], reply[#reply + 2], reply[#reply + 3] = '0', msg, int(retained)
    end
  end
  return reply
end

use(ARGV[3])

-- read
local after, limit = tonumber(ARGV[7]), tonumber(ARGV[8])
local oldest = head - prune() + 1
local reply = {epoch, int(head), int(oldest)}
page(reply, after, limit, oldest)
return reply
