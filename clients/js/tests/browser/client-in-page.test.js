// The client in headless Chromium against the real hub: on the hub's own origin (importing
// /client.js), with WebSocket refused or absent (long-poll fallback, then upgrade), across a
// hub restart, and from other origins: refused unless --allowed-origin names them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Hub, waitFor, within } from '../support/hub.js';
import { launchBrowser } from '../support/browser.js';
import { startStaticServer } from '../support/static-server.js';
import { startPageClient, waitForConnected, waitForEvents, pageClient } from '../support/page-client.js';

let browser;
let foreign; // a page server on another origin
before(async () => {
  [browser, foreign] = await Promise.all([launchBrowser(), startStaticServer()]);
});
after(async () => {
  await browser?.close();
  await foreign?.close();
});

const jobs = (from, to) => Array.from({ length: to - from }, (_, i) => ({ type: 'job_created', job_id: from + i, photo_id: 1 }));
const range = (from, to) => Array.from({ length: to - from }, (_, i) => from + i);

/** A blank page on the hub's own origin (its health JSON: no admin page client around). */
async function hubOriginPage(hub, setup) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await setup?.(page);
  await page.goto(`${hub.url}/api/system/health`);
  return { page, context };
}

test('on the hub origin, /client.js connects over a WebSocket and receives events in order', async () => {
  const hub = await Hub.start();
  const { page, context } = await hubOriginPage(hub);
  try {
    await startPageClient(page, { options: { clientType: 'web', clientName: 'page', channels: ['jobs'] } });
    const { clientId } = await waitForConnected(page, { transport: 'websocket' });
    const listed = (await hub.clients()).find((c) => c.id === clientId);
    assert.equal(listed.transport, 'websocket');
    assert.deepEqual(listed.subscriptions, ['jobs']);
    await hub.publish(jobs(0, 20));
    await hub.publish(jobs(20, 25));
    assert.deepEqual(await waitForEvents(page, { type: 'job_created', count: 25 }), range(0, 25));
  } finally {
    await context.close();
    await hub.stop();
  }
});

test('a refused WebSocket falls back to long polling with every event in order, then upgrades keeping the session', async () => {
  const hub = await Hub.start();
  let refuse = true;
  const { page, context } = await hubOriginPage(hub, (page) =>
    // A proxy that cuts sockets: the page's socket is closed before the hub is reached.
    page.routeWebSocket(/\/ws(\?|$)/, (socket) => {
      if (refuse) socket.close();
      else socket.connectToServer();
    }),
  );
  try {
    await startPageClient(page, { options: { channels: ['jobs'], upgradeInterval: 300 } });
    const polling = await waitForConnected(page, { transport: 'polling' });
    assert.equal(polling.state, 'polling');
    await hub.publish(jobs(0, 40));
    for (const event of jobs(40, 50)) await hub.publish(event);
    assert.deepEqual(await waitForEvents(page, { type: 'job_created', count: 50 }), range(0, 50));
    refuse = false;
    const upgraded = await waitForConnected(page, { transport: 'websocket' });
    assert.equal(upgraded.clientId, polling.clientId, 'the socket resumed the polling session');
    assert.equal(upgraded.state, 'open');
    await hub.publish(jobs(50, 60));
    assert.deepEqual(await waitForEvents(page, { type: 'job_created', count: 60 }), range(0, 60));
  } finally {
    await context.close();
    await hub.stop();
  }
});

test('with no WebSocket in the page, the client long-polls', async () => {
  const hub = await Hub.start();
  const { page, context } = await hubOriginPage(hub, (page) => page.addInitScript(() => delete window.WebSocket));
  try {
    assert.equal(await page.evaluate(() => typeof window.WebSocket), 'undefined');
    await startPageClient(page, { options: { channels: ['jobs'] } });
    const { clientId } = await waitForConnected(page, { transport: 'polling' });
    assert.equal((await hub.clients()).find((c) => c.id === clientId)?.transport, 'polling');
    await hub.publish(jobs(0, 30));
    assert.deepEqual(await waitForEvents(page, { type: 'job_created', count: 30 }), range(0, 30));
  } finally {
    await context.close();
    await hub.stop();
  }
});

