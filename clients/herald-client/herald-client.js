// herald-client: a Herald session that survives reconnects, deploys and token expiry,
// on top of @stomp/stompjs 7 (not bundled: pass its `Client`, or load its UMD build so
// that `globalThis.StompJs` exists), and the notifications REST API beside it.
//
// - Resume: the last CONNECTED's `resume-token` goes into the next CONNECT as `resume`;
//   the server then restores the session's subscriptions and replays what they missed.
//   Subscriptions made here keep their ids across connections, so the SUBSCRIBE sent
//   again after a resume names the restored subscription. A topic subscription to one
//   destination is renewed instead from the `offset`/`epoch` of the last message this
//   client saw — the server counts as seen what TCP acknowledged, which behind a proxy
//   is the proxy, and a session that was not resumed (window passed, old server) has
//   nothing restored — so history fills the gap. Messages pass in offset order, once; one
//   ahead of the next is held while a renewal fetches what is missing; a gap nothing
//   could fill reaches the subscription's `onGap`, so the app reloads its state.
// - Token refresh: `getToken()` is asked for a new JWT ahead of the current one's `exp`
//   (read without verifying: the server verifies), handed to the live session as a
//   SEND to /herald/token with a receipt; when that fails the client reconnects with
//   a fresh token (and resumes).
// - Notifications: list, unread count, mark read, and live events with read sync.
//
// Plain modern JavaScript with JSDoc types: served by Herald at /web/js/herald-client.js
// and installable with npm from clients/herald-client.

/** Where a live session takes a fresh token (a SEND with header `token`). */
export const TOKEN_DESTINATION = '/herald/token';

/** Refresh this long before `exp`... */
const REFRESH_LEAD_MS = 30_000;
/** ...or, for a short-lived token, at this share of its remaining life. */
const REFRESH_AT = 0.8;
/** A refresh whose RECEIPT takes longer than this failed: reconnect instead. */
const RECEIPT_TIMEOUT_MS = 10_000;
/** A token with less left than this is replaced before connecting. */
const MIN_TOKEN_LIFE_MS = 1_000;
/** A failed getToken() during a refresh is asked again after this long. */
const TOKEN_RETRY_MS = 5_000;
/** Destinations remembered per subscription for de-duplication (wildcards). */
const MAX_POSITIONS = 1000;
/** Messages held per subscription while a renewal fills a gap before them. */
const MAX_HELD = 10_000;
/** A renewal that has not filled the gap by then has failed: the gap is reported. */
const FILL_TIMEOUT_MS = 10_000;
/** setTimeout's largest delay. */
const MAX_TIMER_MS = 2_147_483_647;

/**
 * @typedef {object} StompMessage  a MESSAGE from @stomp/stompjs (`IMessage`)
 * @property {Record<string, string>} headers
 * @property {string} body
 * @property {() => void} ack
 * @property {() => void} nack
 */

/**
 * @typedef {object} Gap  a stretch of messages a subscription may have missed
 * @property {string} destination  the destination concerned (the subscription's for a new session)
 * @property {'recovered:false' | 'new-session' | 'skipped'} reason  the server could not
 *   fill the gap from history; a new session began without resume or offset recovery;
 *   or a topic's offsets jumped (messages lost on the way)
 */

/**
 * @typedef {object} HeraldClientOptions
 * @property {string} [url]  the STOMP WebSocket endpoint, `ws(s)://host:port/ws`
 * @property {() => any} [webSocketFactory]  makes the socket instead (SockJS, `ws` in Node)
 * @property {any} [Client]  @stomp/stompjs's `Client` class; default `globalThis.StompJs.Client`
 * @property {() => Promise<string> | string} [getToken]  a fresh JWT; asked before
 *   connecting and ahead of each token's expiry. Without it the handshake (cookie) or
 *   `connectHeaders` authenticate and nothing is refreshed.
 * @property {string} [tokenHeader]  the CONNECT header carrying the token:
 *   `Authorization` (default, as `Bearer <jwt>`) or `passcode`
 * @property {Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>)} [connectHeaders]
 *   more CONNECT headers (`login` in anonymous mode), or a function returning them
 * @property {boolean} [resume]  present the resume token when reconnecting (default true)
 * @property {boolean} [offsetRecovery]  renew topic subscriptions from the last offset
 *   seen, on reconnection and to fill a gap (default true)
 * @property {object} [stomp]  more @stomp/stompjs settings (reconnectDelay, heartbeats, debug, ...);
 *   its callbacks are this client's: listen with `on()` instead
 * @property {string} [httpUrl]  base URL of the REST API; default from `url`, else this page's origin
 * @property {Record<string, string> | (() => Record<string, string> | Promise<Record<string, string>>)} [httpHeaders]
 *   more headers for REST calls (`X-User` in anonymous mode)
 * @property {typeof fetch} [fetch]  default `globalThis.fetch`
 */

