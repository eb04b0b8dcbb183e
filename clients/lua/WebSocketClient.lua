--[[
  WebSocketClient.lua - the livebridge client for the Lightroom Classic plugin (Lua 5.1).

  Lightroom's Lua cannot open a WebSocket, so this client speaks livebridge's HTTP polling
  fallback (docs/protocol.md): POST /ws/handshake, POST /ws/send (register, subscribe, ping,
  catalogue events), GET /ws/poll with a long-poll `wait`, POST /ws/disconnect. The name is
  kept because the plugin already requires it.

  It is written against a small transport table given to init (see README.md):

    transport.get(url, timeout)        -> status, body   (status nil + error text on failure)
    transport.post(url, body, timeout) -> status, body   (body is JSON text)
    transport.sleep(seconds)
    transport.clock()                  -> seconds (any origin, fractions allowed)
    transport.encode(value)            -> JSON text
    transport.decode(text)             -> value
    transport.log(level, message)      -- optional; level is debug/info/warn/error
    transport.startTask(fn, name)      -- optional; runs fn as a background task
    transport.pcall                    -- optional; a pcall that may yield (LrTasks.pcall)

  LrTransport.lua adapts the Lightroom SDK, SocketTransport.lua adapts LuaSocket.

  Nothing here raises into the caller: transport calls, JSON, listeners and handlers run
  under pcall and failures are logged with their reason.

  Channel events reach the application once and in order: the client keeps its position per
  channel and, after a reconnection, a drop or a gap, asks the hub to replay what it missed
  (`since`); when the hub no longer can, it emits `recovery_failed` (see "Channel positions"
  below and README.md, Recovery).

  Module-level API (one client per plugin, as the seeds describe):

    local WebSocketClient = require 'WebSocketClient'
    WebSocketClient.init({ transport = require('LrTransport').new(), baseUrl = '...' })
    WebSocketClient.addEventListener('job_created', function(event) ... end)
    WebSocketClient.sendJobProgress('job123', 'processing', 50, 'Applying HSL')

  `WebSocketClient.new(options)` makes further independent clients with the same methods
  (called with `:`), which the tests use.
]]

local WebSocketClient = {}

WebSocketClient.VERSION = '2.0'

local DEFAULTS = {
  baseUrl = 'http://127.0.0.1:5100',
  clientType = 'lightroom',
  clientName = 'Lightroom Classic Plugin',
  protocolVersion = '1.0',
  channels = { 'jobs', 'system', 'photos' },
  -- Seconds a poll may be held by the server (long poll). The server caps it at its
  -- long_poll_max (30 s by default).
  pollWait = 25,
  -- Pause before the next poll when the server answers at once with nothing (a server
  -- without long polls, or a superseded poll), so the loop never spins.
  pollInterval = 1,
  -- Timeout of requests other than polls; a poll's timeout is pollWait + requestTimeout.
  requestTimeout = 10,
  pingInterval = 30,
  -- Reconnection: attempt n waits min(reconnectDelay * 2^(n-1), maxReconnectDelay) seconds
  -- after the previous failure; after maxReconnectAttempts failures the client gives up
  -- (state "failed", event "reconnect_failed") until reconnect() is called.
  reconnectDelay = 5,
  maxReconnectDelay = 60,
  maxReconnectAttempts = 10,
  -- Messages given to send() while not connected are kept (at most outboxLimit, oldest
  -- dropped) and sent in order once connected again. 0 disables it.
  outboxLimit = 100,
  -- Start the background loop from init() when the transport can start tasks.
  autoStart = true,
  -- Longest single sleep of the background loop, so disconnect() is noticed quickly.
  sleepSlice = 1,
}

local unpack = unpack or table.unpack -- luacheck: ignore

local function pack(...)
  return { n = select('#', ...), ... }
end

local function copy(t)
  local out = {}
  for k, v in pairs(t) do
    out[k] = v
  end
  return out
end

