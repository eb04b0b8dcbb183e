-- Unit tests without a server: json.lua, and WebSocketClient against tests/fake.lua (a
-- virtual clock, so backoff and ping timing are checked without sleeping).
local check = require 'check'
local json = require 'json'
local fake = require 'fake'
local WebSocketClient = require 'WebSocketClient'
local test, eq, ok, same = check.test, check.eq, check.ok, check.same

---------------------------------------------------------------------------------------------
-- json.lua
---------------------------------------------------------------------------------------------

test('json: scalars', function()
  eq(json.encode(nil), 'null')
  eq(json.encode(true), 'true')
  eq(json.encode(false), 'false')
  eq(json.encode(42), '42')
  eq(json.encode(-7), '-7')
  eq(json.encode(45.5), '45.5')
  eq(json.encode(0.1), '0.1')
  eq(json.encode(1e300), '1e+300')
  eq(json.encode(2 ^ 53), '9007199254740992')
  eq(json.decode(json.encode(1 / 3)), 1 / 3, 'full precision')
  eq(json.encode('a"b\\c\n\t\1'), '"a\\"b\\\\c\\n\\t\\u0001"')
  eq(json.encode('héllo ✓'), '"héllo ✓"', 'UTF-8 passes through')
  check.raises(function() json.encode(0 / 0) end, 'cannot encode number')
  check.raises(function() json.encode(math.huge) end, 'cannot encode number')
  check.raises(function() json.encode(print) end, 'cannot encode a function')
end)

test('json: arrays and objects', function()
  eq(json.encode({ 1, 2, 'x' }), '[1,2,"x"]')
  eq(json.encode({ b = 1, a = { c = true } }), '{"a":{"c":true},"b":1}', 'sorted keys')
  eq(json.encode({}), '{}')
  eq(json.encode(json.array()), '[]')
  eq(json.encode(json.object({})), '{}')
  eq(json.encode({ json.null, 2 }), '[null,2]')
  eq(json.encode({ channels = { 'jobs', 'system' } }), '{"channels":["jobs","system"]}')
  check.raises(function() json.encode({ [1] = 1, [3] = 3 }) end, 'keys must be strings')
  check.raises(function() json.encode({ [true] = 1 }) end, 'keys must be strings')
  local t = {}
  t.self = t
  check.raises(function() json.encode(t) end, 'contains itself')
end)

test('json: decode', function()
  local v = json.decode(' {"success": true, "messages": [{"type": "job_progress", "progress": 45.5, "job_id": 12}],'
    .. ' "dropped": 0, "n": null, "neg": -1.5e2, "s": "a\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"} ')
  eq(v.success, true)
  eq(v.messages[1].type, 'job_progress')
  eq(v.messages[1].progress, 45.5)
  eq(v.messages[1].job_id, 12)
  eq(v.dropped, 0)
  eq(v.n, json.null)
  eq(v.neg, -150)
  eq(v.s, 'a"\\/\b\f\n\r\t' .. 'é' .. '\240\159\152\128')
  same(json.decode('[]'), {})
  eq(json.encode(json.decode('[]')), '[]', 'decoded arrays stay arrays')
  eq(json.encode(json.decode('{}')), '{}')
  same(json.decode('[1,[2,[3]],{"a":[]}]'), { 1, { 2, { 3 } }, { a = {} } })
  eq(json.decode('"\\u0041"'), 'A')
  eq(json.decode('0'), 0)
end)

test('json: decode errors', function()
  for _, bad in ipairs({ '', '{', '[1,]', '{"a":1,}', '{"a" 1}', '{a:1}', 'tru', 'nul', '"abc',
    '01', '1.', '1e', '-', '"\\x"', '"\\u12"', '[1] x', '"a\nb"', "'a'" }) do
    check.raises(function() json.decode(bad) end, 'json.decode', 'decode ' .. string.format('%q', bad))
  end
  check.raises(function() json.decode(string.rep('[', 600) .. string.rep(']', 600)) end, 'too deep')
  check.raises(function() json.decode(nil) end, 'expected a string')
  local _, err = pcall(json.decode, '{\n  "a": x}')
  ok(string.find(err, 'line 2 column 8'), err)
end)

test('json: round trip of a catalogue event', function()
  local event = { type = 'job_completed', job_id = 'job123', result = { score = 0.875, tags = { 'a', 'b' }, ok = true } }
  same(json.decode(json.encode(event)), event)
end)

---------------------------------------------------------------------------------------------
-- WebSocketClient with the fake server
---------------------------------------------------------------------------------------------

local function client_for(f, options)
  local o = { transport = f.transport, baseUrl = 'http://fake', autoStart = false }
  for k, v in pairs(options or {}) do
    o[k] = v
  end
  return WebSocketClient.new(o)
