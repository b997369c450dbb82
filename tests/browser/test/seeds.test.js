// The seeds' own client code (tests/browser/seeds/NNN.html: each write-up's JavaScript
// as written, with the libraries it names) in Chromium against `herald serve` with that
// seed's configuration (examples/seeds/NNN.toml), doing what the write-up says.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { launchBrowser, newUserPage, postJson, shot, sleep, startHerald } from '../lib/harness.js';
import { consoleLines, serveSeeds, signInWithCookie, waitForConsole } from '../lib/seeds.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const seedConfig = (n) => readFileSync(join(REPO, 'examples', 'seeds', `${n}.toml`), 'utf8');
/** The seed files leave the development login off; the tests mint tokens with it. */
const DEV_LOGIN = { HERALD_WEB__DEV_LOGIN: 'true' };
/** Time for a SUBSCRIBE the page just sent to reach the server before anything is published. */
const SETTLE = 300;

let browser;
before(async () => {
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
});

/** Opens the seed page `path` for a user of its own (a browser context), served at herald's origin. */
async function seedPage(herald, path, { user, fill, connected } = {}) {
  const u = await newUserPage(browser, herald.url);
  await serveSeeds(u.context, herald.url, fill);
  if (user) await signInWithCookie(u.context, herald.url, user);
  u.console = consoleLines(u.page);
  const ready = connected && waitForConsole(u.page, connected);
  await u.page.goto(path);
  if (ready) u.connectedFrame = await ready;
  return u;
}

const received = (page, path = 'received') => page.evaluate((p) => p.split('.').reduce((o, k) => o[k], window), path);

test("seed 000: public chat and private messages between two users (stomp.js 2 over SockJS at /ws)", async () => {
  const herald = await startHerald({ config: seedConfig('000'), env: DEV_LOGIN });
  const pages = [];
  try {
    const alice = await seedPage(herald, '/seeds/000.html?user=alice', { user: 'alice', connected: /^Connected: / });
    const bob = await seedPage(herald, '/seeds/000.html?user=bob', { user: 'bob', connected: /^Connected: / });
    pages.push(alice, bob);
    // SockJS at /ws, over its websocket transport.
    assert.equal(await alice.page.evaluate(() => socket.transport), 'websocket');
    assert.match(alice.connectedFrame, /^Connected: CONNECTED\n/);
    await sleep(SETTLE);

    await alice.page.evaluate(() => sendMessage('안녕하세요, everyone'));
    for (const { page } of [alice, bob]) await page.waitForFunction(() => received.chat.length === 1);
    for (const { page } of [alice, bob]) {
      const [m] = await received(page, 'received.chat');
      assert.equal(m.sender, 'alice');
      assert.equal(m.content, '안녕하세요, everyone');
      assert.ok(Math.abs(Date.parse(m.timestamp) - Date.now()) < 60_000, `timestamp ${m.timestamp}`);
    }

    await bob.page.evaluate(() => sendPrivateMessage('alice', 'psst, alice'));
    await alice.page.waitForFunction(() => received.private.length === 1);
    const [dm] = await received(alice.page, 'received.private');
    assert.deepEqual({ ...dm, timestamp: undefined }, { sender: 'bob', recipient: 'alice', content: 'psst, alice', timestamp: undefined });
    assert.equal(await alice.page.textContent('#private li'), 'bob: psst, alice');
    await alice.page.evaluate(() => sendPrivateMessage('bob', 'hi bob'));
    await bob.page.waitForFunction(() => received.private.length === 1);
    assert.equal((await received(bob.page, 'received.private'))[0].content, 'hi bob');
    await sleep(SETTLE);
    // A private message reaches its recipient only, and never the public chat.
    assert.deepEqual((await received(alice.page, 'received.private')).map((m) => m.content), ['psst, alice']);
    assert.deepEqual((await received(bob.page, 'received.private')).map((m) => m.content), ['hi bob']);
    for (const { page } of [alice, bob]) assert.equal((await received(page, 'received.chat')).length, 1);
    await shot(alice.page, 'seed-000-alice');
    for (const { page } of [alice, bob]) assert.deepEqual(page.errors, []);
  } finally {
    for (const p of pages) await p.context.close();
    await herald.stop();
  }
});

/** Seed 002's page: publishes `name` with the seed's sendName(). */
async function sendName(page, name) {
  await page.fill('#name', name);
  await page.evaluate(() => sendName());
}

