// Shared by every page: who the user is (sign-in), REST calls with their credentials,
// and one Herald session (herald-client) over WebSocket with a SockJS fallback,
// reconnecting with exponential backoff and resuming, with its status shown in the
// page header.
//
// No page holds a token: with JWT the HttpOnly auth cookie (set by POST /api/web/signin
// or the development login) authenticates every request, out of any script's reach.
// Addresses that come from outside (?next=, ?sockjs_path=, a notification's
// redirectPath) pass localPath() or safeHref() before anything follows them.
//
// Needs the classic scripts /web/vendor/stomp.umd.min.js (window.StompJs) and
// /web/vendor/sockjs.min.js (window.SockJS), loaded before this module.
import { createHeraldClient } from './herald-client.js';

const params = new URLSearchParams(location.search);

// ------------------------------------------------------------------ identity

const NAME_KEY = 'herald.name';
// Earlier versions kept a bearer token here; a script could read it.
localStorage.removeItem('herald.token');

/** The server's auth mode and who its cookie names: GET /api/web/session. */
let sessionInfo = null;
export async function serverSession(refresh = false) {
  if (!sessionInfo || refresh) {
    const r = await fetch('/api/web/session');
    sessionInfo = await r.json();
  }
  return sessionInfo;
}

// Browsers drop tabs and newlines inside URLs and read a backslash as "/": a path with
// either could lead off-site ("/<TAB>/evil.example" is "//evil.example").
const UNSAFE_URL_CHARS = /[\u0000-\u001f\u007f\\]/;

/**
 * `value` when it is a path on this origin ("/chat?room=1": one leading "/", not "//"
 * or "/" and a backslash), normalized; otherwise null. For ?next= and ?sockjs_path=.
 */
export function localPath(value) {
  if (typeof value !== 'string' || !value.startsWith('/') || value.startsWith('//')) return null;
  if (UNSAFE_URL_CHARS.test(value)) return null;
  let url;
  try {
    url = new URL(value, location.origin);
  } catch {
    return null;
  }
  return url.origin === location.origin ? url.pathname + url.search + url.hash : null;
}

/**
 * A link target from data (a notification's redirectPath): a path on this origin, or
 * an http(s) URL; anything else (javascript:, data:, //host) is null and never followed.
 */
export function safeHref(value) {
  const local = localPath(value);
  if (local) return local;
  if (typeof value !== 'string' || /[\u0000-\u0020\u007f]/.test(value)) return null;
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

export function storedName() {
  return localStorage.getItem(NAME_KEY) || '';
}
export function setName(name) {
  if (name) localStorage.setItem(NAME_KEY, name);
  else localStorage.removeItem(NAME_KEY);
}

/** The claims of a JWT, unverified (for display only: the server verifies it). */
export function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  } catch {
    return null;
  }
}

/**
 * The current user: {name, roles, via} or null when nobody signed in.
 * Anonymous mode: the name picked on the sign-in page (the STOMP `login` header).
 * JWT mode: the principal of the auth cookie, as the server tells.
 */
export async function currentUser() {
  const s = await serverSession();
  if (s.mode === 'anonymous') {
    const name = params.get('user') || storedName();
    return name ? { name, roles: [], via: 'name' } : null;
  }
  if (s.user) return { name: s.user.name, roles: s.user.roles || [], via: 'cookie' };
  return null;
}

/** Sends the user to the sign-in page (and back here after) when nobody signed in. */
export async function requireUser() {
  const user = await currentUser();
  if (!user) {
    location.href = `/signin?next=${encodeURIComponent(location.pathname + location.search)}`;
    throw new Error('not signed in');
  }
  return user;
}

/** fetch() with the user's credentials: the auth cookie (JWT mode) or X-User (anonymous). */
export async function api(path, { method = 'GET', body, headers = {} } = {}) {
  const h = { ...headers };
  const s = await serverSession();
  if (s.mode === 'anonymous') {
    const user = await currentUser();
    if (user) h['X-User'] = user.name;
  }
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (!r.ok) {
    const msg = (data && data.error) || `${r.status} ${r.statusText}`;
    const e = new Error(`${method} ${path}: ${msg}`);
    e.status = r.status;
    throw e;
  }
  return data;
}

// ------------------------------------------------------------------ STOMP

/** Which transport the page uses: `?transport=sockjs` forces SockJS. */
export function requestedTransport() {
  const t = params.get('transport');
  return t === 'sockjs' ? 'sockjs' : 'websocket';
}

/** Backoff before reconnect attempt n (1, 2, ...): 0.5 s doubling to 15 s (stompjs's
 * exponential reconnect mode does the waiting; this is for showing it). */
export const FIRST_RETRY_MS = 500;
export const MAX_RETRY_MS = 15000;
export function backoff(n) {
  return Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.max(0, n - 1));
}

/**
 * One Herald session for the page, on herald-client: it reconnects with backoff and
 * resumes the session (what the page's subscriptions missed is replayed, or a gap
 * reported to their `onGap`). `onConnect(client, frame, {reconnected, resumed})` runs
 * after every (re)connect; `onStatus({state, transport, detail})` hears every change.
 * Returns {herald, client, subscribe(), status(), publish(), stop()}: subscribe once
 * with `subscribe(destination, onMessage, {onGap})`, it holds across reconnects.
 *
 * Transport: WebSocket at /ws, or SockJS at /ws-sockjs when forced by ?transport=sockjs
 * or when the WebSocket could not be opened (then it stays on SockJS).
 */
