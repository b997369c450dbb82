// The notifications page on herald-client across a dropped connection: the network
// drops (a TCP proxy between Chromium and herald cuts it) or the server ends the session
// (the admin API), a notification is created while the page is away, and the page shows
// it once when it is back, with the badge right.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startProxy } from '../../interop/node/lib/proxy.js';
import {
  hasNotifications,
  launchBrowser,
  newUserPage,
  postJson,
  shot,
  signInByName,
  startHerald,
  waitConnected,
} from '../lib/harness.js';

// A key for the test's own calls (creating notifications, the admin API); the pages
// stay in anonymous mode.
const KEY = 'browser-resume-test-key-0123456789';
const CONFIG = `
[[auth.api_keys]]
key = "${KEY}"
principal = "ops"
roles = ["ADMIN", "SERVICE"]
`;

let herald;
let proxy;
let browser;
let skip = false;
before(async () => {
  herald = await startHerald({ config: CONFIG });
  proxy = await startProxy(herald.port);
  browser = await launchBrowser();
  skip = !(await hasNotifications(herald.url)) && 'this herald has no notifications API ([notify])';
});
after(async () => {
  await browser?.close();
  await proxy?.close();
  await herald?.stop();
});

// The page talks to herald through the proxy; the test talks to herald directly.
const viaProxy = () => `http://127.0.0.1:${proxy.port}`;
const notify = (user, message) =>
  postJson(`${herald.url}/api/notifications`, { user, message, title: message, type: 'info' }, { 'x-api-key': KEY });
const awaySelector = '[data-connection-status][data-state="disconnected"], [data-connection-status][data-state="reconnecting"]';

async function missedWhileAway(page, user) {
  const missed = await notify(user, 'Created while you were away');
  assert.equal(missed.status, 201, JSON.stringify(missed.body));
  assert.equal(missed.body.delivered, 0, 'the page should be disconnected when this is created');
  return missed.body.notifications[0].notificationId;
}

test('a dropped network connection: the session resumes and the notification created meanwhile shows once', async (t) => {
  if (skip) return t.skip(skip);
  const { context, page } = await newUserPage(browser, viaProxy());
  try {
    await signInByName(page, 'ivy', '/notifications');
    await waitConnected(page, 'websocket');
    const first = await notify('ivy', 'Before the drop');
    await page.waitForSelector(`#list li[data-id="${first.body.notifications[0].notificationId}"][data-origin="live"]`);

    proxy.cut();
    await page.waitForSelector(awaySelector);
    const id = await missedWhileAway(page, 'ivy');
    proxy.restore();

    await waitConnected(page, 'websocket', 30_000);
    assert.match(await page.textContent('[data-connection-status]'), /resumed/);
    await page.waitForSelector(`#list li.unread[data-id="${id}"][data-origin="sync"]:has-text("Created while you were away")`);
    await page.waitForFunction(() => document.querySelector('#unread').textContent === '2');
    assert.equal(await page.locator(`#list li[data-id="${id}"]`).count(), 1);
    await shot(page, 'resume-after-drop');

    const live = await notify('ivy', 'After the drop');
    await page.waitForSelector(`#list li[data-id="${live.body.notifications[0].notificationId}"][data-origin="live"]`);
    assert.equal(await page.locator('#list li').count(), 3);
  } finally {
    await context.close();
  }
});

test('a session ended by the server (admin API): the page comes back and shows the notification created meanwhile', async (t) => {
  if (skip) return t.skip(skip);
  const { context, page } = await newUserPage(browser, viaProxy());
  try {
    await signInByName(page, 'jay', '/notifications');
    await waitConnected(page, 'websocket');
    const first = await notify('jay', 'Before the kick');
    await page.waitForSelector(`#list li[data-id="${first.body.notifications[0].notificationId}"]`);

    // New connections wait at the proxy, so the page stays away until restore().
    proxy.refuse();
    const kicked = await fetch(`${herald.url}/api/admin/users/jay/sessions`, { method: 'DELETE', headers: { 'x-api-key': KEY } });
    assert.equal(kicked.status, 200, await kicked.text());
    await page.waitForSelector(awaySelector);
    const id = await missedWhileAway(page, 'jay');
    proxy.restore();

    await waitConnected(page, 'websocket', 30_000);
    await page.waitForSelector(`#list li.unread[data-id="${id}"]:has-text("Created while you were away")`);
    await page.waitForFunction(() => document.querySelector('#unread').textContent === '2');
    assert.equal(await page.locator(`#list li[data-id="${id}"]`).count(), 1);
    assert.equal(await page.locator('#list li').count(), 2);
    await shot(page, 'resume-after-kick');
  } finally {
    await context.close();
  }
});
