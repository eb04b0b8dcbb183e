--[[
  json.lua - a small, strict JSON encoder/decoder in pure Lua 5.1.

  Lightroom Classic's Lua has no JSON library, so the livebridge client ships this one.

    local json = require 'json'
    local text = json.encode({ type = 'ping', channels = { 'jobs', 'system' } })
    local value = json.decode('{"success": true, "messages": []}')

  Mapping:
    JSON object  <-> Lua table with string keys
    JSON array   <-> Lua sequence (1..n); `json.array(t)` marks a table (even an empty one)
                     to be encoded as an array; decoded arrays carry that mark too
    JSON string  <-> Lua string (UTF-8; \uXXXX escapes and surrogate pairs are decoded)
    JSON number  <-> Lua number
    true/false   <-> true/false
    null         <-> json.null (a unique sentinel; `nil` cannot live in a table)

  An empty, unmarked table is encoded as `{}`. Object keys are written sorted, so the output
  is deterministic. `encode` raises on values JSON cannot hold (functions, cycles, NaN,
  non-string keys in objects); `decode` raises on malformed input, naming the position.
  Callers that must not raise wrap them in pcall.
]]

local json = {}

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local setmetatable, getmetatable, error = setmetatable, getmetatable, error
local concat, sort = table.concat, table.sort
local byte, char, find, format, sub, gsub =
  string.byte, string.char, string.find, string.format, string.sub, string.gsub
local floor, huge = math.floor, math.huge

local MAX_DEPTH = 500

-- The JSON null.
json.null = setmetatable({}, {
  __tostring = function()
    return 'json.null'
  end,
})

local array_mt = { __jsontype = 'array' }
local object_mt = { __jsontype = 'object' }

--- Marks `t` (a new table when nil) to be encoded as a JSON array.
function json.array(t)
  return setmetatable(t or {}, array_mt)
end

--- Marks `t` (a new table when nil) to be encoded as a JSON object, even when empty.
function json.object(t)
  return setmetatable(t or {}, object_mt)
end

---------------------------------------------------------------------------------------------
-- Encoding
---------------------------------------------------------------------------------------------

local escapes = {
  ['"'] = '\\"',
  ['\\'] = '\\\\',
  ['\b'] = '\\b',
  ['\f'] = '\\f',
  ['\n'] = '\\n',
  ['\r'] = '\\r',
  ['\t'] = '\\t',
}

local function escape_char(c)
  return escapes[c] or format('\\u%04x', byte(c))
end

local function encode_string(s)
  return '"' .. gsub(s, '[%c"\\]', escape_char) .. '"'
end

local function encode_number(n)
  if n ~= n or n == huge or n == -huge then
    error('json.encode: cannot encode number ' .. tostring(n))
  end
  if floor(n) == n and n >= -9007199254740992 and n <= 9007199254740992 then
    return format('%d', n)
  end
  local s = format('%.14g', n)
  if tonumber(s) ~= n then
    s = format('%.17g', n)
  end
  return s
end

-- Whether `t` is a sequence 1..n (and its length), or nil.
local function sequence_length(t)
  local n = 0
  for k in pairs(t) do
    if type(k) ~= 'number' or k < 1 or floor(k) ~= k then
      return nil
    end
    if k > n then
      n = k
    end
  end
  -- Holes are allowed only if filled with json.null by the caller; a sparse table is an error.
  for i = 1, n do
    if t[i] == nil then
      return nil
    end
  end
  return n
end

local encode_value