/**
 * @param {HeraldClientOptions} options
 * @returns {HeraldClient}
 */
export function createHeraldClient(options) {
  return new HeraldClient(options);
}

/** The claims of a JWT, not verified; null when it is not one. */
export function decodeJwt(token) {
  try {
    const part = String(token).split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const padded = part + '='.repeat((4 - (part.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === 'object' ? claims : null;
  } catch {
    return null;
  }
}

/**
 * When to refresh a token that expires at `expMs` (epoch ms), seen at `nowMs`: 30 s
 * before, or, for a token with less than 150 s left, at 80% of what is left.
 * Returns the delay in ms, or null without an expiry.
 */
export function refreshDelay(expMs, nowMs = Date.now()) {
  if (!Number.isFinite(expMs)) return null;
  const left = expMs - nowMs;
  if (left <= 0) return 0;
  return Math.max(left * REFRESH_AT, left - REFRESH_LEAD_MS);
}

/** Whether a destination is a wildcard pattern (`*`, `**` or `#` as a whole segment). */
export function isWildcard(destination) {
  return /(^|[/.])(\*\*?|#)([/.]|$)/.test(destination);
}

/** A small event emitter: `on(name, fn)` returns a function that removes `fn`. */
class Events {
  constructor() {
    /** @type {Map<string, Set<Function>>} */
    this.listeners = new Map();
  }
  on(name, fn) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(fn);
    return () => this.listeners.get(name)?.delete(fn);
  }
  emit(name, ...args) {
    for (const fn of [...(this.listeners.get(name) || [])]) {
      try {
        fn(...args);
      } catch (e) {
        // One listener's bug must not stop the others or the connection.
        console.error(e);
      }
    }
  }
}

/**
 * One subscription of the app, kept across connections under one id.
 *
 * A topic's messages carry `offset` (counting up by one per destination) and `epoch`.
 * They are passed on in offset order, once: a repeat is dropped, and a message ahead of
 * the next expected one is held while the subscription is renewed from the last one
 * passed on (`offset` SUBSCRIBE), whose replay brings what is missing — what a dying
 * connection swallowed, for one. Only `ack:auto` subscriptions to one destination are
 * renewed so (an ACK for a message of the subscription replaced would be an error);
 * for the others a jump is reported as a gap.
 */
class HeraldSubscription {
  constructor(owner, id, destination, onMessage, { headers = {}, onGap } = {}) {
    this.owner = owner;
    /** The STOMP subscription id, the same on every connection. */
    this.id = id;
    this.destination = destination;
    this.headers = headers;
    this.onMessage = onMessage;
    this.onGap = onGap;
    /** Whether a server session has had it (so a new session may have missed messages). */
    this.sent = false;
    this.active = true;
    /** destination → {epoch, offset} of the last message passed on. */
    this.positions = new Map();
    /** Messages ahead of the next offset, held (by offset) while a renewal fills the gap. */
    this.held = new Map();
    this.fillTimer = null;
  }

  /** Stops it here and on the server. */
  unsubscribe() {
    if (!this.active) return;
    this.active = false;
    this.endFill();
    this.owner._forget(this);
  }

  /** Whether it can be renewed from an offset: one destination, auto ack. */
  get renewable() {
    return !isWildcard(this.destination) && (this.headers.ack ?? 'auto') === 'auto';
  }

  /** The position an `offset` SUBSCRIBE can renew it from, or null. */
  resumePosition() {
    if (!this.renewable || this.positions.size !== 1) return null;
    return [...this.positions.values()][0];
  }

  /** A renewal from `offset` is under way: hold what comes ahead until it has filled in. */
  beginFill() {
    this.endFill();
    this.fillTimer = setTimeout(() => this.giveUp(), FILL_TIMEOUT_MS);
  }

  get filling() {
    return this.fillTimer !== null;
  }

  /** Forgets the renewal and whatever it held (a new connection replays it anyway). */
  endFill() {
    if (this.fillTimer) clearTimeout(this.fillTimer);
    this.fillTimer = null;
    this.held.clear();
  }

  /** The renewal did not bring the missing messages: say so and pass the held ones on. */
  giveUp() {
    this.fillTimer = null;
    if (this.held.size === 0) return;
    const held = [...this.held.values()].sort((a, b) => Number(a.headers.offset) - Number(b.headers.offset));
    this.held.clear();
    this.gap({ destination: held[0].headers.destination ?? this.destination, reason: 'skipped' });
    for (const m of held) this.pass(m);
  }

  /** Passes a MESSAGE on in order, holds it, or drops it as a repeat; `recovered:false` is a gap. */
  deliver(message) {
    const h = message.headers;
    if (h.recovered === 'false') {
      this.positions.delete(h.destination);
      const held = [...this.held.values()].sort((a, b) => Number(a.headers.offset) - Number(b.headers.offset));
      this.endFill();
      this.gap({ destination: h.destination || this.destination, reason: 'recovered:false' });
      for (const m of held) this.pass(m);
      return;
    }
    if (h.offset === undefined) {
      this.onMessage(message);
      return;
    }
    const offset = Number(h.offset);
    const last = this.positions.get(h.destination ?? this.destination);
    if (!last || last.epoch !== (h.epoch ?? '')) {
      // The first message seen here, or a new history (the server tells a gap itself).
      this.pass(message);
      return;
    }
    if (offset <= last.offset) {
      // Already passed on (a replay overlapping what arrived before). Acked so that a
      // client-ack window does not fill with what the app never sees.
      if ((this.headers.ack ?? 'auto') !== 'auto') message.ack();
      return;
    }
    if (offset === last.offset + 1) {
      this.pass(message);
      this.drain();
      return;
    }
    // Ahead: something between went missing on the way.
    if (!this.renewable) {
      this.gap({ destination: h.destination ?? this.destination, reason: 'skipped' });
      this.pass(message);
      return;
    }
    this.held.set(offset, message);
    if (this.held.size > MAX_HELD) {
      this.giveUp();
      return;
    }
    if (!this.filling && this.owner._renew(this, last)) this.beginFill();
    if (!this.filling) this.giveUp();
  }

  /** Passes held messages on while they follow on. */
  drain() {
    while (this.held.size > 0 && this.positions.size > 0) {
      const [last] = this.positions.values();
      const next = this.held.get(last.offset + 1);
      for (const offset of this.held.keys()) if (offset <= last.offset) this.held.delete(offset);
      if (!next) break;
      this.held.delete(last.offset + 1);
      this.pass(next);
    }
    if (this.held.size === 0 && this.filling) {
      clearTimeout(this.fillTimer);
      this.fillTimer = null;
    }
  }

  pass(message) {
    const h = message.headers;
    if (h.offset !== undefined) {
      const key = h.destination ?? this.destination;
      this.positions.delete(key);
      this.positions.set(key, { epoch: h.epoch ?? '', offset: Number(h.offset) });
      if (this.positions.size > MAX_POSITIONS) this.positions.delete(this.positions.keys().next().value);
    }
    this.onMessage(message);
  }

  gap(gap) {
    if (this.onGap) {
      try {
        this.onGap(gap);
      } catch (e) {
        console.error(e);
      }
    }
    this.owner.events.emit('gap', { subscription: this, ...gap });
  }
}

/**
 * A Herald session kept alive across connections. Events (`on(name, fn)`):
 * - `connecting` {attempt, resuming}: before each CONNECT;
 * - `connect` {frame, resumed, reconnected}: CONNECTED (subscriptions are in place);
 * - `close` {event}: the socket closed (a reconnect follows while active);
 * - `error` {message, frame?, cause?}: an ERROR frame, or a failed token refresh;
 * - `token` {token, exp}: a refreshed token was accepted by the live session;
 * - `gap` {subscription, destination, reason}: see `subscribe`'s `onGap`.
 */
export class HeraldClient {
  /** @param {HeraldClientOptions} options */
  constructor(options = {}) {
    const Client = options.Client ?? globalThis.StompJs?.Client;
    if (!Client) {
      throw new Error('herald-client needs @stomp/stompjs: pass its Client class, or load stomp.umd.min.js first');
    }
    if (!options.url && !options.webSocketFactory) throw new Error('herald-client needs a url or a webSocketFactory');
    this.options = { resume: true, offsetRecovery: true, tokenHeader: 'Authorization', ...options };
    this.events = new Events();
    /** @type {Map<string, HeraldSubscription>} */
    this.subscriptions = new Map();
    /** Ids the server may still hold for us (restored by a resume) but the app dropped. */
    this.dropped = new Set();
    this.nextId = 0;
    this.token = null;
    this.resumeToken = null;
    this.presentedResume = false;
    this.connectedOnce = false;
    this.attempts = 0;
    this.refreshTimer = null;
    this.refreshing = null;
    this.receiptCounter = 0;

    const stomp = { reconnectDelay: 1000, ...(options.stomp || {}) };
    this.stomp = new Client(stomp);
    if (options.webSocketFactory) this.stomp.webSocketFactory = options.webSocketFactory;
    else this.stomp.brokerURL = options.url;
    this.stomp.beforeConnect = () => this._beforeConnect();
    this.stomp.onConnect = (frame) => this._onConnect(frame);
    this.stomp.onStompError = (frame) => this._onStompError(frame);
    this.stomp.onWebSocketClose = (event) => this._onClose(event);
    // A restored subscription can deliver before the app's SUBSCRIBE reaches the
    // server; stompjs knows its id by then, but route by id in any case.
    this.stomp.onUnhandledMessage = (message) => {
      const sub = this.subscriptions.get(message.headers.subscription);
      if (sub) sub.deliver(message);
    };
  }

  /** Listens to an event (see the class); returns a function that stops listening. */
  on(name, fn) {
    return this.events.on(name, fn);
  }

  /** Whether a STOMP session is up now. */
  get connected() {
    return this.stomp.connected;
  }

  /** Connects, and reconnects whenever the connection is lost, until `deactivate()`. */
  activate() {
    this.stomp.activate();
    return this;
  }

  /** Disconnects (DISCONNECT, unless `force`) and stops reconnecting. */
  async deactivate(options = {}) {
    this._clearRefresh();
    await this.stomp.deactivate(options);
  }

  /**
   * Subscribes now or, while disconnected, on the next connection, and again on every
   * reconnection under the same id. `onGap(gap)` hears that messages may be missing
   * (reload what the subscription feeds); replays are de-duplicated before `onMessage`.
   * @param {string} destination
   * @param {(message: StompMessage) => void} onMessage
   * @param {{headers?: Record<string, string>, onGap?: (gap: Gap) => void}} [options]
   * @returns {HeraldSubscription}
   */
  subscribe(destination, onMessage, options = {}) {
    const id = options.headers?.id ?? `h-${++this.nextId}`;
    if (this.subscriptions.has(id)) throw new Error(`subscription id '${id}' is already in use`);
    const sub = new HeraldSubscription(this, id, destination, onMessage, options);
    this.subscriptions.set(id, sub);
    this.dropped.delete(id);
    if (this.stomp.connected) this._send(sub, {});
    return sub;
  }

  /** SEND (the body as is; a string). */
  publish({ destination, body = '', headers = {} }) {
    this.stomp.publish({ destination, body, headers });
  }

  /**
   * SEND with a receipt; resolves with the RECEIPT, rejects on an ERROR or a timeout.
   * @returns {Promise<any>}
   */
  publishConfirmed({ destination, body = '', headers = {} }, timeoutMs = RECEIPT_TIMEOUT_MS) {
    const receipt = `h-rcpt-${++this.receiptCounter}`;
    return new Promise((resolve, reject) => {
      const stops = [];
      const settle = (fn, value) => {
        clearTimeout(timer);
        for (const stop of stops) stop();
        fn(value);
      };
      const timer = setTimeout(
        () => settle(reject, new Error(`no RECEIPT for ${destination} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      stops.push(
        this.on('error', ({ message, frame }) => {
          if (frame) settle(reject, Object.assign(new Error(message), { frame }));
        }),
        // The connection went before the RECEIPT: whether the server took it is unknown.
        this.on('close', () => settle(reject, Object.assign(new Error('connection closed'), { closed: true }))),
      );
      this.stomp.watchForReceipt(receipt, (frame) => settle(resolve, frame));
      try {
        this.stomp.publish({ destination, body, headers: { ...headers, receipt } });
      } catch (e) {
        settle(reject, e);
      }
    });
  }

  /**
   * Hands the live session a fresh token now (from `getToken()`, or the one given);
   * resolves once the server took it. On failure the connection is dropped and made
   * again with a fresh token, and the promise rejects.
   */
  async refreshToken(token) {
    if (!this.refreshing) {
      this.refreshing = this._refresh(token).finally(() => {
        this.refreshing = null;
      });
    }
    return this.refreshing;
  }

  /**
   * The notifications API of this client's user, and its live events.
   * @param {NotificationOptions} [options]
   */
  notifications(options = {}) {
    return new Notifications(this, options);
  }

  /**
   * fetch() against the REST API with this client's credentials; resolves with the
   * parsed JSON, rejects with an Error carrying `status` and `code`.
   */
  async request(path, { method = 'GET', body, headers = {} } = {}) {
    const h = { ...(await resolveHeaders(this.options.httpHeaders)), ...headers };
    if (this.options.getToken && !h.Authorization && !h.authorization) {
      const token = this.token ?? (await this._freshToken());
      if (token) h.Authorization = `Bearer ${token}`;
    }
    if (body !== undefined) h['Content-Type'] = 'application/json';
    const doFetch = this.options.fetch ?? globalThis.fetch;
    const response = await doFetch(`${this._httpUrl()}${path}`, {
      method,
      headers: h,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
    });
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = text;
    }
    if (!response.ok) {
      const error = new Error(`${method} ${path}: ${(data && data.error) || `${response.status} ${response.statusText}`}`);
      error.status = response.status;
      error.code = data && data.code;
      throw error;
    }
    return data;
  }

  // ---------------------------------------------------------------- internals

  _httpUrl() {
    if (this.options.httpUrl) return this.options.httpUrl.replace(/\/$/, '');
    if (this.options.url) {
      const u = new URL(this.options.url);
      u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
      return u.origin;
    }
    if (globalThis.location) return globalThis.location.origin;
    throw new Error('herald-client needs httpUrl for REST calls');
  }

  async _freshToken() {
    const token = await this.options.getToken();
    if (typeof token !== 'string' || !token) throw new Error('getToken() gave no token');
    this.token = token;
    return token;
  }

  /** A token about to expire is not worth connecting with. */
  _tokenUsable() {
    if (!this.token) return false;
    const exp = decodeJwt(this.token)?.exp;
    if (typeof exp !== 'number') return true;
    return exp * 1000 - Date.now() > MIN_TOKEN_LIFE_MS;
  }

  async _beforeConnect() {
    // Errors here would stop stompjs's reconnect loop: report them and connect anyway.
    this.attempts += 1;
    const headers = {};
    try {
      Object.assign(headers, await resolveHeaders(this.options.connectHeaders));
    } catch (e) {
      this._error('connectHeaders failed', e);
    }
    if (this.options.getToken) {
      if (!this._tokenUsable()) {
        try {
          await this._freshToken();
        } catch (e) {
          this._error('getToken failed', e);
        }
      }
      if (this.token) {
        const name = this.options.tokenHeader;
        headers[name] = name.toLowerCase() === 'authorization' ? `Bearer ${this.token}` : this.token;
      }
    }
    this.presentedResume = Boolean(this.options.resume && this.resumeToken);
    if (this.presentedResume) headers.resume = this.resumeToken;
    this.stomp.connectHeaders = headers;
    this.events.emit('connecting', { attempt: this.attempts, resuming: this.presentedResume });
  }

  _onConnect(frame) {
    // Everything up to the SUBSCRIBEs is synchronous: a resumed session's replay
    // follows CONNECTED at once, and stompjs must know the ids by then.
    const resumed = this.presentedResume && frame.headers.resumed === 'true';
    const reconnected = this.connectedOnce;
    this.connectedOnce = true;
    this.attempts = 0;
    this.resumeToken = frame.headers['resume-token'] || null;
    if (resumed) {
      for (const id of this.dropped) this.stomp.unsubscribe(id);
    }
    this.dropped.clear();
    for (const sub of this.subscriptions.values()) {
      sub.endFill();
      const position = sub.sent && this.options.offsetRecovery ? sub.resumePosition() : null;
      if (position) {
        // Renewed from the last message this client saw, resumed or not: the server
        // counts as seen what TCP acknowledged, a proxy's TCP too.
        if (resumed) this.stomp.unsubscribe(sub.id);
        sub.beginFill();
        this._send(sub, offsetHeaders(position));
      } else {
        // After a resume that failed the server tells each topic `recovered:false`
        // itself; a new session it could not know of is told here.
        if (sub.sent && !resumed && !this.presentedResume) sub.gap({ destination: sub.destination, reason: 'new-session' });
        this._send(sub, {});
      }
    }
    this._scheduleRefresh();
    this.events.emit('connect', { frame, resumed, reconnected });
  }

  _send(sub, extra) {
    sub.sent = true;
    this.stomp.subscribe(sub.destination, (m) => sub.deliver(m), { ...sub.headers, ...extra, id: sub.id });
  }

  /** Renews `sub` from `position` to fill a gap; false when it cannot now. */
  _renew(sub, position) {
    if (!this.stomp.connected || !this.options.offsetRecovery) return false;
    this.stomp.unsubscribe(sub.id);
    this._send(sub, offsetHeaders(position));
    return true;
  }

  _forget(sub) {
    this.subscriptions.delete(sub.id);
    if (this.stomp.connected) this.stomp.unsubscribe(sub.id);
    else if (sub.sent) this.dropped.add(sub.id);
  }

  _onStompError(frame) {
    const message = frame.headers.message || 'STOMP error';
    // A resume token the server refused must not be presented again.
    if (!this.stomp.connected && this.presentedResume) this.resumeToken = null;
    this.events.emit('error', { message, frame });
  }

  _onClose(event) {
    this._clearRefresh();
    for (const sub of this.subscriptions.values()) sub.endFill();
    this.events.emit('close', { event });
  }

  _error(message, cause) {
    this.events.emit('error', { message: `${message}: ${cause?.message ?? cause}`, cause });
  }

  _clearRefresh() {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
  }

  _scheduleRefresh(delay) {
    this._clearRefresh();
    if (!this.options.getToken || !this.token) return;
    if (delay === undefined) {
      const exp = decodeJwt(this.token)?.exp;
      if (typeof exp !== 'number') return;
      delay = refreshDelay(exp * 1000);
    }
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = null;
      this.refreshToken().catch(() => {});
    }, Math.min(delay, MAX_TIMER_MS));
  }

  async _refresh(given) {
    if (!this.stomp.connected) throw new Error('not connected');
    let token = given;
    if (!token) {
      try {
        token = await this.options.getToken();
        if (typeof token !== 'string' || !token) throw new Error('getToken() gave no token');
      } catch (e) {
        // The current token still holds for a while: ask again soon.
        this._error('getToken failed', e);
        this._scheduleRefresh(TOKEN_RETRY_MS);
        throw e;
      }
    }
    try {
      await this.publishConfirmed({ destination: TOKEN_DESTINATION, headers: { token } });
    } catch (e) {
      // The connection dropped meanwhile: the next one connects with a usable token
      // and schedules the refresh again.
      if (e.closed) throw e;
      // Refused (the session ends with the ERROR) or unanswered: connect again with
      // a token asked for anew, resuming the session.
      this.token = null;
      this._error('token refresh failed', e);
      if (this.stomp.connected) this.stomp.forceDisconnect();
      throw e;
    }
    this.token = token;
    const exp = decodeJwt(token)?.exp;
    this.events.emit('token', { token, exp });
    this._scheduleRefresh();
  }
}

/** The SUBSCRIBE headers that replay from history after `position`. */
function offsetHeaders(position) {
  const headers = { offset: String(position.offset) };
  if (position.epoch) headers.epoch = position.epoch;
  return headers;
}

async function resolveHeaders(value) {
  if (!value) return {};
  return { ...(typeof value === 'function' ? await value() : value) };
}

/**
 * @typedef {object} NotificationOptions
 * @property {string} [userDestination]  default `/user/queue/notifications`
 * @property {string | null} [broadcastDestination]  default `/topic/notifications`; null for none
 * @property {string | null} [jobsDestination]  e.g. `/user/queue/jobs`; default none
 * @property {boolean} [live]  subscribe to the live events (default true)
 */

/**
 * A user's notifications: REST calls and live events. Events (`on(name, fn)`):
 * - `notification` (notification, message): a new one, live or replayed after a reconnect;
 * - `read` ({ids, unreadCount, all}): read on another session (or this one);
 * - `job` (event, message): a job's progress, when `jobsDestination` is set;
 * - `reload` ({reason, destination}): live events may have been missed (a gap the
 *   server could not fill, or a new session without recovery): fetch `list()` again.
 */
export class Notifications {
  /**
   * @param {HeraldClient} client
   * @param {NotificationOptions} options
   */
  constructor(client, options = {}) {
    this.client = client;
    this.events = new Events();
    this.options = {
      userDestination: '/user/queue/notifications',
      broadcastDestination: '/topic/notifications',
      jobsDestination: null,
      live: true,
      ...options,
    };
    this.subscriptions = [];
    if (this.options.live) {
      const onGap = (gap) => this.events.emit('reload', gap);
      for (const destination of [this.options.userDestination, this.options.broadcastDestination, this.options.jobsDestination]) {
        if (destination) this.subscriptions.push(client.subscribe(destination, (m) => this._live(m), { onGap }));
      }
    }
  }

  on(name, fn) {
    return this.events.on(name, fn);
  }

  /** Stops the live events. */
  close() {
    for (const s of this.subscriptions) s.unsubscribe();
    this.subscriptions = [];
  }

  /**
   * One page, newest first: {items, nextCursor, unreadCount}; pass `nextCursor` as
   * `cursor` for the next page (null: no more).
   * @param {{unread?: boolean, limit?: number, cursor?: string | null}} [query]
   */
  list({ unread = false, limit, cursor } = {}) {
    const q = new URLSearchParams();
    if (unread) q.set('unread', 'true');
    if (limit !== undefined) q.set('limit', String(limit));
    if (cursor) q.set('cursor', String(cursor));
    const qs = q.toString();
    return this.client.request(`/api/notifications${qs ? `?${qs}` : ''}`);
  }

  /** Every page in turn (`for await (const page of notes.pages())`). */
  async *pages(query = {}) {
    let cursor = query.cursor ?? null;
    do {
      const page = await this.list({ ...query, cursor });
      yield page;
      cursor = page.nextCursor;
    } while (cursor);
  }

  /** @returns {Promise<number>} */
  async unreadCount() {
    return (await this.client.request('/api/notifications/unread-count')).unreadCount;
  }

  /**
   * Marks one or several read; resolves with {ids, unreadCount} (the count after the last).
   * @param {number | number[]} ids
   */
  async markRead(ids) {
    const list = Array.isArray(ids) ? ids : [ids];
    let unreadCount = null;
    for (const id of list) {
      unreadCount = (await this.client.request(`/api/notifications/${encodeURIComponent(id)}/read`, { method: 'POST' })).unreadCount;
    }
    return { ids: list, unreadCount };
  }

  /** Marks everything read; resolves with {ids, unreadCount: 0}. */
  markAllRead() {
    return this.client.request('/api/notifications/read-all', { method: 'POST' });
  }

  _live(message) {
    let body;
    try {
      body = JSON.parse(message.body);
    } catch {
      return;
    }
    const event = message.headers['herald-event'] || body.event;
    if (event === 'read') {
      this.events.emit('read', { ids: body.ids || [], unreadCount: body.unreadCount, all: Boolean(body.all) });
    } else if (event === 'job') {
      this.events.emit('job', body, message);
    } else if (body && body.notificationId !== undefined) {
      this.events.emit('notification', { ...body, read: Boolean(body.read) }, message);
    }
  }
}
