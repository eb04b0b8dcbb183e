-- A tiny test helper: named tests, assertions with readable failures, a summary.
local check = {}

local tests = {}
local failures = 0
local passed = 0

local function show(v, depth)
  depth = depth or 0
  if type(v) == 'string' then
    return string.format('%q', v)
  elseif type(v) ~= 'table' then
    return tostring(v)
  elseif depth > 3 then
    return '{...}'
  end
  local keys = {}
  for k in pairs(v) do
    keys[#keys + 1] = k
  end
  table.sort(keys, function(a, b)
    return tostring(a) < tostring(b)
  end)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = tostring(k) .. '=' .. show(v[k], depth + 1)
  end
  return '{' .. table.concat(parts, ', ') .. '}'
end
check.show = show

local function fail(msg, level)
  error(msg, (level or 2) + 1)
end

function check.ok(v, msg)
  if not v then
    fail('expected a true value: ' .. tostring(msg or ''), 2)
  end
  return v
end

function check.eq(actual, expected, msg)
  if actual ~= expected then
    fail(string.format('%s: expected %s, got %s', msg or 'eq', show(expected), show(actual)), 2)
  end
end

local function deep_equal(a, b)
  if type(a) ~= type(b) then
    return false
  end
  if type(a) ~= 'table' then
    return a == b
  end
  for k, v in pairs(a) do
    if not deep_equal(v, b[k]) then
      return false
    end
  end
  for k in pairs(b) do
    if a[k] == nil then
      return false
    end
  end
  return true
end
check.deep_equal = deep_equal

function check.same(actual, expected, msg)
  if not deep_equal(actual, expected) then
    fail(string.format('%s: expected %s, got %s', msg or 'same', show(expected), show(actual)), 2)
  end
end

function check.near(actual, expected, tolerance, msg)
  if type(actual) ~= 'number' or math.abs(actual - expected) > tolerance then
    fail(string.format('%s: expected %s (+-%s), got %s', msg or 'near', show(expected), tostring(tolerance), show(actual)), 2)
  end
end

function check.raises(fn, pattern, msg)
  local ok, err = pcall(fn)
  if ok then
    fail((msg or 'raises') .. ': expected an error', 2)
  end
  if pattern and not string.find(tostring(err), pattern) then
    fail(string.format('%s: error %q does not match %q', msg or 'raises', tostring(err), pattern), 2)
  end
end

function check.test(name, fn)
  tests[#tests + 1] = { name = name, fn = fn }
end

-- Runs the registered tests (optionally only those whose name contains `filter`).
function check.run(filter)
  for _, t in ipairs(tests) do
    if not filter or string.find(t.name, filter, 1, true) then
      local ok, err = xpcall(t.fn, debug.traceback)
      if ok then
        passed = passed + 1
        print('ok      ' .. t.name)
      else
        failures = failures + 1
        print('FAILED  ' .. t.name .. '\n' .. tostring(err))
      end
      io.stdout:flush()
    end
  end
  tests = {}
  return failures == 0
end

function check.summary()
  print(string.format('%d passed, %d failed', passed, failures))
  return failures == 0
end

return check
