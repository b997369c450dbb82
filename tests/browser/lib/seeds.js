// Serves the seeds' pages (seeds/*.html) and the client libraries they load, from
// node_modules, at herald's own origin, as the Spring app of each write-up served its
// pages beside its endpoints: a request for /seeds/** or /webjars/** never reaches
// herald, everything else (WebSocket, SockJS, REST) does.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { postJson } from './harness.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const NM = join(ROOT, 'node_modules');

/** The paths the seeds' pages load their libraries from, as the write-ups name them. */
const LIBRARIES = {
  '/webjars/jquery/dist/jquery.min.js': join(NM, 'jquery/dist/jquery.min.js'),
  '/webjars/sockjs-client/sockjs.min.js': join(NM, 'sockjs-client/dist/sockjs.min.js'),
  // The stomp-websocket webjar is stomp.js 2.3.x: npm's `stompjs`.
  '/webjars/stomp-websocket/stomp.min.js': join(NM, 'stompjs/lib/stomp.min.js'),
  '/webjars/stomp__stompjs/bundles/stomp.umd.min.js': join(NM, '@stomp/stompjs/bundles/stomp.umd.min.js'),
};

/**
 * Serves /seeds/NNN.html and the libraries to every page of `context` at `baseURL`.
 * `fill` maps a {{placeholder}} of a page to its value (the server-side template of a
 * seed that has one).
 */
export async function serveSeeds(context, baseURL, fill = {}) {
  const origin = new URL(baseURL).origin;
  // A page the test fulfils has no server address, so Chromium counts it as a public
  // site and blocks its connections to this loopback server (Local Network Access)
  // unless the user allows them, as this does.
  await context.grantPermissions(['local-network-access'], { origin });
  await context.route(
    (url) => url.origin === origin && (url.pathname.startsWith('/seeds/') || url.pathname in LIBRARIES),
    (route) => {
      const { pathname } = new URL(route.request().url());
      if (pathname in LIBRARIES) {
        return route.fulfill({ contentType: 'text/javascript', body: readFileSync(LIBRARIES[pathname]) });
      }
      const file = join(ROOT, 'seeds', pathname.slice('/seeds/'.length));
      let body;
      try {
        body = readFileSync(file, 'utf8');
      } catch {
        return route.fulfill({ status: 404, body: 'no such seed page' });
      }
      body = body.replace(/\{\{([\w.]+)\}\}/g, (whole, key) => (key in fill ? String(fill[key]) : whole));
      return route.fulfill({ contentType: 'text/html; charset=utf-8', body });
    },
  );
}

/** The console lines of `page`, collected from now on. */
export function consoleLines(page) {
  const lines = [];
  page.on('console', (m) => lines.push(m.text()));
  return lines;
}

/** Resolves with the first console line of `page` that matches `re`. */
export function waitForConsole(page, re, timeout = 20_000) {
  return page.waitForEvent('console', { predicate: (m) => re.test(m.text()), timeout }).then((m) => m.text());
}

/**
 * Signs `context` in as `sub` the way the seeds' apps do: the JWT in the HttpOnly
 * `access_token` cookie (minted by web.dev_login, which the test turns on with
 * HERALD_WEB__DEV_LOGIN=true; the seed files leave it off).
 */
export async function signInWithCookie(context, baseURL, sub, roles = []) {
  const minted = await postJson(`${baseURL}/api/dev/login`, { sub, roles });
  if (minted.status !== 200 || !minted.body?.token) {
    throw new Error(`minting a token for ${sub}: ${minted.status} ${JSON.stringify(minted.body)}`);
  }
  await context.addCookies([{ name: 'access_token', value: minted.body.token, url: baseURL, httpOnly: true, sameSite: 'Lax' }]);
  return minted.body.token;
}
