// Two users in two browser contexts chat in a room created from the page.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { launchBrowser, newUserPage, shot, signInByName, startHerald, waitConnected } from '../lib/harness.js';

let herald;
let browser;
before(async () => {
  herald = await startHerald();
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

test('home page shows the server and a live connection', async () => {
  const { context, page } = await newUserPage(browser, herald.url);
  await page.goto('/');
  await waitConnected(page, 'websocket');
  assert.match(await page.textContent('main'), /real-time messaging server/);
  assert.equal(await page.textContent('#conn-transport'), 'WebSocket');
  const res = await page.request.get('/web/vendor/stomp.umd.min.js');
  assert.equal(res.status(), 200);
  assert.match(res.headers()['content-type'], /javascript/);
  assert.ok(res.headers().etag);
  await shot(page, 'home');
  assert.deepEqual(page.errors, []);
  await context.close();
});

test('two browser contexts chat in a room', async () => {
  const alice = await newUserPage(browser, herald.url);
  const bob = await newUserPage(browser, herald.url);
  try {
    // Alice signs in, creates a room from the page and lands in it.
    await signInByName(alice.page, 'alice', '/chat');
    await alice.page.fill('#room-name', 'Browser room');
    await Promise.all([alice.page.waitForURL(/room=/), alice.page.click('#create-room button')]);
    await waitConnected(alice.page, 'websocket');
    await alice.page.waitForSelector('#members li:text-is("alice")');
    const roomUrl = alice.page.url();

    // Bob signs in, finds the room in the list and opens it.
    await signInByName(bob.page, 'bob', '/chat');
    await bob.page.click('#rooms a:has-text("Browser room")');
    await bob.page.waitForURL(roomUrl);
    await waitConnected(bob.page, 'websocket');

    // Presence: each sees both, and alice sees bob's join announcement.
    for (const { page } of [alice, bob]) {
      await page.waitForSelector('#members li:text-is("bob")');
      await page.waitForSelector('#members li:text-is("alice")');
    }
    await alice.page.waitForSelector('.msg.join:has-text("bob joined")');

    await alice.page.fill('#text', 'hello bob, from a real browser');
    await alice.page.press('#text', 'Enter');
    await bob.page.waitForSelector('.msg.chat:has-text("hello bob, from a real browser")');
    await bob.page.fill('#text', 'hi alice!');
    await bob.page.click('#send-button');
    await alice.page.waitForSelector('.msg.chat:has-text("hi alice!")');
    assert.equal(await alice.page.textContent('#member-count'), '2');

    await shot(alice.page, 'chat-alice');
    await shot(bob.page, 'chat-bob');

    // Bob leaves: alice sees it and the member list shrinks.
    await bob.context.close();
    await alice.page.waitForSelector('.msg.leave:has-text("bob left")');
    await alice.page.waitForFunction(() => document.querySelector('#member-count').textContent === '1');
    assert.deepEqual(alice.page.errors, []);
  } finally {
    await alice.context.close();
    await bob.context.close().catch(() => {});
  }
});

test('a page reconnects by itself after the server restarts', async () => {
  const { context, page } = await newUserPage(browser, herald.url);
  try {
    await signInByName(page, 'nora', '/');
    await waitConnected(page, 'websocket');
    const before = await page.textContent('#conn-detail');
    await herald.stop();
    await page.waitForSelector('[data-connection-status][data-state="disconnected"], [data-connection-status][data-state="reconnecting"]');
    await shot(page, 'home-disconnected');
    await herald.start();
    await waitConnected(page, 'websocket', 30_000);
    const after = await page.textContent('#conn-detail');
    assert.notEqual(after, before, 'a new session after the restart');
    assert.match(after, /nora/);
  } finally {
    await context.close();
  }
});
