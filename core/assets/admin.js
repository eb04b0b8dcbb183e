// The admin page's script: the hub's status, its clients, its channels with their activity,
// a live event stream and a publish form. It uses the hub's management API (with the admin
// token when the hub requires one) and its own livebridge client from /client.js for the
// live events. No inline code or style: the page's Content-Security-Policy forbids them.
import { connect } from '/client.js';

const REFRESH_MS = 500;
const SPARK_SECONDS = 60;
const STREAM_LIMIT = 300;
// The hub refuses a subscribe beyond its max_subscriptions (64 by default) as a whole, which
// would leave the page with no live events at all: it watches at most this many channels.
const MAX_WATCHED = 60;
const ADMIN_TOKEN_KEY = 'livebridge.adminToken';
const CLIENT_TOKEN_KEY = 'livebridge.clientToken';

const $ = (id) => document.getElementById(id);

/** Creates an element with attributes/properties and children. */
function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') element.className = value;
    else if (key === 'text') element.textContent = value;
    else if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) element.append(child);
  }
  return element;
}

// --- management API ---------------------------------------------------------------------

class Unauthorized extends Error {}

/**
 * A management request. The admin token is kept in sessionStorage (gone with the tab) and
 * sent as a bearer token; a 401 shows the token form and stops the refresh until one is given.
 */
async function api(method, path, body) {
  const headers = {};
  const token = sessionStorage.getItem(ADMIN_TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  let reply = null;
  try {
    reply = await response.json();
  } catch {
    // Not JSON: reported below by status.
  }
  if (response.status === 401) {
    askForAdminToken(token ? 'that token was refused' : '');
    throw new Unauthorized(reply?.error ?? 'admin token required');
  }
  if (!response.ok || reply?.success === false) {
    const error = new Error(reply?.error ?? `HTTP ${response.status}`);
    error.reply = reply;
    throw error;
  }
  return reply;
}

function askForAdminToken(problem) {
  $('token-panel').hidden = false;
  $('admin-token-form').hidden = false;
  $('admin-token-error').textContent = problem;
  setPill($('hub-status'), 'needs admin token', 'warn');
}

$('admin-token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(ADMIN_TOKEN_KEY, $('admin-token').value.trim());
  $('admin-token').value = '';
  $('admin-token-form').hidden = true;
  $('token-panel').hidden = $('client-token-form').hidden;
  refresh();
});

// --- hub status and clients, refreshed every second ---------------------------------------

// The hub pushes events but not changes to its sessions or counters: there is no feed of
// "client connected/left". Asking twice a second is cheap for one admin page (two small JSON
// requests) and keeps what is shown well under a second old, without a reload.
let refreshTimer = null;
let ownClientId = null;
let hubChannels = {};

async function refresh() {
  clearTimeout(refreshTimer);
  try {
    const [status, clients] = await Promise.all([api('GET', '/ws/status'), api('GET', '/ws/clients')]);
    showStatus(status);
    showClients(clients.clients);
    // /ws/status carries the same statistics as /websocket/stats (channels included) plus the
    // configuration: one request serves both.
    hubChannels = status.channels ?? {};
    watchChannels(Object.keys(hubChannels));
    showChannels();
  } catch (error) {
    if (error instanceof Unauthorized) return; // resumes when a token is given
    setPill($('hub-status'), `unreachable: ${error.message}`, 'bad');
  }
  refreshTimer = setTimeout(refresh, REFRESH_MS);
}

function showStatus(status) {
  setPill($('hub-status'), status.enabled ? `hub up · protocol ${status.protocol_version}` : 'hub disabled', status.enabled ? 'good' : 'warn');
  $('stat-uptime').textContent = duration(status.uptime_seconds);
  $('stat-clients').textContent = count(status.total_clients);
  $('stat-published').textContent = count(status.messages_published);
  $('stat-delivered').textContent = count(status.messages_delivered);
  $('stat-dropped').textContent = count(status.messages_dropped);
  $('stat-undelivered').textContent = count(status.messages_undelivered);
  $('stat-evictions').textContent = count(status.evictions);
  const minutes = $('cleanup-minutes');
  if (!minutes.dataset.touched && status.config?.stale_after_seconds) {
    minutes.value = String(Math.round((status.config.stale_after_seconds / 60) * 100) / 100);
  }
}