local function encode_table(t, out, stack, depth)
  if stack[t] then
    error('json.encode: cannot encode a table that contains itself')
  end
  if depth > MAX_DEPTH then
    error('json.encode: nesting too deep')
  end
  stack[t] = true
  local mt = getmetatable(t)
  local kind = mt and mt.__jsontype
  local n = (kind ~= 'object') and sequence_length(t) or nil
  if kind == 'array' and n == nil then
    error('json.encode: a table marked as array has non-sequence keys')
  end
  if n and (n > 0 or kind == 'array') then
    out[#out + 1] = '['
    for i = 1, n do
      if i > 1 then
        out[#out + 1] = ','
      end
      encode_value(t[i], out, stack, depth + 1)
    end
    out[#out + 1] = ']'
  else
    local keys = {}
    for k in pairs(t) do
      if type(k) ~= 'string' then
        error('json.encode: object keys must be strings, got ' .. type(k) .. ' ' .. tostring(k))
      end
      keys[#keys + 1] = k
    end
    sort(keys)
    out[#out + 1] = '{'
    for i, k in ipairs(keys) do
      if i > 1 then
        out[#out + 1] = ','
      end
      out[#out + 1] = encode_string(k)
      out[#out + 1] = ':'
      encode_value(t[k], out, stack, depth + 1)
    end
    out[#out + 1] = '}'
  end
  stack[t] = nil
end

encode_value = function(v, out, stack, depth)
  local tv = type(v)
  if v == nil or v == json.null then
    out[#out + 1] = 'null'
  elseif tv == 'boolean' then
    out[#out + 1] = v and 'true' or 'false'
  elseif tv == 'number' then
    out[#out + 1] = encode_number(v)
  elseif tv == 'string' then
    out[#out + 1] = encode_string(v)
  elseif tv == 'table' then
    encode_table(v, out, stack, depth)
  else
    error('json.encode: cannot encode a ' .. tv)
  end
end

--- Encodes a Lua value as JSON text. Raises on values JSON cannot hold.
function json.encode(value)
  local out = {}
  encode_value(value, out, {}, 0)
  return concat(out)
end

---------------------------------------------------------------------------------------------
-- Decoding
---------------------------------------------------------------------------------------------

local function decode_error(str, pos, what)
  local line, col = 1, 1
  for i = 1, pos - 1 do
    if byte(str, i) == 10 then
      line, col = line + 1, 1
    else
      col = col + 1
    end
  end
  error(format('json.decode: %s at line %d column %d (byte %d)', what, line, col, pos), 0)
end

local function skip_ws(str, pos)
  local _, e = find(str, '^[ \t\r\n]*', pos)
  return e + 1
end

local function utf8_char(cp)
  if cp < 0x80 then
    return char(cp)
  elseif cp < 0x800 then
    return char(0xC0 + floor(cp / 0x40), 0x80 + cp % 0x40)
  elseif cp < 0x10000 then
    return char(0xE0 + floor(cp / 0x1000), 0x80 + floor(cp / 0x40) % 0x40, 0x80 + cp % 0x40)
  else
    return char(
      0xF0 + floor(cp / 0x40000),
      0x80 + floor(cp / 0x1000) % 0x40,
      0x80 + floor(cp / 0x40) % 0x40,
      0x80 + cp % 0x40
    )
  end
end

local simple_unescape = {
  ['"'] = '"',
  ['\\'] = '\\',
  ['/'] = '/',
  b = '\b',
  f = '\f',
  n = '\n',
  r = '\r',
  t = '\t',
}

local function decode_string(str, pos)
  -- str[pos] is the opening quote.
  local parts = {}
  local i = pos + 1
  while true do
    local s, e = find(str, '^[^"\\%c]+', i)
    if s then
      parts[#parts + 1] = sub(str, s, e)
      i = e + 1
    end
    local c = sub(str, i, i)
    if c == '"' then
      return concat(parts), i + 1
    elseif c == '\\' then
      local esc = sub(str, i + 1, i + 1)
      if simple_unescape[esc] then
        parts[#parts + 1] = simple_unescape[esc]
        i = i + 2
      elseif esc == 'u' then
        local hex = sub(str, i + 2, i + 5)
        if not find(hex, '^%x%x%x%x$') then
          decode_error(str, i, 'invalid \\u escape')
        end
        local cp = tonumber(hex, 16)
        i = i + 6
        if cp >= 0xD800 and cp <= 0xDBFF then
          local low = find(str, '^\\u[dD][c-fC-F]%x%x', i) and tonumber(sub(str, i + 2, i + 5), 16)
          if low then
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (low - 0xDC00)
            i = i + 6
          else
            cp = 0xFFFD -- a lone high surrogate
          end
        elseif cp >= 0xDC00 and cp <= 0xDFFF then
          cp = 0xFFFD -- a lone low surrogate
        end
        parts[#parts + 1] = utf8_char(cp)
      else
        decode_error(str, i, 'invalid escape')
      end
    elseif c == '' then
      decode_error(str, i, 'unterminated string')
    else
      decode_error(str, i, 'control character in string')
    end
  end
end

local function decode_number(str, pos)
  local s, e = find(str, '^-?%d+', pos)
  if not s then
    decode_error(str, pos, 'invalid number')
  end
  local int_part = sub(str, s, e)
  if find(int_part, '^-?0%d') then
    decode_error(str, pos, 'leading zero in number')
  end
  local _, fe = find(str, '^%.%d+', e + 1)
  if fe then
    e = fe
  elseif sub(str, e + 1, e + 1) == '.' then
    decode_error(str, e + 1, 'invalid number')
  end
  local _, xe = find(str, '^[eE][-+]?%d+', e + 1)
  if xe then
    e = xe
  elseif find(str, '^[eE]', e + 1) then
    decode_error(str, e + 1, 'invalid number')
  end
  return tonumber(sub(str, pos, e)), e + 1
end

local decode_value

local function decode_array(str, pos, depth)
  local result = json.array()
  local n = 0
  pos = skip_ws(str, pos + 1)
  if sub(str, pos, pos) == ']' then
    return result, pos + 1
  end
  while true do
    local v
    v, pos = decode_value(str, pos, depth + 1)
    n = n + 1
    result[n] = v
    pos = skip_ws(str, pos)
    local c = sub(str, pos, pos)
    if c == ']' then
      return result, pos + 1
    elseif c ~= ',' then
      decode_error(str, pos, "expected ',' or ']'")
    end
    pos = skip_ws(str, pos + 1)
  end
end

local function decode_object(str, pos, depth)
  local result = {}
  pos = skip_ws(str, pos + 1)
  if sub(str, pos, pos) == '}' then
    return result, pos + 1
  end
  while true do
    if sub(str, pos, pos) ~= '"' then
      decode_error(str, pos, 'expected a string key')
    end
    local key
    key, pos = decode_string(str, pos)
    pos = skip_ws(str, pos)
    if sub(str, pos, pos) ~= ':' then
      decode_error(str, pos, "expected ':'")
    end
    pos = skip_ws(str, pos + 1)
    local v
    v, pos = decode_value(str, pos, depth + 1)
    result[key] = v
    pos = skip_ws(str, pos)
    local c = sub(str, pos, pos)
    if c == '}' then
      return result, pos + 1
    elseif c ~= ',' then
      decode_error(str, pos, "expected ',' or '}'")
    end
    pos = skip_ws(str, pos + 1)
  end
end

decode_value = function(str, pos, depth)
  if depth > MAX_DEPTH then
    decode_error(str, pos, 'nesting too deep')
  end
  local c = sub(str, pos, pos)
  if c == '{' then
    return decode_object(str, pos, depth)
  elseif c == '[' then
    return decode_array(str, pos, depth)
  elseif c == '"' then
    return decode_string(str, pos)
  elseif c == '-' or find(c, '^%d') then
    return decode_number(str, pos)
  elseif sub(str, pos, pos + 3) == 'true' then
    return true, pos + 4
  elseif sub(str, pos, pos + 4) == 'false' then
    return false, pos + 5
  elseif sub(str, pos, pos + 3) == 'null' then
    return json.null, pos + 4
  elseif c == '' then
    decode_error(str, pos, 'unexpected end of input')
  else
    decode_error(str, pos, 'unexpected character ' .. format('%q', c))
  end
end

--- Decodes JSON text into a Lua value. Raises on malformed input.
function json.decode(str)
  if type(str) ~= 'string' then
    error('json.decode: expected a string, got ' .. type(str), 0)
  end
  local pos = skip_ws(str, 1)
  local value
  value, pos = decode_value(str, pos, 0)
  pos = skip_ws(str, pos)
  if pos <= #str then
    decode_error(str, pos, 'trailing characters')
  end
  return value
end

return json
