-- Scenarios against a real livebridge (started by runtime-smol/tests/lua_client.rs).
local check = require 'check'
local socket = require 'socket'
local WebSocketClient = require 'WebSocketClient'
local SocketTransport = require 'SocketTransport'
local test, eq, ok, same = check.test, check.eq, check.ok, check.same

local live = {}

local T = SocketTransport.new({ logLevel = os.getenv('LUA_CLIENT_LOG') or 'warn' })
local URL

-- A line for the Rust harness.
local function say(line)
  print('@@ ' .. line)
  io.stdout:flush()
end

local function api(method, path, body)
  local status, text
  if method == 'GET' then
    status, text = T.get(URL .. path, 10)
  else
    status, text = T.post(URL .. path, T.encode(body), 10)
  end
  ok(status, 'request ' .. path .. ': ' .. tostring(text))
  return status, T.decode(text)
end

local function publish(events)
  local status, reply = api('POST', '/api/events', events)
  eq(status, 200, 'publish: ' .. check.show(reply))
  return reply
end

local function client_entry(id)
  local _, reply = api('GET', '/ws/clients')
  for _, c in ipairs(reply.clients) do
    if c.id == id then
      return c
    end
  end
  return nil
end

local function new_client(options, transport)
  local o = { transport = transport or T, baseUrl = URL, autoStart = false, pollWait = 1 }
  for k, v in pairs(options or {}) do
    o[k] = v
  end
  return WebSocketClient.new(o)
end

-- Steps `c` in real time until cond() or `seconds` pass. Returns cond().
local function step_until(c, cond, seconds)
  local deadline = socket.gettime() + seconds
  while socket.gettime() < deadline do
    if cond() then
      return true
    end
    local continue, delay = c:step()
    if not continue then
      break
    end
    if delay and delay > 0 then
      socket.sleep(math.min(delay, deadline - socket.gettime(), 0.5))
    end
  end
  return cond() and true or false
end