$('cleanup-minutes').addEventListener('input', (event) => {
  event.target.dataset.touched = 'yes';
});

function showClients(clients) {
  $('clients-count').textContent = String(clients.length);
  $('clients-empty').hidden = clients.length > 0;
  const showDropped = clients.some((client) => client.dropped !== undefined);
  $('dropped-header').hidden = !showDropped;
  const rows = clients.map((client) => {
    const own = client.id === ownClientId;
    return h(
      'tr',
      { 'data-client-id': client.id, class: own ? 'own' : undefined },
      h('td', { class: 'mono id-cell', title: client.id, text: client.id.slice(0, 8) }, own ? h('span', { class: 'tag', text: 'this page' }) : null),
      h('td', { text: client.client_type }),
      h('td', { text: client.client_name ?? '' }),
      h('td', {}, h('span', { class: `transport transport-${client.transport}`, text: transportLabel(client) })),
      h('td', { class: 'subs' }, (client.subscriptions ?? []).map((channel) => h('span', { class: 'chip', text: channel }))),
      h('td', { class: 'num', text: String(client.queued ?? 0) }),
      showDropped ? h('td', { class: 'num', text: String(client.dropped ?? 0) }) : null,
      h('td', { class: 'muted', title: client.last_activity ?? '', text: ago(client.idle_seconds) }),
      h('td', { class: 'actions' }, h('button', { type: 'button', class: 'danger small', text: 'Disconnect', onclick: () => disconnectClient(client.id) })),
    );
  });
  $('clients-body').replaceChildren(...rows);
}

function transportLabel(client) {
  if (client.transport === 'websocket') return 'WebSocket';
  if (client.transport === 'polling') return client.attached ? 'long poll' : 'polling (idle)';
  return client.transport ?? '–';
}

async function disconnectClient(id) {
  try {
    await api('POST', `/websocket/disconnect/${encodeURIComponent(id)}`);
  } catch (error) {
    if (!(error instanceof Unauthorized)) note($('cleanup-result'), `disconnect failed: ${error.message}`, true);
  }
  refresh();
}

$('cleanup-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const minutes = Number($('cleanup-minutes').value);
  try {
    const reply = await api('POST', '/ws/cleanup', Number.isFinite(minutes) ? { timeout_minutes: minutes } : {});
    note($('cleanup-result'), `Cleanup removed ${reply.removed} idle session(s); ${reply.remaining} remain.`);
  } catch (error) {
    if (!(error instanceof Unauthorized)) note($('cleanup-result'), `cleanup failed: ${error.message}`, true);
  }
  refresh();
});

function note(element, text, isError = false) {
  element.hidden = false;
  element.textContent = text;
  element.classList.toggle('error-text', isError);
}

// --- channels and their activity ----------------------------------------------------------

/** Per channel: events seen by this page in each of the last SPARK_SECONDS seconds. */
const activity = new Map();
const catalogueChannel = new Map(); // event type -> channel

function channelOf(message) {
  return message.channel ?? catalogueChannel.get(message.type) ?? null;
}

function countEvent(channel) {
  if (!activity.has(channel)) activity.set(channel, new Array(SPARK_SECONDS).fill(0));
  const buckets = activity.get(channel);
  buckets[buckets.length - 1]++;
}

setInterval(() => {
  for (const buckets of activity.values()) {
    buckets.shift();
    buckets.push(0);
  }
  showChannels();
}, 1000);