test("seed 002: the greeting, with the seed's @stomp/stompjs client as written (ws://…/gs-guide-websocket)", async () => {
  const herald = await startHerald({ config: seedConfig('002') });
  const pages = [];
  try {
    const fred = await seedPage(herald, '/seeds/002.html', { connected: /^Connected: / });
    const watcher = await seedPage(herald, '/seeds/002.html', { connected: /^Connected: / });
    pages.push(fred, watcher);
    assert.equal(await fred.page.getAttribute('#state', 'data-connected'), 'true');
    await sleep(SETTLE);
    await sendName(fred.page, 'Fred');
    for (const { page } of pages) await page.waitForFunction(() => greetings.length === 1);
    for (const { page } of pages) assert.deepEqual(await received(page, 'greetings'), ['Hello, Fred!']);
    // HtmlUtils.htmlEscape, as the guide's controller: the page shows the name as text.
    await sendName(watcher.page, '<b>Wilma</b>');
    await fred.page.waitForFunction(() => greetings.length === 2);
    assert.equal((await received(fred.page, 'greetings'))[1], 'Hello, &lt;b&gt;Wilma&lt;/b&gt;!');
    assert.equal(await fred.page.textContent('#greetings tr:nth-child(2) td'), 'Hello, <b>Wilma</b>!');
    assert.equal(await fred.page.locator('#greetings b').count(), 0);
    assert.ok(fred.console.includes('Send Message!!'));
    await shot(fred.page, 'seed-002-greetings');
    for (const { page } of pages) assert.deepEqual(page.errors, []);
  } finally {
    for (const p of pages) await p.context.close();
    await herald.stop();
  }
});

const SEED_004_KEY = { 'X-API-Key': 'seed-004-notification-service-key-replace-me' };

/**
 * Desktop notifications the page shows, recorded. Chromium is headless here and
 * displays none, so the page's `Notification` is the browser's own (permission
 * granted) wrapped to record what the seed asks it to show.
 */
async function recordDesktopNotifications(context, origin) {
  await context.grantPermissions(['local-network-access', 'notifications'], { origin });
  await context.addInitScript(() => {
    window.shownNotifications = [];
    const Native = window.Notification;
    window.Notification = class extends Native {
      constructor(title, options = {}) {
        super(title, options);
        window.shownNotifications.push({ title, body: options.body, icon: options.icon });
      }
    };
  });
}

async function seed004Page(herald, member, query = '') {
  const u = await newUserPage(browser, herald.url);
  await serveSeeds(u.context, herald.url);
  await recordDesktopNotifications(u.context, herald.url);
  await signInWithCookie(u.context, herald.url, member);
  u.console = consoleLines(u.page);
  return u;
}

/** POSTs a notification for `user` as the seed's notification service would. */
async function notify(herald, user, message, redirectPath = '/dashboard') {
  const r = await postJson(`${herald.url}/api/notifications`, { user, type: 'notice', message, redirectPath }, SEED_004_KEY);
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body.notifications[0];
}

test('seed 004: a notification pushed to member 1 shows in their page and on the desktop, not in member 2\'s', async () => {
  const herald = await startHerald({ config: seedConfig('004'), env: DEV_LOGIN });
  const pages = [];
  try {
    const one = await seed004Page(herald, '1');
    const two = await seed004Page(herald, '2');
    pages.push(one, two);
    for (const u of pages) {
      const connected = waitForConsole(u.page, /^STOMP 연결 성공:/);
      await u.page.goto('/seeds/004.html');
      await connected;
    }
    assert.equal(await one.page.getAttribute('#status', 'data-state'), 'connected');
    await sleep(SETTLE);

    const sent = await notify(herald, '1', '새로운 알림이 도착했습니다.');
    await one.page.waitForSelector(`#notifications li[data-id="${sent.notificationId}"]`);
    const [n] = await received(one.page);
    assert.equal(n.memberId, '1');
    assert.equal(n.notificationId, sent.notificationId);
    assert.equal(n.message, '새로운 알림이 도착했습니다.');
    assert.equal(n.redirectPath, '/dashboard');
    assert.deepEqual(await received(one.page, 'shownNotifications'), [
      { title: '새로운 알림', body: '새로운 알림이 도착했습니다.', icon: '/favicon.ico' },
    ]);
    assert.ok(one.console.some((l) => l.startsWith('새로운 알림:')));
    await sleep(SETTLE);
    assert.deepEqual(await received(two.page), []);
    assert.deepEqual(await received(two.page, 'shownNotifications'), []);
    await shot(one.page, 'seed-004-notification');
    for (const { page } of pages) assert.deepEqual(page.errors, []);
  } finally {
    for (const p of pages) await p.context.close();
    await herald.stop();
  }
});

