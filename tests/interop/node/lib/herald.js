// Helpers shared by the stompjs interop tests: start a herald server process,
// connect real @stomp/stompjs clients to it, and wait for things with bounded
// timeouts so that no test can hang forever.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Versions } from '@stomp/stompjs';
import WebSocket from 'ws';

export const LISTEN_RE = /^herald listening http=(\S+):(\d+) stomp=(\S+):(\d+)\s*$/;
const START_TIMEOUT_MS = 20_000;

/** Resolve `promise`, or reject after `ms` with an error naming `what`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Start `$HERALD_BIN serve` on ephemeral ports with the given extra env (and, when
 * given, a TOML `config`, with a notifications database of its own).
 * Resolves to { httpUrl, wsUrl, stompHost, stompPort, stderr(), stop() }.
 *
 * For poking at another broker by hand, HERALD_INTEROP_EXTERNAL_WS (and
 * HERALD_INTEROP_EXTERNAL_HTTP) point the tests at an already-running server
 * instead; env settings are then not applied. CI never sets it.
 */
export async function startHerald(env = {}, { config } = {}) {
  if (process.env.HERALD_INTEROP_EXTERNAL_WS) {
    return {
      external: true,
      httpUrl: process.env.HERALD_INTEROP_EXTERNAL_HTTP ?? null,
      wsUrl: process.env.HERALD_INTEROP_EXTERNAL_WS,
      stderr: () => '',
      stop: async () => {},
    };
  }
  const bin = process.env.HERALD_BIN;
  if (!bin) throw new Error('HERALD_BIN is not set (scripts/test.sh builds herald and exports it)');
  if (!existsSync(bin)) throw new Error(`HERALD_BIN=${bin} does not exist`);

  const args = ['serve', '--http', '127.0.0.1:0', '--stomp', '127.0.0.1:0'];
  if (config) {
    const dir = mkdtempSync(join(tmpdir(), 'herald-interop-'));
    writeFileSync(join(dir, 'herald.toml'), config);
    args.push('--config', join(dir, 'herald.toml'), '--database-url', `sqlite://${join(dir, 'notifications.db')}`);
  }
  const child = spawn(bin, args, {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderr += d;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  let exitStatus = null;
  let stopped = false;
  const exited = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      exitStatus = { code, signal };
      resolve(exitStatus);
    }),
  );
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const listening = new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      stdout += d;
      const lines = stdout.split('\n');
      for (const line of lines.slice(0, -1)) {
        const m = LISTEN_RE.exec(line.trim());
        if (m) resolve({ httpHost: m[1], httpPort: Number(m[2]), stompHost: m[3], stompPort: Number(m[4]) });
      }
    });
    child.once('error', reject);
    exited.then(({ code, signal }) =>
      reject(new Error(`herald exited early (code=${code} signal=${signal})\nstdout:\n${stdout}\nstderr:\n${stderr}`)),
    );
  });

  let addr;
  try {
    addr = await withTimeout(listening, START_TIMEOUT_MS, 'the "herald listening" line on stdout');
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${e.message}\nstdout so far: ${JSON.stringify(stdout)}\nstderr so far:\n${stderr}`);
  }

  return {
    external: false,
    ...addr,
    httpUrl: `http://${addr.httpHost}:${addr.httpPort}`,
    wsUrl: `ws://${addr.httpHost}:${addr.httpPort}/ws`,
    stdout: () => stdout,
    stderr: () => stderr,
    pid: child.pid,
    /** { code, signal } once the process has exited, else null. */
    exitStatus: () => exitStatus,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (stopped) return;
      stopped = true;
      if (exitStatus !== null) {
        // Nobody asked it to stop: it crashed or was killed. Fail loudly, with its log.
        throw new Error(
          `herald (pid ${child.pid}) died during the tests: code=${exitStatus.code} signal=${exitStatus.signal}\n` +
            `--- herald stderr (tail) ---\n${stderr.slice(-8000)}`,
        );
      }
      child.kill('SIGTERM');
      try {
        await withTimeout(exited, 5_000, 'herald to exit after SIGTERM');
      } catch {
        child.kill('SIGKILL');
        await withTimeout(exited, 5_000, 'herald to exit after SIGKILL');
      }
    },
  };
}

/**
 * A FIFO of received items with a bounded `next()`.
 */
export class Inbox {
  constructor() {
    this.items = [];
    this.waiters = [];
    this.watchers = new Set();
  }
  /** Call fn(item) for every later push, without consuming it. Returns an unwatch function. */
  watch(fn) {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }
  push(item) {
    for (const fn of this.watchers) fn(item);
    const w = this.waiters.shift();
    if (w) w(item);
    else this.items.push(item);
  }
  next(ms = 5_000, what = 'a message') {
    if (this.items.length) return Promise.resolve(this.items.shift());
    let waiter;
    const p = new Promise((resolve) => {
      waiter = resolve;
      this.waiters.push(resolve);
    });
    return withTimeout(p, ms, what).catch((e) => {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      throw e;
    });
  }
  /** Wait `ms` and return everything that arrived (including already-queued items). */
  async drain(ms) {
    await sleep(ms);
    const out = this.items;
    this.items = [];
    return out;
  }
  get length() {
    return this.items.length;
  }
}

