--[[
  SocketTransport.lua - the WebSocketClient transport over LuaSocket, for tests and scripts
  outside Lightroom (Debian: lua5.1, lua-socket; lua-cjson optional).

    local SocketTransport = require 'SocketTransport'
    local transport = SocketTransport.new({ json = 'cjson', logLevel = 'info' })

  Options:
    json      'json' (default: the pure-Lua json.lua shipped beside it) or 'cjson'
    logLevel  'debug' | 'info' | 'warn' | 'error' | 'off'  (default 'warn')
    logger    function(level, message) replacing the default (stderr) logger

  It has no startTask: scripts drive the client with client:run() or client:step().
]]

local http = require 'socket.http'
local ltn12 = require 'ltn12'
local socket = require 'socket'

local SocketTransport = {}

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4, off = 5 }

local function load_json(which)
  if which == 'cjson' then
    local cjson = require 'cjson'
    -- Keep the same conventions as json.lua where it matters: nulls stay sentinels.
    return {
      encode = cjson.encode,
      decode = cjson.decode,
    }
  end
  local json = require 'json'
  return { encode = json.encode, decode = json.decode }
end

local function request(method, url, body, timeout)
  local chunks = {}
  local headers = { accept = 'application/json' }
  local source
  if body ~= nil then
    headers['content-type'] = 'application/json'
    headers['content-length'] = tostring(#body)
    source = ltn12.source.string(body)
  elseif method == 'POST' then
    headers['content-length'] = '0'
  end
  -- socket.http applies its module-wide TIMEOUT to every socket it opens.
  local previous = http.TIMEOUT
  http.TIMEOUT = timeout or 30
  local ok, r, code = pcall(http.request, {
    url = url,
    method = method,
    headers = headers,
    source = source,
    sink = ltn12.sink.table(chunks),
  })
  http.TIMEOUT = previous
  if not ok then
    return nil, tostring(r)
  end
  if r == nil then
    return nil, tostring(code)
  end
  if type(code) ~= 'number' then
    return nil, 'no HTTP status: ' .. tostring(code)
  end
  return code, table.concat(chunks)
end

function SocketTransport.new(options)
  options = options or {}
  local json = load_json(options.json)
  local threshold = LEVELS[options.logLevel or 'warn'] or LEVELS.warn
  local logger = options.logger
    or function(level, message)
      if (LEVELS[level] or LEVELS.info) >= threshold then
        io.stderr:write(string.format('[%.3f] %s %s\n', socket.gettime(), level, message))
      end
    end
  return {
    get = function(url, timeout)
      return request('GET', url, nil, timeout)
    end,
    post = function(url, body, timeout)
      return request('POST', url, body, timeout)
    end,
    sleep = function(seconds)
      socket.sleep(seconds)
    end,
    clock = socket.gettime,
    encode = json.encode,
    decode = json.decode,
    log = logger,
  }
end

return SocketTransport
