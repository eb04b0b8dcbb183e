// livebridge browser and Node client: one ES module with no dependencies, served by the hub
// at `GET /client.js`. It owns the connection to one hub: WebSocket first, HTTP long polling
// when a socket cannot open, upgrading back later; reconnection with jittered exponential
// backoff; resuming the session by `client_id`; re-subscribing; and recovering missed channel
// events from their positions (channel, epoch, offset) without ever handing the app a
// duplicate. The wire protocol is docs/protocol.md; the API is documented in README.md and
// livebridge.d.ts.

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = '1.0';

/** The client's own version. */
export const VERSION = '1.0.0';

const DEFAULT_OPTIONS = {
  clientType: 'web',
  clientName: undefined,
  channels: [],
  token: undefined,
  // 'auto': WebSocket first, long polling when a socket cannot open. 'websocket' and
  // 'polling' pin one transport (tests, or networks known to block sockets).
  transport: 'auto',
  // Seconds a long poll may be held by the hub (which caps it at its long_poll_max).
  pollWait: 25,
  // Milliseconds a request other than a poll may take; a poll gets pollWait on top.
  requestTimeout: 10000,
  // Milliseconds a socket may take to open and say connection_established before the
  // client concludes that sockets do not get through and polls instead.
  webSocketOpenTimeout: 5000,
  // While polling, how often (ms) to try upgrading back to a WebSocket; 0 never does.
  upgradeInterval: 60000,
  // Reconnection: attempt n waits a random time between half and all of
  // min(reconnectDelay * 2^(n-1), maxReconnectDelay) ms.
  reconnectDelay: 500,
  maxReconnectDelay: 30000,
  // A browser cannot see the hub's WebSocket pings, so a socket that died without a close
  // (sleeping laptop, dropped NAT entry) is found by sending our own `ping` after this many
  // ms without a frame, and giving up on the socket when nothing comes back in pingTimeout.
  pingInterval: 25000,
  pingTimeout: 10000,
  // Events passed to send() while not connected are kept (oldest refused beyond) and sent
  // in order once connected.
  outboxLimit: 100,
  // Milliseconds a channel may wait for the replay of a recovery to fill a gap before the
  // events held behind the gap are delivered anyway.
  recoveryTimeout: 10000,
};

// After falling back to polling, the first attempt to upgrade back comes this soon (ms).
const FIRST_UPGRADE_DELAY = 2000;

// The close code of a socket the client gives up on without ending its session: the hub
// ends a session at once only on 1000; any other code leaves it resumable.
const ABANDON_CODE = 4100;

// Replies: each client message gets exactly one, in order, on the connection it was sent on.
const REPLY_TYPES = new Set(['pong', 'registered', 'subscribed', 'unsubscribed', 'published', 'error']);

/**
 * Connects to a livebridge hub. Returns at once; the client connects in the background and
 * keeps reconnecting until {@link LivebridgeClient#close} is called.
 *
 * @param {string} url the hub's base URL: `http://127.0.0.1:5100`, `location.origin`,
 *   `ws://127.0.0.1:5100` or `ws://127.0.0.1:5100/ws`.
 * @param {import('./livebridge.js').ConnectOptions} [options]
 * @returns {LivebridgeClient}
 */
export function connect(url, options = {}) {
  return new LivebridgeClient(url, options);
}

/** An error answered by the hub: an HTTP status and/or the `error` text of its reply. */
export class LivebridgeError extends Error {
  constructor(message, { status, reply, code } = {}) {
    super(message);
    this.name = 'LivebridgeError';
    this.status = status;
    this.reply = reply;
    this.code = code;
  }
}

/**
 * A connection to one hub. Made by {@link connect}.
 */
export class LivebridgeClient {
  #options;
  #http; // base URL for HTTP requests, without a trailing slash
  #ws; // base URL for the socket (ws: or wss:), without a trailing slash
  #WebSocket;
  #fetch;
  #listeners = new Map();
  #state = 'connecting';
  #clientId = null;
  #connection = null; // the WebSocketConnection or PollingConnection in use
  #transport = null; // its kind once set up: changes together with the state
  #generation = 0; // bumped by every attempt, so a stale attempt's result is ignored
  #attempts = 0; // reconnection attempts since the last success
  #reconnectTimer = null;
  #upgradeTimer = null;
  #upgrading = false;
  #preferPolling = false; // a socket failed where HTTP worked: reconnect by polling
  #channels; // what the app wants to be subscribed to
  #serverSubscriptions = []; // what the hub last said this session is subscribed to
  #positions;
  #ready = false; // connected and set up (registered, subscribed)
  #readyWaiters = [];
  #outbox = [];

