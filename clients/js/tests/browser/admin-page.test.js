// The admin page (GET /) in headless Chromium against the real hub: it loads cleanly, shows
// clients and events live, publishes from the catalogue form (with the hub's errors), manages
// sessions, and asks for the admin token when the hub has one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { connect } from '../../livebridge.js';
import { Hub, waitFor } from '../support/hub.js';
import { launchBrowser, watchPage } from '../support/browser.js';

let browser;
let hub;
before(async () => {
  [browser, hub] = await Promise.all([launchBrowser(), Hub.start()]);
});
after(async () => {
  await browser?.close();
  await hub?.stop();
});

const connected = (client) => client.state === 'open' || client.state === 'polling';

/** Opens the admin page and waits until its own client is live. */
async function openAdmin(url = hub.url) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const problems = watchPage(page);
  await page.goto(`${url}/`);
  return { page, context, problems };
}

async function waitUntilLive(page) {
  await page.locator('#live-status').filter({ hasText: /live via/ }).waitFor({ timeout: 5000 });
}

function nodeClient(options) {
  const client = connect(hub.url, { clientType: 'node', ...options });
  client.received = [];
  client.on('*', (message) => client.received.push(message));
  return client;
}

test('the admin page loads with no console error and no failed request', async () => {
  const { page, context, problems } = await openAdmin();
  try {
    await waitUntilLive(page);
    // Its own client is listed and subscribed to every catalogue channel.
    const own = page.locator('#clients-body tr.own');
    await own.waitFor({ timeout: 3000 });
    for (const channel of ['jobs', 'photos', 'sessions', 'system', 'queue', 'approval', 'export']) {
      await page.locator(`#channels-body tr[data-channel="${channel}"]`).waitFor({ timeout: 3000 });
    }
    await page.locator('#publish-fields input[name="job_id"]').waitFor();
    assert.match(await page.locator('#stat-uptime').textContent(), /\d+s/);
    assert.deepEqual(problems, { consoleErrors: [], pageErrors: [], failedRequests: [], badResponses: [] });
  } finally {
    await context.close();
  }
});

test('a polling and a WebSocket client appear in the table within 1 s; disconnect and cleanup act on the hub', async () => {
  const { page, context, problems } = await openAdmin();
  const poller = nodeClient({ clientName: 'node poller', channels: ['jobs'] });
  const socket = nodeClient({ clientName: 'node socket', channels: ['photos', 'system'], WebSocket });
  try {
    await waitUntilLive(page);
    await waitFor(() => connected(poller) && connected(socket), { what: 'clients connected' });
    for (const [client, transport, subscriptions] of [
      [poller, /long poll|polling/, 'jobs'],
      [socket, /WebSocket/, 'photossystem'],
    ]) {
      // Listed, with the subscriptions the client made before it said it was connected.
      await page.waitForFunction(
        ({ id, subscriptions }) => document.querySelector(`#clients-body tr[data-client-id="${id}"] td.subs`)?.textContent === subscriptions,
        { id: client.clientId, subscriptions },
        { timeout: 1000 },
      );
      const row = page.locator(`#clients-body tr[data-client-id="${client.clientId}"]`);
      const cells = await row.locator('td').allTextContents();
      assert.equal(cells[1], 'node');
      assert.match(cells[2], /node (poller|socket)/);
      assert.match(cells[3], transport);
      assert.equal(cells[4], subscriptions);
    }
    // Disconnect ends the session at the hub (the client then starts a new one).
    const oldId = socket.clientId;
    await page.locator(`#clients-body tr[data-client-id="${oldId}"] button`).click();
    await waitFor(async () => !(await hub.clients()).some((c) => c.id === oldId), { what: 'session ended' });
    await page.locator(`#clients-body tr[data-client-id="${oldId}"]`).waitFor({ state: 'detached', timeout: 2000 });
    await page.locator('#cleanup-button').click();
    await page.locator('#cleanup-result').filter({ hasText: /Cleanup removed \d+ idle session\(s\); \d+ remain/ }).waitFor({ timeout: 2000 });
    assert.deepEqual(problems.consoleErrors, []);
  } finally {
    await Promise.all([poller.close(), socket.close()]);
    await context.close();
  }
});

