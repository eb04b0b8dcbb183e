// The README's "From a browser console" example (a raw WebSocket: register, subscribe, log
// every message), read from README.md and run as printed with the port substituted, in
// headless Chromium: from the hub's own page, from an origin allowed with --allowed-origin,
// and (refused) from an origin that is not, or from the hub's page under another host name.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Hub } from '../support/hub.js';
import { launchBrowser } from '../support/browser.js';
import { startStaticServer } from '../support/static-server.js';

const README = fileURLToPath(new URL('../../../../README.md', import.meta.url));

/** The javascript block that follows "From a browser console" in README.md. */
function readmeExample() {
  const text = fs.readFileSync(README, 'utf8');
  const section = text.slice(text.indexOf('From a browser console'));
  const match = /```javascript\n([\s\S]*?)```/.exec(section);
  assert.ok(match, 'README.md has a javascript block after "From a browser console"');
  return match[1];
}

let browser;
let foreign;
before(async () => {
  [browser, foreign] = await Promise.all([launchBrowser(), startStaticServer()]);
});
after(async () => {
  await browser?.close();
  await foreign?.close();
});

/**
 * Opens `pageUrl`, runs the README example against `port` as a console would, and returns
 * what it logged (as JSON values) and the socket errors Chromium reported.
 */
async function runExample(pageUrl, port) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const logged = [];
  const socketErrors = [];
  page.on('console', async (message) => {
    if (message.type() === 'log') logged.push(await message.args()[0]?.jsonValue());
  });
  page.on('websocket', (socket) => socket.on('socketerror', (error) => socketErrors.push(error)));
  await page.goto(pageUrl);
  const code = readmeExample().replaceAll('5100', String(port));
  assert.notEqual(code, readmeExample(), 'the example names the default port 5100');
  // What a console does: evaluate the text as a script in the page.
  await page.evaluate(code);
  return { page, context, logged, socketErrors };
}

async function waitForLogged(logged, type, timeout = 5000) {
  const deadline = Date.now() + timeout;
  while (!logged.some((m) => m?.type === type)) {
    if (Date.now() > deadline) throw new Error(`nothing of type ${type} logged; logged: ${JSON.stringify(logged)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function assertExampleWorks(hub, pageUrl) {
  const { context, logged } = await runExample(pageUrl, hub.port);
  try {
    for (const type of ['connection_established', 'registered', 'subscribed']) await waitForLogged(logged, type);
    const registered = logged.find((m) => m.type === 'registered');
    assert.equal(registered.client_type, 'web');
    assert.equal(registered.client_name, 'Web UI');
    assert.deepEqual(logged.find((m) => m.type === 'subscribed').subscriptions, ['jobs', 'photos', 'sessions']);
    await hub.publish({ type: 'session_created', session_id: 12, session_name: 'Wedding' });
    await waitForLogged(logged, 'session_created');
    assert.equal(logged.find((m) => m.type === 'session_created').session_name, 'Wedding');
  } finally {
    await context.close();
  }
}

test('README example: runs as printed from the hub own page (the admin page at http://localhost:PORT/)', async () => {
  const hub = await Hub.start();
  try {
    await assertExampleWorks(hub, `http://localhost:${hub.port}/`);
  } finally {
    await hub.stop();
  }
});

test('README example: runs as printed from another origin given with --allowed-origin', async () => {
  const hub = await Hub.start(['--allowed-origin', foreign.origin]);
  try {
    await assertExampleWorks(hub, `${foreign.origin}/`);
  } finally {
    await hub.stop();
  }
});

test('README example: refused (403) from an origin not allowed, and from the hub page opened as 127.0.0.1', async () => {
  const hub = await Hub.start();
  try {
    // The example says ws://localhost:…; a page opened as http://127.0.0.1:… is another origin
    // for the hub (Origin must be http:// plus the Host the request names).
    for (const pageUrl of [`${foreign.origin}/`, `http://127.0.0.1:${hub.port}/api/system/health`]) {
      const { context, socketErrors } = await runExample(pageUrl, hub.port);
      try {
        const deadline = Date.now() + 5000;
        while (socketErrors.length === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
        assert.match(socketErrors.join('\n'), /403/, `from ${pageUrl}`);
      } finally {
        await context.close();
      }
    }
    assert.deepEqual(await hub.clients(), []);
  } finally {
    await hub.stop();
  }
});
