// The client side of channel recovery (positions, `since`, replay, `recovery_failed`) and
// deduplication, driven frame by frame through a scripted WebSocket: the exact orders a hub
// with channel history can produce, including the awkward ones (queued events arriving
// before the replay that fills the gap before them). Runs without a hub.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../livebridge.js';
import { waitFor } from './support/hub.js';
import { ScriptedSocket } from './support/scripted-socket.js';

const event = (offset, epoch = 'e1', channel = 'jobs') => ({ type: 'job_created', job_id: offset, photo_id: 1, channel, offset, epoch });

async function connectedClient(options = {}) {
  ScriptedSocket.sockets.length = 0;
  const client = connect('http://hub.test', { WebSocket: ScriptedSocket, channels: ['jobs'], reconnectDelay: 1, pingInterval: 0, ...options });
  client.events = [];
  client.notices = [];
  client.on('job_created', (m) => client.events.push(m.offset ?? m.job_id));
  client.on('recovery_failed', (m) => client.notices.push(m));
  await waitFor(() => ScriptedSocket.sockets.length === 1, { what: 'socket' });
  const socket = ScriptedSocket.sockets[0];
  socket.accept();
  const { reply } = await socket.answerSetup({ positions: { jobs: { offset: 0, epoch: 'e1' } } });
  socket.frame(reply);
  await waitFor(() => client.state === 'open', { what: 'open' });
  return { client, socket };
}

/** Drops the socket and lets the client reconnect; returns the new socket and its subscribe. */
async function reconnect(client, socket, welcome = { resumed: true, subscriptions: ['jobs'] }) {
  const count = ScriptedSocket.sockets.length;
  socket.drop();
  await waitFor(() => ScriptedSocket.sockets.length > count, { what: 'a new socket' });
  const next = ScriptedSocket.sockets.at(-1);
  next.accept(welcome);
  const subscribe = await next.nextSent('subscribe');
  return { next, subscribe };
}

test('an event repeated with an offset already seen never reaches the app', async () => {
  const { client, socket } = await connectedClient();
  for (const offset of [1, 2, 2, 1, 3]) socket.frame(event(offset));
  assert.deepEqual(client.events, [1, 2, 3]);
  await client.close();
});

test('a new epoch is a new history: its offsets start again', async () => {
  const { client, socket } = await connectedClient();
  socket.frame(event(5));
  socket.frame(event(1, 'e2'));
  socket.frame(event(2, 'e2'));
  assert.deepEqual(client.events, [5, 1, 2]);
  await client.close();
});

