-- Run once per connection (livebridge cluster mode, broker.rs): detects that Redis restarted
-- since the cluster last wrote (its run_id changed) and, unless the operator vouches for its
-- persistence, starts every channel over in a new epoch, because a Redis restored from an
-- older snapshot would otherwise give offsets again that clients already hold.
-- KEYS[1] P:runid  KEYS[2] P:epoch  KEYS[3] P:channels
-- ARGV[1] run_id  ARGV[2] a fresh epoch  ARGV[3] '1' to trust persistence  ARGV[4] prefix
-- Returns 0 (same Redis), 1 (first start, or persistence trusted), 2 (epochs bumped).
local seen = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'NX')
if seen == ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
if not seen or ARGV[3] == '1' then return 1 end
redis.call('SET', KEYS[2], ARGV[2])
for _, channel in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  redis.call('HSET', ARGV[4] .. ':ch:' .. channel .. ':meta', 'e', ARGV[2], 's', 0)
  redis.call('DEL', ARGV[4] .. ':ch:' .. channel .. ':log')
end
return 2