  constructor(url, options = {}) {
    this.#options = { ...DEFAULT_OPTIONS, ...options };
    const bases = baseUrls(url);
    this.#http = bases.http;
    this.#ws = bases.ws;
    this.#fetch = this.#options.fetch ?? globalThis.fetch?.bind(globalThis);
    if (!this.#fetch) throw new TypeError('livebridge: no fetch in this environment; pass options.fetch');
    this.#WebSocket = this.#options.WebSocket ?? globalThis.WebSocket;
    this.#channels = new Set(this.#options.channels ?? []);
    this.#positions = new ChannelPositions({
      deliver: (message) => this.#dispatch(message),
      recoveryFailed: (notice) => this.#dispatch(notice),
      recoveryTimeout: this.#options.recoveryTimeout,
    });
    // Start after the caller had the chance to add listeners.
    queueMicrotask(() => this.#attempt());
  }

  /** `"connecting" | "open" | "polling" | "reconnecting" | "closed"`. */
  get state() {
    return this.#state;
  }

  /** The session's id once the hub gave one, else `null`. */
  get clientId() {
    return this.#clientId;
  }

  /** `"websocket"` or `"polling"` while connected, else `null`. */
  get transport() {
    return this.#transport;
  }

  /** The channels this client wants (the ones it re-subscribes to after reconnecting). */
  get channels() {
    return [...this.#channels];
  }

  /**
   * Adds a listener: `type` is a message type (`"job_progress"`, `"connection_established"`,
   * `"messages_dropped"`, `"recovery_failed"`, `"error"`, ...), `"*"` for every message, or
   * `"state"` for state changes (`fn(state, detail)`).
   *
   * @returns {() => void} a function that removes the listener
   */
  on(type, fn) {
    if (typeof fn !== 'function') throw new TypeError('livebridge: a listener must be a function');
    if (!this.#listeners.has(type)) this.#listeners.set(type, new Set());
    this.#listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  /** Removes a listener added with {@link LivebridgeClient#on}. */
  off(type, fn) {
    this.#listeners.get(type)?.delete(fn);
  }

  /**
   * Subscribes to channels, now and after every reconnection.
   * @param {string | string[]} channels
   * @returns {Promise<object>} the hub's `subscribed` reply, once it is subscribed
   */
  async subscribe(channels) {
    const list = channelList(channels);
    for (const channel of list) this.#channels.add(channel);
    return this.#whenReady(() =>
      this.#request({ type: 'subscribe', channels: list }).then((reply) => {
        this.#serverSubscriptions = reply.subscriptions ?? this.#serverSubscriptions;
        this.#positions.adopt(reply, []);
        return reply;
      }),
    );
  }

