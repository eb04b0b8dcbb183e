// Test support: starts the real livebridge binary on a free loopback port, talks to its HTTP
// API, and stops it. Every test file starts its own hubs so tests never share state.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');
export const BINARY = process.env.LIVEBRIDGE_BIN ?? path.join(REPO, 'target/release/livebridge');

// Deadlines far beyond what a slow machine needs: they turn a hang into a failure that says
// what was awaited.
const START_TIMEOUT = 20000;
const API_TIMEOUT = 20000;

/** A running hub. `start()` picks a free port; `restart()` comes back on the same one. */
export class Hub {
  constructor(args = []) {
    this.args = args;
    this.process = null;
    this.address = null; // "127.0.0.1:PORT"
    this.adminToken = valueOf(args, '--admin-token');
  }

  static async start(args = []) {
    const hub = new Hub(args);
    await hub.#spawn('127.0.0.1:0');
    return hub;
  }

  get url() {
    return `http://${this.address}`;
  }

  get port() {
    return Number(this.address.split(':')[1]);
  }

  /** SIGTERM and wait for the exit (the hub closes sockets with 1001 and answers polls). */
  async stop() {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
  }

  /** Stops the hub and starts a new one on the same port (its sessions are gone). */
  async restart() {
    await this.stop();
    const deadline = Date.now() + 10000;
    for (;;) {
      try {
        await this.#spawn(this.address);
        return;
      } catch (error) {
        // The port can take a moment to be free again.
        if (Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  /** A JSON request to the hub's API, with the admin token when the hub has one. */
  async api(method, route, body, { token = this.adminToken, expectStatus } = {}) {
    const headers = {};
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (token) headers.Authorization = `Bearer ${token}`;
    const response = await fetch(`${this.url}${route}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      // A hub that never answers fails the test with the request named, not a hang.
      signal: AbortSignal.timeout(API_TIMEOUT),
    }).catch((error) => {
      throw new Error(`${method} ${route}: ${error.name === 'TimeoutError' ? `no answer within ${API_TIMEOUT} ms` : error}`);
    });
    const json = await response.json();
    if (expectStatus !== undefined ? response.status !== expectStatus : !response.ok) {
      throw new Error(`${method} ${route}: ${response.status} ${JSON.stringify(json)}`);
    }
    return json;
  }

  publish(events) {
    return this.api('POST', '/api/events', events);
  }

  async clients() {
    return (await this.api('GET', '/ws/clients')).clients;
  }

  async #spawn(bind) {
    if (!fs.existsSync(BINARY)) {
      throw new Error(`${BINARY} is missing: cargo build --release -p livebridge-smol`);
    }
    // The hub reads LIVEBRIDGE_* settings from the environment: tests set theirs explicitly.
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('LIVEBRIDGE_')));
    const child = spawn(BINARY, ['serve', '--bind', bind, ...this.args], {
      env: { ...env, LIVEBRIDGE_LOG: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => {
      stderr = (stderr + chunk).slice(-4000);
    });
    const lines = createInterface({ input: child.stdout });
    let silent;
    const address = await new Promise((resolve, reject) => {
      lines.once('line', (line) => {
        const match = /^livebridge listening on http:\/\/(\S+)/.exec(line.trim());
        if (match) resolve(match[1]);
        else reject(new Error(`unexpected first line: ${line}`));
      });
      child.once('exit', (code) => reject(new Error(`livebridge exited (${code}): ${stderr}`)));
      silent = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new Error(`livebridge printed no address within ${START_TIMEOUT} ms (killed): ${stderr}`));
      }, START_TIMEOUT);
    }).finally(() => clearTimeout(silent));
    lines.on('line', () => {}); // keep draining stdout
    this.process = child;
    this.address = address;
  }
}

function valueOf(args, flag) {
  const index = args.indexOf(flag);
  return index >= 0 ? args[index + 1] : undefined;
}

/** `promise`, or a rejection naming `what` if it has not settled within `timeout` ms. */
export async function within(promise, { timeout = 5000, what = 'a promise' } = {}) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms waiting for ${what}`)), timeout);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once `predicate()` is truthy (polled every 20 ms); fails after `timeout` ms. */
export async function waitFor(predicate, { timeout = 5000, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
