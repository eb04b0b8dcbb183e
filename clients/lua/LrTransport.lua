--[[
  LrTransport.lua - the WebSocketClient transport over the Lightroom Classic SDK:
  LrHttp.get/post, LrTasks.sleep/startAsyncTask/pcall, LrDate.currentTime, LrLogger, and the
  pure-Lua json.lua shipped beside it (Lightroom has no JSON library).

    local WebSocketClient = require 'WebSocketClient'
    local LrTransport = require 'LrTransport'
    WebSocketClient.init({ transport = LrTransport.new(), baseUrl = 'http://127.0.0.1:5100' })

  Options of LrTransport.new:
    loggerName  name of the LrLogger (default 'WebSocketClient')
    logTarget   'logfile' (default) or 'print'; the log file is in Lightroom's log folder
    logLevel    'debug' | 'info' (default) | 'warn' | 'error'

  LrHttp must run inside a task: the client's background loop is started with
  LrTasks.startAsyncTask, and sends from your own code should happen in a task too
  (LrTasks.startAsyncTask / LrFunctionContext.postAsyncTaskWithContext), as usual in the SDK.
  LrTasks.pcall is used instead of pcall because LrHttp and LrTasks.sleep yield, and a
  plain pcall cannot be yielded across in Lightroom's Lua.
]]

local LrHttp = import 'LrHttp'
local LrTasks = import 'LrTasks'
local LrDate = import 'LrDate'
local LrLogger = import 'LrLogger'

local json = require 'json'

local LrTransport = {}

local LEVELS = { debug = 1, info = 2, warn = 3, error = 4 }

local JSON_HEADERS = {
  { field = 'Content-Type', value = 'application/json' },
  { field = 'Accept', value = 'application/json' },
}

-- LrHttp answers (body, headers): headers.status is the HTTP status; on a network failure
-- body is nil and headers.error describes it ({errorCode = ..., name = ...}).
local function result(body, headers)
  if type(headers) == 'table' and type(headers.status) == 'number' then
    return headers.status, body or ''
  end
  local err = type(headers) == 'table' and headers.error
  if type(err) == 'table' then
    return nil, tostring(err.name or err.errorCode or 'network error')
  end
  return nil, tostring(err or 'no answer from the server')
end

function LrTransport.new(options)
  options = options or {}
  local logger = LrLogger(options.loggerName or 'WebSocketClient')
  logger:enable(options.logTarget or 'logfile')
  local threshold = LEVELS[options.logLevel or 'info'] or LEVELS.info
  return {
    get = function(url, timeout)
      local body, headers = LrHttp.get(url, JSON_HEADERS, timeout)
      return result(body, headers)
    end,
    post = function(url, body, timeout)
      local reply, headers = LrHttp.post(url, body or '', JSON_HEADERS, 'POST', timeout)
      return result(reply, headers)
    end,
    sleep = function(seconds)
      LrTasks.sleep(seconds)
    end,
    clock = function()
      return LrDate.currentTime()
    end,
    encode = json.encode,
    decode = json.decode,
    log = function(level, message)
      if (LEVELS[level] or LEVELS.info) < threshold then
        return
      end
      if level == 'error' then
        logger:error(message)
      elseif level == 'warn' then
        logger:warn(message)
      elseif level == 'debug' then
        logger:trace(message)
      else
        logger:info(message)
      end
    end,
    startTask = function(fn, name)
      LrTasks.startAsyncTask(fn, name)
    end,
    pcall = LrTasks.pcall,
  }
end

return LrTransport
