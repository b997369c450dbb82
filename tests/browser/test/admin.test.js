// The admin dashboard: sessions and destinations from the admin API, and the
// messages-per-second chart moving while the test publishes. The admin API goes by
// role only, so the users sign in with the development login (ADMIN for the admin),
// and the load is published with a service's API key.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, newUserPage, postJson, shot, sleep, startHerald, waitConnected } from '../lib/harness.js';

const API_KEY = 'browser-test-service-key';
const CONFIG = `
[auth]
api_keys = ["${API_KEY}"]
[[auth.issuers]]
issuer = "herald-browser-test"
secret = "browser-test-secret-that-is-long-enough-for-hs256"

[web]
dev_login = true
`;

/** Signs `page` in through the sign-in page's development login, then lands on `next`. */
async function devLogin(page, sub, roles, next) {
  await page.goto(`/signin?next=${encodeURIComponent(next)}`);
  await page.waitForSelector('#dev:not(.hidden)');
  await page.fill('#dev-sub', sub);
  if (roles.includes('ADMIN')) await page.check('#dev-admin');
  const path = new URL(next, 'http://x').pathname;
  await Promise.all([page.waitForURL((u) => u.pathname === path), page.click('#dev-form button')]);
}

let herald;
let browser;
before(async () => {
  herald = await startHerald({ config: CONFIG });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

test('the admin chart moves under load', async () => {
  // A chat user, so the dashboard has a session and a subscription to show.
  const carol = await newUserPage(browser, herald.url);
  const admin = await newUserPage(browser, herald.url);
  try {
    const rooms = await (await fetch(`${herald.url}/api/rooms`)).json();
    await devLogin(carol.page, 'carol', [], `/chat?room=${rooms[0].id}`);
    await waitConnected(carol.page, 'websocket');

    await devLogin(admin.page, 'root', ['ADMIN'], '/admin');
    await waitConnected(admin.page);
    await admin.page.waitForSelector('#sessions tbody tr td:text-is("carol")');
    // Carol's page also opens the plain notifications socket and names its device:
    // the dashboard shows it beside the session.
    await carol.page.evaluate(
      () =>
        new Promise((resolve, reject) => {
          const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/ws/notify`);
          ws.onopen = () => {
            ws.send(JSON.stringify({ type: 'INIT', device: 'carol-laptop' }));
            window.notifySocket = ws;
            resolve();
          };
          ws.onerror = () => reject(new Error('/ws/notify did not open'));
        }),
    );
    await admin.page.waitForSelector('#sessions tbody td:has-text("device: carol-laptop")', { timeout: 10_000 });
    await admin.page.waitForSelector(`#destinations td:text-is("/topic/chat/room/${rooms[0].id}")`);

    // Load: publish to the room's topic through the REST API for a few seconds
    // (published counts in, each delivery to carol counts out).
    const topic = `/topic/chat/room/${rooms[0].id}`;
    const until = Date.now() + 4000;
    let sent = 0;
    let shotTaken = false;
    while (Date.now() < until) {
      await Promise.all(
        Array.from({ length: 20 }, () =>
          postJson(`${herald.url}/api/publish`, {
            destination: topic,
            body: { type: 'CHAT', chatRoomId: rooms[0].id, writer: 'load', message: `m${sent}`, timestamp: new Date().toISOString() },
          }, { 'X-API-Key': API_KEY }),
        ),
      );
      sent += 20;
      if (!shotTaken && Date.now() > until - 1000) {
        shotTaken = true;
        await shot(admin.page, 'admin-under-load');
      }
    }
    await sleep(1500);
    const chart = await admin.page.evaluate(() => window.heraldChart);
    const peakIn = Math.max(...chart.in);
    const peakOut = Math.max(...chart.out);
    assert.ok(peakIn > 20, `published/s should have risen (peak ${peakIn}, sent ${sent})`);
    assert.ok(peakOut > 20, `delivered/s should have risen (peak ${peakOut})`);
    assert.notEqual(await admin.page.textContent('#rate-in'), '–');
    await shot(admin.page, 'admin-after-load');
    assert.deepEqual(admin.page.errors, []);
  } finally {
    await carol.context.close();
    await admin.context.close();
  }
});