export function connect({ user, onConnect = () => {}, onStatus = () => {}, onError = () => {} }) {
  const { ReconnectionTimeMode } = window.StompJs;
  let transport = requestedTransport();
  // Whether STOMP ever got CONNECTED over a plain WebSocket on this page.
  let websocketWorked = false;
  let attempts = 0;
  let connectedOnce = false;
  let current = { state: 'connecting', transport, detail: '' };
  const setStatus = (state, detail = '') => {
    current = { state, transport, detail, attempts };
    onStatus(current);
    renderStatus(current);
  };

  const wsUrl = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  // ?sockjs_path= picks another endpoint of this server, never another host.
  const askedPath = params.get('sockjs_path');
  const sockjsPath = askedPath === null ? '/ws-sockjs' : localPath(askedPath);
  if (sockjsPath === null) console.warn(`sockjs_path refused (not a path on this origin): ${askedPath}`);
  const sockjsUrl = `${location.origin}${sockjsPath || '/ws-sockjs'}`;
  const sockjsTransports = params.get('sockjs_transports');

  const herald = createHeraldClient({
    webSocketFactory: () => {
      if (transport === 'sockjs') {
        const opts = sockjsTransports ? { transports: sockjsTransports.split(',') } : {};
        return new window.SockJS(sockjsUrl, null, opts);
      }
      return new WebSocket(wsUrl, ['v12.stomp', 'v11.stomp', 'v10.stomp']);
    },
    httpUrl: location.origin,
    // REST calls as api() makes them: the cookie goes along; anonymous users name themselves.
    httpHeaders: async () => ((await serverSession()).mode === 'anonymous' && user ? { 'X-User': user.name } : {}),
    // With JWT the handshake's cookie authenticates; anonymous users name themselves.
    connectHeaders: () => (user && user.via === 'name' ? { login: user.name } : {}),
    stomp: {
      reconnectDelay: FIRST_RETRY_MS,
      reconnectTimeMode: ReconnectionTimeMode.EXPONENTIAL,
      maxReconnectDelay: MAX_RETRY_MS,
      heartbeatIncoming: 10000,
      heartbeatOutgoing: 10000,
      connectionTimeout: 8000,
      debug: () => {},
    },
  });
  herald.on('connecting', ({ attempt }) => {
    attempts = attempt;
    setStatus(connectedOnce ? 'reconnecting' : 'connecting', attempt > 1 ? `attempt ${attempt}` : '');
  });
  herald.on('connect', ({ frame, reconnected, resumed }) => {
    connectedOnce = true;
    if (transport === 'websocket') websocketWorked = true;
    attempts = 0;
    const session = frame.headers.session || '';
    setStatus('connected', `${frame.headers['user-name'] || ''} · session ${session}${resumed ? ' · resumed' : ''}`);
    try {
      onConnect(herald.stomp, frame, { reconnected, resumed, transport });
    } catch (e) {
      console.error(e);
    }
  });
  herald.on('close', () => {
    // The WebSocket closed before STOMP was ever connected over one (blocked by a
    // proxy, refused, cut): fall back to SockJS for this page's next attempts.
    if (transport === 'websocket' && !websocketWorked) {
      transport = 'sockjs';
      console.warn('WebSocket failed; falling back to SockJS');
    }
    if (herald.stomp.active) {
      setStatus('disconnected', `retrying in ${(backoff(attempts + 1) / 1000).toFixed(1)} s`);
    }
  });
  herald.on('error', ({ message }) => {
    setStatus('error', message);
    onError(message);
  });
  herald.activate();
  window.heraldClient = herald;
  return {
    herald,
    client: herald.stomp,
    subscribe: (destination, onMessage, options) => herald.subscribe(destination, onMessage, options),
    status: () => current,
    publish: (destination, body) => herald.publish({ destination, body: JSON.stringify(body) }),
    stop: () => herald.deactivate(),
  };
}

// ------------------------------------------------------------------ page chrome

function renderStatus({ state, transport, detail }) {
  for (const el of document.querySelectorAll('[data-connection-status]')) {
    el.dataset.state = state;
    el.dataset.transport = transport;
    el.textContent = `${state} (${transport})${detail ? ` — ${detail}` : ''}`;
    el.title = el.textContent;
  }
}

/** Fills the header's user line and sign-out link. */
export async function renderHeader() {
  const el = document.querySelector('[data-user]');
  if (!el) return;
  const user = await currentUser().catch(() => null);
  el.textContent = user ? `${user.name}${user.roles.length ? ` [${user.roles.join(', ')}]` : ''}` : 'not signed in';
  // Keep ?transport=sockjs across links.
  if (params.get('transport')) {
    for (const a of document.querySelectorAll('nav a')) {
      const u = new URL(a.href);
      u.searchParams.set('transport', params.get('transport'));
      a.href = u.toString();
    }
  }
}

export function $(sel, root = document) {
  return root.querySelector(sel);
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

export function timeOf(iso) {
  const d = iso ? new Date(iso) : new Date();
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleTimeString();
}