/**
 * Wait for the first item in any of several inboxes without leaving a waiter
 * behind on the others. Resolves to [index, item].
 */
export async function firstOf(inboxes, ms = 5_000, what = 'a message on any inbox') {
  const deadline = Date.now() + ms;
  for (;;) {
    for (let i = 0; i < inboxes.length; i++) {
      if (inboxes[i].items.length) return [i, inboxes[i].items.shift()];
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Build (but don't activate) a stompjs Client for the server.
 *  - protocols: WebSocket subprotocols offered (default v12.stomp, v11.stomp, v10.stomp)
 *  - versions: accept-version list (default 1.2,1.1,1.0)
 * Every callback records into client.events so tests can assert on them.
 */
export function makeClient(server, opts = {}) {
  const {
    protocols = ['v12.stomp', 'v11.stomp', 'v10.stomp'],
    versions = ['1.2', '1.1', '1.0'],
    debug = !!process.env.STOMP_DEBUG,
    ...rest
  } = opts;
  const events = {
    connected: [],
    errors: new Inbox(),
    closes: new Inbox(),
    wsErrors: [],
    unhandled: [],
    heartbeatsReceived: 0,
    heartbeatLost: 0,
  };
  const client = new Client({
    webSocketFactory: () => {
      const ws = new WebSocket(server.wsUrl, protocols);
      client.rawSocket = ws;
      return ws;
    },
    stompVersions: new Versions(versions),
    connectHeaders: { login: 'guest', passcode: 'guest', host: '/' },
    reconnectDelay: 0, // a test client never reconnects behind the test's back
    connectionTimeout: 5_000,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
    debug: debug ? (m) => console.error(`[stomp] ${m}`) : () => {},
    onConnect: (f) => events.connected.push(f),
    onStompError: (f) => events.errors.push(f),
    onWebSocketClose: (e) => events.closes.push({ code: e.code, reason: e.reason, wasClean: e.wasClean }),
    onWebSocketError: (e) => events.wsErrors.push(e),
    onUnhandledMessage: (m) => events.unhandled.push(m),
    onUnhandledReceipt: (r) => events.unhandled.push(r),
    onUnhandledFrame: (f) => events.unhandled.push(f),
    onHeartbeatReceived: () => {
      events.heartbeatsReceived += 1;
    },
    onHeartbeatLost: () => {
      events.heartbeatLost += 1;
    },
    ...rest,
  });
  client.events = events;
  return client;
}

/** Make a client, activate it, and resolve once CONNECTED has arrived. */
export async function connect(server, opts = {}) {
  const client = makeClient(server, opts);
  const unwatch = [];
  const connected = new Promise((resolve, reject) => {
    const prev = client.onConnect;
    client.onConnect = (frame) => {
      prev(frame);
      resolve(frame);
    };
    unwatch.push(
      client.events.errors.watch((f) =>
        reject(new Error(`ERROR frame instead of CONNECTED: ${f.headers.message} ${f.body}`)),
      ),
      client.events.closes.watch((c) =>
        reject(new Error(`WebSocket closed before CONNECTED (code ${c.code} ${c.reason})`)),
      ),
    );
  });
  client.activate();
  try {
    client.connectedFrame = await withTimeout(connected, 8_000, 'CONNECTED');
  } catch (e) {
    await client.deactivate({ force: true }).catch(() => {});
    throw e;
  } finally {
    unwatch.forEach((u) => u());
  }
  return client;
}

/** Disconnect gracefully (DISCONNECT + receipt), falling back to a hard close. */
export async function disconnect(client) {
  if (!client) return;
  try {
    await withTimeout(client.deactivate(), 3_000, 'graceful DISCONNECT');
  } catch {
    await client.deactivate({ force: true }).catch(() => {});
  }
}

/** Subscribe and push every MESSAGE into a fresh Inbox. Returns { sub, inbox }. */
export function subscribeInbox(client, destination, headers = {}) {
  const inbox = new Inbox();
  const sub = client.subscribe(destination, (m) => inbox.push(m), headers);
  return { sub, inbox };
}

let receiptCounter = 0;
/** Fresh receipt id, and a promise that resolves with the RECEIPT frame. */
export function expectReceipt(client, ms = 5_000) {
  const id = `rcpt-${process.pid}-${++receiptCounter}`;
  const p = new Promise((resolve) => client.watchForReceipt(id, resolve));
  return { id, done: withTimeout(p, ms, `RECEIPT ${id}`) };
}

/** Subscribe and wait until the server has confirmed the subscription with a RECEIPT. */
export async function subscribeConfirmed(client, destination, headers = {}) {
  const r = expectReceipt(client);
  const res = subscribeInbox(client, destination, { ...headers, receipt: r.id });
  await r.done;
  return res;
}

/** A unique destination suffix so tests never see each other's traffic. */
let uniq = 0;
export function unique(prefix) {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${++uniq}`;
}

/** Send a hand-made frame over the client's WebSocket (header values are sent as is). */
export function sendRaw(client, command, headers = {}, body = '') {
  const lines = [command, ...Object.entries(headers).map(([k, v]) => `${k}:${v}`)];
  client.webSocket.send(`${lines.join('\n')}\n\n${body}\0`);
}
