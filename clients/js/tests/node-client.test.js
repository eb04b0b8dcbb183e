// The client in Node 20 against the real hub: over long polling (Node 20 has no WebSocket
// global) and over WebSocket with the `ws` package passed in; resume, restart, upgrade,
// sending, and the reconnection backoff.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { connect } from '../livebridge.js';
import { execFileSync } from 'node:child_process';
import { Hub, BINARY, waitFor } from './support/hub.js';

let hub;
before(async () => {
  hub = await Hub.start();
});
after(async () => {
  await hub?.stop();
});

const connected = (client) => client.state === 'open' || client.state === 'polling';

/** A client whose received messages are collected in `client.received`. */
function collecting(url, options) {
  const client = connect(url, options);
  client.received = [];
  client.on('*', (message) => client.received.push(message));
  return client;
}

const jobIds = (client) => client.received.filter((m) => m.type === 'job_created').map((m) => m.job_id);

test('Node 20 has no WebSocket global, so the client long-polls and receives events in order', async () => {
  assert.equal(globalThis.WebSocket, undefined, 'this test is about Node 20 without WebSocket');
  const client = collecting(hub.url, { clientType: 'node', clientName: 'poller', channels: ['jobs'] });
  try {
    await waitFor(() => connected(client), { what: 'connected' });
    assert.equal(client.transport, 'polling');
    assert.equal(client.state, 'polling');
    const listed = (await hub.clients()).find((c) => c.id === client.clientId);
    assert.equal(listed.client_type, 'node');
    assert.equal(listed.client_name, 'poller');
    assert.deepEqual(listed.subscriptions, ['jobs']);
    const events = Array.from({ length: 30 }, (_, i) => ({ type: 'job_created', job_id: i, photo_id: 1 }));
    await hub.publish(events.slice(0, 10));
    await hub.publish(events.slice(10));
    await waitFor(() => jobIds(client).length >= 30, { what: '30 events' });
    assert.deepEqual(jobIds(client), events.map((e) => e.job_id));
  } finally {
    await client.close();
  }
});

test('send() publishes to the other subscribers and reports the hub error', async () => {
  const sender = collecting(hub.url, { clientType: 'node', channels: ['jobs'] });
  const receiver = collecting(hub.url, { clientType: 'node', channels: ['jobs'], WebSocket });
  try {
    await waitFor(() => connected(sender) && connected(receiver), { what: 'both connected' });
    const reply = await sender.send({ type: 'job_progress', job_id: 'j1', stage: 'render', progress: 50 });
    assert.equal(reply.type, 'published');
    assert.equal(reply.recipients, 1);
    await waitFor(() => receiver.received.some((m) => m.type === 'job_progress'), { what: 'job_progress' });
    const event = receiver.received.find((m) => m.type === 'job_progress');
    assert.equal(event.job_id, 'j1');
    assert.equal(event.progress, 50);
    assert.ok(!sender.received.some((m) => m.type === 'job_progress'), 'the sender does not get its own event');
    await assert.rejects(sender.send({ type: 'job_progress', job_id: 'j1', stage: 'x', progress: 'fifty' }), /progress: invalid type/);
    await assert.rejects(receiver.send({ type: 'job_progress', job_id: 'j1' }), /stage/);
  } finally {
    await Promise.all([sender.close(), receiver.close()]);
  }
});

test('subscribe and unsubscribe change what the hub sends; close ends the session', async () => {
  const client = collecting(hub.url, { clientType: 'node', channels: ['jobs'], WebSocket });
  await waitFor(() => connected(client), { what: 'connected' });
  assert.equal(client.transport, 'websocket');
  const reply = await client.subscribe(['photos']);
  assert.deepEqual(reply.subscriptions, ['jobs', 'photos']);
  await client.unsubscribe('jobs');
  assert.deepEqual(client.channels, ['photos']);
  await hub.publish([
    { type: 'job_created', job_id: 1, photo_id: 1 },
    { type: 'photo_approved', photo_id: 7 },
  ]);
  await waitFor(() => client.received.some((m) => m.type === 'photo_approved'), { what: 'photo_approved' });
  assert.ok(!client.received.some((m) => m.type === 'job_created'), 'unsubscribed from jobs');
  const id = client.clientId;
  await client.close();
  assert.equal(client.state, 'closed');
  await waitFor(async () => !(await hub.clients()).some((c) => c.id === id), { what: 'session gone' });
});

