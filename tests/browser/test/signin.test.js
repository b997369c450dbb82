// Sign-in with JWT configured: the development login sets the HttpOnly cookie (only when
// web.dev_login is on), a pasted token works, and the admin page needs the ADMIN role.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, newUserPage, postJson, shot, startHerald, waitConnected } from '../lib/harness.js';

const CONFIG = (devLogin) => `
[auth]
[[auth.issuers]]
issuer = "herald-browser-test"
secret = "browser-test-secret-that-is-long-enough-for-hs256"

[web]
dev_login = ${devLogin}
`;

let herald;
let browser;
before(async () => {
  herald = await startHerald({ config: CONFIG(true) });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

test('the development login sets an HttpOnly cookie that authenticates STOMP and REST', async () => {
  const { context, page } = await newUserPage(browser, herald.url);
  try {
    await page.goto('/signin?next=/admin');
    await page.waitForSelector('#dev:not(.hidden)');
    await page.fill('#dev-sub', 'kim');
    await page.check('#dev-admin');
    await Promise.all([page.waitForURL((u) => u.pathname === '/admin'), page.click('#dev-form button')]);
    const cookies = await context.cookies();
    const cookie = cookies.find((c) => c.name === 'access_token');
    assert.ok(cookie, 'the access_token cookie is set');
    assert.equal(cookie.httpOnly, true);
    await waitConnected(page, 'websocket');
    assert.match(await page.textContent('[data-connection-status]'), /kim/);
    await page.waitForSelector('#sessions tbody td:text-is("kim")');
    assert.equal(await page.textContent('#denied'), '');
    await shot(page, 'admin-dev-login');
  } finally {
    await context.close();
  }
});

test('a pasted token without the ADMIN role is refused by the admin page', async () => {
  const minted = await postJson(`${herald.url}/api/dev/login`, { sub: 'lee', roles: [] });
  assert.equal(minted.status, 200);
  const { context, page } = await newUserPage(browser, herald.url);
  try {
    await page.goto('/signin?next=/chat');
    await page.fill('#token', minted.body.token);
    await Promise.all([page.waitForURL((u) => u.pathname === '/chat'), page.click('#token-form button')]);
    await waitConnected(page, 'websocket');
    assert.match(await page.textContent('[data-user]'), /lee/);
    await page.goto('/admin');
    await page.waitForSelector('#denied:has-text("ADMIN")');
  } finally {
    await context.close();
  }
});

test('the development login is off by default', async () => {
  const off = await startHerald({ config: CONFIG(false) });
  try {
    const r = await postJson(`${off.url}/api/dev/login`, { sub: 'mallory', roles: ['ADMIN'] });
    assert.equal(r.status, 404);
    const s = await (await fetch(`${off.url}/api/web/session`)).json();
    assert.equal(s.devLogin, false);
    assert.equal(s.mode, 'jwt');
  } finally {
    await off.stop();
  }
});
