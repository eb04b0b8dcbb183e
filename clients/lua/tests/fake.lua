-- An in-memory livebridge with a virtual clock, as a WebSocketClient transport: requests
-- are answered at once, sleep() and long polls advance the clock, nothing really waits.
local json = require 'json'

local fake = {}

function fake.new()
  local f = {
    now = 1000,
    down = false, -- every request fails like an unreachable server
    sessions = {},
    nextId = 0,
    requests = {}, -- {method, path, at, body}
    sleeps = {},
    logs = {},
    published = {}, -- client messages published through /ws/send
    failNext = {}, -- path prefix -> error text, for one request each
    raiseNext = nil, -- the next request raises this error
    -- Channel history, as the hub keeps it: offsets per channel, an epoch that changes on
    -- restart(), the retained events.
    epoch = 'epoch-1',
    epochs = 1,
    history = {}, -- channel -> {latest = n, events = {[offset] = stamped message}, first = oldest kept}
    replayOmits = {}, -- offset -> true: replays leave these out (a misbehaving hub)
  }

  -- Which channel a client-published catalogue event goes to (the part of the catalogue the
  -- tests use).
  local channelOf = {
    job_created = 'jobs', job_started = 'jobs', job_progress = 'jobs', job_completed = 'jobs',
    job_failed = 'jobs', error_occurred = 'system', system_status = 'system',
    photo_imported = 'photos', photo_approved = 'photos',
  }

  local function log_of(channel)
    local log = f.history[channel]
    if not log then
      log = { latest = 0, events = {}, first = 1 }
      f.history[channel] = log
    end
    return log
  end

  function f.position(channel)
    return { offset = log_of(channel).latest, epoch = f.epoch }
  end

  local function enqueue(s, message)
    if #s.queue >= s.limit then
      table.remove(s.queue, 1)
      s.dropped = s.dropped + 1
    end
    s.queue[#s.queue + 1] = message
  end

  -- Publishes on a channel like the hub: stamps channel, offset and epoch, keeps it in
  -- history, queues it for the channel's subscribers except `exceptId` (the publisher).
  -- Returns the stamped message.
  function f.publish(channel, message, exceptId)
    local log = log_of(channel)
    log.latest = log.latest + 1
    local stamped = {}
    for k, v in pairs(message) do
      stamped[k] = v
    end
    stamped.channel, stamped.offset, stamped.epoch = channel, log.latest, f.epoch
    log.events[log.latest] = stamped
    for sid, s in pairs(f.sessions) do
      if s.subs[channel] and sid ~= exceptId then
        enqueue(s, stamped)
      end
    end
    return stamped
  end

  -- History no longer reaches before `offset` (trimmed by size or age).
  function f.trim(channel, offset)
    log_of(channel).first = offset
  end

  -- The server restarts without a data dir: sessions and history are gone, a new epoch.
  function f.restart()
    f.sessions = {}
    f.history = {}
    f.epochs = f.epochs + 1
    f.epoch = 'epoch-' .. f.epochs
  end

  local function positions_of(channels)
    local out = {}
    for _, c in ipairs(channels) do
      out[c] = f.position(c)
    end
    return out
  end

  -- A recovery: per channel all or nothing; a replay takes the place of the queued copies of
  -- the events it covers and goes to the back of the queue whole (like the hub's single item).
  local function recover(s, since)
    local recovered = {}
    for channel, position in pairs(since) do
      local log = log_of(channel)
      local ok = position.epoch == f.epoch and position.offset <= log.latest and log.first <= position.offset + 1
      recovered[channel] = ok
      if ok and position.offset < log.latest then
        local kept = {}
        for _, m in ipairs(s.queue) do
          if not (m.channel == channel and m.offset and m.offset <= log.latest) then
            kept[#kept + 1] = m
          end
        end
        s.queue = kept
        for offset = position.offset + 1, log.latest do
          if not f.replayOmits[offset] then
            s.queue[#s.queue + 1] = log.events[offset]
          end
        end
      end
    end
    return recovered
  end

  function f.session(id)
    return f.sessions[id]
  end

  -- Queues a message for every session (or one), like a publish.
  function f.push(message, id)
    for sid, s in pairs(f.sessions) do
      if id == nil or id == sid then
        enqueue(s, message)
      end
    end
  end

  function f.count(pathPrefix, messageType)
    local n = 0
    for _, r in ipairs(f.requests) do
      if string.sub(r.path, 1, #pathPrefix) == pathPrefix then
        if not messageType or (r.body and r.body.message and r.body.message.type == messageType) then
          n = n + 1
        end
      end
    end
    return n
  end

  function f.times(pathPrefix, messageType)
    local out = {}
    for _, r in ipairs(f.requests) do
      if string.sub(r.path, 1, #pathPrefix) == pathPrefix then
        if not messageType or (r.body and r.body.message and r.body.message.type == messageType) then
          out[#out + 1] = r.at - 1000
        end
      end
    end
    return out
  end

  local function reply(status, body)
    return status, json.encode(body)
  end

  local function handle(method, url, bodyText, timeout)
    local path = string.gsub(url, '^http://fake', '')
    local body = bodyText and json.decode(bodyText) or nil
    f.requests[#f.requests + 1] = { method = method, path = path, at = f.now, body = body, timeout = timeout }
    if f.raiseNext then
      local e = f.raiseNext
      f.raiseNext = nil
      error(e)
    end
    for prefix, err in pairs(f.failNext) do
      if string.sub(path, 1, #prefix) == prefix then
        f.failNext[prefix] = nil
        return nil, err
      end
    end
    if f.down then
      return nil, 'connection refused'
    end
    if method == 'POST' and path == '/ws/handshake' then
      local id = body.client_id
      if id and f.sessions[id] then
        local s = f.sessions[id]
        local answer = { success = true, client_id = id, resumed = true }
        if body.since then
          answer.recovered = recover(s, body.since)
          local subs = {}
          for c in pairs(s.subs) do
            subs[#subs + 1] = c
          end
          answer.positions = positions_of(subs)
        end
        answer.queued = #s.queue
        return reply(200, answer)
      end
      f.nextId = f.nextId + 1
      id = 'c' .. f.nextId
      f.sessions[id] = { queue = {}, dropped = 0, subs = {}, limit = 100, client_type = body.client_type }
      f.sessions[id].queue[1] = { type = 'connection_established', client_id = id }
      return reply(200, { success = true, client_id = id, resumed = false, queued = 1 })
    elseif method == 'POST' and path == '/ws/send' then
      local s = f.sessions[body.client_id]
      if not s then
        return reply(404, { success = false, error = 'unknown client_id' })
      end
      local m = body.message
      if m.type == 'ping' then
        return reply(200, { success = true, response = { type = 'pong' } })
      elseif m.type == 'register' then
        s.client_type = m.client_type
        return reply(200, { success = true, response = { type = 'registered', client_id = body.client_id } })
      elseif m.type == 'subscribe' then
        for c in pairs(m.since or {}) do
          local listed = false
          for _, name in ipairs(m.channels) do
            listed = listed or name == c
          end
          if not listed then
            return reply(400, { success = false, error = '`since` names channel "' .. c .. '", which is not in `channels`' })
          end
        end
        for _, c in ipairs(m.channels) do
          s.subs[c] = true
        end
        local response = { type = 'subscribed', channels = m.channels, positions = positions_of(m.channels) }
        if m.since then
          response.recovered = recover(s, m.since)
        end
        return reply(200, { success = true, response = response })
      elseif m.type == 'unsubscribe' then
        for _, c in ipairs(m.channels) do
          s.subs[c] = nil
        end
        return reply(200, { success = true, response = { type = 'unsubscribed', channels = m.channels } })
      elseif m.type == 'bad' then
        return reply(400, { success = false, error = 'unknown message type "bad"' })
      else
        f.published[#f.published + 1] = m
        local response = { type = 'published', event = m.type, recipients = 0 }
        local channel = channelOf[m.type]
        if channel then
          local stamped = f.publish(channel, m, body.client_id)
          response.channel, response.offset, response.epoch = channel, stamped.offset, stamped.epoch
        end
        return reply(200, { success = true, response = response })
      end
    elseif method == 'GET' and string.find(path, '^/ws/poll') then
      local id = string.match(path, 'client_id=([^&]+)')
      local wait = tonumber(string.match(path, 'wait=([%d%.]+)') or '0')
      local s = f.sessions[id]
      if not s then
        return reply(404, { success = false, error = 'unknown client_id' })
      end
      if #s.queue == 0 and s.dropped == 0 then
        f.now = f.now + wait
        if f.onLongPoll then
          f.onLongPoll(id)
        end
      end
      local messages, dropped = s.queue, s.dropped
      s.queue, s.dropped = {}, 0
      return reply(200, { success = true, messages = json.array(messages), dropped = dropped })
    elseif method == 'POST' and path == '/ws/disconnect' then
      if not f.sessions[body.client_id] then
        return reply(404, { success = false, error = 'unknown client_id' })
      end
      f.sessions[body.client_id] = nil
      return reply(200, { success = true, disconnected = true })
    end
    return reply(404, { success = false, error = 'no route ' .. path })
  end

  f.transport = {
    get = function(url, timeout)
      return handle('GET', url, nil, timeout)
    end,
    post = function(url, body, timeout)
      return handle('POST', url, body, timeout)
    end,
    sleep = function(s)
      f.sleeps[#f.sleeps + 1] = s
      f.now = f.now + s
    end,
    clock = function()
      return f.now
    end,
    encode = json.encode,
    decode = json.decode,
    log = function(level, message)
      f.logs[#f.logs + 1] = level .. ' ' .. message
    end,
  }

  function f.logged(pattern)
    for _, l in ipairs(f.logs) do
      if string.find(l, pattern) then
        return l
      end
    end
    return nil
  end

  return f
end

return fake