test('a WebSocket that drops is resumed: same session, events published meanwhile delivered', async () => {
  const sockets = [];
  class TrackedWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      sockets.push(this);
    }
  }
  const client = collecting(hub.url, { clientType: 'node', channels: ['jobs'], WebSocket: TrackedWebSocket, reconnectDelay: 50 });
  try {
    await waitFor(() => client.state === 'open', { what: 'open' });
    const id = client.clientId;
    const states = [];
    client.on('state', (state) => states.push(state));
    sockets.at(-1).terminate(); // no close frame: the hub keeps the session resumable
    await waitFor(() => client.state === 'reconnecting', { what: 'reconnecting' });
    await hub.publish({ type: 'job_created', job_id: 'meanwhile', photo_id: 1 });
    await waitFor(() => client.state === 'open', { what: 'open again' });
    assert.equal(client.clientId, id, 'same session');
    assert.ok(sockets.at(-1).url.includes(`client_id=${id}`), 'resumed by client_id in the URL');
    await waitFor(() => jobIds(client).includes('meanwhile'), { what: 'the event queued during the outage' });
    const welcome = client.received.filter((m) => m.type === 'connection_established').at(-1);
    assert.equal(welcome.resumed, true);
    assert.deepEqual(states.slice(0, 1), ['reconnecting']);
  } finally {
    await client.close();
  }
});

test('a polling client whose requests fail for a while resumes its session', async () => {
  let offline = false;
  const flakyFetch = (...args) => (offline ? Promise.reject(new TypeError('network down')) : fetch(...args));
  const client = collecting(hub.url, { clientType: 'node', channels: ['jobs'], fetch: flakyFetch, reconnectDelay: 50, pollWait: 1 });
  try {
    await waitFor(() => client.state === 'polling', { what: 'polling' });
    const id = client.clientId;
    offline = true;
    await waitFor(() => client.state === 'reconnecting', { what: 'reconnecting', timeout: 8000 });
    await hub.publish({ type: 'job_created', job_id: 'offline', photo_id: 1 });
    offline = false;
    await waitFor(() => jobIds(client).includes('offline'), { what: 'the event queued during the outage' });
    assert.equal(client.clientId, id, 'same session');
  } finally {
    await client.close();
  }
});

test('a polling session resumed by another connection is left to it: the client starts a new session', async () => {
  const client = collecting(hub.url, { clientType: 'node', channels: ['jobs'], reconnectDelay: 20 });
  try {
    await waitFor(() => client.state === 'polling', { what: 'polling' });
    const id = client.clientId;
    // Wait until its long poll is pending, then take the session over from elsewhere.
    await waitFor(async () => (await hub.clients()).find((c) => c.id === id)?.attached, { what: 'poll pending' });
    const takeover = await hub.api('POST', '/ws/handshake', { client_type: 'other', client_id: id });
    assert.equal(takeover.resumed, true);
    await waitFor(() => client.state === 'polling' && client.clientId !== id, { what: 'a new session' });
    const listed = await hub.clients();
    assert.deepEqual(listed.find((c) => c.id === client.clientId)?.subscriptions, ['jobs']);
    assert.ok(listed.some((c) => c.id === id), 'the taken-over session is left alone');
  } finally {
    await client.close();
  }
});

test('after the hub restarts, both transports reconnect to a new session and re-subscribe', async () => {
  const restartHub = await Hub.start();
  const poller = collecting(restartHub.url, { clientType: 'node', channels: ['jobs'], reconnectDelay: 100 });
  const socket = collecting(restartHub.url, { clientType: 'node', channels: ['jobs'], WebSocket, reconnectDelay: 100 });
  try {
    await waitFor(() => connected(poller) && connected(socket), { what: 'connected' });
    const before = [poller.clientId, socket.clientId];
    await restartHub.restart();
    await waitFor(() => connected(poller) && connected(socket) && poller.clientId !== before[0] && socket.clientId !== before[1], {
      what: 'new sessions',
      timeout: 10000,
    });
    // A socket attempt that met the hub still starting falls back to polling, then upgrades.
    await waitFor(() => socket.transport === 'websocket', { what: 'the socket client on a WebSocket again' });
    const listed = await restartHub.clients();
    for (const client of [poller, socket]) {
      assert.deepEqual(listed.find((c) => c.id === client.clientId)?.subscriptions, ['jobs']);
    }
    await restartHub.publish({ type: 'job_created', job_id: 'after-restart', photo_id: 1 });
    await waitFor(() => jobIds(poller).includes('after-restart') && jobIds(socket).includes('after-restart'), { what: 'event after restart' });
  } finally {
    await Promise.all([poller.close(), socket.close()]);
    await restartHub.stop();
  }
});

