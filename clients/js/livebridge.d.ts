// Type declarations of livebridge.js, the livebridge browser and Node client.

import type { CatalogueEvents } from './catalogue.js';
// The catalogue's event types (JobProgressEvent, CatalogueEvent, CatalogueEvents, …), generated
// from the hub's catalogue into catalogue.d.ts (scripts/generate-client-types.sh).
export type * from './catalogue.js';

/** The protocol version the client speaks. */
export const PROTOCOL_VERSION: '1.0';
/** The client's own version. */
export const VERSION: string;

export type ConnectionState = 'connecting' | 'open' | 'polling' | 'reconnecting' | 'closed';
export type TransportKind = 'websocket' | 'polling';

/** A channel's position in the hub's history (a hub with channel history only). */
export interface ChannelPosition {
  offset: number;
  epoch: string;
}

export interface ConnectOptions {
  /** Sent at handshake/register; default `"web"`. */
  clientType?: string;
  /** Shown in the hub's client list. */
  clientName?: string;
  /** Subscribed on every (re)connection. */
  channels?: string[];
  /** A client token (when the hub requires them): `?token=` on `/ws`, `token` in the handshake.
   *  A function is called before each connection attempt (to refresh an expiring token). */
  token?: string | (() => string | Promise<string>);
  /** `"auto"` (default): WebSocket first, long polling when sockets do not get through. */
  transport?: 'auto' | 'websocket' | 'polling';
  /** A WebSocket implementation (default: the global one; Node 20 has none: pass `ws`). */
  WebSocket?: unknown;
  /** A fetch implementation (default: the global one). */
  fetch?: typeof fetch;
  /** Seconds a long poll waits at the hub; default 25. */
  pollWait?: number;
  /** Milliseconds a request may take (a poll: plus pollWait); default 10000. */
  requestTimeout?: number;
  /** Milliseconds a socket may take to open before polling is used; default 5000. */
  webSocketOpenTimeout?: number;
  /** While polling, milliseconds between attempts to go back to a WebSocket; 0: never. Default 60000. */
  upgradeInterval?: number;
  /** Backoff base in ms (attempt n waits ½–1 × min(base·2^(n-1), max)); default 500. */
  reconnectDelay?: number;
  /** Backoff cap in ms; default 30000. */
  maxReconnectDelay?: number;
  /** Milliseconds without a frame before the client pings over a WebSocket; default 25000, 0: never. */
  pingInterval?: number;
  /** Milliseconds to wait for an answer to that ping before reconnecting; default 10000. */
  pingTimeout?: number;
  /** Messages kept by send() while disconnected; default 100. */
  outboxLimit?: number;
  /** Milliseconds a channel's held events wait for a replay to fill a gap; default 10000. */
  recoveryTimeout?: number;
}

/** Any message from the hub: `type`, `timestamp` and the event's fields. */
export interface LivebridgeMessage {
  type: string;
  timestamp?: string;
  /** On channel events from a hub with channel history. */
  channel?: string;
  offset?: number;
  epoch?: string;
  [field: string]: unknown;
}

/** Emitted when the hub could not replay what this client missed on a channel: reload its state. */
export interface RecoveryFailed {
  type: 'recovery_failed';
  channel: string;
  /** The channel's position now: events after it follow. */
  position?: ChannelPosition;
  /** The `positions` of the hub's `subscribed` reply. */
  positions: Record<string, ChannelPosition>;
}

export interface StateDetail {
  state: ConnectionState;
  reason?: string;
  code?: number;
  attempt?: number;
  delay?: number;
  clientId?: string;
  resumed?: boolean;
  transport?: TransportKind;
}

export type MessageListener = (message: LivebridgeMessage) => void;
export type StateListener = (state: ConnectionState, detail: StateDetail) => void;

export class LivebridgeError extends Error {
  /** The HTTP status, when the hub answered one. */
  status?: number;
  /** The hub's reply (`{"type": "error", ...}` or `{"success": false, ...}`). */
  reply?: unknown;
  /** The WebSocket close code, when a socket closed. */
  code?: number;
}

/** A client whose listeners of catalogue events get their types from `Events`, a map from
 *  event type to event: the built-in catalogue's `CatalogueEvents` by default, or the one
 *  `livebridge catalogue --format typescript --catalogue FILE` generates for a hub's own. */
export class LivebridgeClient<Events extends object = CatalogueEvents> {
  constructor(url: string, options?: ConnectOptions);
  readonly state: ConnectionState;
  readonly clientId: string | null;
  /** The transport in use while connected (`open`: websocket, `polling`: polling), else null. */
  readonly transport: TransportKind | null;
  /** The channels this client wants (re-subscribed after every reconnection). */
  readonly channels: string[];
  on(type: 'state', fn: StateListener): () => void;
  on(type: 'recovery_failed', fn: (notice: RecoveryFailed) => void): () => void;
  on<K extends keyof Events & string>(type: K, fn: (event: Events[K]) => void): () => void;
  on(type: string, fn: MessageListener): () => void;
  off(type: 'state', fn: StateListener): void;
  off<K extends keyof Events & string>(type: K, fn: (event: Events[K]) => void): void;
  off(type: string, fn: MessageListener | ((notice: RecoveryFailed) => void)): void;
  subscribe(channels: string | string[]): Promise<LivebridgeMessage>;
  unsubscribe(channels: string | string[]): Promise<LivebridgeMessage>;
  /** Resolves with the hub's reply (`published`, `pong`, ...); rejects with a LivebridgeError. */
  send(message: { type: string; [field: string]: unknown }): Promise<LivebridgeMessage>;
  /** Ends the session and stops reconnecting. */
  close(): Promise<void>;
}

/** Connects to a hub at `url` (http(s)://, ws(s):// or relative to the page). Returns at once. */
export function connect<Events extends object = CatalogueEvents>(url: string, options?: ConnectOptions): LivebridgeClient<Events>;