function showChannels() {
  const names = new Set([...Object.keys(hubChannels), ...catalogueChannel.values(), ...activity.keys()]);
  const rows = [...names].sort().map((channel) => {
    const buckets = activity.get(channel) ?? new Array(SPARK_SECONDS).fill(0);
    // The last complete second: the current one is still counting.
    const rate = buckets[buckets.length - 2];
    return h(
      'tr',
      { 'data-channel': channel },
      h('td', {}, h('span', { class: 'chip', text: channel })),
      h('td', { class: 'num', text: String(hubChannels[channel] ?? 0) }),
      h('td', { class: 'num', text: String(rate) }),
      h('td', { class: 'spark-cell' }, sparkline(buckets)),
    );
  });
  $('channels-body').replaceChildren(...rows);
  fillSelect($('filter-channel'), [...names].sort());
}

const SVG = 'http://www.w3.org/2000/svg';

/** A small SVG area chart of the counts (drawn by script: the page allows no inline SVG styles). */
function sparkline(values) {
  const width = 180;
  const height = 28;
  const max = Math.max(1, ...values);
  const step = width / (values.length - 1);
  const points = values.map((value, i) => `${(i * step).toFixed(1)},${(height - 2 - (value / max) * (height - 4)).toFixed(1)}`);
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `peak ${max} per second`);
  const area = document.createElementNS(SVG, 'polygon');
  area.setAttribute('points', `0,${height} ${points.join(' ')} ${width},${height}`);
  area.setAttribute('class', 'spark-area');
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('points', points.join(' '));
  line.setAttribute('class', 'spark-line');
  svg.append(area, line);
  return svg;
}

// --- the page's own client and the live stream --------------------------------------------

let client = null;
const watched = new Set();
let paused = false;
let streamTotal = 0;
const seenTypes = new Set();

function startClient() {
  client?.close();
  const token = sessionStorage.getItem(CLIENT_TOKEN_KEY) ?? undefined;
  client = connect(location.origin, {
    clientType: 'admin',
    clientName: 'livebridge admin page',
    channels: [...watched],
    token,
  });
  client.on('state', (state, detail) => {
    ownClientId = client.clientId;
    const transport = client.transport === 'websocket' ? 'WebSocket' : 'long poll';
    const text = {
      connecting: 'live: connecting',
      open: `live via ${transport}`,
      polling: `live via ${transport}`,
      reconnecting: `live: reconnecting${detail.attempt ? ` (attempt ${detail.attempt})` : ''}`,
      closed: 'live: closed',
    }[state];
    setPill($('live-status'), text, state === 'open' || state === 'polling' ? 'good' : state === 'closed' ? 'bad' : 'warn');
  });
  client.on('error', (message) => {
    // The hub requires client tokens: the admin token is not one (they are kept apart).
    if (message.status === 401 || message.status === 403) {
      $('token-panel').hidden = false;
      $('client-token-form').hidden = false;
    }
  });
  client.on('*', (message) => {
    if (message.type === 'connection_established') return;
    const channel = channelOf(message);
    if (channel) countEvent(channel);
    addToStream(message, channel);
  });
}

$('client-token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(CLIENT_TOKEN_KEY, $('client-token').value.trim());
  $('client-token').value = '';
  $('client-token-form').hidden = true;
  $('token-panel').hidden = $('admin-token-form').hidden;
  startClient();
});

/** Subscribes the page's client to channels it does not watch yet. */
function watchChannels(channels) {
  const room = Math.max(0, MAX_WATCHED - watched.size);
  const fresh = channels.filter((channel) => !watched.has(channel)).slice(0, room);
  if (fresh.length === 0) return;
  for (const channel of fresh) watched.add(channel);
  client?.subscribe(fresh).catch(() => {
    // Retried with every channel after the next reconnection.
  });
}