test("seed 004: after the server is killed and restarted, the seed's reconnect gets the next notification", async () => {
  const herald = await startHerald({ config: seedConfig('004'), env: DEV_LOGIN });
  let one;
  try {
    one = await seed004Page(herald, '1');
    const connected = waitForConsole(one.page, /^STOMP 연결 성공:/);
    await one.page.goto('/seeds/004.html');
    await connected;
    await sleep(SETTLE);
    const first = await notify(herald, '1', 'before the restart');
    await one.page.waitForSelector(`#notifications li[data-id="${first.notificationId}"]`);

    await herald.stop();
    await one.page.waitForSelector('#status[data-state="disconnected"]');
    // Down long enough for the seed's 3 s retry to fail at least once.
    await sleep(4_000);
    const reconnected = waitForConsole(one.page, /^STOMP 연결 성공:/, 30_000);
    await herald.start();
    await reconnected;
    await one.page.waitForSelector('#status[data-state="connected"]');
    await sleep(SETTLE);

    const next = await notify(herald, '1', 'after the restart', '/posts/7');
    await one.page.waitForSelector(`#notifications li[data-id="${next.notificationId}"]`);
    const got = await received(one.page);
    assert.deepEqual(
      got.map((n) => [n.notificationId, n.message, n.redirectPath, n.memberId]),
      [
        [first.notificationId, 'before the restart', '/dashboard', '1'],
        [next.notificationId, 'after the restart', '/posts/7', '1'],
      ],
    );
    const statuses = await received(one.page, 'statuses');
    assert.equal(statuses[0], 'connected');
    assert.ok(statuses.includes('disconnected'), statuses.join(','));
    assert.equal(statuses.at(-1), 'connected');
    assert.equal((await received(one.page, 'shownNotifications')).length, 2);
    await shot(one.page, 'seed-004-after-restart');
  } finally {
    await one?.context.close();
    await herald.stop();
  }
});

test("seed 004 as written: section 7.3's websocket.onopen replaces stomp.js's, so no CONNECT is sent", async () => {
  const herald = await startHerald({ config: seedConfig('004'), env: DEV_LOGIN });
  let one;
  try {
    one = await seed004Page(herald, '1');
    const opened = waitForConsole(one.page, /^WebSocket 연결 성공$/);
    await one.page.goto('/seeds/004.html?as_written');
    await opened;
    await sleep(2_000);
    assert.ok(!one.console.some((l) => l.startsWith('STOMP 연결 성공')), one.console.join('\n'));
    // No session, so nothing reaches the page.
    await notify(herald, '1', 'nobody is subscribed');
    await sleep(SETTLE);
    assert.deepEqual(await received(one.page), []);
  } finally {
    await one?.context.close();
    await herald.stop();
  }
});

test(
  'seed 001: a STOMP room page (SockJS /stomp-chat) and a plain SockJS JSON room page (/ws/chat) talk in one room',
  async () => {
    const herald = await startHerald({ config: seedConfig('001') });
    const pages = [];
    try {
      const [room] = await (await fetch(`${herald.url}/api/rooms`)).json();
      const fill = (member) => ({ 'room.name': room.name, 'room.id': room.id, member });
      const kim = await seedPage(herald, '/seeds/001.html', { fill: fill('kim') });
      const lee = await seedPage(herald, '/seeds/001-sockjs.html', { fill: fill('lee') });
      pages.push(kim, lee);
      // Both joined: each page lists the other's JOIN event or its own.
      for (const { page } of pages) await page.waitForSelector('.chat_box li', { timeout: 10_000 });
      await sleep(SETTLE);
      await kim.page.fill('input[name="message"]', 'hello from stomp');
      await kim.page.click('.send');
      await lee.page.fill('input[name="message"]', 'hello from sockjs');
      await lee.page.click('.send');
      for (const { page } of pages) {
        await page.waitForSelector('.chat_box li:has-text("hello from stomp(")', { timeout: 10_000 });
        await page.waitForSelector('.chat_box li:has-text("hello from sockjs(")', { timeout: 10_000 });
      }
      for (const { page } of pages) assert.deepEqual(page.errors, []);
    } finally {
      for (const p of pages) await p.context.close();
      await herald.stop();
    }
  },
);

test(
  "seed 003: a notification for user 123 and a broadcast reach the seed's plain WebSocket",
  async () => {
    const herald = await startHerald({ config: seedConfig('003') });
    let u;
    try {
      u = await newUserPage(browser, herald.url);
      await serveSeeds(u.context, herald.url);
      const lines = consoleLines(u.page);
      const opened = waitForConsole(u.page, /^웹소켓 연결 성공!$/, 5_000);
      await u.page.goto('/seeds/003.html');
      await opened;
      await sleep(SETTLE);
      const mine = await postJson(`${herald.url}/api/notifications`, { user: '123', type: 'alarm', message: '새 알림' });
      assert.equal(mine.status, 201, JSON.stringify(mine.body));
      await postJson(`${herald.url}/api/notifications`, { user: '456', type: 'alarm', message: 'not for 123' });
      const all = await postJson(`${herald.url}/api/notifications`, { broadcast: true, type: 'alarm', message: '전체 공지' });
      assert.equal(all.status, 201, JSON.stringify(all.body));
      const messages = async () =>
        lines.filter((l) => l.startsWith('서버로부터 메시지 수신:')).map((l) => JSON.parse(l.slice(l.indexOf('{'))));
      for (let i = 0; i < 50 && (await messages()).length < 2; i++) await sleep(100);
      const got = await messages();
      assert.deepEqual(
        got.map((m) => [m.type, m.message]),
        [
          ['notification', '새 알림'],
          ['notification', '전체 공지'],
        ],
      );
      assert.equal(got[0].notificationId, mine.body.notifications[0].notificationId);
    } finally {
      await u?.context.close();
      await herald.stop();
    }
  },
);
