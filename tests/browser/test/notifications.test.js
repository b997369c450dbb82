// The notifications center: a notification POSTed to the REST API appears live in the
// user's page and its badge updates; read state follows across sessions; after a server
// restart the page reconnects by itself and shows what it missed.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  hasNotifications,
  launchBrowser,
  newUserPage,
  postJson,
  shot,
  signInByName,
  sleep,
  startHerald,
  waitConnected,
} from '../lib/harness.js';

let herald;
let browser;
let skip = false;
before(async () => {
  herald = await startHerald();
  browser = await launchBrowser();
  skip = !(await hasNotifications(herald.url)) && 'this herald has no notifications API ([notify])';
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

const notify = (user, message, extra = {}) =>
  postJson(`${herald.url}/api/notifications`, { user, message, title: extra.title ?? 'Heads up', type: 'info', ...extra });

const badge = (page) => page.textContent('#unread');

test('a notification POSTed to the REST API appears live and the badge updates', async (t) => {
  if (skip) return t.skip(skip);
  const dana = await newUserPage(browser, herald.url);
  const erin = await newUserPage(browser, herald.url);
  try {
    await signInByName(dana.page, 'dana', '/notifications');
    await signInByName(erin.page, 'erin', '/notifications');
    await waitConnected(dana.page, 'websocket');
    await waitConnected(erin.page, 'websocket');
    await dana.page.waitForSelector('#empty:not(.hidden)');
    assert.equal(await badge(dana.page), '0');

    const r = await notify('dana', 'Your report is ready', { title: 'Report', redirectPath: '/chat' });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = r.body.notifications[0].notificationId;
    await dana.page.waitForSelector(`#list li.unread[data-id="${id}"][data-origin="live"]:has-text("Your report is ready")`);
    await dana.page.waitForFunction(() => document.querySelector('#unread').textContent === '1');
    assert.match(await dana.page.title(), /^\(1\) Notifications/);
    // Erin's page got nothing.
    await sleep(300);
    assert.equal(await erin.page.locator('#list li').count(), 0);
    assert.equal(await badge(erin.page), '0');

    await notify('dana', 'Second one', { title: 'Again' });
    await dana.page.waitForFunction(() => document.querySelector('#unread').textContent === '2');
    await shot(dana.page, 'notifications-live');

    // Dana's second session (another tab) reads one: the first page's badge follows.
    const tab = await dana.context.newPage();
    await tab.goto('/notifications');
    await tab.waitForSelector(`#list li[data-id="${id}"]`);
    await tab.click(`#list li[data-id="${id}"] button.mark-read`);
    await dana.page.waitForFunction(() => document.querySelector('#unread').textContent === '1');
    await dana.page.waitForSelector(`#list li.read[data-id="${id}"]`);
    await dana.page.click('#read-all');
    await tab.waitForFunction(() => document.querySelector('#unread').textContent === '0');
    assert.equal(await dana.page.locator('#list li.unread').count(), 0);
    await shot(dana.page, 'notifications-all-read');
    assert.deepEqual(dana.page.errors, []);
  } finally {
    await dana.context.close();
    await erin.context.close();
  }
});

test('the page reconnects by itself after a server restart and shows what it missed', async (t) => {
  if (skip) return t.skip(skip);
  const frank = await newUserPage(browser, herald.url);
  try {
    await signInByName(frank.page, 'frank', '/notifications');
    await waitConnected(frank.page, 'websocket');
    const before = await notify('frank', 'Before the restart');
    await frank.page.waitForSelector(`#list li[data-id="${before.body.notifications[0].notificationId}"]`);

    await herald.stop();
    await frank.page.waitForSelector('[data-connection-status][data-state="disconnected"], [data-connection-status][data-state="reconnecting"]');
    // Stay down long enough for the backoff to grow past the restart below.
    await sleep(4500);
    await shot(frank.page, 'notifications-disconnected');
    await herald.start();
    const missed = await notify('frank', 'Sent while you were away', { title: 'Missed' });
    assert.equal(missed.status, 201, JSON.stringify(missed.body));
    const id = missed.body.notifications[0].notificationId;
    assert.equal(missed.body.delivered, 0, 'the page should still be disconnected when this is sent');

    await waitConnected(frank.page, 'websocket', 30_000);
    await frank.page.waitForSelector(`#list li.unread[data-id="${id}"][data-origin="sync"]:has-text("Sent while you were away")`);
    await frank.page.waitForFunction(() => document.querySelector('#unread').textContent === '2');
    // No duplicates after the reconnect.
    assert.equal(await frank.page.locator(`#list li[data-id="${id}"]`).count(), 1);
    assert.equal(await frank.page.locator('#list li').count(), 2);

    // And live delivery works again on the new connection.
    const live = await notify('frank', 'After the restart');
    await frank.page.waitForSelector(`#list li[data-id="${live.body.notifications[0].notificationId}"][data-origin="live"]`);
    await shot(frank.page, 'notifications-after-restart');
  } finally {
    await frank.context.close();
  }
});

test('a broadcast from the admin dashboard reaches a user', async (t) => {
  if (skip) return t.skip(skip);
  const gina = await newUserPage(browser, herald.url);
  const admin = await newUserPage(browser, herald.url);
  try {
    await signInByName(gina.page, 'gina', '/notifications');
    await waitConnected(gina.page);
    await signInByName(admin.page, 'root', '/admin');
    await admin.page.fill('#b-title', 'Maintenance');
    await admin.page.fill('#b-message', 'Restart at 22:00');
    await admin.page.click('#broadcast button');
    await admin.page.waitForSelector('#b-result:has-text("sent #")');
    await gina.page.waitForSelector('#list li:has-text("Restart at 22:00")');
  } finally {
    await gina.context.close();
    await admin.context.close();
  }
});
