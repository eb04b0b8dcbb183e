// Connection behaviour that a real hub shows only by chance, played frame by frame through a
// scripted socket: the heartbeat that finds a dead socket, a session taken over by another
// connection, the outbox, replies matched to requests, and error frames nobody asked for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../livebridge.js';
import { waitFor } from './support/hub.js';
import { ScriptedSocket } from './support/scripted-socket.js';

async function openClient(options = {}) {
  ScriptedSocket.sockets.length = 0;
  const client = connect('http://hub.test', { WebSocket: ScriptedSocket, channels: ['jobs'], reconnectDelay: 1, pingInterval: 0, ...options });
  client.received = [];
  client.on('*', (message) => client.received.push(message));
  await waitFor(() => ScriptedSocket.sockets.length === 1);
  const socket = ScriptedSocket.sockets[0];
  socket.accept();
  const { reply } = await socket.answerSetup();
  socket.frame(reply);
  await waitFor(() => client.state === 'open', { what: 'open' });
  return { client, socket };
}

test('a socket that stops answering is found by the heartbeat and given up without ending the session', async () => {
  const { client, socket } = await openClient({ pingInterval: 30, pingTimeout: 30 });
  try {
    const ping = await socket.nextSent('ping');
    assert.deepEqual(ping, { type: 'ping' });
    // No pong: the client closes with a code that keeps the session, and resumes it.
    await waitFor(() => ScriptedSocket.sockets.length === 2, { what: 'a new socket' });
    assert.notEqual(socket.closedWith, 1000);
    assert.match(ScriptedSocket.sockets[1].url, /client_id=c1/);
  } finally {
    await client.close();
  }
});

test('a session taken over by another connection (4001): the client starts a new session', async () => {
  const { client, socket } = await openClient();
  try {
    socket.close(4001);
    await waitFor(() => ScriptedSocket.sockets.length === 2, { what: 'a new socket' });
    assert.doesNotMatch(ScriptedSocket.sockets[1].url, /client_id=/);
  } finally {
    await client.close();
  }
});

test('messages sent while disconnected wait in the outbox and go out in order after the setup', async () => {
  const { client, socket } = await openClient({ reconnectDelay: 60000 });
  socket.drop();
  await waitFor(() => client.state === 'reconnecting');
  // Closing refuses what is still in the outbox.
  const refused = [1, 2].map((id) => assert.rejects(client.send({ type: 'job_started', job_id: id, photo_id: 1 }), /closed/));
  await client.close();
  await Promise.all(refused);

  const again = await openClient({ reconnectDelay: 1 });
  try {
    again.socket.drop();
    await waitFor(() => again.client.state === 'reconnecting');
    const sends = [1, 2, 3].map((id) => again.client.send({ type: 'job_started', job_id: id, photo_id: 1 }));
    await waitFor(() => ScriptedSocket.sockets.length === 2);
    const next = ScriptedSocket.sockets[1];
    next.accept({ resumed: true, subscriptions: ['jobs'] });
    const subscribe = await next.nextSent('subscribe');
    assert.equal(next.sent.filter((m) => m.type === 'job_started').length, 0, 'nothing before the setup is acknowledged');
    next.frame({ type: 'subscribed', channels: subscribe.channels, subscriptions: ['jobs'] });
    await waitFor(() => next.sent.filter((m) => m.type === 'job_started').length === 3, { what: 'outbox flushed' });
    assert.deepEqual(next.sent.filter((m) => m.type === 'job_started').map((m) => m.job_id), [1, 2, 3]);
    for (const id of [1, 2, 3]) next.frame({ type: 'published', event: 'job_started', channel: 'jobs', recipients: id });
    assert.deepEqual((await Promise.all(sends)).map((r) => r.recipients), [1, 2, 3]);
  } finally {
    await again.client.close();
  }
});

test('replies settle their requests in order, between events; an error frame nobody asked for goes to listeners', async () => {
  const { client, socket } = await openClient();
  try {
    const ok = client.send({ type: 'ping' });
    const refused = client.send({ type: 'job_progress', job_id: 1 });
    socket.frame({ type: 'job_created', job_id: 9, photo_id: 1 });
    socket.frame({ type: 'pong' });
    socket.frame({ type: 'error', error: 'job_progress.stage: missing field' });
    assert.equal((await ok).type, 'pong');
    await assert.rejects(refused, /job_progress.stage: missing field/);
    socket.frame({ type: 'error', error: 'something the hub wants us to know' });
    const types = client.received.map((m) => m.type);
    assert.deepEqual(types.filter((t) => t !== 'connection_established'), ['job_created', 'error']);
  } finally {
    await client.close();
  }
});

test('close() ends the session: the socket closes with 1000 and the state is closed', async () => {
  const { client, socket } = await openClient();
  const states = [];
  client.on('state', (state) => states.push(state));
  await client.close();
  assert.equal(socket.closedWith, 1000);
  assert.deepEqual(states, ['closed']);
  await assert.rejects(client.send({ type: 'ping' }), /closed/);
});
