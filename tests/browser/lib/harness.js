// Helpers for the browser tests: start herald (on a fixed port, so a test can restart
// it), launch Debian's Chromium through playwright-core, sign users in, keep
// screenshots under artifacts/, and wait with bounded timeouts.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = process.env.HERALD_BROWSER_ARTIFACTS || join(HERE, '..', 'artifacts');
mkdirSync(ARTIFACTS, { recursive: true });

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function tempDir(prefix = 'herald-browser-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Starts `$HERALD_BIN serve` on 127.0.0.1:`port` (a free one by default) with `env`
 * and, when given, a TOML `config`. Resolves when it prints its listening line.
 * Returns {url, port, stop(), stderr(), restart()}.
 */
export async function startHerald({ port, env = {}, config } = {}) {
  const bin = process.env.HERALD_BIN;
  if (!bin) throw new Error('HERALD_BIN is not set (scripts/test.sh builds herald and exports it)');
  if (!existsSync(bin)) throw new Error(`HERALD_BIN=${bin} does not exist`);
  port ??= await freePort();
  const dir = tempDir();
  const args = ['serve', '--http', `127.0.0.1:${port}`, '--no-stomp'];
  if (config) {
    const file = join(dir, 'herald.toml');
    writeFileSync(file, config);
    args.push('--config', file);
  }
  const fullEnv = { ...process.env, HERALD_LOG: process.env.HERALD_LOG ?? 'herald=info', ...env };
  // Notifications (when this build has them) in a database of their own, kept across restarts.
  if (hasDatabaseFlag(bin)) args.push('--database-url', `sqlite://${join(dir, 'notifications.db')}`);
  let child;
  let stderr = '';
  const launch = async () => {
    child = spawn(bin, args, { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-100_000);
    });
    let stdout = '';
    await withTimeout(
      new Promise((resolve, reject) => {
        child.stdout.setEncoding('utf8');
        child.stdout.on('data', (d) => {
          stdout += d;
          if (/herald listening http=/.test(stdout)) resolve();
        });
        child.once('exit', (code, signal) =>
          reject(new Error(`herald exited early (code=${code} signal=${signal})\n${stderr.slice(-4000)}`)),
        );
      }),
      30_000,
      'herald to listen',
    );
  };
  const stop = async () => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    await withTimeout(exited, 15_000, 'herald to exit').catch(() => child.kill('SIGKILL'));
  };
  process.once('exit', () => child && child.kill('SIGKILL'));
  await launch();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    stop,
    restart: async () => {
      await stop();
      await launch();
    },
    start: launch,
    stderr: () => stderr,
  };
}

let databaseFlag;
function hasDatabaseFlag(bin) {
  databaseFlag ??= /--database-url/.test(execFileSync(bin, ['serve', '--help'], { encoding: 'utf8' }));
  return databaseFlag;
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
}

/** A new browser context (its own storage: one user), with page errors collected. */
export async function newUserPage(browser, baseURL) {
  const context = await browser.newContext({ baseURL, viewport: { width: 1200, height: 820 } });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(`console: ${m.text()}`);
  });
  return { context, page };
}

/** Signs in through the sign-in page, in anonymous mode (picks a name). */
export async function signInByName(page, name, next = '/') {
  await page.goto(`/signin?next=${encodeURIComponent(next)}`);
  await page.fill('#name', name);
  await Promise.all([page.waitForURL((u) => !u.pathname.startsWith('/signin')), page.click('#name-form button')]);
}

export async function shot(page, name) {
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

export async function waitConnected(page, transport, timeout = 20_000) {
  const sel = transport
    ? `[data-connection-status][data-state="connected"][data-transport="${transport}"]`
    : '[data-connection-status][data-state="connected"]';
  await page.waitForSelector(sel, { timeout });
}

export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export async function postJson(url, body, headers = {}) {
  const r = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, body: json };
}

/** Whether this build serves the notifications API ([notify]). */
export async function hasNotifications(url) {
  const r = await fetch(`${url}/api/notifications/unread-count`, { headers: { 'X-User': 'probe' } });
  return r.status !== 404 && r.status !== 405;
}

/** Whether this build serves SockJS at /ws-sockjs ([sockjs]). */
export async function hasSockJs(url) {
  const r = await fetch(`${url}/ws-sockjs/info`).catch(() => null);
  return Boolean(r && r.ok);
}