test('events published with POST /api/events appear in the stream within 1 s; the filters select them', async () => {
  const { page, context } = await openAdmin();
  try {
    await waitUntilLive(page);
    // Subscribed to the catalogue channels once its client lists them.
    await waitFor(async () => (await hub.clients()).some((c) => c.client_type === 'admin' && c.subscriptions.includes('photos')), {
      what: 'admin page subscribed',
    });
    await hub.publish([
      { type: 'job_progress', job_id: 'job-41', stage: 'render', progress: 41.5 },
      { type: 'photo_approved', photo_id: 77, session_id: 3 },
    ]);
    const progress = page.locator('#stream li[data-type="job_progress"]');
    await progress.waitFor({ timeout: 1000 });
    assert.match(await progress.textContent(), /jobs.*job_progress.*job_id=job-41.*progress=41\.5/s);
    await page.locator('#stream li[data-type="photo_approved"]').waitFor({ timeout: 1000 });
    await page.selectOption('#filter-channel', 'photos');
    assert.equal(await progress.isVisible(), false);
    assert.equal(await page.locator('#stream li[data-type="photo_approved"]').isVisible(), true);
    await page.selectOption('#filter-channel', '');
    await page.selectOption('#filter-type', 'job_progress');
    assert.equal(await progress.isVisible(), true);
    assert.equal(await page.locator('#stream li[data-type="photo_approved"]').isVisible(), false);
    // The jobs channel shows activity counted from these events.
    await page.locator('#channels-body tr[data-channel="jobs"] polyline').waitFor();
    await waitFor(async () => {
      const points = await page.locator('#channels-body tr[data-channel="jobs"] polyline').getAttribute('points');
      return new Set(points.split(' ').map((p) => p.split(',')[1])).size > 1;
    }, { what: 'a bump in the jobs sparkline' });
  } finally {
    await context.close();
  }
});

test('the publish form delivers a catalogue event to a connected client, and shows the hub error for a wrong field', async () => {
  const { page, context } = await openAdmin();
  const listener = nodeClient({ channels: ['jobs'], WebSocket });
  try {
    await waitFor(() => connected(listener), { what: 'listener connected' });
    await page.selectOption('#publish-type', 'job_progress');
    await page.fill('#field-job_id', '123');
    await page.fill('#field-stage', 'export');
    await page.fill('#field-progress', '62.5');
    await page.fill('#field-message', 'half way');
    await page.click('#publish-button');
    await page.locator('#publish-result.ok').filter({ hasText: /Published job_progress on jobs to [1-9]/ }).waitFor({ timeout: 2000 });
    await waitFor(() => listener.received.some((m) => m.type === 'job_progress'), { what: 'delivery' });
    const event = listener.received.find((m) => m.type === 'job_progress');
    assert.deepEqual(
      { ...event, timestamp: undefined, epoch: undefined },
      { type: 'job_progress', job_id: 123, stage: 'export', progress: 62.5, message: 'half way', timestamp: undefined, channel: 'jobs', offset: event.offset, epoch: undefined },
    );
    assert.ok(Number.isSafeInteger(event.offset) && event.offset > 0, `an offset: ${event.offset}`);

    await page.fill('#field-progress', 'sixty');
    await page.click('#publish-button');
    const error = page.locator('#publish-result.error-text');
    await error.waitFor({ timeout: 2000 });
    assert.equal(await error.textContent(), 'job_progress.progress: invalid type: string "sixty", expected a number');
    // A required field left empty: the hub names it.
    await page.selectOption('#publish-type', 'photo_imported');
    await page.fill('#field-photo_id', '5');
    await page.click('#publish-button');
    await page.locator('#publish-result.error-text').filter({ hasText: /session_id/ }).waitFor({ timeout: 2000 });
  } finally {
    await listener.close();
    await context.close();
  }
});

test('with --admin-token the page asks for the token, keeps it for the tab, and then works', async () => {
  const guarded = await Hub.start(['--admin-token', 'sesame-admin-token']);
  const { page, context, problems } = await openAdmin(guarded.url);
  try {
    await page.locator('#admin-token-form').waitFor({ state: 'visible', timeout: 3000 });
    // Its own client is not an admin request: it connects without the token.
    await waitUntilLive(page);
    await page.fill('#admin-token', 'wrong');
    await page.click('#admin-token-form button');
    await page.locator('#admin-token-error').filter({ hasText: /refused/ }).waitFor({ timeout: 3000 });
    await page.fill('#admin-token', 'sesame-admin-token');
    await page.click('#admin-token-form button');
    await page.locator('#clients-body tr.own').waitFor({ timeout: 3000 });
    assert.equal(await page.locator('#admin-token-form').isVisible(), false);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('livebridge.adminToken')), 'sesame-admin-token');
    await page.selectOption('#publish-type', 'photo_approved');
    await page.fill('#field-photo_id', '9');
    await page.click('#publish-button');
    await page.locator('#publish-result.ok').waitFor({ timeout: 2000 });
    // A reload keeps the token (sessionStorage) and asks no more.
    await page.reload();
    await page.locator('#clients-body tr.own').waitFor({ timeout: 3000 });
    assert.equal(await page.locator('#admin-token-form').isVisible(), false);
    // The only refusals were the 401s that made the page ask.
    assert.ok(problems.badResponses.length > 0 && problems.badResponses.every((r) => r.startsWith('401 ')), problems.badResponses.join('\n'));
  } finally {
    await context.close();
    await guarded.stop();
  }
});