  /**
   * Unsubscribes from channels, now and after every reconnection.
   * @param {string | string[]} channels
   * @returns {Promise<object>} the hub's `unsubscribed` reply
   */
  async unsubscribe(channels) {
    const list = channelList(channels);
    for (const channel of list) {
      this.#channels.delete(channel);
      this.#positions.forget(channel);
    }
    return this.#whenReady(() =>
      this.#request({ type: 'unsubscribe', channels: list }).then((reply) => {
        this.#serverSubscriptions = reply.subscriptions ?? this.#serverSubscriptions;
        return reply;
      }),
    );
  }

  /**
   * Sends a message to the hub: a catalogue event (published on its channel to every other
   * subscriber), `ping`, ... While disconnected it waits in an outbox (`outboxLimit`).
   * @param {{type: string}} message
   * @returns {Promise<object>} the hub's reply (`published`, `pong`, ...); rejects with a
   *   {@link LivebridgeError} carrying the hub's error
   */
  send(message) {
    if (!message || typeof message.type !== 'string') {
      return Promise.reject(new TypeError('livebridge: a message is an object with a string `type`'));
    }
    if (this.#state === 'closed') return Promise.reject(new LivebridgeError('the client is closed'));
    if (this.#ready) return this.#request(message);
    return new Promise((resolve, reject) => {
      this.#outbox.push({ message, resolve, reject });
      while (this.#outbox.length > this.#options.outboxLimit) {
        this.#outbox.shift().reject(new LivebridgeError('outbox full: message dropped before it was sent'));
      }
    });
  }

  /**
   * Ends the session (the hub forgets it at once) and stops reconnecting.
   * @returns {Promise<void>} settles once the hub was told (or could not be)
   */
  async close() {
    if (this.#state === 'closed') return;
    this.#generation++;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#upgradeTimer);
    this.#positions.reset();
    const connection = this.#connection;
    this.#connection = null;
    this.#transport = null;
    this.#ready = false;
    this.#setState('closed', { reason: 'closed by the app' });
    const closed = new LivebridgeError('the client is closed');
    for (const { reject } of this.#outbox.splice(0)) reject(closed);
    for (const { reject } of this.#readyWaiters.splice(0)) reject(closed);
    if (connection) {
      await connection.end();
    } else if (this.#clientId) {
      // Between connections: the hub still holds the session until it goes stale.
      await this.#newPolling().endSession(this.#clientId);
    }
  }

  // --- connecting -----------------------------------------------------------------------

  async #attempt() {
    if (this.#state === 'closed') return;
    const generation = ++this.#generation;
    const stale = () => generation !== this.#generation;
    let token;
    try {
      token = await this.#token();
    } catch (error) {
      return this.#retryLater({ reason: `token: ${error.message}` });
    }
    if (stale()) return;
    let socketFailure = null;
    if (this.#socketFirst()) {
      const socket = this.#newSocket(token);
      try {
        const welcome = await socket.open();
        if (stale()) return socket.end();
        this.#preferPolling = false;
        return this.#adopt(socket, welcome);
      } catch (error) {
        if (stale()) return;
        if (this.#options.transport === 'websocket') return this.#retryLater({ reason: error.message });
        socketFailure = error;
      }
    }
    const polling = this.#newPolling();
    try {
      const handshake = await polling.handshake(this.#handshakeBody(token));
      if (stale()) return polling.end();
      // Sockets failed where HTTP works: something between us and the hub blocks them. Poll
      // straight away on later reconnections; the upgrade timer keeps trying sockets.
      if (socketFailure) this.#preferPolling = true;
      return this.#adopt(polling, handshake, { socketFailed: Boolean(socketFailure) });
    } catch (error) {
      if (stale()) return;
      if (isFatal(error) && typeof this.#options.token !== 'function') {
        this.#dispatch({ type: 'error', error: error.message, status: error.status });
        return this.close();
      }
      return this.#retryLater({ reason: error.message, socketFailure: socketFailure?.message });
    }
  }

  #socketFirst() {
    const mode = this.#options.transport;
    if (mode === 'polling' || !this.#WebSocket) return false;
    return mode === 'websocket' || !this.#preferPolling;
  }

  #newSocket(token, clientId = this.#clientId) {
    const query = new URLSearchParams();
    if (clientId) query.set('client_id', clientId);
    if (token) query.set('token', token);
    const qs = query.toString();
    const socket = new WebSocketConnection({
      WebSocket: this.#WebSocket,
      url: `${this.#ws}/ws${qs ? `?${qs}` : ''}`,
      openTimeout: this.#options.webSocketOpenTimeout,
      pingInterval: this.#options.pingInterval,
      pingTimeout: this.#options.pingTimeout,
      onMessage: (message) => this.#receive(message),
      onLost: (detail) => this.#lost(socket, detail),
    });
    return socket;
  }

  #newPolling() {
    const polling = new PollingConnection({
      base: this.#http,
      fetch: this.#fetch,
      pollWait: this.#options.pollWait,
      requestTimeout: this.#options.requestTimeout,
      onMessage: (message) => this.#receive(message),
      onLost: (detail) => this.#lost(polling, detail),
    });
    return polling;
  }

  #handshakeBody(token) {
    const body = { client_type: this.#options.clientType, protocol_version: PROTOCOL_VERSION };
    if (this.#options.clientName) body.client_name = this.#options.clientName;
    if (this.#clientId) body.client_id = this.#clientId;
    if (token) body.token = token;
    return body;
  }

  async #token() {
    const token = this.#options.token;
    return typeof token === 'function' ? await token() : token;
  }

  /** Makes `connection` the one in use and sets the session up on it. */
  async #adopt(connection, welcome, { socketFailed = false } = {}) {
    const generation = this.#generation;
    const resumed = welcome.resumed === true && welcome.client_id === this.#clientId;
    this.#connection = connection;
    this.#clientId = welcome.client_id;
    this.#attempts = 0;
    if (welcome.subscriptions) this.#serverSubscriptions = welcome.subscriptions;
    else if (!resumed) this.#serverSubscriptions = [];
    if (connection.kind === 'websocket') this.#dispatch(welcome);
    connection.start();
    try {
      await this.#setUp(connection, resumed);
    } catch (error) {
      if (generation !== this.#generation || this.#connection !== connection) return;
      // The hub refused part of the setup (an invalid channel, a token that does not allow
      // one): the app hears why; the connection itself is fine.
      this.#dispatch({ type: 'error', error: error.message, during: 'setup' });
    }
    if (generation !== this.#generation || this.#connection !== connection) return;
    this.#ready = true;
    this.#transport = connection.kind;
    this.#setState(connection.kind === 'websocket' ? 'open' : 'polling', {
      clientId: this.#clientId,
      resumed,
      transport: connection.kind,
    });
    for (const waiter of this.#readyWaiters.splice(0)) waiter.resolve();
    for (const item of this.#outbox.splice(0)) {
      connection.request(item.message).then(item.resolve, item.reject);
    }
    // A socket that failed during a reconnection may only have met a hub that was still
    // starting: the first upgrade attempt comes soon.
    if (connection.kind === 'polling') this.#scheduleUpgrade(socketFailed ? FIRST_UPGRADE_DELAY : undefined);
  }

  /** Register (new WebSocket sessions), subscribe with recovery positions, drop extras. */
  async #setUp(connection, resumed) {
    const requests = [];
    if (!resumed && connection.kind === 'websocket') {
      const register = { type: 'register', client_type: this.#options.clientType };
      if (this.#options.clientName) register.client_name = this.#options.clientName;
      requests.push(connection.request(register));
    }
    requests.push(this.#subscribeWithRecovery(connection, [...this.#channels]));
    const extra = this.#serverSubscriptions.filter((channel) => !this.#channels.has(channel));
    if (extra.length > 0) {
      requests.push(connection.request({ type: 'unsubscribe', channels: extra }));
    }
    await Promise.all(requests);
  }

  /** Subscribes to `channels`, asking for what was missed on those with a known position. */
  async #subscribeWithRecovery(connection, channels) {
    if (channels.length === 0) return;
    const since = this.#positions.beginRecovery(channels);
    const message = { type: 'subscribe', channels };
    if (since) message.since = since;
    try {
      const reply = await connection.request(message);
      this.#serverSubscriptions = reply.subscriptions ?? this.#serverSubscriptions;
      if (connection === this.#connection) this.#positions.adopt(reply, since ? Object.keys(since) : []);
    } catch (error) {
      this.#positions.abandonRecovery(since ? Object.keys(since) : []);
      throw error;
    }
  }

  #lost(connection, detail = {}) {
    if (connection !== this.#connection || this.#state === 'closed') return;
    this.#connection = null;
    this.#ready = false;
    clearTimeout(this.#upgradeTimer);
    if (detail.takenOver) {
      // Another connection resumed this session: it is theirs now. Taking it back would
      // start a tug of war, so this client starts a new session (its positions still let it
      // recover what it missed).
      this.#clientId = null;
    }
    this.#retryLater(detail);
  }

  #retryLater(detail = {}) {
    if (this.#state === 'closed') return;
    this.#connection = null;
    this.#transport = null;
    this.#ready = false;
    this.#positions.reset();
    clearTimeout(this.#reconnectTimer);
    const attempt = ++this.#attempts;
    const delay = detail.immediate && attempt === 1 ? 0 : backoffDelay(attempt, this.#options);
    this.#setState('reconnecting', { ...detail, attempt, delay });
    this.#reconnectTimer = setTimeout(() => this.#attempt(), delay);
  }

  // --- upgrading from polling to a WebSocket --------------------------------------------

  #scheduleUpgrade(soon) {
    clearTimeout(this.#upgradeTimer);
    const interval = this.#options.upgradeInterval;
    if (!interval || !this.#WebSocket || this.#options.transport === 'polling') return;
    this.#upgradeTimer = setTimeout(() => this.#upgrade(), Math.min(interval, soon ?? interval));
  }

  /**
   * Opens a socket that resumes the polling session. The hub answers the pending poll empty
   * (`superseded`) and sends the rest on the socket; frames that arrive before the last poll
   * settled are held back so events keep their order.
   */
  async #upgrade() {
    const polling = this.#connection;
    if (this.#upgrading || !polling || polling.kind !== 'polling' || !this.#ready) return;
    this.#upgrading = true;
    const generation = this.#generation;
    polling.holdPolls();
    let socket;
    try {
      const token = await this.#token();
      socket = this.#newSocket(token, this.#clientId);
      socket.holdMessages();
      const welcome = await socket.open();
      if (generation !== this.#generation || this.#connection !== polling) {
        // Closed by the app (end the session) or reconnecting (which resumes it).
        polling.releasePolls();
        if (this.#state === 'closed') socket.end();
        else socket.abandon();
        return;
      }
      await polling.stop();
      if (generation !== this.#generation || this.#state === 'closed') {
        if (this.#state === 'closed') socket.end();
        else socket.abandon();
        return;
      }
      this.#preferPolling = false;
      this.#ready = false;
      await this.#adopt(socket, welcome);
      socket.releaseMessages();
    } catch {
      // Sockets still do not get through: keep polling, try again later.
      polling.releasePolls();
      socket?.abandon();
      if (this.#connection === polling) this.#scheduleUpgrade();
    } finally {
      this.#upgrading = false;
    }
  }

  // --- messages -------------------------------------------------------------------------

  #receive(message) {
    if (message.type === 'messages_dropped') {
      this.#dispatch(message);
      // The hub's queue for us overflowed: ask again for what it dropped.
      const connection = this.#connection;
      const channels = this.#positions.recoverable([...this.#channels]);
      if (connection && this.#ready && channels.length > 0) {
        this.#subscribeWithRecovery(connection, channels).catch((error) => {
          this.#dispatch({ type: 'error', error: error.message, during: 'recovery' });
        });
      }
      return;
    }
    this.#positions.receive(message);
  }

  #request(message) {
    const connection = this.#connection;
    if (!connection) return Promise.reject(new LivebridgeError('not connected'));
    return connection.request(message);
  }

  /** Runs `fn` now when ready, else once the client is (re)connected and set up. */
  #whenReady(fn) {
    if (this.#state === 'closed') return Promise.reject(new LivebridgeError('the client is closed'));
    if (this.#ready) return fn();
    // The setup may already have been computed without what the caller just added, so the
    // request itself waits (repeating a subscription the setup made is harmless).
    return new Promise((resolve, reject) => this.#readyWaiters.push({ resolve, reject })).then(fn);
  }

  #setState(state, detail = {}) {
    // Every reconnection attempt is reported (with its number and delay).
    if (state === this.#state && state !== 'reconnecting') return;
    this.#state = state;
    this.#emit('state', state, { ...detail, state });
  }

  #dispatch(message) {
    this.#emit(message.type, message);
    this.#emit('*', message);
  }

  #emit(type, ...args) {
    const listeners = this.#listeners.get(type);
    if (!listeners) return;
    for (const fn of [...listeners]) {
      try {
        fn(...args);
      } catch (error) {
        // A failing listener must not stop the others nor the client.
        if (typeof globalThis.reportError === 'function') globalThis.reportError(error);
        else console.error('livebridge: a listener failed:', error);
      }
    }
  }
}

// --- channel positions: deduplication and recovery ----------------------------------------

/**
 * The (epoch, offset) of the last event delivered per channel, and the channels under
 * recovery. A hub with channel history stamps every channel event with `channel`, `offset`
 * (contiguous per channel) and `epoch`; events without them (direct messages, a hub without
 * history) pass straight through.
 *
 * Outside recovery an event is delivered unless its offset is at or below the last one of
 * the same epoch (a duplicate). During a recovery (after a reconnection, a resume or a
 * `messages_dropped`), the hub first sends what was already queued (newer events, past the
 * gap) and then replays the gap: so only the next contiguous offset is delivered, and events
 * past a gap are held until the replay fills it. The recovery ends when the channel reaches
 * the position the `subscribed` reply gave; held events are then delivered in order.
 */
class ChannelPositions {
  #last = new Map(); // channel -> {epoch, offset}
  #recovering = new Map(); // channel -> {requests, target, held: Map<offset, event>, timer}
  #deliver;
  #recoveryFailed;
  #recoveryTimeout;

  constructor({ deliver, recoveryFailed, recoveryTimeout }) {
    this.#deliver = deliver;
    this.#recoveryFailed = recoveryFailed;
    this.#recoveryTimeout = recoveryTimeout;
  }

  /** Channels among `channels` with a known position. */
  recoverable(channels) {
    return channels.filter((channel) => this.#last.has(channel));
  }

  /** Marks the channels with a position as recovering; returns the `since` to send, or null. */
  beginRecovery(channels) {
    const since = {};
    for (const channel of this.recoverable(channels)) {
      const { epoch, offset } = this.#last.get(channel);
      since[channel] = { offset, epoch };
      const recovery = this.#recovering.get(channel);
      if (recovery) {
        recovery.requests++;
        recovery.target = null;
      } else {
        this.#recovering.set(channel, { requests: 1, target: null, held: new Map(), timer: null });
      }
    }
    return Object.keys(since).length > 0 ? since : null;
  }

  /** Takes in a `subscribed` reply: adopts new positions and resolves recoveries. */
  adopt(reply, sinceChannels) {
    const positions = reply.positions ?? {};
    for (const channel of sinceChannels) {
      const recovery = this.#recovering.get(channel);
      if (!recovery) continue;
      recovery.requests--;
      const position = positions[channel];
      const recovered = reply.recovered?.[channel];
      if (recovered === true && isPosition(position)) {
        recovery.target = position;
        this.#advance(channel);
        this.#armTimeout(channel, recovery);
      } else if (recovered === false) {
        if (isPosition(position)) this.#last.set(channel, { epoch: position.epoch, offset: position.offset });
        this.#finish(channel);
        this.#recoveryFailed({ type: 'recovery_failed', channel, position, positions });
      } else if (recovery.requests <= 0) {
        // A hub without history ignores `since`: nothing will be replayed.
        this.#finish(channel);
      }
    }
    // Channels subscribed afresh start from the hub's current position, so an event the hub
    // sends twice later (a replay) is recognised.
    for (const [channel, position] of Object.entries(positions)) {
      if (!this.#last.has(channel) && isPosition(position)) {
        this.#last.set(channel, { epoch: position.epoch, offset: position.offset });
      }
    }
  }

  /** The recovery request failed (the connection went): deliver what was held. */
  abandonRecovery(channels) {
    for (const channel of channels) {
      const recovery = this.#recovering.get(channel);
      if (recovery && --recovery.requests <= 0 && !recovery.target) this.#finish(channel);
    }
  }

  /** A message from the hub: delivered, held, or dropped as a duplicate. */
  receive(message) {
    const { channel, offset, epoch } = message;
    if (typeof channel !== 'string' || !Number.isSafeInteger(offset) || typeof epoch !== 'string') {
      this.#deliver(message);
      return;
    }
    const last = this.#last.get(channel);
    const sameEpoch = last && last.epoch === epoch;
    if (sameEpoch && offset <= last.offset) return; // a duplicate
    const recovery = this.#recovering.get(channel);
    if (!recovery || !last) {
      this.#last.set(channel, { epoch, offset });
      this.#deliver(message);
      return;
    }
    if (sameEpoch && offset === last.offset + 1) {
      this.#last.set(channel, { epoch, offset });
      this.#deliver(message);
      this.#advance(channel);
      return;
    }
    recovery.held.set(`${epoch}/${offset}`, message);
  }

  /** Forgets a channel the app unsubscribed from (re-subscribing later starts afresh). */
  forget(channel) {
    this.#finish(channel, { deliverHeld: false });
    this.#last.delete(channel);
  }

  /**
   * Drops every recovery: on a new connection they start again from the last positions, and
   * the held events will be sent again by the replay.
   */
  reset() {
    for (const channel of [...this.#recovering.keys()]) this.#finish(channel, { deliverHeld: false });
  }

  #advance(channel) {
    const recovery = this.#recovering.get(channel);
    if (!recovery) return;
    for (;;) {
      const last = this.#last.get(channel);
      const key = `${last.epoch}/${last.offset + 1}`;
      const next = recovery.held.get(key);
      if (!next) break;
      recovery.held.delete(key);
      this.#last.set(channel, { epoch: last.epoch, offset: last.offset + 1 });
      this.#deliver(next);
    }
    const last = this.#last.get(channel);
    const target = recovery.target;
    if (target && recovery.requests <= 0 && last.epoch === target.epoch && last.offset >= target.offset) {
      this.#finish(channel);
    }
  }

  #armTimeout(channel, recovery) {
    clearTimeout(recovery.timer);
    // The replay should fill the gap at once; if a hole never fills (an event the hub did
    // not replay to us), the events behind it must not wait forever.
    recovery.timer = setTimeout(() => {
      if (this.#recovering.get(channel) === recovery) this.#finish(channel);
    }, this.#recoveryTimeout);
  }

  /** Ends a recovery; held events newer than the position are delivered in order. */
  #finish(channel, { deliverHeld = true } = {}) {
    const recovery = this.#recovering.get(channel);
    if (!recovery) return;
    clearTimeout(recovery.timer);
    this.#recovering.delete(channel);
    if (!deliverHeld) return;
    // Events of another epoch than the channel's position belong to a history that is gone.
    const epoch = this.#last.get(channel)?.epoch;
    const held = [...recovery.held.values()]
      .filter((message) => message.epoch === epoch)
      .sort((a, b) => a.offset - b.offset);
    for (const message of held) this.receive(message);
  }
}

function isPosition(position) {
  return position && Number.isSafeInteger(position.offset) && typeof position.epoch === 'string';
}

// --- transports ---------------------------------------------------------------------------

/**
 * One WebSocket to `/ws`. `open()` settles with the hub's `connection_established`, or fails
 * when the socket cannot open (the caller then polls). Replies to requests come in the order
 * the requests were sent, between events, so they are matched first in, first out.
 */
class WebSocketConnection {
  kind = 'websocket';
  #socket;
  #options;
  #pending = [];
  #established = false;
  #ended = false;
  #held = null; // frames kept back during an upgrade, released in order afterwards
  #lastFrameAt = Date.now();
  #heartbeat = null;

  constructor(options) {
    this.#options = options;
  }

  open() {
    return new Promise((resolve, reject) => {
      let socket;
      try {
        socket = new this.#options.WebSocket(this.#options.url);
      } catch (error) {
        reject(error);
        return;
      }
      this.#socket = socket;
      const timer = setTimeout(() => {
        fail(new LivebridgeError('the WebSocket did not open in time'));
        // A late welcome may still resume the session at the hub: leave it resumable.
        this.abandon();
      }, this.#options.openTimeout);
      const fail = (error) => {
        clearTimeout(timer);
        if (!this.#established) reject(error);
      };
      socket.addEventListener('message', (event) => {
        this.#lastFrameAt = Date.now();
        const message = parseJson(typeof event.data === 'string' ? event.data : String(event.data));
        if (!message || typeof message.type !== 'string') return;
        if (!this.#established) {
          if (message.type !== 'connection_established') return;
          this.#established = true;
          clearTimeout(timer);
          resolve(message);
          return;
        }
        this.#frame(message);
      });
      socket.addEventListener('close', (event) => {
        clearTimeout(timer);
        clearInterval(this.#heartbeat);
        const error = new LivebridgeError(`WebSocket closed (${event.code}${event.reason ? ` ${event.reason}` : ''})`, {
          code: event.code,
        });
        for (const { reject: rejectRequest } of this.#pending.splice(0)) rejectRequest(error);
        if (!this.#established) {
          fail(error);
          return;
        }
        if (this.#ended) return;
        this.#ended = true;
        this.#options.onLost({
          reason: error.message,
          code: event.code,
          // 4001: another connection resumed this session.
          takenOver: event.code === 4001,
          // 1008: we read too slowly; the session and its queue wait for us.
          immediate: event.code === 1008,
        });
      });
      socket.addEventListener('error', () => fail(new LivebridgeError('the WebSocket could not open')));
    });
  }

  /** Starts the heartbeat once the client uses this connection. */
  start() {
    const { pingInterval, pingTimeout } = this.#options;
    if (!pingInterval) return;
    this.#heartbeat = setInterval(() => {
      if (Date.now() - this.#lastFrameAt < pingInterval) return;
      const sentAt = Date.now();
      this.request({ type: 'ping' }).catch(() => {});
      setTimeout(() => {
        if (!this.#ended && this.#lastFrameAt < sentAt) this.#drop('no answer to ping');
      }, pingTimeout);
    }, Math.min(pingInterval, 5000));
  }

  request(message) {
    return new Promise((resolve, reject) => {
      if (this.#ended || this.#socket?.readyState !== 1) {
        reject(new LivebridgeError('the WebSocket is not open'));
        return;
      }
      this.#pending.push({ resolve, reject });
      this.#socket.send(JSON.stringify(message));
    });
  }

  holdMessages() {
    this.#held = [];
  }

  releaseMessages() {
    const held = this.#held ?? [];
    this.#held = null;
    for (const message of held) this.#options.onMessage(message);
  }

  /** Closes with 1000: the hub ends the session at once. */
  async end() {
    this.#close(1000, 'client closed');
  }

  /** Closes without ending the session (the client goes on with another connection). */
  abandon() {
    this.#close(ABANDON_CODE, 'abandoned');
  }

  #close(code, reason) {
    this.#ended = true;
    clearInterval(this.#heartbeat);
    try {
      this.#socket?.close(code, reason);
    } catch {
      // Already closed.
    }
  }

  #frame(message) {
    if (REPLY_TYPES.has(message.type) && this.#pending.length > 0) {
      const { resolve, reject } = this.#pending.shift();
      if (message.type === 'error') reject(new LivebridgeError(message.error, { reply: message }));
      else resolve(message);
      return;
    }
    if (this.#held) this.#held.push(message);
    else this.#options.onMessage(message);
  }

  /** Gives up on a socket that stopped answering, keeping the session resumable. */
  #drop(reason) {
    if (this.#ended) return;
    this.#close(ABANDON_CODE, reason);
    this.#options.onLost({ reason });
  }
}

/**
 * The HTTP long-poll transport: `POST /ws/handshake`, `GET /ws/poll?wait=`, `POST /ws/send`.
 * Sends go one at a time so the hub sees them in order.
 */
class PollingConnection {
  kind = 'polling';
  #options;
  #clientId = null;
  #running = false;
  #stopped = false;
  #loop = null;
  #inFlight = new Set(); // AbortControllers of requests under way
  #sendChain = Promise.resolve();
  #gate = null; // while an upgrade is being tried, the next poll waits for this promise
  #openGate = null;
  #upgradesTried = 0; // a poll superseded while one was tried was superseded by our own socket

  constructor(options) {
    this.#options = options;
  }

  async handshake(body) {
    const reply = await this.#http('POST', '/ws/handshake', body);
    this.#clientId = reply.client_id;
    return reply;
  }

  start() {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#pollLoop();
  }

  request(message) {
    // /ws/send works whatever transport the session is attached to, so sends still under
    // way after an upgrade complete normally.
    const send = this.#sendChain.then(() =>
      this.#http('POST', '/ws/send', { client_id: this.#clientId, message }),
    );
    this.#sendChain = send.catch(() => {});
    return send.then((reply) => reply.response);
  }

  /**
   * No new poll starts until releasePolls() or stop(): while a socket tries to take the
   * session over, a new poll would be refused (409) or would supersede the socket.
   */
  holdPolls() {
    this.#upgradesTried++;
    this.#gate = new Promise((resolve) => {
      this.#openGate = resolve;
    });
  }

  releasePolls() {
    this.#gate = null;
    this.#openGate?.();
  }

  /** Stops polling; settles once the poll under way (if any) was answered and handled. */
  async stop() {
    this.#stopped = true;
    this.releasePolls();
    await this.#loop;
  }

  /** Stops polling and ends the session at the hub. */
  async end() {
    this.#stopped = true;
    for (const controller of this.#inFlight) controller.abort();
    if (this.#clientId) await this.endSession(this.#clientId);
  }

  /** `POST /ws/disconnect`: the hub ends the session (whatever transport it has). */
  async endSession(clientId) {
    try {
      await this.#http('POST', '/ws/disconnect', { client_id: clientId });
    } catch {
      // The hub is gone or forgot us already: either way the session is over.
    }
  }

  async #pollLoop() {
    const { pollWait } = this.#options;
    while (!this.#stopped) {
      if (this.#gate) await this.#gate;
      if (this.#stopped) return;
      const startedAt = Date.now();
      const upgradesTried = this.#upgradesTried;
      let reply;
      try {
        reply = await this.#http(
          'GET',
          `/ws/poll?client_id=${encodeURIComponent(this.#clientId)}&wait=${pollWait}`,
          undefined,
          pollWait * 1000,
        );
      } catch (error) {
        if (this.#stopped) return;
        this.#stopped = true;
        this.#options.onLost({
          reason: error.message,
          status: error.status,
          // 404/410: the hub forgot the session (restart, eviction, disconnect): a new one
          // is made at once. 409: a WebSocket took the session over.
          immediate: error.status === 404 || error.status === 410,
          takenOver: error.status === 409,
        });
        return;
      }
      if (reply.dropped > 0) {
        this.#options.onMessage({ type: 'messages_dropped', dropped: reply.dropped, timestamp: reply.timestamp });
      }
      for (const message of reply.messages ?? []) this.#options.onMessage(message);
      const ownUpgrade = this.#upgradesTried !== upgradesTried;
      if (reply.superseded && !ownUpgrade && !this.#stopped) {
        // Someone else polled or opened a socket with our id.
        this.#stopped = true;
        this.#options.onLost({ reason: 'the poll was superseded by another connection', takenOver: true });
        return;
      }
      const empty = (reply.messages ?? []).length === 0;
      if (empty && Date.now() - startedAt < 500 && !ownUpgrade) {
        // Answered at once with nothing (a hub without long polls): do not spin.
        await sleep(1000);
      }
    }
  }

  async #http(method, path, body, extraTimeout = 0) {
    const controller = new AbortController();
    this.#inFlight.add(controller);
    const timer = setTimeout(() => controller.abort(), this.#options.requestTimeout + extraTimeout);
    try {
      let response;
      try {
        response = await this.#options.fetch(`${this.#options.base}${path}`, {
          method,
          headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: controller.signal,
          cache: 'no-store',
        });
      } catch (error) {
        throw new LivebridgeError(`${method} ${path.split('?')[0]} failed: ${error.message}`);
      }
      const reply = parseJson(await response.text());
      if (!response.ok || !reply || reply.success === false) {
        const problem = reply?.error ?? `HTTP ${response.status}`;
        throw new LivebridgeError(problem, { status: response.status, reply });
      }
      return reply;
    } finally {
      clearTimeout(timer);
      this.#inFlight.delete(controller);
    }
  }
}

// --- helpers ------------------------------------------------------------------------------

/** The HTTP and WebSocket base URLs of a hub given as http(s), ws(s), relative or `.../ws`. */
function baseUrls(url) {
  const here = globalThis.location?.href;
  const parsed = new URL(url ?? here, here);
  const secure = parsed.protocol === 'https:' || parsed.protocol === 'wss:';
  if (!['http:', 'https:', 'ws:', 'wss:'].includes(parsed.protocol)) {
    throw new TypeError(`livebridge: unsupported URL ${url}`);
  }
  const path = parsed.pathname.replace(/\/+$/, '').replace(/\/ws$/, '');
  return {
    http: `${secure ? 'https' : 'http'}://${parsed.host}${path}`,
    ws: `${secure ? 'wss' : 'ws'}://${parsed.host}${path}`,
  };
}

function channelList(channels) {
  const list = typeof channels === 'string' ? [channels] : [...(channels ?? [])];
  if (list.some((channel) => typeof channel !== 'string')) {
    throw new TypeError('livebridge: channels are strings');
  }
  return list;
}

function backoffDelay(attempt, { reconnectDelay, maxReconnectDelay }) {
  const ceiling = Math.min(maxReconnectDelay, reconnectDelay * 2 ** (attempt - 1));
  // Jitter: clients dropped together (a hub restart) do not come back all at once.
  return Math.round(ceiling * (0.5 + Math.random() * 0.5));
}

/** Errors that retrying cannot fix: a refused token or origin, a malformed handshake. */
function isFatal(error) {
  return error.status === 400 || error.status === 401 || error.status === 403;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
