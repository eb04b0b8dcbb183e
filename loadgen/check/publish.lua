-- publish.lua: wrk script for the publishing side of the independent throughput check of
-- livebridge-load (see docs/performance.md). Sends marked `job_progress` events at a fixed
-- total rate, RATE events/s over all of a thread's connections (one wrk thread: -t1), through
-- PUBLISH_PATH: `api-events` (POST /api/events) or `ws-broadcast` (POST /ws/broadcast to
-- CHANNEL), BATCH events per request (a JSON array; api-events only). The schedule is kept with LuaJIT's FFI clock: each request takes the next slot of
-- 1/RATE s and waits (wrk's `delay`) until it is due, so a slow reply does not lower the
-- offered rate until every connection is busy.
--
--   RATE=1000 PUBLISH_PATH=api-events wrk -t1 -c4 -d10s -s publish.lua http://127.0.0.1:PORT
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } timespec_t;
  int clock_gettime(int clk, timespec_t *ts);
]]
local ts = ffi.new("timespec_t")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local rate = tonumber(os.getenv("RATE") or "1000")
local path = os.getenv("PUBLISH_PATH") or "api-events"
local channel = os.getenv("CHANNEL") or "jobs"
local batch = tonumber(os.getenv("BATCH") or "1")
local interval = 1000 * batch / rate
local next_slot = nil
local seq = 0

local event = '{"type":"job_progress","job_id":"load","stage":"s","progress":1,"message":"lg0.%d.0.xx"}'

function delay()
  local t = now_ms()
  if next_slot == nil then next_slot = t end
  local slot = next_slot
  next_slot = next_slot + interval
  local wait = slot - t
  if wait < 1 then return 0 end
  return math.floor(wait)
end

function request()
  local events = {}
  for i = 1, batch do
    seq = seq + 1
    events[i] = string.format(event, seq)
  end
  local body = table.concat(events, ",")
  if batch > 1 then body = "[" .. body .. "]" end
  local target = "/api/events"
  if path == "ws-broadcast" then
    target = "/ws/broadcast"
    body = '{"channel":"' .. channel .. '","message":' .. body .. '}'
  end
  return wrk.format("POST", target, {["Content-Type"] = "application/json"}, body)
end

local non200 = 0
function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    if non200 <= 3 then io.stderr:write("publish answered " .. status .. ": " .. body .. "\n") end
  end
end