test('after the hub restarts on the same port, the page client reconnects and re-subscribes', async () => {
  const hub = await Hub.start();
  const { page, context } = await hubOriginPage(hub);
  try {
    await startPageClient(page, { options: { channels: ['jobs', 'photos'], reconnectDelay: 100 } });
    const first = await waitForConnected(page, { transport: 'websocket' });
    await hub.restart();
    await page.waitForFunction((id) => window.lb.client.clientId !== id && window.lb.client.state === 'open', first.clientId, {
      timeout: 10000,
    });
    const again = await pageClient(page);
    assert.ok(again.states.includes('reconnecting'));
    assert.deepEqual((await hub.clients()).find((c) => c.id === again.clientId)?.subscriptions, ['jobs', 'photos']);
    await hub.publish({ type: 'photo_approved', photo_id: 42 });
    assert.deepEqual(await waitForEvents(page, { type: 'photo_approved', count: 1, field: 'photo_id' }), [42]);
  } finally {
    await context.close();
    await hub.stop();
  }
});

test('a page of a foreign origin not in --allowed-origin cannot use the hub: requests and socket refused', async () => {
  const hub = await Hub.start();
  const context = await browser.newContext();
  const page = await context.newPage();
  const socketRefused = new Promise((resolve) =>
    page.on('websocket', (socket) => socket.on('socketerror', (error) => /403/.test(error) && resolve(error))),
  );
  try {
    await page.goto(`${foreign.origin}/`);
    // Not even the client can be loaded from the hub.
    const imported = await page.evaluate((hub) => import(`${hub}/client.js`).then(() => 'loaded', (e) => String(e)), hub.url);
    assert.match(imported, /Failed to fetch dynamically imported module/);
    // A copy of the client served by the page's own site gets nowhere either.
    await startPageClient(page, { moduleUrl: '/livebridge.js', hubUrl: hub.url, options: { channels: ['jobs'], reconnectDelay: 100 } });
    // The fallback's handshake is refused at its CORS preflight (the hub counts the 403; the
    // page only sees a network error).
    await waitFor(async () => /route="\/ws\/handshake",status="403"\} [1-9]/.test(await (await fetch(`${hub.url}/metrics`)).text()), {
      what: 'a refused handshake',
    });
    await page.waitForFunction(() => window.lb.states.includes('reconnecting'));
    assert.equal((await pageClient(page)).clientId, null);
    // The socket was tried first and refused with 403 as well.
    assert.match(await within(socketRefused, { timeout: 10000, what: 'the socket refused with 403' }), /403/);
    assert.deepEqual(await hub.clients(), [], 'no session was made');
  } finally {
    await context.close();
    await hub.stop();
  }
});

test('a page of an origin given with --allowed-origin imports /client.js and works over both transports', async () => {
  const hub = await Hub.start(['--allowed-origin', foreign.origin]);
  const context = await browser.newContext();
  const socketPage = await context.newPage();
  const pollingPage = await context.newPage();
  await pollingPage.routeWebSocket(/\/ws(\?|$)/, (socket) => socket.close());
  try {
    for (const page of [socketPage, pollingPage]) {
      await page.goto(`${foreign.origin}/`);
      await startPageClient(page, { moduleUrl: `${hub.url}/client.js`, hubUrl: hub.url, options: { channels: ['jobs'] } });
    }
    await waitForConnected(socketPage, { transport: 'websocket' });
    await waitForConnected(pollingPage, { transport: 'polling' });
    await hub.publish(jobs(0, 10));
    for (const page of [socketPage, pollingPage]) {
      assert.deepEqual(await waitForEvents(page, { type: 'job_created', count: 10 }), range(0, 10));
    }
  } finally {
    await context.close();
    await hub.stop();
  }
});
