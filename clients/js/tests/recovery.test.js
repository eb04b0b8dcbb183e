// Recovery of missed channel events against the real hub (`channel`/`offset`/`epoch` on
// events, `since` on subscribe, GET /api/history/<channel>). The client's side is also tested
// frame by frame, without a hub, in recovery-protocol.test.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../livebridge.js';
import { Hub, waitFor } from './support/hub.js';

function collecting(url, options) {
  const client = connect(url, { clientType: 'node', channels: ['jobs'], ...options });
  client.received = [];
  client.failures = [];
  client.on('job_created', (m) => client.received.push(m.job_id));
  client.on('recovery_failed', (m) => client.failures.push(m));
  return client;
}

const jobs = (from, to) => Array.from({ length: to - from }, (_, i) => ({ type: 'job_created', job_id: from + i, photo_id: 1 }));
const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i);

test('history: GET /api/history/<channel> answers the documented shape', async (t) => {
  const hub = await Hub.start();
  try {
    await hub.publish(jobs(0, 3));
    const history = await hub.api('GET', '/api/history/jobs?since=1&limit=10');
    assert.equal(history.success, true);
    assert.equal(history.channel, 'jobs');
    assert.equal(typeof history.epoch, 'string');
    assert.equal(history.offset, 3);
    assert.deepEqual(history.events.map((e) => e.offset), [2, 3]);
  } finally {
    await hub.stop();
  }
});

test('history: a polling client whose queue overflowed gets every event back, in order, once', async (t) => {
  const hub = await Hub.start(['--queue-limit', '3']);
  let paused = false;
  let resume;
  // Holding the client's polls lets the hub's queue for it overflow.
  const gatedFetch = async (url, init) => {
    if (paused && String(url).includes('/ws/poll')) await new Promise((r) => (resume = r));
    return fetch(url, init);
  };
  const client = collecting(hub.url, { fetch: gatedFetch });
  try {
    await waitFor(() => client.state === 'polling');
    await hub.publish(jobs(0, 2));
    await waitFor(() => client.received.length === 2);
    paused = true;
    await hub.publish(jobs(2, 12));
    paused = false;
    resume?.();
    await waitFor(() => client.received.length >= 12, { what: '12 events' });
    assert.deepEqual(client.received, range(0, 12));
    assert.deepEqual(client.failures, []);
  } finally {
    await client.close();
    await hub.stop();
  }
});

test('history: a session evicted during an outage recovers what was published meanwhile', async (t) => {
  const hub = await Hub.start(['--stale-after', '1s']);
  let offline = false;
  const flakyFetch = (url, init) => (offline ? Promise.reject(new TypeError('offline')) : fetch(url, init));
  const client = collecting(hub.url, { fetch: flakyFetch, pollWait: 0.5, reconnectDelay: 200, maxReconnectDelay: 400 });
  try {
    await waitFor(() => client.state === 'polling');
    const firstId = client.clientId;
    await hub.publish(jobs(0, 2));
    await waitFor(() => client.received.length === 2);
    offline = true;
    await hub.publish(jobs(2, 5));
    await waitFor(async () => !(await hub.clients()).some((c) => c.id === firstId), { what: 'eviction', timeout: 5000 });
    offline = false;
    await waitFor(() => client.received.length >= 5 && client.clientId !== firstId, { what: 'recovery', timeout: 5000 });
    assert.deepEqual(client.received, range(0, 5));
    assert.deepEqual(client.failures, []);
  } finally {
    await client.close();
    await hub.stop();
  }
});

test('history: after a restart that lost the history, the app is told (recovery_failed)', async (t) => {
  const hub = await Hub.start();
  const client = collecting(hub.url, { reconnectDelay: 100 });
  try {
    await waitFor(() => client.state === 'polling' || client.state === 'open');
    await hub.publish(jobs(0, 3));
    await waitFor(() => client.received.length === 3);
    await hub.restart(); // no data dir: a new epoch
    await waitFor(() => client.failures.length === 1, { what: 'recovery_failed', timeout: 10000 });
    assert.equal(client.failures[0].channel, 'jobs');
    await hub.publish(jobs(3, 4));
    await waitFor(() => client.received.includes(3), { what: 'events after the restart' });
    assert.deepEqual(client.received, range(0, 4));
  } finally {
    await client.close();
    await hub.stop();
  }
});