end

-- Steps the client, sleeping (virtually) as it asks, until `cond()` or `limit` steps.
local function drive(f, c, cond, limit)
  for _ = 1, limit or 100 do
    if cond and cond() then
      return true
    end
    local continue, delay = c:step()
    if not continue then
      return cond and cond() or false
    end
    if delay and delay > 0 then
      f.transport.sleep(delay)
    end
  end
  return cond and cond() or false
end

test('client: connects with handshake, register, subscribe', function()
  local f = fake.new()
  local c = client_for(f)
  local events = {}
  c:addEventListener('connected', function(e) events[#events + 1] = e end)
  eq(c:getState(), 'idle')
  eq(c:isConnected(), false)
  local continue = c:step()
  eq(continue, true)
  eq(c:isConnected(), true)
  eq(c:getClientId(), 'c1')
  eq(f.requests[1].path, '/ws/handshake')
  same(f.requests[1].body, { client_type = 'lightroom', client_name = 'Lightroom Classic Plugin', protocol_version = '1.0' })
  eq(f.requests[2].body.message.type, 'register')
  eq(f.requests[2].body.message.client_type, 'lightroom')
  same(f.requests[3].body.message, { type = 'subscribe', channels = { 'jobs', 'system', 'photos' } })
  same(f.session('c1').subs, { jobs = true, system = true, photos = true })
  eq(#events, 1)
  eq(events[1].resumed, false)
  -- The next step polls with a long-poll wait and gets connection_established.
  local got
  c:addEventListener('connection_established', function(m) got = m end)
  c:step()
  ok(got and got.client_id == 'c1', 'connection_established delivered')
  ok(string.find(f.requests[4].path, '^/ws/poll%?client_id=c1&wait=25$'), f.requests[4].path)
  eq(f.requests[4].timeout, 35, 'poll timeout = wait + requestTimeout')
end)

test('client: custom channels, type and name', function()
  local f = fake.new()
  local c = client_for(f, { channels = { 'jobs', 'export' }, clientName = 'LR test', baseUrl = 'http://fake/' })
  c:connect()
  same(f.requests[3].body.message.channels, { 'jobs', 'export' })
  eq(f.requests[2].body.message.client_name, 'LR test')
  eq(f.requests[1].path, '/ws/handshake', 'trailing slash of baseUrl removed')
end)

test('client: listeners, wildcard, handlers, removal and failing listeners', function()
  local f = fake.new()
  local c = client_for(f)
  c:connect()
  c:step() -- connection_established
  local seen, any, handled = {}, {}, {}
  local function onCreated(e) seen[#seen + 1] = 'created:' .. e.job_id end
  c:addEventListener('job_created', onCreated)
  c:addEventListener('job_created', function() error('listener bug') end)
  c:addEventListener('job_created', function(e) seen[#seen + 1] = 'second:' .. e.job_id end)
  c:addEventListener('*', function(e) any[#any + 1] = e.type end)
  c:registerHandler('job_started', function(m) handled[#handled + 1] = m.job_id end)
  f.push({ type = 'job_created', job_id = 'j1', photo_id = 1 })
  f.push({ type = 'job_started', job_id = 'j1', photo_id = 1 })
  f.push({ type = 'custom', data = 'x' })
  local continue = c:step()
  eq(continue, true, 'a failing listener does not stop the loop')
  same(seen, { 'created:j1', 'second:j1' })
  same(handled, { 'j1' })
  same(any, { 'job_created', 'job_started', 'custom' })
  ok(f.logged('listener for "job_created" failed: .*listener bug'), 'the failure is logged')
  eq(c:removeEventListener('job_created', onCreated), true)
  eq(c:removeEventListener('job_created', onCreated), false)
  c:registerHandler('job_started', function() error('handler bug') end)
  f.push({ type = 'job_created', job_id = 'j2' })
  f.push({ type = 'job_started', job_id = 'j2' })
  c:step()
  same(seen, { 'created:j1', 'second:j1', 'second:j2' })
  ok(f.logged('handler for "job_started" failed'), 'handler failure logged')
  c:registerHandler('job_started', nil)
  eq(c:addEventListener('x', 'not a function'), false)
end)

test('client: backoff 5, 10, 20, 40, 60 (capped) ... then gives up after 10 attempts', function()
  local f = fake.new()
  f.down = true
  local c = client_for(f)
  local delays, failed = {}, nil
  c:addEventListener('reconnecting', function(e) delays[#delays + 1] = e.delay end)
  c:addEventListener('reconnect_failed', function(e) failed = e end)
  local started = f.now
  c:run() -- returns when it gives up; sleeps are virtual
  same(f.times('/ws/handshake'), { 0, 5, 15, 35, 75, 135, 195, 255, 315, 375, 435 })
  same(delays, { 5, 10, 20, 40, 60, 60, 60, 60, 60, 60 })
  eq(failed.attempts, 10)
  ok(string.find(failed.reason, 'connection refused'), failed.reason)
  eq(c:getState(), 'failed')
  eq(f.now - started, 435)
  ok(f.logged('giving up after 10 reconnection attempts'), 'logged')
  eq(c:step(), false, 'a failed client does not step')
  -- reconnect() starts again, with the backoff reset.
  f.down = false
  eq(c:reconnect(), true)
  eq(c:isConnected(), true)
  f.down = true
  delays = {}
  drive(f, c, function() return #delays >= 3 end)
  same(delays, { 5, 10, 20 })
end)

test('client: backoff options are honoured', function()
  local f = fake.new()
  f.down = true
  local c = client_for(f, { reconnectDelay = 0.5, maxReconnectDelay = 3, maxReconnectAttempts = 4 })
  c:run()
  same(f.times('/ws/handshake'), { 0, 0.5, 1.5, 3.5, 6.5 })
end)

test('client: pings every 30 s and long polls in between', function()
  local f = fake.new()
  local c = client_for(f)
  c:connect()
  drive(f, c, function() return f.now - 1000 >= 100 end, 200)
  same(f.times('/ws/send', 'ping'), { 30, 60, 90 })
  -- Poll waits are cut so that pings are on time: 25 s, then the remaining 5 s.
  local waits = {}
  for _, r in ipairs(f.requests) do
    local w = string.match(r.path, 'wait=([%d%.]+)')
    if w and #waits < 4 then
      waits[#waits + 1] = tonumber(w)
    end
  end
  -- (the first poll is answered at once with connection_established)
  same(waits, { 25, 25, 5, 25 })
  eq(c:getStats().pings, 3)
  ok(c.lastPongAt ~= nil, 'pong noted')
end)

test('client: a short outage resumes the same session, subscriptions and queue kept', function()
  local f = fake.new()
  local c = client_for(f, { reconnectDelay = 1, maxReconnectDelay = 4 })
  local notices = {}
  for _, n in ipairs({ 'connected', 'disconnected', 'reconnecting', 'session_renewed' }) do
    c:addEventListener(n, function(e) notices[#notices + 1] = n end)
  end
  local got = {}
  c:addEventListener('job_progress', function(e) got[#got + 1] = e.progress end)
  c:connect()
  c:step()
  f.down = true
  c:step() -- the poll fails
  eq(c:getState(), 'reconnecting')
  f.push({ type = 'job_progress', job_id = 1, stage = 's', progress = 10 })
  f.push({ type = 'job_progress', job_id = 1, stage = 's', progress = 20 })
  drive(f, c, function() return f.now - 1000 >= 5 end)
  f.down = false
  drive(f, c, function() return #got == 2 end)
  eq(c:getClientId(), 'c1', 'same id')
  same(got, { 10, 20 })
  eq(f.count('/ws/send', 'subscribe'), 1, 'no second subscribe on resume')
  eq(f.count('/ws/send', 'register'), 1, 'no second register on resume')
  same(notices, { 'connected', 'disconnected', 'reconnecting', 'reconnecting', 'reconnecting', 'connected' })
  eq(c:getStats().resumes, 1)
end)

test('client: a new session (server restart) re-registers and re-subscribes', function()
  local f = fake.new()
  local c = client_for(f)
  local renewed
  c:addEventListener('session_renewed', function(e) renewed = e end)
  c:connect()
  c:step()
  f.sessions = {} -- the server restarted: it knows nothing
  c:step() -- poll answers 404: handshake again at once, no backoff
  eq(c:getState(), 'reconnecting')
  c:step()
  eq(c:isConnected(), true)
  eq(c:getClientId(), 'c2')
  same(renewed, { type = 'session_renewed', client_id = 'c2', previous_client_id = 'c1' })
  eq(f.requests[#f.requests - 2].body.client_id, 'c1', 'the handshake proposed the old id')
  same(f.session('c2').subs, { jobs = true, system = true, photos = true })
  eq(f.session('c2').client_type, 'lightroom')
end)

test('client: a failure between handshake and subscribe is finished on the resumed session', function()
  local f = fake.new()
  local c = client_for(f, { reconnectDelay = 1 })
  f.failNext['/ws/send'] = 'timeout'
  eq(c:connect(), false)
  eq(c:getState(), 'reconnecting')
  drive(f, c, function() return c:isConnected() end)
  eq(c:getClientId(), 'c1', 'the session of the first handshake is resumed')
  same(f.session('c1').subs, { jobs = true, system = true, photos = true })
end)

test('client: dropped messages are reported', function()
  local f = fake.new()
  local c = client_for(f)
  c:connect()
  c:step()
  f.session('c1').limit = 3
  local order = {}
  c:addEventListener('messages_dropped', function(e) order[#order + 1] = 'dropped:' .. e.dropped end)
  c:addEventListener('job_created', function(e) order[#order + 1] = e.job_id end)
  for i = 1, 5 do
    f.push({ type = 'job_created', job_id = i, photo_id = i })
  end
  c:step()
  same(order, { 'dropped:2', 3, 4, 5 })
  eq(c:getStats().dropped, 2)
end)

test('client: transport errors, garbage answers and raising transports are contained', function()
  local f = fake.new()
  local c = client_for(f, { reconnectDelay = 1 })
  c:connect()
  c:step()
  f.raiseNext = 'boom in transport'
  local continue = c:step()
  eq(continue, true)
  eq(c:getState(), 'reconnecting')
  ok(f.logged('raised: .*boom in transport'), 'logged with the reason')
  drive(f, c, function() return c:isConnected() end)
  -- A body that is not JSON.
  local realGet = f.transport.get
  f.transport.get = function() return 200, '<html>' end
  c:step()
  eq(c:getState(), 'reconnecting')
  ok(f.logged('not JSON'), 'logged')
  f.transport.get = realGet
  drive(f, c, function() return c:isConnected() end)
  eq(c:getClientId(), 'c1')
end)

test('client: send, sendJobProgress, sendJobComplete, sendError shapes', function()
  local f = fake.new()
  local c = client_for(f)
  c:connect()
  local sent, reply = c:sendJobProgress('job123', 'processing', 50, 'Applying HSL')
  eq(sent, true)
  eq(reply.type, 'published')
  c:sendJobComplete('job123', true, { score = 0.9 })
  c:sendJobComplete('job124', true, nil, 77)
  c:sendJobComplete('job125', false, 'out of memory')
  c:sendJobComplete('job126', false, { error_message = 'bad preset', photo_id = 'p1', code = 3 })
  c:sendJobComplete('job127', false)
  c:sendError('processing_error', 'Failed to apply settings', { photo_id = 'photo123', job_id = 'job123' })
  c:sendError('io', 'disk full')
  local p = f.published
  same(p[1], { type = 'job_progress', job_id = 'job123', stage = 'processing', progress = 50, message = 'Applying HSL' })
  same(p[2], { type = 'job_completed', job_id = 'job123', result = { score = 0.9 } })
  same(p[3], { type = 'job_completed', job_id = 'job124', photo_id = 77 })
  same(p[4], { type = 'job_failed', job_id = 'job125', error_message = 'out of memory' })
  same(p[5], { type = 'job_failed', job_id = 'job126', photo_id = 'p1', error_message = 'bad preset', error_details = { code = 3 } })
  same(p[6], { type = 'job_failed', job_id = 'job127', error_message = 'job failed' })
  same(p[7], { type = 'error_occurred', error_type = 'processing_error', error_message = 'Failed to apply settings',
    error_details = { photo_id = 'photo123', job_id = 'job123' }, photo_id = 'photo123', job_id = 'job123' })
  same(p[8], { type = 'error_occurred', error_type = 'io', error_message = 'disk full' })
  -- Refused messages return false and the reason, and are not queued.
  local refused, why = c:send({ type = 'bad' })
  eq(refused, false)
  ok(string.find(why, 'unknown message type'), why)
  eq(c:getStats().outbox, 0)
  eq(c:send('nope'), false)
  eq(c:send({ type = 'x', f = print }), false, 'unencodable message')
end)

test('client: sends while disconnected are queued and flushed in order', function()
  local f = fake.new()
  local c = client_for(f, { reconnectDelay = 1, outboxLimit = 2 })
  c:connect()
  f.down = true
  local sent, why = c:sendJobProgress('j', 'a', 1)
  eq(sent, false)
  ok(string.find(why, 'queued'), why)
  c:step() -- the poll fails too
  c:sendJobProgress('j', 'b', 2)
  c:sendJobProgress('j', 'c', 3) -- the outbox holds 2: 'a' is dropped
  ok(f.logged('outbox full'), 'logged')
  f.down = false
  drive(f, c, function() return c:isConnected() end)
  eq(#f.published, 2)
  eq(f.published[1].stage, 'b')
  eq(f.published[2].stage, 'c')
end)

test('client: disconnect ends the session and the loop', function()
  local f = fake.new()
  local c = client_for(f)
  local reason
  c:addEventListener('disconnected', function(e) reason = e.reason end)
  c:connect()
  eq(c:disconnect(), true)
  eq(reason, 'client disconnect')
  eq(f.requests[#f.requests].path, '/ws/disconnect')
  eq(f.requests[#f.requests].body.client_id, 'c1')
  eq(f.session('c1'), nil)
  eq(c:isConnected(), false)
  eq(c:getClientId(), nil)
  eq(c:step(), false)
  eq(c:run(), true, 'run returns at once')
  eq(c:sendJobProgress('j', 's', 1), false, 'nothing is sent after disconnect')
  -- connect() again makes a new session.
  eq(c:connect(), true)
  eq(c:getClientId(), 'c2')
end)

test('client: disconnect from a handler stops processing the rest of the batch', function()
  local f = fake.new()
  local c = client_for(f)
  c:connect()
  c:step()
  local seen = 0
  c:addEventListener('job_created', function()
    seen = seen + 1
    c:disconnect()
  end)
  f.push({ type = 'job_created', job_id = 1 })
  f.push({ type = 'job_created', job_id = 2 })
  eq(c:step(), true)
  eq(seen, 1)
  eq(c:getState(), 'closed')
end)

test('client: a server without long polls is polled every pollInterval, not in a spin', function()
  local f = fake.new()
  local c = client_for(f, { pollInterval = 1 })
  c:connect()
  c:step()
  local realGet = f.transport.get
  f.transport.get = function(url, timeout)
    return 200, json.encode({ success = true, messages = json.array(), dropped = 0 })
  end
  local _, delay = c:step()
  eq(delay, 1)
  f.transport.get = realGet
end)

test('client: module API before and after init never raises', function()
  local M = WebSocketClient
  eq(M.isConnected(), false)
  eq(M.getClientId(), nil)
  eq(M.sendJobProgress('j', 's', 1), false)
  eq(M.addEventListener('job_created', function() end), true, 'listeners may be added before init')
  eq(M.init({}), false, 'init without transport fails softly')
  eq(M.init({ transport = { get = 1 } }), false)
  local f = fake.new()
  local client = M.init({ transport = f.transport, baseUrl = 'http://fake', autoStart = false })
  ok(client == M.getDefaultClient(), 'init returns the default client')
  eq(M.step(), true)
  eq(M.isConnected(), true)
  eq(M.getClientId(), 'c1')
  eq(M.sendJobProgress('j', 's', 1), true)
  eq(M.disconnect(), true)
  eq(M.isConnected(), false)
  check.raises(function() client.send({ type = 'x' }) end, 'with ":"')
end)

test('client: background task through transport.startTask', function()
  local f = fake.new()
  local started
  f.transport.startTask = function(fn, name)
    started = name
    f.onLongPoll = function()
      f.sessions = f.sessions -- nothing
    end
    -- Run the loop "in the background" until it disconnects itself.
    local c
    c = WebSocketClient.getDefaultClient()
    local n = 0
    c:addEventListener('*', function()
      n = n + 1
      if n >= 1 then
        c:disconnect()
      end
    end)
    fn()
  end
  local client = WebSocketClient.init({ transport = f.transport, baseUrl = 'http://fake' })
  eq(started, 'livebridge client')
  eq(client:getState(), 'closed')
  eq(client.running, false)
end)

---------------------------------------------------------------------------------------------
-- Channel positions and recovery (the fake keeps history like the hub)
---------------------------------------------------------------------------------------------

-- A connected client whose job_created events are recorded by job_id (and notices by kind).
local function recovering_client(f, options)
  local c = client_for(f, options)
  local seen = {}
  c:addEventListener('job_created', function(e) seen[#seen + 1] = e.job_id end)
  for _, notice in ipairs({ 'messages_dropped', 'recovery_failed' }) do
    c:addEventListener(notice, function(e) seen[#seen + 1] = notice end)
  end
  c:connect()
  c:step() -- connection_established
  return c, seen
end

local function job(n)
  return { type = 'job_created', job_id = n, photo_id = n }
end

-- The subscribe messages the client sent, in order.
local function subscribes(f)
  local out = {}
  for _, r in ipairs(f.requests) do
    if r.body and r.body.message and r.body.message.type == 'subscribe' then
      out[#out + 1] = r.body.message
    end
  end
  return out
end

test('recovery: the first positions come from the subscribed reply', function()
  local f = fake.new()
  f.publish('jobs', job(1))
  f.publish('jobs', job(2))
  local c, seen = recovering_client(f)
  same(c:getPositions(), {
    jobs = { offset = 2, epoch = 'epoch-1' },
    system = { offset = 0, epoch = 'epoch-1' },
    photos = { offset = 0, epoch = 'epoch-1' },
  })
  f.publish('jobs', job(3))
  c:step()
  same(seen, { 3 })
  eq(c:getPositions().jobs.offset, 3)
end)

test('recovery: an event at or below the position is a duplicate and is not dispatched', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  local first = f.publish('jobs', job(1))
  local second = f.publish('jobs', job(2))
  c:step()
  f.push(first)
  f.push(second)
  f.publish('jobs', job(3))
  c:step()
  same(seen, { 1, 2, 3 })
  eq(c:getStats().duplicates, 2)
  eq(#subscribes(f), 1, 'duplicates need no recovery')
end)

test('recovery: a gap is not dispatched; a subscribe with since replays it in order', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  f.publish('jobs', job(1))
  f.publish('jobs', job(2))
  f.publish('jobs', job(3))
  table.remove(f.session('c1').queue, 2) -- offset 2 never reaches the client
  c:step()
  same(seen, { 1 }, 'offset 3 is held back by the gap')
  local sent = subscribes(f)
  eq(#sent, 2)
  same(sent[2], {
    type = 'subscribe',
    channels = { 'jobs', 'photos', 'system' },
    since = {
      jobs = { offset = 1, epoch = 'epoch-1' },
      photos = { offset = 0, epoch = 'epoch-1' },
      system = { offset = 0, epoch = 'epoch-1' },
    },
  })
  c:step()
  same(seen, { 1, 2, 3 })
  eq(c:getStats().gaps, 1)
  eq(c:getStats().recoveries, 1)
end)

test('recovery: a poll reply with dropped > 0 recovers every dropped event, once, in order', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  f.session('c1').limit = 3
  for i = 1, 8 do
    f.publish('jobs', job(i))
  end
  c:step()
  same(seen, { 'messages_dropped' }, 'events past the gap wait for the replay')
  eq(subscribes(f)[2].since.jobs.offset, 0)
  c:step()
  same(seen, { 'messages_dropped', 1, 2, 3, 4, 5, 6, 7, 8 })
  eq(c:getStats().dropped, 5, 'the notice still counts what the queue lost')
end)

test('recovery: dropped messages outside channels still re-subscribe with since', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  f.session('c1').dropped = 2 -- e.g. direct messages: nothing of a channel looks missing
  c:step()
  same(seen, { 'messages_dropped' })
  eq(#subscribes(f), 2)
  ok(subscribes(f)[2].since, 'with since')
end)

test('recovery: recovered false emits recovery_failed, adopts the position and goes on', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  local failed
  c:addEventListener('recovery_failed', function(e) failed = e end)
  for i = 1, 5 do
    f.publish('jobs', job(i))
  end
  f.session('c1').queue = { f.history.jobs.events[5] } -- 1..4 lost
  f.trim('jobs', 3) -- and history no longer reaches 1
  c:step()
  same(seen, { 'recovery_failed' })
  eq(failed.channel, 'jobs')
  same(failed.positions.jobs, { offset = 5, epoch = 'epoch-1' })
  ok(failed.reason, 'a reason')
  same(c:getPositions().jobs, { offset = 5, epoch = 'epoch-1' })
  f.publish('jobs', job(6))
  c:step()
  same(seen, { 'recovery_failed', 6 })
  eq(c:getStats().recoveryFailures, 1)
end)

test('recovery: the published reply of its own event advances the position past it', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  f.publish('jobs', job(1)) -- still queued when the client publishes
  local sent, reply = c:sendJobProgress('own', 'processing', 50)
  eq(sent, true)
  eq(reply.offset, 2)
  eq(c:getPositions().jobs.offset, 0, 'offset 1 has not reached the application yet')
  f.publish('jobs', job(3))
  c:step()
  same(seen, { 1, 3 })
  eq(c:getPositions().jobs.offset, 3)
  eq(#subscribes(f), 1, 'its own offset is no gap')
  -- With nothing queued, the position moves at once.
  c:sendJobProgress('own', 'processing', 60)
  eq(c:getPositions().jobs.offset, 4)
  -- A queued event sent after reconnecting advances it too.
  f.down = true
  c:step()
  c:sendJobProgress('own', 'processing', 70)
  f.down = false
  drive(f, c, function() return c:isConnected() end)
  eq(c:getPositions().jobs.offset, 5)
end)

test('recovery: its own events in a replay (the hub replays them) are not dispatched', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  c:addEventListener('job_progress', function(e) seen[#seen + 1] = 'own:' .. e.progress end)
  f.publish('jobs', job(1)) -- queued, then lost
  c:sendJobProgress('own', 'processing', 50) -- offset 2
  f.publish('jobs', job(3))
  table.remove(f.session('c1').queue, 1) -- offset 1 (the queue holds 1 and 3)
  c:step() -- 3 is past the gap
  c:step() -- the replay: 1, 2 (its own), 3
  same(seen, { 1, 3 })
  eq(c:getPositions().jobs.offset, 3)
end)

test('recovery: a resumed session sends since with the handshake and gets what it missed once', function()
  local f = fake.new()
  local c, seen = recovering_client(f, { reconnectDelay = 1 })
  f.publish('jobs', job(1))
  c:step()
  f.down = true
  c:step()
  f.publish('jobs', job(2))
  f.publish('jobs', job(3))
  f.down = false
  drive(f, c, function() return #seen >= 3 end)
  eq(c:getClientId(), 'c1')
  local handshake = f.requests[#f.requests].body
  for i = #f.requests, 1, -1 do
    if f.requests[i].path == '/ws/handshake' then
      handshake = f.requests[i].body
      break
    end
  end
  eq(handshake.client_id, 'c1')
  same(handshake.since.jobs, { offset = 1, epoch = 'epoch-1' })
  drive(f, c, function() return false end, 3)
  same(seen, { 1, 2, 3 })
  eq(#subscribes(f), 1, 'the handshake recovered, no subscribe needed')
end)

test('recovery: a new session subscribes with since and gets what was published meanwhile', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  f.publish('jobs', job(1))
  c:step()
  f.sessions = {} -- evicted; history stays
  f.publish('jobs', job(2))
  drive(f, c, function() return #seen >= 2 end, 5)
  eq(c:getClientId(), 'c2')
  same(subscribes(f)[2].since.jobs, { offset = 1, epoch = 'epoch-1' })
  same(seen, { 1, 2 })
end)

test('recovery: after a restart (new epoch) recovery_failed per channel, then live events', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  local order = {}
  for _, n in ipairs({ 'connected', 'session_renewed', 'recovery_failed' }) do
    c:addEventListener(n, function(e) order[#order + 1] = n .. (e.channel and (':' .. e.channel) or '') end)
  end
  f.publish('jobs', job(1))
  c:step()
  f.restart()
  drive(f, c, function() return c:getClientId() == 'c2' end, 5)
  same(order, { 'connected', 'session_renewed', 'recovery_failed:jobs', 'recovery_failed:photos',
    'recovery_failed:system' })
  same(c:getPositions().jobs, { offset = 0, epoch = 'epoch-2' })
  f.publish('jobs', job(7))
  c:step()
  same(seen, { 1, 'recovery_failed', 'recovery_failed', 'recovery_failed', 7 })
end)

test('recovery: an event of another epoch is a gap; the recovery answer says where to go on', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  f.publish('jobs', job(1))
  c:step()
  local failed
  c:addEventListener('recovery_failed', function(e) failed = e end)
  f.epoch = 'epoch-x' -- the channel's history started over under a live session
  f.history = {}
  f.publish('jobs', job(2))
  f.publish('jobs', job(3))
  c:step()
  -- (the fake's epoch is every channel's, as after a restart: one notice per channel)
  same(seen, { 1, 'recovery_failed', 'recovery_failed', 'recovery_failed' })
  same(failed.positions.jobs, { offset = 2, epoch = 'epoch-x' })
  f.publish('jobs', job(4))
  c:step()
  same(seen, { 1, 'recovery_failed', 'recovery_failed', 'recovery_failed', 4 })
end)

test('recovery: a replay that leaves a hole does not loop: recovery_failed, then on', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  local failed
  c:addEventListener('recovery_failed', function(e) failed = e end)
  for i = 1, 4 do
    f.publish('jobs', job(i))
  end
  f.session('c1').queue = { f.history.jobs.events[4] }
  f.replayOmits[2] = true
  c:step() -- gap: recovery promises 1..4
  c:step() -- the replay brings 1, 3, 4
  same(seen, { 1, 'recovery_failed', 3, 4 })
  eq(failed.channel, 'jobs')
  same(failed.positions.jobs, { offset = 2, epoch = 'epoch-1' })
  eq(#subscribes(f), 2, 'one recovery, not one per poll')
end)

test('recovery: without a position from the hub, the first event gives it', function()
  local f = fake.new()
  local c, seen = recovering_client(f, { channels = {} })
  f.session('c1').subs.jobs = true -- subscribed elsewhere; no subscribed reply seen
  f.publish('jobs', job(1))
  f.publish('jobs', job(2))
  c:step()
  same(seen, { 1, 2 })
  same(c:getPositions(), { jobs = { offset = 2, epoch = 'epoch-1' } })
end)

test('recovery: positions survive disconnect(); connect() recovers what was missed; init() clears them', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  f.publish('jobs', job(1))
  c:step()
  c:disconnect()
  f.publish('jobs', job(2))
  c:connect()
  same(subscribes(f)[2].since.jobs, { offset = 1, epoch = 'epoch-1' })
  c:step()
  same(seen, { 1, 2 })
  c:init({ transport = f.transport, baseUrl = 'http://fake', autoStart = false })
  same(c:getPositions(), {})
end)

test('recovery: channels subscribed with send() are tracked, re-subscribed and forgotten', function()
  local f = fake.new()
  local c, seen = recovering_client(f)
  local sent = c:send({ type = 'subscribe', channels = { 'export' } })
  eq(sent, true)
  same(c:getPositions().export, { offset = 0, epoch = 'epoch-1' })
  f.sessions = {}
  drive(f, c, function() return c:getClientId() == 'c2' end, 5)
  same(subscribes(f)[3].channels, { 'jobs', 'system', 'photos', 'export' })
  ok(f.session('c2').subs.export, 'subscribed again on the new session')
  c:send({ type = 'unsubscribe', channels = { 'export' } })
  eq(c:getPositions().export, nil)
end)

---------------------------------------------------------------------------------------------
-- LrTransport with stand-ins for the Lightroom SDK
---------------------------------------------------------------------------------------------

test('LrTransport: maps LrHttp answers and uses LrTasks', function()
  local calls, logged, sleeps, tasks = {}, {}, {}, {}
  local sdk = {
    LrHttp = {
      get = function(url, headers, timeout)
        calls[#calls + 1] = { 'get', url, headers, timeout }
        if string.find(url, 'down') then
          return nil, { error = { errorCode = 'cannotConnectToHost', name = 'Could not connect to the server.' } }
        end
        return '{"success":true}', { status = 200 }
      end,
      post = function(url, body, headers, method, timeout)
        calls[#calls + 1] = { 'post', url, body, headers, method, timeout }
        return '{"success":false,"error":"unknown client_id"}', { status = 404 }
      end,
    },
    LrTasks = {
      sleep = function(s) sleeps[#sleeps + 1] = s end,
      startAsyncTask = function(fn, name) tasks[#tasks + 1] = name end,
      pcall = function(...) return pcall(...) end,
    },
    LrDate = { currentTime = function() return 123.5 end },
    LrLogger = function(name)
      return {
        enable = function() end,
        info = function(_, m) logged[#logged + 1] = 'info ' .. m end,
        warn = function(_, m) logged[#logged + 1] = 'warn ' .. m end,
        error = function(_, m) logged[#logged + 1] = 'error ' .. m end,
        trace = function(_, m) logged[#logged + 1] = 'trace ' .. m end,
      }
    end,
  }
  _G.import = function(name) return sdk[name] end
  package.loaded.LrTransport = nil
  local t = require('LrTransport').new({ logLevel = 'debug' })
  _G.import = nil
  local status, body = t.get('http://x/ok', 5)
  eq(status, 200)
  eq(body, '{"success":true}')
  eq(calls[1][4], 5, 'timeout passed')
  eq(calls[1][3][1].value, 'application/json')
  status, body = t.get('http://down/', 5)
  eq(status, nil)
  eq(body, 'Could not connect to the server.')
  status, body = t.post('http://x/ws/send', '{}', 7)
  eq(status, 404)
  eq(calls[3][5], 'POST')
  eq(calls[3][6], 7)
  t.sleep(2)
  same(sleeps, { 2 })
  eq(t.clock(), 123.5)
  t.log('warn', 'w')
  t.log('debug', 'd')
  same(logged, { 'warn w', 'trace d' })
  t.startTask(function() end, 'n')
  same(tasks, { 'n' })
  eq(t.pcall, sdk.LrTasks.pcall, 'a yield-safe pcall')
  eq(t.encode({ a = 1 }), '{"a":1}')
  -- The client accepts it.
  local c = WebSocketClient.new({ transport = t, autoStart = false })
  eq(c:getState(), 'idle')
end)

test('SocketTransport: loads with json.lua and with cjson', function()
  local ok1, S = pcall(require, 'SocketTransport')
  if not ok1 then
    print('  (skipped: LuaSocket missing: ' .. tostring(S) .. ')')
    return
  end
  local t = S.new({ logLevel = 'off' })
  eq(t.decode(t.encode({ x = { 1, 2 } })).x[2], 2)
  local status, err = t.get('http://127.0.0.1:1/nothing', 1)
  eq(status, nil)
  ok(err, 'an error text')
  local okc, tc = pcall(S.new, { json = 'cjson', logLevel = 'off' })
  if okc then
    eq(tc.decode('{"a":[1]}').a[1], 1)
  end
end)