-- Checks that `events` (one channel's, as delivered to the application) have consecutive
-- offsets, each once, in order, from `first` (or from the first event's).
local function contiguous(events, what, first)
  local offsets, expected = {}, {}
  first = first or (events[1] and events[1].offset)
  for i, e in ipairs(events) do
    offsets[i] = e.offset
    expected[i] = first + i - 1
  end
  same(offsets, expected, what .. ': offsets')
end

local function uuid(s)
  return type(s) == 'string' and string.find(s, '^%x+%-%x+%-4%x+%-%x+%-%x+$') ~= nil
end

---------------------------------------------------------------------------------------------

local scenarios = {}

function scenarios.events()
  local M = WebSocketClient
  local oldId

  test('events: the module API connects as lightroom, subscribed to jobs, system, photos', function()
    local client = M.init({ transport = T, baseUrl = URL, autoStart = false, pollWait = 2, clientName = 'LR test' })
    eq(M.isConnected(), false)
    eq(M.step(), true)
    eq(M.isConnected(), true)
    ok(uuid(M.getClientId()), 'client id ' .. tostring(M.getClientId()))
    local entry = client_entry(M.getClientId())
    ok(entry, 'listed in /ws/clients')
    eq(entry.client_type, 'lightroom')
    eq(entry.client_name, 'LR test')
    same(entry.subscriptions, { 'jobs', 'photos', 'system' })
    local established
    M.addEventListener('connection_established', function(m) established = m end)
    ok(step_until(client, function() return established end, 5), 'connection_established')
    eq(established.client_id, M.getClientId())
  end)

  test('events: receives each event type of its channels, in order, with their fields', function()
    local received, order = {}, {}
    local types = { 'job_created', 'job_started', 'job_progress', 'job_completed', 'job_failed',
      'photo_imported', 'photo_analyzed', 'photo_approved', 'system_status', 'resource_warning',
      'error_occurred', 'session_created' }
    for _, t in ipairs(types) do
      M.addEventListener(t, function(e) received[t] = e end)
    end
    local function onAny(e) order[#order + 1] = e.type end
    M.addEventListener('*', onAny)
    local handled
    M.registerHandler('photo_approved', function(m) handled = m end)
    publish({
      { type = 'job_created', job_id = 'j1', photo_id = 1, priority = 'high' },
      { type = 'job_started', job_id = 'j1', photo_id = 1 },
      { type = 'job_progress', job_id = 'j1', stage = 'analyzing', progress = 45.5, message = 'Analyzing image quality' },
      { type = 'session_created', session_id = 3, session_name = 'not subscribed' },
      { type = 'job_completed', job_id = 'j1', photo_id = 1, result = { score = 0.9, tags = { 'a', 'b' } } },
      { type = 'job_failed', job_id = 42, error_message = 'out of memory', error_details = { stage = 'export' } },
      { type = 'photo_imported', photo_id = 7, session_id = 3, file_name = 'IMG_0001.CR3', file_path = '/photos/IMG_0001.CR3' },
      { type = 'photo_analyzed', photo_id = 7, ai_score = 4.25 },
      { type = 'photo_approved', photo_id = 7 },
      { type = 'system_status', status = { cpu = 45.2, gpu_temp = 62 } },
      { type = 'resource_warning', resource_type = 'memory', current_value = 91, threshold = 90 },
      { type = 'error_occurred', error_type = 'io', error_message = 'disk full', photo_id = 'p7' },
    })
    ok(step_until(M.getDefaultClient(), function() return received.error_occurred end, 10), 'all arrived')
    same(order, { 'job_created', 'job_started', 'job_progress', 'job_completed', 'job_failed', 'photo_imported',
      'photo_analyzed', 'photo_approved', 'system_status', 'resource_warning', 'error_occurred' })
    eq(received.session_created, nil, 'not subscribed to sessions')
    eq(received.job_created.priority, 'high')
    eq(received.job_progress.progress, 45.5)
    eq(received.job_progress.message, 'Analyzing image quality')
    ok(string.find(received.job_progress.timestamp, '^%d%d%d%d%-%d%d%-%d%dT.*Z$'), received.job_progress.timestamp)
    same(received.job_completed.result, { score = 0.9, tags = { 'a', 'b' } })
    eq(received.job_failed.job_id, 42)
    eq(received.photo_imported.file_name, 'IMG_0001.CR3')
    eq(received.photo_analyzed.ai_score, 4.25)
    eq(received.system_status.status.gpu_temp, 62)
    eq(received.resource_warning.current_value, 91)
    eq(received.error_occurred.photo_id, 'p7')
    eq(handled and handled.photo_id, 7, 'handler')
    M.removeEventListener('*', onAny)
  end)

  test('events: a long poll delivers an event the moment it is published', function()
    local client = M.getDefaultClient()
    client.opts.pollWait = 10
    local got
    local function onStatus(e)
      if e.status == 'from-rust' then
        got = socket.gettime()
      end
    end
    M.addEventListener('system_status', onStatus)
    -- Drain, so that the next poll waits.
    step_until(client, function() return false end, 0.2)
    local started = socket.gettime()
    say('publish system_status') -- the harness publishes it 0.5 s later
    ok(step_until(client, function() return got end, 9), 'system_status from the harness arrived')
    local latency = got - started
    ok(latency < 3, 'arrived after ' .. latency .. ' s, not at the end of a 10 s wait')
    M.removeEventListener('system_status', onStatus)
    client.opts.pollWait = 2
  end)

  test('events: sendJobProgress, sendJobComplete and sendError are published to subscribers', function()
    local sent, reply = M.sendJobProgress('lua-job-1', 'processing', 50, 'Applying HSL adjustments')
    eq(sent, true, 'sendJobProgress: ' .. check.show(reply))
    eq(reply.type, 'published')
    eq(reply.event, 'job_progress')
    eq(reply.channel, 'jobs')
    ok(reply.recipients >= 1, 'the WebSocket client is a recipient')
    eq((M.sendJobComplete('lua-job-1', true, { preset = 'Portrait', score = 0.9 }, 'photo-9')), true)
    eq((M.sendJobComplete('lua-job-2', false, { error_message = 'out of memory', photo_id = 12, stage = 'export' })), true)
    local errorSent, errorReply = M.sendError('processing_error', 'Failed to apply settings',
      { photo_id = 'photo123', job_id = 'lua-job-1' })
    eq(errorSent, true)
    eq(errorReply.channel, 'system')
    local refused, why = M.sendJobProgress('lua-job-3', 'processing', 'fifty')
    eq(refused, false)
    ok(string.find(tostring(why), 'progress'), 'the reason names the field: ' .. tostring(why))
    -- The sender does not get its own events back.
    local own = false
    M.addEventListener('job_progress', function(e) if e.job_id == 'lua-job-1' then own = true end end)
    local marker
    M.addEventListener('job_created', function(e) if e.job_id == 'marker' then marker = e end end)
    publish({ type = 'job_created', job_id = 'marker', photo_id = 0 })
    ok(step_until(M.getDefaultClient(), function() return marker end, 5), 'marker')
    eq(own, false, 'own event not echoed')
    -- Its own events' offsets (from the published replies) are no gap: the marker, right
    -- after them, is delivered without a recovery, and the position is the marker's.
    local stats = M.getStats()
    eq(stats.gaps, 0, 'gaps')
    eq(stats.recoveries, 0, 'recoveries')
    same(M.getPositions().jobs, { offset = marker.offset, epoch = marker.epoch })
    same(M.getPositions().system, { offset = errorReply.offset, epoch = errorReply.epoch },
      'system: the position of its own error_occurred, the latest there')
    say('sent')
  end)

  test('events: disconnect ends the session', function()
    oldId = M.getClientId()
    local notice
    M.addEventListener('disconnected', function(e) notice = e end)
    eq(M.disconnect(), true)
    eq(M.isConnected(), false)
    eq(M.getClientId(), nil)
    eq(notice.client_id, oldId)
    local status = T.get(URL .. '/ws/poll?client_id=' .. oldId, 5)
    eq(status, 404, 'the session is gone')
    eq(client_entry(oldId), nil)
  end)
end

function scenarios.outage()
  -- A transport that fails every request while `down`, like an unreachable server.
  local down = false
  local failures = 0
  local W = {}
  for k, v in pairs(T) do
    W[k] = v
  end
  W.get = function(...)
    if down then
      failures = failures + 1
      return nil, 'simulated outage'
    end
    return T.get(...)
  end
  local handshakes = {}
  W.post = function(url, body, timeout)
    if down then
      failures = failures + 1
      return nil, 'simulated outage'
    end
    local status, text = T.post(url, body, timeout)
    if string.find(url, '/ws/handshake$') then
      handshakes[#handshakes + 1] = { request = T.decode(body), reply = text and T.decode(text) }
    end
    return status, text
  end

  test('outage: shorter than stale_after resumes the same client_id and gets what was queued', function()
    local c = new_client({ reconnectDelay = 0.2, maxReconnectDelay = 0.8, maxReconnectAttempts = 20 }, W)
    local got, notices, events = {}, {}, {}
    c:addEventListener('job_progress', function(e)
      got[#got + 1] = e.progress
      events[#events + 1] = e
    end)
    for _, n in ipairs({ 'connected', 'disconnected', 'reconnecting', 'session_renewed' }) do
      c:addEventListener(n, function() notices[#notices + 1] = n end)
    end
    local established
    c:addEventListener('connection_established', function() established = true end)
    ok(c:connect(), 'connected')
    ok(step_until(c, function() return established end, 5), 'drained')
    local id = c:getClientId()
    down = true
    local outageStarted = socket.gettime()
    c:step()
    eq(c:getState(), 'reconnecting')
    -- Events published during the outage wait in the session's queue.
    publish({
      { type = 'job_progress', job_id = 'o1', stage = 'a', progress = 10 },
      { type = 'job_progress', job_id = 'o1', stage = 'b', progress = 20 },
      { type = 'job_progress', job_id = 'o1', stage = 'c', progress = 30 },
    })
    step_until(c, function() return false end, 1.2)
    ok(failures >= 3, 'it kept trying (' .. failures .. ' failed requests)')
    eq(c:isConnected(), false)
    down = false
    ok(step_until(c, function() return #got == 3 end, 5), 'queued events received')
    ok(socket.gettime() - outageStarted < 4, 'the outage stayed under stale_after (4 s)')
    eq(c:getClientId(), id, 'same client_id')
    -- The resume carried the positions: the hub replayed the three instead of its queued
    -- copies, so nothing arrives twice.
    local resume = handshakes[#handshakes]
    eq(resume.request.client_id, id)
    eq(resume.request.since.jobs.offset, 0, 'since: ' .. check.show(resume.request.since))
    same(resume.reply.recovered, { jobs = true, photos = true, system = true })
    step_until(c, function() return false end, 0.5)
    same(got, { 10, 20, 30 })
    contiguous(events, 'jobs', 1)
    eq(c:getStats().resumes, 1)
    eq(c:getStats().sessions, 1)
    eq(notices[1], 'connected')
    eq(notices[2], 'disconnected')
    eq(notices[3], 'reconnecting')
    eq(notices[#notices], 'connected')
    for _, n in ipairs(notices) do
      ok(n ~= 'session_renewed', 'no new session')
    end
    local entry = client_entry(id)
    same(entry.subscriptions, { 'jobs', 'photos', 'system' })
    c:disconnect()
  end)

  test('outage: longer than stale_after gets a new session that recovers what was published meanwhile', function()
    local c = new_client({ reconnectDelay = 0.5, maxReconnectDelay = 1, maxReconnectAttempts = 20 }, W)
    local renewed, failed
    local jobs, system = {}, {}
    c:addEventListener('session_renewed', function(e) renewed = e end)
    c:addEventListener('recovery_failed', function(e) failed = e end)
    c:addEventListener('job_created', function(e) jobs[#jobs + 1] = e end)
    c:addEventListener('system_status', function(e) system[#system + 1] = e end)
    ok(c:connect(), 'connected')
    local id = c:getClientId()
    -- Positions other than 0, so that the recovery has a real starting point.
    publish({ { type = 'job_created', job_id = 'before', photo_id = 0 }, { type = 'system_status', status = 'before' } })
    ok(step_until(c, function() return #jobs == 1 and #system == 1 end, 5), 'events before the outage')
    down = true
    c:step()
    -- Queued for the old session, which is evicted with them...
    publish({
      { type = 'job_created', job_id = 'during-1', photo_id = 1 },
      { type = 'system_status', status = 'during' },
      { type = 'job_created', job_id = 'during-2', photo_id = 2 },
    })
    ok(step_until(c, function() return client_entry(id) == nil end, 10), 'the old session was evicted (stale_after 4 s)')
    -- ... and published while there is no session at all.
    publish({ { type = 'job_created', job_id = 'during-3', photo_id = 3 }, { type = 'job_created', job_id = 'during-4', photo_id = 4 } })
    down = false
    ok(step_until(c, function() return renewed and #jobs >= 5 end, 5), 'session renewed, missed events recovered')
    eq(renewed.previous_client_id, id)
    ok(c:getClientId() ~= id, 'a new client_id')
    local entry = client_entry(c:getClientId())
    eq(entry.client_type, 'lightroom')
    same(entry.subscriptions, { 'jobs', 'photos', 'system' })
    publish({ type = 'job_created', job_id = 'after', photo_id = 5 })
    ok(step_until(c, function() return #jobs >= 6 end, 5), 'events flow on the new session')
    step_until(c, function() return false end, 0.5)
    local ids = {}
    for i, e in ipairs(jobs) do
      ids[i] = e.job_id
    end
    same(ids, { 'before', 'during-1', 'during-2', 'during-3', 'during-4', 'after' })
    contiguous(jobs, 'jobs')
    eq(#system, 2, 'system_status before and during')
    contiguous(system, 'system', 1)
    eq(failed, nil, 'nothing was beyond recovery')
    eq(c:getStats().recoveries, 1)
    c:disconnect()
  end)
end

function scenarios.restart()
  test('restart: after a server restart the client gets a new session, recovery_failed, then live events', function()
    local c = new_client({ reconnectDelay = 0.25, maxReconnectDelay = 1, maxReconnectAttempts = 60 })
    local renewed, lost, got
    local order, failures = {}, {}
    c:addEventListener('session_renewed', function(e) renewed = e end)
    c:addEventListener('disconnected', function(e) lost = e end)
    c:addEventListener('recovery_failed', function(e)
      failures[e.channel] = e
      order[#order + 1] = 'recovery_failed:' .. e.channel
    end)
    c:addEventListener('job_created', function(e)
      order[#order + 1] = e.job_id
      if e.job_id == 'after-restart' then got = e end
    end)
    ok(c:connect(), 'connected')
    local id = c:getClientId()
    publish({ type = 'job_created', job_id = 'before-restart', photo_id = 0 })
    ok(step_until(c, function() return #order == 1 end, 5), 'an event before the restart')
    local before = c:getPositions().jobs
    eq(before.offset, 1)
    say('restart') -- the harness stops the server and starts a new one on the same port
    ok(step_until(c, function() return renewed end, 30), 'a new session after the restart')
    -- The restart lost the history (a new epoch): the application is told to reload.
    for _, channel in ipairs({ 'jobs', 'photos', 'system' }) do
      local notice = failures[channel]
      ok(notice, 'recovery_failed for ' .. channel)
      ok(notice.positions[channel].epoch ~= before.epoch, 'a new epoch')
      eq(notice.positions[channel].offset, 0)
    end
    same(c:getPositions().jobs, failures.jobs.positions.jobs, 'the new position adopted')
    ok(lost, 'the loss was noticed: ' .. check.show(lost))
    eq(renewed.previous_client_id, id)
    ok(uuid(c:getClientId()) and c:getClientId() ~= id, 'new id ' .. tostring(c:getClientId()))
    local entry = client_entry(c:getClientId())
    ok(entry, 'known to the new server')
    eq(entry.client_type, 'lightroom')
    same(entry.subscriptions, { 'jobs', 'photos', 'system' })
    publish({ type = 'job_created', job_id = 'after-restart', photo_id = 1 })
    ok(step_until(c, function() return got end, 5), 'events arrive on the new session')
    eq(got.offset, 1, 'offsets start again in the new epoch')
    same(order, { 'before-restart', 'recovery_failed:jobs', 'recovery_failed:photos', 'recovery_failed:system',
      'after-restart' })
    c:disconnect()
  end)
end

function scenarios.overflow()
  test('overflow: a full queue reports dropped messages, and they are recovered (queue_limit 3)', function()
    local c = new_client()
    local order, jobs = {}, {}
    c:addEventListener('messages_dropped', function(e) order[#order + 1] = 'dropped:' .. e.dropped end)
    c:addEventListener('job_created', function(e)
      order[#order + 1] = e.job_id
      jobs[#jobs + 1] = e
    end)
    ok(c:connect(), 'connected')
    local established
    c:addEventListener('connection_established', function() established = true end)
    ok(step_until(c, function() return established end, 5), 'drained')
    local events = {}
    for i = 1, 8 do
      events[i] = { type = 'job_created', job_id = 'q' .. i, photo_id = i }
    end
    publish(events)
    -- The poll brings q6..q8 and dropped = 5; q6 is past a gap, so the client subscribes with
    -- its positions and the hub replays q1..q8 (one queue item, so it fits in 3).
    ok(step_until(c, function() return #order >= 9 end, 5), 'all 8 events: ' .. check.show(order))
    step_until(c, function() return false end, 0.5)
    same(order, { 'dropped:5', 'q1', 'q2', 'q3', 'q4', 'q5', 'q6', 'q7', 'q8' })
    contiguous(jobs, 'jobs', 1)
    eq(c:getStats().dropped, 5)
    eq(c:getStats().recoveries, 1)
    -- Reported once.
    publish({ type = 'job_created', job_id = 'q9', photo_id = 9 })
    ok(step_until(c, function() return #order >= 10 end, 5), 'q9')
    same(order, { 'dropped:5', 'q1', 'q2', 'q3', 'q4', 'q5', 'q6', 'q7', 'q8', 'q9' })
    local _, stats = api('GET', '/websocket/stats')
    ok(stats.messages_dropped >= 5, 'server stats: ' .. tostring(stats.messages_dropped))
    c:disconnect()
  end)
end

function live.register(url, scenario)
  URL = string.gsub(url, '/+$', '')
  local s = scenarios[scenario or '']
  if not s then
    test('scenario', function()
      error('unknown scenario ' .. tostring(scenario) .. ' (events, outage, restart, overflow)')
    end)
    return
  end
  s()
end

return live