test('sockets blocked at first: the client polls, then upgrades to a WebSocket keeping its session and every event', async () => {
  let blockSockets = true;
  class SometimesBlockedWebSocket extends WebSocket {
    constructor(url, ...rest) {
      // A proxy that refuses upgrades looks like an unreachable socket endpoint.
      super(blockSockets ? url.replace(/\/ws\b/, '/blocked') : url, ...rest);
    }
  }
  const client = collecting(hub.url, {
    clientType: 'node',
    channels: ['jobs'],
    WebSocket: SometimesBlockedWebSocket,
    upgradeInterval: 200,
  });
  try {
    await waitFor(() => client.state === 'polling', { what: 'polling fallback' });
    const id = client.clientId;
    // Publish continuously across the switch: nothing may be lost, repeated or reordered.
    let next = 0;
    let sinceUpgrade = 0;
    const deadline = Date.now() + 5000;
    while (sinceUpgrade < 20) {
      assert.ok(Date.now() < deadline, 'no upgrade within 5 s');
      await hub.publish({ type: 'job_created', job_id: next++, photo_id: 1 });
      if (next === 20) blockSockets = false;
      if (client.transport === 'websocket') sinceUpgrade++;
    }
    assert.equal(client.clientId, id, 'the socket resumed the polling session');
    await waitFor(() => jobIds(client).length >= next, { what: `${next} events` });
    assert.deepEqual(jobIds(client), Array.from({ length: next }, (_, i) => i));
  } finally {
    await client.close();
  }
});

test('reconnection waits grow exponentially with jitter, up to the cap', async () => {
  const delays = [];
  const client = connect('http://127.0.0.1:9', {
    transport: 'polling',
    fetch: () => Promise.reject(new TypeError('connection refused')),
    reconnectDelay: 10,
    maxReconnectDelay: 80,
  });
  client.on('state', (state, detail) => {
    if (detail.delay !== undefined) delays.push(detail);
  });
  try {
    await waitFor(() => delays.length >= 7, { what: '7 attempts' });
  } finally {
    await client.close();
  }
  assert.equal(client.state, 'closed');
  for (const { attempt, delay } of delays) {
    const ceiling = Math.min(80, 10 * 2 ** (attempt - 1));
    assert.ok(delay >= ceiling / 2 && delay <= ceiling, `attempt ${attempt}: ${delay} ms not within [${ceiling / 2}, ${ceiling}]`);
  }
  assert.deepEqual(delays.map((d) => d.attempt), [1, 2, 3, 4, 5, 6, 7]);
});

test('client tokens: sent on both transports; refused closes the client; a token function is asked again', async () => {
  const secret = 'a-test-secret-for-client-tokens';
  const tokenHub = await Hub.start(['--client-token-secret', secret]);
  const good = execFileSync(BINARY, ['token', '--secret', secret, '--sub', 'tester'], { encoding: 'utf8' }).trim();
  const clients = [];
  try {
    for (const options of [{}, { WebSocket }]) {
      const client = collecting(tokenHub.url, { clientType: 'node', channels: ['jobs'], token: good, ...options });
      clients.push(client);
      await waitFor(() => connected(client), { what: `connected with a token (${options.WebSocket ? 'websocket' : 'polling'})` });
    }
    const refused = connect(tokenHub.url, { clientType: 'node', channels: ['jobs'], token: 'not-a-jwt' });
    clients.push(refused);
    const errors = [];
    refused.on('error', (message) => errors.push(message));
    await waitFor(() => refused.state === 'closed', { what: 'closed' });
    assert.equal(errors[0]?.status, 401);
    let asked = 0;
    const refreshed = connect(tokenHub.url, {
      clientType: 'node',
      token: async () => (++asked === 1 ? 'expired-or-wrong' : good),
      reconnectDelay: 20,
    });
    clients.push(refreshed);
    await waitFor(() => connected(refreshed), { what: 'connected with the second token' });
    assert.ok(asked >= 2);
  } finally {
    await Promise.all(clients.map((client) => client.close()));
    await tokenHub.stop();
  }
});