test('after a reconnection the client subscribes with its positions and the replay fills the gap once', async () => {
  const { client, socket } = await connectedClient();
  for (const offset of [1, 2, 3]) socket.frame(event(offset));
  const { next, subscribe } = await reconnect(client, socket);
  assert.ok(next.url.includes('client_id=c1'), 'resumes by client_id');
  assert.deepEqual(subscribe.since, { jobs: { offset: 3, epoch: 'e1' } });
  // The resumed session's queue comes first (5, 6: 4 was lost), then the reply, then the replay.
  next.frame(event(5));
  next.frame(event(6));
  assert.deepEqual(client.events, [1, 2, 3], 'events past the gap wait for it');
  next.frame({ type: 'subscribed', channels: ['jobs'], subscriptions: ['jobs'], recovered: { jobs: true }, positions: { jobs: { offset: 6, epoch: 'e1' } } });
  for (const offset of [4, 5, 6]) next.frame(event(offset));
  next.frame(event(7));
  assert.deepEqual(client.events, [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(client.notices, []);
  await client.close();
});

test('messages_dropped: the client asks again from its position and gets the lost events in order', async () => {
  const { client, socket } = await connectedClient();
  socket.read = socket.sent.length;
  for (const offset of [1, 2]) socket.frame(event(offset));
  const dropped = [];
  client.on('messages_dropped', (m) => dropped.push(m.dropped));
  socket.frame({ type: 'messages_dropped', dropped: 5 });
  // The survivors of the overflow (the newest) arrive before the reply to the recovery.
  socket.frame(event(8));
  socket.frame(event(9));
  const subscribe = await socket.nextSent('subscribe');
  assert.deepEqual(subscribe.since, { jobs: { offset: 2, epoch: 'e1' } });
  socket.frame({ type: 'subscribed', channels: ['jobs'], subscriptions: ['jobs'], recovered: { jobs: true }, positions: { jobs: { offset: 9, epoch: 'e1' } } });
  for (const offset of [3, 4, 5, 6, 7, 8, 9]) socket.frame(event(offset));
  assert.deepEqual(dropped, [5]);
  assert.deepEqual(client.events, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  await client.close();
});

test('recovered: false tells the app (recovery_failed) and continues from the new position', async () => {
  const { client, socket } = await connectedClient();
  socket.frame(event(1));
  const { next, subscribe } = await reconnect(client, socket, { resumed: false, reason: 'unknown session' });
  assert.deepEqual(subscribe.since, { jobs: { offset: 1, epoch: 'e1' } });
  // A new session registers again.
  assert.ok(next.sent.some((m) => m.type === 'register'));
  next.frame({ type: 'registered', client_id: 'c2', resumed: false, subscriptions: [] });
  const positions = { jobs: { offset: 40, epoch: 'e2' } };
  next.frame({ type: 'subscribed', channels: ['jobs'], subscriptions: ['jobs'], recovered: { jobs: false }, positions });
  next.frame(event(40, 'e2')); // at the position: already part of the state the app reloads
  next.frame(event(41, 'e2'));
  // The reply is taken in when its request's promise settles: a microtask later.
  await waitFor(() => client.notices.length > 0, { what: 'recovery_failed' });
  assert.deepEqual(client.notices, [{ type: 'recovery_failed', channel: 'jobs', position: positions.jobs, positions }]);
  assert.deepEqual(client.events, [1, 41]);
  await client.close();
});

test('a hole the replay never fills holds events back only until the recovery timeout', async () => {
  const { client, socket } = await connectedClient({ recoveryTimeout: 50 });
  socket.frame(event(1));
  const { next } = await reconnect(client, socket);
  next.frame({ type: 'subscribed', channels: ['jobs'], subscriptions: ['jobs'], recovered: { jobs: true }, positions: { jobs: { offset: 4, epoch: 'e1' } } });
  next.frame(event(2));
  next.frame(event(4)); // 3 never comes (say, an event this client published itself)
  assert.deepEqual(client.events, [1, 2]);
  await waitFor(() => client.events.length === 3, { what: 'held event released' });
  assert.deepEqual(client.events, [1, 2, 4]);
  await client.close();
});

test('against a hub without history: no since is ever sent and every event is delivered', async () => {
  ScriptedSocket.sockets.length = 0;
  const client = connect('http://hub.test', { WebSocket: ScriptedSocket, channels: ['jobs'], reconnectDelay: 1, pingInterval: 0 });
  const events = [];
  client.on('job_created', (m) => events.push(m.job_id));
  await waitFor(() => ScriptedSocket.sockets.length === 1);
  const socket = ScriptedSocket.sockets[0];
  socket.accept();
  const { subscribe, reply } = await socket.answerSetup();
  assert.equal(subscribe.since, undefined);
  socket.frame(reply);
  for (const id of [1, 2, 2, 3]) socket.frame({ type: 'job_created', job_id: id, photo_id: 1 });
  socket.frame({ type: 'messages_dropped', dropped: 2 });
  const { subscribe: again } = await reconnect(client, socket);
  assert.equal(again.since, undefined);
  // Without offsets a repeated event cannot be recognised, and the hub never repeats one.
  assert.deepEqual(events, [1, 2, 2, 3]);
  await client.close();
});
