// Test support: runs the livebridge client inside a browser page (imported from a module URL
// the page can reach) and reads back what it received.

/**
 * Imports the client from `moduleUrl` in the page and connects it to `hubUrl` (default: the
 * page's own origin). The page keeps it in `window.lb`: `{client, events, states}`.
 */
export async function startPageClient(page, { moduleUrl = '/client.js', hubUrl = null, options = {} } = {}) {
  await page.evaluate(
    async ({ moduleUrl, hubUrl, options }) => {
      const { connect } = await import(moduleUrl);
      const client = connect(hubUrl ?? location.origin, options);
      window.lb = { client, events: [], states: [] };
      client.on('*', (message) => window.lb.events.push(message));
      client.on('state', (state) => window.lb.states.push(state));
    },
    { moduleUrl, hubUrl, options },
  );
}

/** The client's state, transport and session id, as the page sees them. */
export function pageClient(page) {
  return page.evaluate(() => ({
    state: window.lb.client.state,
    transport: window.lb.client.transport,
    clientId: window.lb.client.clientId,
    states: window.lb.states,
  }));
}

/** Waits until the page's client is connected (optionally over `transport`). */
export async function waitForConnected(page, { transport, timeout = 5000 } = {}) {
  await page.waitForFunction(
    (transport) => {
      const { client } = window.lb;
      const connected = client.state === 'open' || client.state === 'polling';
      return connected && (!transport || client.transport === transport);
    },
    transport,
    { timeout },
  );
  return pageClient(page);
}

/** Waits until the page received `count` events of `type`; returns their `field` values. */
export async function waitForEvents(page, { type, count, field = 'job_id', timeout = 5000 }) {
  await page.waitForFunction(
    ({ type, count }) => window.lb.events.filter((m) => m.type === type).length >= count,
    { type, count },
    { timeout },
  );
  return page.evaluate(
    ({ type, field }) => window.lb.events.filter((m) => m.type === type).map((m) => m[field]),
    { type, field },
  );
}
