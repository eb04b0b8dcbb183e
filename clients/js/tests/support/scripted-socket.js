// Test support: a WebSocket stand-in for the client, through which the test plays the hub
// frame by frame (orders and failures a real hub produces only by chance).
import { waitFor } from './hub.js';

/** A WebSocket stand-in: the test plays the hub. */
export class ScriptedSocket {
  static sockets = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.listeners = { open: [], message: [], close: [], error: [] };
    ScriptedSocket.sockets.push(this);
  }
  addEventListener(type, fn) {
    this.listeners[type].push(fn);
  }
  send(text) {
    this.sent.push(JSON.parse(text));
  }
  close(code = 1000) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.closedWith = code;
    for (const fn of this.listeners.close) fn({ code, reason: '' });
  }
  // --- the hub's side ---
  accept(welcome) {
    this.readyState = 1;
    for (const fn of this.listeners.open) fn({});
    this.frame({ type: 'connection_established', client_id: 'c1', protocol_version: '1.0', resumed: false, ...welcome });
  }
  frame(message) {
    for (const fn of this.listeners.message) fn({ data: JSON.stringify(message) });
  }
  drop() {
    this.close(1006);
  }
  /** The next message the client sent of `type` (waits for it). */
  async nextSent(type) {
    const index = await waitFor(() => {
      const i = this.sent.findIndex((m, j) => j >= (this.read ?? 0) && m.type === type);
      return i >= 0 ? i + 1 : 0;
    }, { what: `client sends ${type}`, timeout: 2000 });
    this.read = index;
    return this.sent[index - 1];
  }
  /** Answers what the client sends in setup: register (new session) and subscribe. */
  async answerSetup({ register = true, recovered, positions, subscriptions = ['jobs'] } = {}) {
    if (register) {
      await this.nextSent('register');
      this.frame({ type: 'registered', client_id: 'c1', resumed: false, subscriptions: [] });
    }
    const subscribe = await this.nextSent('subscribe');
    const reply = { type: 'subscribed', channels: subscribe.channels, subscriptions };
    if (recovered) reply.recovered = recovered;
    if (positions) reply.positions = positions;
    return { subscribe, reply };
  }
}
