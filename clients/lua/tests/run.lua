--[[
  The Lua test runner.

    lua5.1 clients/lua/tests/run.lua                 unit tests only (no server)
    lua5.1 clients/lua/tests/run.lua URL SCENARIO    a scenario against a livebridge at URL

  Scenarios (tests/live.lua): events, outage, restart, overflow. Lines starting with "@@ "
  on stdout talk to the Rust harness (runtime-smol/tests/lua_client.rs). Exits 1 on failure.
]]

local here = string.match(arg and arg[0] or '', '^(.*)[/\\]') or '.'
package.path = here .. '/?.lua;' .. here .. '/../?.lua;' .. package.path

local url, scenario = arg[1], arg[2]
local check = require 'check'

if not url or url == '--unit' then
  require 'unit'
  check.run(arg[2])
else
  local okSocket, err = pcall(require, 'socket.http')
  if not okSocket then
    print('LuaSocket is missing (' .. tostring(err) .. '): run scripts/install-test-deps.sh')
    os.exit(1)
  end
  local live = require 'live'
  live.register(url, scenario)
  check.run()
end
os.exit(check.summary() and 0 or 1)