function addToStream(message, channel) {
  streamTotal++;
  $('stream-count').textContent = String(streamTotal);
  if (!seenTypes.has(message.type)) {
    seenTypes.add(message.type);
    fillSelect($('filter-type'), [...new Set([...catalogueChannel.keys(), ...seenTypes])].sort());
  }
  if (paused) return;
  const { type, timestamp, channel: _channel, offset: _offset, epoch: _epoch, ...fields } = message;
  const item = h(
    'li',
    { class: 'event', 'data-type': type, 'data-channel': channel ?? '' },
    h('span', { class: 'event-time mono', text: clock(timestamp) }),
    h('span', { class: `chip ${channel ? '' : 'chip-none'}`, text: channel ?? 'direct' }),
    h('span', { class: 'event-type', text: type }),
    h('code', { class: 'event-fields', text: summary(fields) }),
  );
  item.hidden = !matchesFilter(item);
  const stream = $('stream');
  stream.prepend(item);
  while (stream.children.length > STREAM_LIMIT) stream.lastElementChild.remove();
  $('stream-empty').hidden = true;
}

function summary(fields) {
  return Object.entries(fields)
    .map(([key, value]) => `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
    .join('  ');
}

function matchesFilter(item) {
  const channel = $('filter-channel').value;
  const type = $('filter-type').value;
  return (!channel || item.dataset.channel === channel) && (!type || item.dataset.type === type);
}

function applyFilter() {
  for (const item of $('stream').children) item.hidden = !matchesFilter(item);
}

$('filter-channel').addEventListener('change', applyFilter);
$('filter-type').addEventListener('change', applyFilter);
$('stream-pause').addEventListener('click', (event) => {
  paused = !paused;
  event.target.textContent = paused ? 'Resume' : 'Pause';
  event.target.classList.toggle('active', paused);
});
$('stream-clear').addEventListener('click', () => {
  $('stream').replaceChildren();
  $('stream-empty').hidden = false;
});

/** Keeps a select's options in step with `values`, keeping the choice and the first "all" option. */
function fillSelect(select, values) {
  const current = [...select.options].slice(1).map((option) => option.value);
  if (current.length === values.length && current.every((value, i) => value === values[i])) return;
  const chosen = select.value;
  select.replaceChildren(select.options[0], ...values.map((value) => h('option', { value, text: value })));
  select.value = values.includes(chosen) ? chosen : '';
}

// --- the publish form, generated from the catalogue ---------------------------------------

let catalogue = [];

async function loadCatalogue() {
  // /api/catalogue is open (like health): no admin token needed to build the form.
  const response = await fetch('/api/catalogue', { cache: 'no-store' });
  const reply = await response.json();
  catalogue = reply.events ?? [];
  for (const event of catalogue) catalogueChannel.set(event.type, event.channel);
  const byChannel = new Map();
  for (const event of catalogue) {
    if (!byChannel.has(event.channel)) byChannel.set(event.channel, []);
    byChannel.get(event.channel).push(event);
  }
  $('publish-type').replaceChildren(
    ...[...byChannel].map(([channel, events]) =>
      h('optgroup', { label: channel }, events.map((event) => h('option', { value: event.type, text: event.type }))),
    ),
  );
  fillSelect($('filter-type'), [...catalogueChannel.keys()].sort());
  showFields();
  watchChannels([...new Set(catalogueChannel.values())]);
}

const FIELD_HINTS = {
  id: 'integer or text',
  string: 'text',
  number: 'number',
  count: 'whole number ≥ 0',
  string_or_object: 'text or JSON object',
  any: 'any JSON (or text)',
};

function showFields() {
  const event = catalogue.find((e) => e.type === $('publish-type').value);
  if (!event) return;
  const fields = event.fields.map((field) => {
    const id = `field-${field.name}`;
    const range = field.min !== undefined || field.max !== undefined ? ` ${field.min ?? ''}–${field.max ?? ''}` : '';
    const multiline = field.type === 'any' || field.type === 'string_or_object';
    // Every input is free text: the hub validates (and its error is what the user sees).
    const input = multiline
      ? h('textarea', { id, name: field.name, rows: '2', 'data-kind': field.type, placeholder: FIELD_HINTS[field.type] })
      : h('input', {
          id,
          name: field.name,
          type: 'text',
          'data-kind': field.type,
          inputmode: field.type === 'number' ? 'decimal' : field.type === 'count' ? 'numeric' : undefined,
          placeholder: FIELD_HINTS[field.type] + range,
          autocomplete: 'off',
        });
    return h(
      'div',
      { class: 'field' },
      h('label', { for: id }, field.name, field.required ? h('span', { class: 'required', title: 'required', text: ' *' }) : null, h('span', { class: 'kind', text: ` ${field.type}` })),
      input,
    );
  });
  const rules = (event.rules ?? []).map((rule) =>
    rule.rule === 'percent'
      ? h('p', { class: 'muted small', text: `${rule.field} is computed by the hub from ${rule.part} / ${rule.whole}` })
      : h('p', { class: 'muted small', text: `${rule.field} may not exceed ${rule.limit}` }),
  );
  $('publish-fields').replaceChildren(...fields, ...rules);
  $('publish-result').textContent = '';
}

$('publish-type').addEventListener('change', showFields);

/** A field's text as the JSON value to send; empty fields are left out. */
function fieldValue(kind, text) {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  const asNumber = Number(trimmed);
  switch (kind) {
    case 'id':
      return /^-?\d+$/.test(trimmed) && Number.isSafeInteger(asNumber) ? asNumber : trimmed;
    case 'number':
    case 'count':
      // Not a number: sent as typed, so the hub says what is wrong with it.
      return trimmed !== '' && Number.isFinite(asNumber) ? asNumber : trimmed;
    case 'string_or_object':
    case 'any':
      try {
        const parsed = JSON.parse(trimmed);
        return kind === 'any' || (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) ? parsed : trimmed;
      } catch {
        return trimmed;
      }
    default:
      return text;
  }
}

$('publish-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const type = $('publish-type').value;
  const body = { type };
  for (const input of $('publish-fields').querySelectorAll('input, textarea')) {
    const value = fieldValue(input.dataset.kind, input.value);
    if (value !== undefined) body[input.name] = value;
  }
  const result = $('publish-result');
  result.className = 'result';
  result.textContent = 'publishing…';
  try {
    const reply = await api('POST', '/api/events', body);
    const published = reply.events?.[0];
    result.classList.add('ok');
    result.textContent = `Published ${published?.type ?? type} on ${published?.channel ?? '?'} to ${published?.recipients ?? 0} recipient(s)`;
  } catch (error) {
    result.classList.add('error-text');
    result.textContent = error instanceof Unauthorized ? 'admin token required' : error.message;
  }
});

// --- formatting ---------------------------------------------------------------------------

function setPill(element, text, tone) {
  element.textContent = text;
  element.className = `pill pill-${tone}`;
}

function count(n) {
  return typeof n === 'number' ? n.toLocaleString('en-US') : '–';
}

function duration(seconds) {
  if (typeof seconds !== 'number') return '–';
  const s = Math.floor(seconds);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d) return `${d}d ${hh}h ${mm}m`;
  if (hh) return `${hh}h ${mm}m`;
  if (mm) return `${mm}m ${s % 60}s`;
  return `${s}s`;
}

function ago(seconds) {
  if (typeof seconds !== 'number') return '–';
  if (seconds < 1.5) return 'now';
  return `${duration(seconds)} ago`;
}

function clock(timestamp) {
  const date = timestamp ? new Date(timestamp) : new Date();
  return Number.isNaN(date.getTime()) ? '' : date.toISOString().slice(11, 23);
}

// --- start --------------------------------------------------------------------------------

async function start() {
  fetch('/api/system/health', { cache: 'no-store' })
    .then((response) => response.json())
    .then((health) => {
      $('hub-version').textContent = `v${health.version}`;
    })
    .catch(() => {});
  startClient();
  await loadCatalogue().catch((error) => {
    $('publish-result').textContent = `catalogue unavailable: ${error.message}`;
  });
  refresh();
}

start();