local function url_encode(s)
  return (string.gsub(tostring(s), '[^%w%-%._~]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end

local function number_text(n)
  if math.floor(n) == n then
    return string.format('%d', n)
  end
  return string.format('%.3f', n)
end

---------------------------------------------------------------------------------------------
-- The client object
---------------------------------------------------------------------------------------------

local Client = {}
Client.__index = Client

local function new_client()
  local self = setmetatable({}, Client)
  self.opts = copy(DEFAULTS)
  self.state = 'idle' -- idle | connected | reconnecting | failed | closed
  self.clientId = nil
  self.generation = 0 -- bumped whenever the session changes, to ignore stale replies
  self.needsSetup = true -- register + subscribe still to do for this session
  self.attempts = 0 -- reconnection attempts since the connection was lost
  self.nextAttemptAt = 0
  self.lastPingAt = 0
  self.lastPongAt = nil
  self.listeners = {}
  self.handlers = {}
  self.outbox = {}
  -- channel -> the last position the application saw (see "Channel positions" below)
  self.positions = {}
  self.running = false
  self.stats = {
    received = 0,
    dropped = 0,
    duplicates = 0,
    gaps = 0,
    recoveries = 0,
    recoveryFailures = 0,
    sessions = 0,
    resumes = 0,
    reconnectAttempts = 0,
    pings = 0,
    sent = 0,
  }
  return self
end

function Client:_pcall(fn, ...)
  local t = self.transport
  local p = (t and t.pcall) or pcall
  return p(fn, ...)
end

function Client:_log(level, message)
  local t = self.transport
  if t and t.log then
    pcall(t.log, level, 'WebSocketClient: ' .. tostring(message))
  end
end

function Client:_now()
  local ok, now = self:_pcall(self.transport.clock)
  if ok and type(now) == 'number' then
    return now
  end
  self:_log('error', 'clock failed: ' .. tostring(now))
  return 0
end

function Client:_sleep(seconds)
  if seconds <= 0 then
    return
  end
  local ok, err = self:_pcall(self.transport.sleep, seconds)
  if not ok then
    self:_log('error', 'sleep failed: ' .. tostring(err))
  end
end

function Client:_backoff(attempt)
  local o = self.opts
  local delay = o.reconnectDelay * (2 ^ (attempt - 1))
  if delay > o.maxReconnectDelay then
    delay = o.maxReconnectDelay
  end
  return delay
end

-- One HTTP exchange. Returns status, reply (decoded JSON, or nil), error text.
-- status is nil when the request did not get an answer (network failure, timeout).
function Client:_request(method, path, body, timeout)
  local t = self.transport
  local url = self.opts.baseUrl .. path
  local payload
  if body ~= nil then
    local ok, encoded = self:_pcall(t.encode, body)
    if not ok or type(encoded) ~= 'string' then
      return nil, nil, 'cannot encode request: ' .. tostring(encoded)
    end
    payload = encoded
  end
  local r
  if method == 'GET' then
    r = pack(self:_pcall(t.get, url, timeout))
  else
    r = pack(self:_pcall(t.post, url, payload, timeout))
  end
  if not r[1] then
    return nil, nil, method .. ' ' .. path .. ' raised: ' .. tostring(r[2])
  end
  local status, text = r[2], r[3]
  if type(status) ~= 'number' then
    return nil, nil, method .. ' ' .. path .. ' failed: ' .. tostring(text or 'no answer')
  end
  local reply
  if type(text) == 'string' and text ~= '' then
    local ok, decoded = self:_pcall(t.decode, text)
    if ok then
      reply = decoded
    else
      -- A 200 that is not JSON is not livebridge (a proxy, a captive portal): a failure.
      local why = method .. ' ' .. path .. ': answer is not JSON (' .. tostring(decoded) .. ')'
      return status ~= 200 and status or nil, nil, why
    end
  end
  if status ~= 200 then
    local why = type(reply) == 'table' and type(reply.error) == 'string' and reply.error or ''
    return status, reply, method .. ' ' .. path .. ' answered ' .. status .. (why ~= '' and (': ' .. why) or '')
  end
  if type(reply) ~= 'table' then
    return nil, nil, method .. ' ' .. path .. ': answer is not a JSON object'
  end
  return status, reply, nil
end

-- POST /ws/send for the current session. Returns status, response message, error text.
function Client:_sendRaw(message)
  local status, reply, err = self:_request('POST', '/ws/send', {
    client_id = self.clientId,
    message = message,
  }, self.opts.requestTimeout)
  if status == 200 then
    return status, reply.response, nil
  end
  return status, nil, err
end

-- Delivers a client-side notice (connected, disconnected, ...) to its listeners.
function Client:_emit(eventType, data)
  data.type = eventType
  local list = self.listeners[eventType]
  if not list then
    return
  end
  local snapshot = {}
  for i = 1, #list do
    snapshot[i] = list[i]
  end
  for i = 1, #snapshot do
    local ok, err = self:_pcall(snapshot[i], data)
    if not ok then
      self:_log('error', 'listener for "' .. eventType .. '" failed: ' .. tostring(err))
    end
  end
end

-- Delivers a message from the server: built-in bookkeeping, the typed handler, the
-- listeners of its type, then the "*" listeners.
function Client:_dispatch(message)
  if type(message) ~= 'table' or type(message.type) ~= 'string' then
    self:_log('warn', 'ignored a message without a type')
    return
  end
  local mtype = message.type
  self.stats.received = self.stats.received + 1
  if mtype == 'pong' then
    self.lastPongAt = self:_now()
  elseif mtype == 'error' then
    self:_log('warn', 'server error: ' .. tostring(message.error))
  elseif mtype == 'connection_established' then
    self:_log('debug', 'connection established: ' .. tostring(message.client_id))
  end
  local handler = self.handlers[mtype]
  if handler then
    local ok, err = self:_pcall(handler, message)
    if not ok then
      self:_log('error', 'handler for "' .. mtype .. '" failed: ' .. tostring(err))
    end
  end
  self:_emit(mtype, message)
  local any = self.listeners['*']
  if any then
    local snapshot = {}
    for i = 1, #any do
      snapshot[i] = any[i]
    end
    for i = 1, #snapshot do
      local ok, err = self:_pcall(snapshot[i], message)
      if not ok then
        self:_log('error', 'listener for "*" failed: ' .. tostring(err))
      end
    end
  end
end

function Client:_reportDropped(count)
  self.stats.dropped = self.stats.dropped + count
  self:_log('warn', count .. ' message(s) were dropped by the server (queue full)')
  self:_dispatch({ type = 'messages_dropped', dropped = count, client_id = self.clientId })
end

---------------------------------------------------------------------------------------------
-- Channel positions: no event twice, none missed (docs/protocol.md, "Channel history and
-- recovery")
--
-- The hub stamps every channel event with `channel`, `offset` (1, 2, 3... per channel, no
-- holes) and `epoch` (changes when the channel's history was lost, e.g. a restart). The
-- client keeps, per channel, the (epoch, offset) of the last event handed to the application
-- and sends them as `since` whenever it may have missed something; the hub then replays the
-- missed events (before any later one) or answers `recovered: false`.
--
-- Over HTTP the order is simple: a replay is queued behind the subscribe's answer and takes
-- the place of the queued copies of the events it covers, so the next poll brings it whole,
-- before anything newer. That is why the client can ask for a recovery at the end of a poll
-- batch and needs no state "waiting for a replay" beyond `replayUntil` (see _admit).
---------------------------------------------------------------------------------------------

-- The (channel, epoch, offset) a message carries, or nil for messages outside channels.
local function event_position(message)
  local channel, epoch, offset = message.channel, message.epoch, message.offset
  if type(channel) == 'string' and type(epoch) == 'string' and type(offset) == 'number' then
    return channel, epoch, offset
  end
  return nil
end

-- The (epoch, offset) of a `positions` entry, or nil.
local function parse_position(value)
  if type(value) == 'table' and type(value.epoch) == 'string' and type(value.offset) == 'number' then
    return value.epoch, value.offset
  end
  return nil
end

-- Moves a channel's position. A new epoch starts afresh: offsets of the old one mean nothing.
function Client:_setPosition(channel, epoch, offset)
  local state = self.positions[channel]
  if not state or state.epoch ~= epoch then
    -- ownOffsets: offsets of events this client published, which the hub never sends back.
    -- replayUntil: the latest offset a replay promised (recovered = true), until reached.
    state = { epoch = epoch, offset = offset, ownOffsets = {}, replayUntil = nil }
    self.positions[channel] = state
  end
  state.offset = offset
  for own in pairs(state.ownOffsets) do
    if own <= offset then
      state.ownOffsets[own] = nil
    end
  end
  while state.ownOffsets[state.offset + 1] do
    state.ownOffsets[state.offset + 1] = nil
    state.offset = state.offset + 1
  end
  if state.replayUntil and state.offset >= state.replayUntil then
    state.replayUntil = nil
  end
end

-- Decides what to do with a message from a poll: 'deliver', 'duplicate' (seen already) or
-- 'gap' (something before it was missed: it is left to the recovery, which replays it in
-- order). A second result may be a recovery_failed notice to emit before delivering.
-- `dropsReported`: the poll reply that brought it also reported lost messages.
function Client:_admit(message, dropsReported)
  local channel, epoch, offset = event_position(message)
  if not channel then
    return 'deliver'
  end
  local known = self.positions[channel]
  if not known then
    self:_setPosition(channel, epoch, offset)
    return 'deliver'
  end
  if epoch == known.epoch then
    if offset <= known.offset then
      self.stats.duplicates = self.stats.duplicates + 1
      return 'duplicate'
    end
    if offset == known.offset + 1 then
      self:_setPosition(channel, epoch, offset)
      return 'deliver'
    end
    if known.replayUntil and not dropsReported then
      -- The hub promised to replay up to replayUntil, and a replay arrives whole before
      -- anything newer; yet the hole is still there and nothing was reported lost. Asking
      -- again would get the same answer forever, so carry on past the hole and say so.
      self.stats.recoveryFailures = self.stats.recoveryFailures + 1
      self:_log('error', 'the replay of "' .. channel .. '" skipped offsets ' .. (known.offset + 1)
        .. '..' .. (offset - 1) .. '; carrying on from ' .. offset)
      self:_setPosition(channel, epoch, offset)
      return 'deliver', {
        channel = channel,
        positions = { [channel] = { offset = offset - 1, epoch = epoch } },
        reason = 'the replay left out offsets ' .. (known.offset + 1) .. '..' .. (offset - 1),
      }
    end
  end
  -- Past the next offset, or of another epoch (the history the position belongs to is
  -- gone): the recovery's answer says where to carry on.
  self.stats.gaps = self.stats.gaps + 1
  self:_log('info', 'gap on "' .. channel .. '": got ' .. epoch .. '/' .. offset .. ' after '
    .. known.epoch .. '/' .. known.offset)
  return 'gap'
end

-- The `published` reply of an event this client sent: the hub will not send the event back,
-- so its offset is stepped over when the position reaches it (events before it may still be
-- queued for this client, so the position cannot simply jump there).
function Client:_notePublished(reply)
  local channel, epoch, offset = event_position(reply)
  local state = channel and self.positions[channel]
  if not state or state.epoch ~= epoch or offset <= state.offset then
    return
  end
  state.ownOffsets[offset] = true
  self:_setPosition(channel, epoch, state.offset)
end

-- The channels with a position (sorted) and their `since`, or nil when there are none.
function Client:_since()
  local channels = {}
  for channel in pairs(self.positions) do
    channels[#channels + 1] = channel
  end
  if #channels == 0 then
    return channels, nil
  end
  table.sort(channels)
  local since = {}
  for _, channel in ipairs(channels) do
    local state = self.positions[channel]
    since[channel] = { offset = state.offset, epoch = state.epoch }
  end
  return channels, since
end

-- Takes in a reply with `positions` (and `recovered` for `sinceChannels`): a `subscribed`
-- reply or a resumed handshake. Returns the recovery_failed notices to emit.
function Client:_applyPositions(reply, sinceChannels)
  local notices = {}
  local positions = type(reply.positions) == 'table' and reply.positions or {}
  local recovered = type(reply.recovered) == 'table' and reply.recovered or {}
  for _, channel in ipairs(sinceChannels or {}) do
    local epoch, offset = parse_position(positions[channel])
    local state = self.positions[channel]
    if recovered[channel] == false then
      self.stats.recoveryFailures = self.stats.recoveryFailures + 1
      self:_log('warn', 'could not recover "' .. channel .. '" (history trimmed or lost); carrying on from '
        .. tostring(epoch) .. '/' .. tostring(offset))
      if epoch then
        self:_setPosition(channel, epoch, offset)
        self.positions[channel].replayUntil = nil
      end
      notices[#notices + 1] = {
        channel = channel,
        positions = positions,
        reason = 'the hub no longer has the events missed (history trimmed, or lost in a restart)',
      }
    elseif recovered[channel] == true and state and epoch == state.epoch and offset > state.offset then
      state.replayUntil = offset
    end
  end
  -- Channels without a position start from the hub's latest: nothing older can reach them.
  for channel, value in pairs(positions) do
    local epoch, offset = parse_position(value)
    if type(channel) == 'string' and epoch and not self.positions[channel] then
      self:_setPosition(channel, epoch, offset)
    end
  end
  return notices
end

function Client:_emitRecoveryFailures(notices)
  for i = 1, #notices do
    self:_emit('recovery_failed', notices[i])
  end
end

-- Subscribes again, with `since`, to every channel that has a position, so that the hub
-- replays what this client missed. Runs after a poll that reported drops or showed a gap.
function Client:_recover(why)
  if self.state ~= 'connected' then
    return
  end
  local channels, since = self:_since()
  if not since then
    return
  end
  self.stats.recoveries = self.stats.recoveries + 1
  self:_log('info', 'recovering ' .. table.concat(channels, ', ') .. ' (' .. why .. ')')
  local status, response, err = self:_sendRaw({ type = 'subscribe', channels = channels, since = since })
  if status == nil or status >= 500 then
    -- The reconnection recovers, as after every connection.
    self:_connectionLost('recovery: ' .. tostring(err))
  elseif status == 404 then
    self:_sessionLost('recovery: ' .. tostring(err))
  elseif status ~= 200 or type(response) ~= 'table' or response.type ~= 'subscribed' then
    self:_log('error', 'recovery refused: ' .. tostring(err or (response and response.error)))
  else
    self.subscriptions = response.subscriptions
    self:_emitRecoveryFailures(self:_applyPositions(response, channels))
  end
end

-- Bookkeeping of a reply to a message the application sent with send().
function Client:_noteReply(message, response)
  if type(response) ~= 'table' then
    return
  end
  if response.type == 'published' then
    self:_notePublished(response)
  elseif response.type == 'subscribed' then
    self.subscriptions = response.subscriptions
    local sinceChannels = {}
    if type(message.since) == 'table' then
      for channel in pairs(message.since) do
        sinceChannels[#sinceChannels + 1] = channel
      end
    end
    self:_emitRecoveryFailures(self:_applyPositions(response, sinceChannels))
  elseif response.type == 'unsubscribed' then
    self.subscriptions = response.subscriptions
    -- A position the hub will not keep up to date must not be sent as `since` later.
    if type(response.channels) == 'table' then
      for _, channel in ipairs(response.channels) do
        self.positions[channel] = nil
      end
    end
  end
end

-- The connection failed: wait (backoff) before the next attempt.
function Client:_connectionLost(reason)
  if self.state ~= 'connected' then
    return
  end
  self:_log('warn', 'connection lost: ' .. tostring(reason))
  self.state = 'reconnecting'
  self.generation = self.generation + 1
  self.attempts = 0
  local delay = self:_backoff(1)
  self.nextAttemptAt = self:_now() + delay
  self:_emit('disconnected', { reason = reason, client_id = self.clientId })
  self:_emit('reconnecting', { attempt = 1, delay = delay, reason = reason })
end

-- The server is there but does not know the session (evicted, or the server restarted):
-- handshake again at once.
function Client:_sessionLost(reason)
  if self.state ~= 'connected' then
    return
  end
  self:_log('warn', 'session lost: ' .. tostring(reason))
  self.state = 'reconnecting'
  self.generation = self.generation + 1
  self.attempts = 0
  self.nextAttemptAt = self:_now()
  self:_emit('disconnected', { reason = reason, client_id = self.clientId })
end

-- Handshake (resuming the session when there is one), then register and subscribe when the
-- session is new. Either way the positions go along (`since`), so that what was missed while
-- disconnected is replayed. Returns true, or false and the reason.
function Client:_connectOnce()
  local o = self.opts
  local previous = self.clientId
  local sinceChannels, since = self:_since()
  local status, reply, err = self:_request('POST', '/ws/handshake', {
    client_type = o.clientType,
    client_name = o.clientName,
    protocol_version = o.protocolVersion,
    client_id = previous,
    since = previous and since or nil,
  }, o.requestTimeout)
  if status ~= 200 then
    return false, err
  end
  if reply.success ~= true or type(reply.client_id) ~= 'string' then
    return false, 'handshake answer without success/client_id'
  end
  local resumed = reply.resumed == true
  self.clientId = reply.client_id
  self.generation = self.generation + 1
  local recoveryFailures = {}
  if resumed then
    self.stats.resumes = self.stats.resumes + 1
    self:_log('info', 'resumed session ' .. self.clientId)
    if previous and since then
      self.stats.recoveries = self.stats.recoveries + 1
      recoveryFailures = self:_applyPositions(reply, sinceChannels)
    end
  else
    self.stats.sessions = self.stats.sessions + 1
    self.needsSetup = true
    self:_log('info', 'new session ' .. self.clientId .. (previous and (' (was ' .. previous .. ')') or ''))
  end
  if self.needsSetup then
    local sstatus, response, serr = self:_sendRaw({
      type = 'register',
      client_type = o.clientType,
      client_name = o.clientName,
    })
    if sstatus == nil or sstatus >= 500 or sstatus == 404 then
      return false, serr
    elseif sstatus ~= 200 or type(response) ~= 'table' or response.type ~= 'registered' then
      self:_log('error', 'register refused: ' .. tostring(serr or (response and response.error)))
    end
    -- Again: a resume's answer may have moved positions.
    sinceChannels, since = self:_since()
    -- The configured channels, and those the application subscribed to itself with send().
    local channels, listed = {}, {}
    for _, list in ipairs({ o.channels or {}, sinceChannels }) do
      for _, channel in ipairs(list) do
        if not listed[channel] then
          listed[channel] = true
          channels[#channels + 1] = channel
        end
      end
    end
    if #channels > 0 then
      sstatus, response, serr = self:_sendRaw({ type = 'subscribe', channels = channels, since = since })
      if sstatus == nil or sstatus >= 500 or sstatus == 404 then
        return false, serr
      elseif sstatus ~= 200 or type(response) ~= 'table' or response.type ~= 'subscribed' then
        -- A refused subscription (bad channel name, too many) will not get better by retrying.
        self:_log('error', 'subscribe refused: ' .. tostring(serr or (response and response.error)))
      else
        self.subscriptions = response.subscriptions
        if since then
          self.stats.recoveries = self.stats.recoveries + 1
        end
        recoveryFailures = self:_applyPositions(response, sinceChannels)
      end
    end
    self.needsSetup = false
  end
  self.state = 'connected'
  self.attempts = 0
  self.lastPingAt = self:_now()
  self:_emit('connected', { client_id = self.clientId, resumed = resumed, previous_client_id = previous })
  if previous and not resumed then
    self:_emit('session_renewed', { client_id = self.clientId, previous_client_id = previous })
  end
  self:_emitRecoveryFailures(recoveryFailures)
  self:_flushOutbox()
  return true
end

-- One connection attempt, with the bookkeeping of the backoff.
function Client:_attempt()
  if self.state == 'reconnecting' then
    self.attempts = self.attempts + 1
    self.stats.reconnectAttempts = self.stats.reconnectAttempts + 1
    self:_log('info', 'reconnection attempt ' .. self.attempts .. '/' .. self.opts.maxReconnectAttempts)
  end
  local ok, err = self:_connectOnce()
  if ok then
    return true
  end
  self:_log('warn', 'connection attempt failed: ' .. tostring(err))
  if self.state == 'closed' then
    return false
  end
  if self.state ~= 'reconnecting' then
    self.state = 'reconnecting'
    self.attempts = 0
  end
  if self.attempts >= self.opts.maxReconnectAttempts then
    self.state = 'failed'
    self:_log('error', 'giving up after ' .. self.attempts .. ' reconnection attempts: ' .. tostring(err))
    self:_emit('reconnect_failed', { attempts = self.attempts, reason = err })
    return false
  end
  local delay = self:_backoff(self.attempts + 1)
  self.nextAttemptAt = self:_now() + delay
  self:_emit('reconnecting', { attempt = self.attempts + 1, delay = delay, reason = err })
  return false
end

function Client:_flushOutbox()
  while self.state == 'connected' and #self.outbox > 0 do
    local message = self.outbox[1]
    local status, response, err = self:_sendRaw(message)
    if status == nil or status >= 500 then
      self:_log('warn', 'could not flush queued messages: ' .. tostring(err))
      return
    elseif status == 404 then
      self:_sessionLost(err)
      return
    end
    table.remove(self.outbox, 1)
    if status ~= 200 then
      self:_log('error', 'queued "' .. tostring(message.type) .. '" refused: ' .. tostring(err))
    else
      self.stats.sent = self.stats.sent + 1
      self:_log('debug', 'sent queued "' .. tostring(message.type) .. '": ' .. tostring(response and response.type))
      self:_noteReply(message, response)
    end
  end
end

function Client:_ping()
  self.lastPingAt = self:_now()
  self.stats.pings = self.stats.pings + 1
  local status, response, err = self:_sendRaw({ type = 'ping' })
  if status == nil or status >= 500 then
    self:_connectionLost('ping failed: ' .. tostring(err))
  elseif status == 404 then
    self:_sessionLost('ping: ' .. tostring(err))
  elseif status == 200 and type(response) == 'table' then
    self:_dispatch(response)
  end
end

-- One poll. Returns the seconds to wait before the next step.
function Client:_poll()
  local o = self.opts
  local now = self:_now()
  local wait = o.pollWait
  local untilPing = self.lastPingAt + o.pingInterval - now
  if untilPing < wait then
    wait = untilPing > 0 and untilPing or 0
  end
  local generation = self.generation
  local path = '/ws/poll?client_id=' .. url_encode(self.clientId) .. '&wait=' .. number_text(wait)
  local status, reply, err = self:_request('GET', path, nil, wait + o.requestTimeout)
  if generation ~= self.generation or self.state ~= 'connected' then
    return 0 -- the session changed meanwhile (disconnect, reconnect): this answer is stale
  end
  if status == nil or status >= 500 or status == 409 then
    self:_connectionLost('poll failed: ' .. tostring(err))
    return 0
  elseif status == 404 or status == 410 then
    self:_sessionLost('poll: ' .. tostring(err))
    return 0
  elseif status ~= 200 then
    self:_connectionLost('poll: ' .. tostring(err))
    return 0
  end
  local dropped = tonumber(reply.dropped) or 0
  if dropped > 0 then
    self:_reportDropped(dropped)
    if generation ~= self.generation then
      return 0 -- a listener disconnected or reconnected
    end
  end
  local messages = reply.messages
  local count = 0
  local gap = false
  if type(messages) == 'table' then
    count = #messages
    for i = 1, count do
      local message = messages[i]
      local verdict, notice = 'deliver', nil
      if type(message) == 'table' then
        verdict, notice = self:_admit(message, dropped > 0)
      end
      if notice then
        self:_emit('recovery_failed', notice)
      end
      if verdict == 'gap' then
        gap = true
      elseif verdict == 'deliver' and generation == self.generation then
        self:_dispatch(message)
      end
      if generation ~= self.generation then
        return 0 -- a handler disconnected or reconnected; the rest is not ours to process
      end
    end
  end
  -- After the whole batch: what it still holds past a gap is covered by the replay.
  if dropped > 0 or gap then
    self:_recover(gap and 'gap' or (dropped .. ' message(s) dropped'))
  end
  if count == 0 and dropped == 0 and (self:_now() - now) < wait / 2 then
    return o.pollInterval
  end
  return 0
end

function Client:_step()
  local st = self.state
  if st == 'closed' or st == 'failed' then
    return false, 0
  end
  if not self.transport then
    self:_log('error', 'not initialised')
    return false, 0
  end
  if st == 'idle' then
    self:_attempt()
  elseif st == 'reconnecting' then
    local now = self:_now()
    if now < self.nextAttemptAt then
      return true, self.nextAttemptAt - now
    end
    self:_attempt()
  else
    if self:_now() - self.lastPingAt >= self.opts.pingInterval then
      self:_ping()
    end
    if self.state == 'connected' and #self.outbox > 0 then
      self:_flushOutbox()
    end
    if self.state == 'connected' then
      return true, self:_poll()
    end
  end
  if self.state == 'failed' or self.state == 'closed' then
    return false, 0
  end
  if self.state == 'reconnecting' then
    local wait = self.nextAttemptAt - self:_now()
    return true, wait > 0 and wait or 0
  end
  return true, 0
end

---------------------------------------------------------------------------------------------
-- Public methods (all guarded: they log and return false/nil instead of raising)
---------------------------------------------------------------------------------------------

local public = {}

--- Configures the client (see DEFAULTS for the options). With autoStart (default) and a
--- transport that can start tasks, starts the background loop.
function public:init(options)
  options = options or {}
  if self.state == 'connected' then
    self:disconnect()
  end
  self.opts = copy(DEFAULTS)
  for k, v in pairs(options) do
    if k ~= 'transport' then
      self.opts[k] = v
    end
  end
  self.transport = options.transport
  self.state = 'idle'
  self.clientId = nil
  self.needsSetup = true
  self.attempts = 0
  self.outbox = {}
  self.positions = {}
  if type(self.transport) ~= 'table' then
    self.transport = nil
    error('init: options.transport is required (LrTransport or SocketTransport)')
  end
  for _, name in ipairs({ 'get', 'post', 'sleep', 'clock', 'encode', 'decode' }) do
    if type(self.transport[name]) ~= 'function' then
      local missing = name
      self.transport = nil
      error('init: transport.' .. missing .. ' is missing')
    end
  end
  self.opts.baseUrl = string.gsub(self.opts.baseUrl, '/+$', '')
  if self.opts.autoStart and self.transport.startTask then
    self:start()
  end
  return self
end

--- Starts the background loop (transport.startTask). Returns true when started.
function public:start()
  if self.running then
    return true
  end
  if not (self.transport and self.transport.startTask) then
    self:_log('warn', 'the transport cannot start tasks; drive the client with step()')
    return false
  end
  if self.state == 'failed' or self.state == 'closed' then
    self.state = 'idle'
  end
  self.running = true
  local client = self
  local ok, err = self:_pcall(self.transport.startTask, function()
    client.running = false
    client:run()
  end, 'livebridge client')
  if not ok then
    self.running = false
    self:_log('error', 'could not start the background task: ' .. tostring(err))
    return false
  end
  return true
end

--- Runs the loop until disconnect() or until reconnection gives up.
function public:run()
  if self.running then
    return false
  end
  self.running = true
  while true do
    local ok, continue, delay = self:_pcall(self._step, self)
    if not ok then
      self:_log('error', 'step failed: ' .. tostring(continue))
      continue, delay = true, self.opts.pollInterval
    end
    if not continue then
      break
    end
    while delay and delay > 0 and (self.state == 'connected' or self.state == 'reconnecting') do
      local slice = delay < self.opts.sleepSlice and delay or self.opts.sleepSlice
      self:_sleep(slice)
      delay = delay - slice
    end
  end
  self.running = false
  return true
end

--- One cycle of the loop: connect or reconnect when due, ping when due, flush queued sends,
--- then one (long) poll whose messages are dispatched. Returns whether the loop should go
--- on, and how many seconds to wait before the next step.
function public:step()
  return self:_step()
end
public.runOnce = public.step

--- Connects now (handshake, register, subscribe). Returns whether it is connected.
function public:connect()
  if self.state == 'connected' then
    return true
  end
  if not self.transport then
    return false
  end
  if self.state == 'closed' or self.state == 'failed' then
    self.state = 'idle'
  end
  return self:_attempt()
end

--- Sends a client message ({type = ..., ...}). Returns true and the server's reply message,
--- or false and the reason. While disconnected the message is queued (see outboxLimit).
function public:send(message)
  if type(message) ~= 'table' or type(message.type) ~= 'string' then
    self:_log('error', 'send: a message is a table with a string type')
    return false, 'invalid message'
  end
  if not self.transport then
    self:_log('error', 'send: not initialised')
    return false, 'not initialised'
  end
  local function enqueue(reason)
    if self.opts.outboxLimit <= 0 or self.state == 'closed' then
      self:_log('warn', 'not sent "' .. message.type .. '": ' .. reason)
      return false, reason
    end
    if #self.outbox >= self.opts.outboxLimit then
      local oldest = table.remove(self.outbox, 1)
      self:_log('warn', 'outbox full: dropped queued "' .. tostring(oldest.type) .. '"')
    end
    self.outbox[#self.outbox + 1] = message
    self:_log('info', 'queued "' .. message.type .. '" until connected (' .. reason .. ')')
    return false, 'queued: ' .. reason
  end
  if self.state ~= 'connected' then
    return enqueue('not connected')
  end
  local status, response, err = self:_sendRaw(message)
  if status == nil or status >= 500 then
    return enqueue(tostring(err))
  elseif status == 404 then
    self:_sessionLost(err)
    return enqueue(tostring(err))
  elseif status ~= 200 then
    self:_log('error', 'server refused "' .. message.type .. '": ' .. tostring(err))
    return false, err
  end
  self.stats.sent = self.stats.sent + 1
  self:_noteReply(message, response)
  if type(response) == 'table' and response.type == 'error' then
    self:_log('warn', 'server answered an error to "' .. message.type .. '": ' .. tostring(response.error))
    return false, response.error
  end
  return true, response
end

--- Reports a job's progress (event job_progress on channel jobs).
function public:sendJobProgress(job_id, stage, progress, message)
  return self:send({
    type = 'job_progress',
    job_id = job_id,
    stage = stage,
    progress = tonumber(progress) or progress,
    message = message,
  })
end

--- Reports the end of a job: success -> job_completed {job_id, result, photo_id?};
--- failure -> job_failed {job_id, error_message, error_details?, photo_id?}. On failure
--- `result` may be the error message, or a table with error_message (or error / message),
--- photo_id and the rest as details.
function public:sendJobComplete(job_id, success, result, photo_id)
  if success then
    return self:send({ type = 'job_completed', job_id = job_id, photo_id = photo_id, result = result })
  end
  local event = { type = 'job_failed', job_id = job_id, photo_id = photo_id }
  if type(result) == 'table' then
    local details = {}
    local any = false
    for k, v in pairs(result) do
      if k == 'error_message' or k == 'error' or k == 'message' then
        if type(v) == 'string' and not event.error_message then
          event.error_message = v
        end
      elseif k == 'photo_id' and event.photo_id == nil then
        event.photo_id = v
      elseif k == 'error_details' then
        event.error_details = v
      else
        details[k] = v
        any = true
      end
    end
    if any and event.error_details == nil then
      event.error_details = details
    end
  elseif result ~= nil then
    event.error_message = tostring(result)
  end
  event.error_message = event.error_message or 'job failed'
  return self:send(event)
end

--- Reports an error (event error_occurred on channel system). `details` goes to
--- error_details; its job_id and photo_id, if any, are also set on the event.
function public:sendError(error_type, error_message, details)
  local event = {
    type = 'error_occurred',
    error_type = tostring(error_type),
    error_message = tostring(error_message),
    error_details = details,
  }
  if type(details) == 'table' then
    event.job_id = details.job_id
    event.photo_id = details.photo_id
  end
  return self:send(event)
end

--- Adds a listener for a message type ("*" for every server message). Client notices:
--- connected, disconnected, reconnecting, reconnect_failed, session_renewed,
--- messages_dropped, recovery_failed.
function public:addEventListener(eventType, fn)
  if type(eventType) ~= 'string' or type(fn) ~= 'function' then
    self:_log('error', 'addEventListener: expected a type and a function')
    return false
  end
  local list = self.listeners[eventType]
  if not list then
    list = {}
    self.listeners[eventType] = list
  end
  list[#list + 1] = fn
  return true
end

--- Removes a listener added with addEventListener. Returns whether it was there.
function public:removeEventListener(eventType, fn)
  local list = self.listeners[eventType]
  if not list then
    return false
  end
  for i = #list, 1, -1 do
    if list[i] == fn then
      table.remove(list, i)
      if #list == 0 then
        self.listeners[eventType] = nil
      end
      return true
    end
  end
  return false
end

--- Sets the handler of a message type (one per type; nil removes it). It runs before the
--- listeners of that type.
function public:registerHandler(messageType, fn)
  if type(messageType) ~= 'string' or (fn ~= nil and type(fn) ~= 'function') then
    self:_log('error', 'registerHandler: expected a type and a function')
    return false
  end
  self.handlers[messageType] = fn
  return true
end

function public:isConnected()
  return self.state == 'connected'
end

function public:getClientId()
  return self.clientId
end

--- idle, connected, reconnecting, failed or closed.
function public:getState()
  return self.state
end

function public:getStats()
  local s = copy(self.stats)
  s.state = self.state
  s.client_id = self.clientId
  s.outbox = #self.outbox
  s.attempts = self.attempts
  return s
end

--- Per channel, the position of the last event handed to the application:
--- {jobs = {offset = 41, epoch = '...'}, ...}. Kept across reconnections and disconnect()
--- (so that connect() recovers what was missed meanwhile); cleared by init().
function public:getPositions()
  local out = {}
  for channel, state in pairs(self.positions) do
    out[channel] = { offset = state.offset, epoch = state.epoch }
  end
  return out
end

--- Reconnects now, resuming the session if the server still has it; resets the backoff.
--- Restarts the background loop if it had given up.
function public:reconnect()
  if not self.transport then
    return false
  end
  self.generation = self.generation + 1
  self.state = 'reconnecting'
  self.attempts = 0
  self.nextAttemptAt = self:_now()
  local ok = self:_connectOnce()
  if not ok then
    self.state = 'reconnecting'
    self.nextAttemptAt = self:_now() + self:_backoff(1)
  end
  if self.opts.autoStart and self.transport.startTask and not self.running then
    self:start()
  end
  return self.state == 'connected'
end

--- Ends the session (POST /ws/disconnect) and stops the loop.
function public:disconnect()
  local id = self.clientId
  local was = self.state
  self.state = 'closed'
  self.generation = self.generation + 1
  self.clientId = nil
  self.needsSetup = true
  self.outbox = {}
  if id and self.transport then
    local status, _, err = self:_request('POST', '/ws/disconnect', { client_id = id }, self.opts.requestTimeout)
    if status ~= 200 and status ~= 404 then
      self:_log('warn', 'disconnect: ' .. tostring(err))
    end
  end
  if was ~= 'closed' then
    self:_log('info', 'disconnected' .. (id and (' ' .. id) or ''))
    self:_emit('disconnected', { reason = 'client disconnect', client_id = id })
  end
  return true
end

local failure_results = {
  isConnected = false,
  getClientId = nil,
  getState = nil,
  getStats = nil,
  getPositions = nil,
}

for name, fn in pairs(public) do
  Client[name] = function(self, ...)
    if getmetatable(self) ~= Client then
      error('WebSocketClient: call methods of a client with ":" (client:' .. name .. '(...))', 2)
    end
    local r = pack(self:_pcall(fn, self, ...))
    if not r[1] then
      self:_log('error', name .. ' failed: ' .. tostring(r[2]))
      if failure_results[name] ~= nil or name == 'getClientId' or name == 'getState' or name == 'getStats'
        or name == 'getPositions' then
        return failure_results[name]
      end
      return false, tostring(r[2])
    end
    return unpack(r, 2, r.n)
  end
end

---------------------------------------------------------------------------------------------
-- Module API
---------------------------------------------------------------------------------------------

--- A new, independent client. `options` as for init; without options it stays idle until
--- client:init(options).
function WebSocketClient.new(options)
  local client = new_client()
  if options then
    client:init(options)
  end
  return client
end

WebSocketClient.defaults = DEFAULTS

local default

local function the_default()
  if not default then
    default = new_client()
  end
  return default
end

--- The client behind the module-level functions.
function WebSocketClient.getDefaultClient()
  return the_default()
end

for name in pairs(public) do
  WebSocketClient[name] = function(...)
    local client = the_default()
    return client[name](client, ...)
  end
end

return WebSocketClient
