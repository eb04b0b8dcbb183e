-- Publishes a batch of channel events atomically (livebridge cluster mode, broker.rs).
-- KEYS[1] P:epoch  KEYS[2] P:channels  then per event i: KEYS[1+2i] meta_i, KEYS[2+2i] log_i
-- ARGV[1] P:events (Pub/Sub channel)  ARGV[2] a fresh epoch  ARGV[3] now (unix ms)
-- ARGV[4] history size  ARGV[5] history TTL (ms)  ARGV[6] origin "<node>:<batch>"  ARGV[7] n
-- then per event i: ARGV[6+2i] channel, ARGV[7+2i] body (JSON without its position)
-- Returns {offset_1, epoch_1, offset_2, epoch_2, ...}.
local default = redis.call('GET', KEYS[1])
if not default then
  default = ARGV[2]
  redis.call('SET', KEYS[1], default)
end
local now, size, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local out = {}
for i = 1, tonumber(ARGV[7]) do
  local meta, log = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local channel, body = ARGV[6 + 2 * i], ARGV[7 + 2 * i]
  local origin = ARGV[6] .. ':' .. (i - 1)
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then
    -- A channel the cluster knew whose meta is gone starts a new epoch: its old offsets
    -- must not be given again under the same one.
    if redis.call('ZSCORE', KEYS[2], channel) then epoch = ARGV[2] else epoch = default end
    redis.call('DEL', log)
    redis.call('HSET', meta, 'e', epoch, 's', 0)
  end
  local offset = redis.call('HINCRBY', meta, 's', 1)
  if size > 0 and ttl > 0 then
    redis.call('XADD', log, 'MAXLEN', '~', size, offset .. '-0', 't', now, 'o', origin, 'd', body)
    redis.call('PEXPIRE', log, ttl)
  end
  redis.call('ZADD', KEYS[2], now, channel)
  redis.call('PUBLISH', ARGV[1],
    channel .. '\n' .. epoch .. '\n' .. offset .. '\n' .. now .. '\n' .. origin .. '\n' .. body)
  out[#out + 1] = offset
  out[#out + 1] = epoch
end
-- Channels without a publish for 30 days are forgotten.
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 2592000000)
return out
