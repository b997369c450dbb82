// The web UI as an attacker meets it: a notification whose redirectPath is a script
// is never followed (no link, a desktop-notification click goes nowhere); the pages'
// Content-Security-Policy stops an injected inline script; ?next= and ?sockjs_path=
// lead nowhere off-site; after sign-in no token is in the page's storage, and the
// admin page works on the HttpOnly cookie alone.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { hasNotifications, launchBrowser, newUserPage, postJson, signInByName, sleep, startHerald, waitConnected } from '../lib/harness.js';

const JWT_CONFIG = `
[auth]
[[auth.issuers]]
issuer = "herald-browser-test"
secret = "browser-test-secret-that-is-long-enough-for-hs256"

[web]
dev_login = true
`;

const PAGES = ['/', '/chat', '/notifications', '/admin', '/signin'];

let anonymous;
let jwt;
let browser;
before(async () => {
  anonymous = await startHerald();
  jwt = await startHerald({ config: JWT_CONFIG });
  browser = await launchBrowser();
});
after(async () => {
  await browser?.close();
  await anonymous?.stop();
  await jwt?.stop();
});

/** Every request of `context` that leaves `origin`, aborted (and kept, to assert on). */
async function offsite(context, origin) {
  const hits = [];
  await context.route(
    (url) => url.origin !== origin,
    (route) => {
      hits.push(route.request().url());
      return route.abort();
    },
  );
  return hits;
}

/** A page whose desktop notifications are recorded instead of shown. */
async function recordDesktopNotifications(context) {
  await context.addInitScript(() => {
    window.shownNotifications = [];
    window.Notification = class {
      static permission = 'granted';
      static requestPermission() {
        return Promise.resolve('granted');
      }
      constructor(title, options) {
        Object.assign(this, { title, ...options });
        window.shownNotifications.push(this);
      }
    };
  });
}

/** A notification-shaped message straight to the user's queue: no server-side check. */
const pushNotification = (user, n) =>
  postJson(`${anonymous.url}/api/users/${user}/messages`, {
    destination: '/queue/notifications',
    body: { type: 'info', title: 'Heads up', createdAt: new Date().toISOString(), read: false, ...n },
  });

test('a javascript: redirectPath is never a link and a click on it goes nowhere', async (t) => {
  if (!(await hasNotifications(anonymous.url))) return t.skip('this herald has no notifications API');
  const { context, page } = await newUserPage(browser, anonymous.url);
  try {
    await recordDesktopNotifications(context);
    const hits = await offsite(context, anonymous.url);
    await signInByName(page, 'ivy', '/notifications');
    await waitConnected(page, 'websocket');
    const evil = [
      [910001, 'javascript:window.pwned=1'],
      [910002, ' JavaScript:window.pwned=2'],
      [910003, 'data:text/html,<script>window.pwned=3</script>'],
      [910004, '//evil.example/x'],
      [910005, '/\\evil.example/x'],
    ];
    for (const [notificationId, redirectPath] of evil) {
      const r = await pushNotification('ivy', { notificationId, message: `evil ${notificationId}`, redirectPath });
      assert.ok(r.status < 300, JSON.stringify(r.body));
    }
    // Through the notifications API too, should it take one.
    const stored = await postJson(`${anonymous.url}/api/notifications`, {
      user: 'ivy',
      message: 'stored evil',
      redirectPath: 'javascript:window.pwned=9',
    });
    const ids = evil.map(([id]) => id);
    if (stored.status === 201) ids.push(stored.body.notifications[0].notificationId);
    await pushNotification('ivy', { notificationId: 910010, message: 'good local', redirectPath: '/chat?room=x' });
    await pushNotification('ivy', { notificationId: 910011, message: 'good https', redirectPath: 'https://docs.example/a' });
    await page.waitForSelector('#list li[data-id="910011"]');
    for (const id of ids) {
      await page.waitForSelector(`#list li[data-id="${id}"]`);
      assert.equal(await page.locator(`#list li[data-id="${id}"] a`).count(), 0, `notification ${id} has a link`);
      await page.click(`#list li[data-id="${id}"] .message`);
    }
    assert.equal(await page.locator('#list a[href^="javascript" i], #list a[href^="data:" i]').count(), 0);
    assert.equal(await page.getAttribute('#list li[data-id="910010"] a', 'href'), '/chat?room=x');
    assert.equal(await page.getAttribute('#list li[data-id="910011"] a', 'href'), 'https://docs.example/a');

    // The desktop notifications' click targets: the evil ones go nowhere.
    const clicked = await page.evaluate((ids) => {
      for (const n of window.shownNotifications) if (ids.some((id) => n.tag === `herald-${id}`)) n.onclick();
      return window.shownNotifications.filter((n) => ids.some((id) => n.tag === `herald-${id}`)).length;
    }, evil.map(([id]) => id));
    assert.equal(clicked, evil.length, 'every evil notification was shown on the desktop');
    await sleep(300);
    assert.equal(new URL(page.url()).pathname, '/notifications');
    assert.equal(await page.evaluate(() => window.pwned), undefined);
    assert.deepEqual(hits, []);
    // The good one's click does navigate (the handler works).
    await Promise.all([
      page.waitForURL((u) => u.pathname === '/chat'),
      // The navigation may end the evaluation's context before it answers.
      page.evaluate(() => window.shownNotifications.find((n) => n.tag === 'herald-910010').onclick()).catch(() => {}),
    ]);
  } finally {
    await context.close();
  }
});

test('every page forbids inline script, framing and sniffing; an injected script does not run', async () => {
  for (const path of PAGES) {
    const r = await fetch(`${anonymous.url}${path}`);
    const csp = r.headers.get('content-security-policy') || '';
    const scripts = csp.split(';').map((d) => d.trim()).find((d) => d.startsWith('script-src'));
    assert.ok(scripts, `${path}: no script-src in ${csp}`);
    assert.doesNotMatch(scripts, /unsafe-inline|unsafe-eval/, `${path}: ${csp}`);
    assert.match(csp, /frame-ancestors 'none'/, path);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', path);
    assert.match(r.headers.get('referrer-policy') || '', /^(same-origin|no-referrer|strict-origin)/, path);
  }
  const { context, page } = await newUserPage(browser, anonymous.url);
  try {
    await signInByName(page, 'ada', '/');
    await waitConnected(page);
    const outcome = await page.evaluate(async () => {
      const violations = [];
      document.addEventListener('securitypolicyviolation', (e) => violations.push(e.violatedDirective));
      // What a stored-XSS payload would do once it reached the DOM.
      const s = document.createElement('script');
      s.textContent = 'window.injected = true;';
      document.body.append(s);
      const div = document.createElement('div');
      div.innerHTML = '<img src="/web/favicon.svg" onload="window.injected = true">';
      document.body.append(div);
      await new Promise((r) => setTimeout(r, 500));
      return { injected: window.injected === true, violations };
    });
    assert.equal(outcome.injected, false, 'the injected script ran');
    assert.ok(outcome.violations.some((d) => d.startsWith('script-src')), JSON.stringify(outcome.violations));
    // The page's own scripts, loaded from files, work under the policy.
    assert.equal(page.errors.filter((e) => !/Content Security Policy/.test(e)).length, 0, page.errors.join('\n'));
  } finally {
    await context.close();
  }
});

test('?next= after sign-in never leaves the origin nor runs script', async () => {
  const { context, page } = await newUserPage(browser, anonymous.url);
  const dialogs = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.dismiss().catch(() => {});
  });
  const hits = await offsite(context, anonymous.url);
  try {
    for (const next of ['javascript:alert(1)', '//evil.example/x', '/\\evil.example/x', 'https://evil.example/', '/\t/evil.example/x']) {
      await signInByName(page, 'nat', next);
      const u = new URL(page.url());
      assert.equal(u.origin, anonymous.url, `next=${next} left the origin: ${page.url()}`);
      assert.equal(u.pathname, '/', `next=${next} went to ${page.url()}`);
    }
    // A local path is still followed.
    await signInByName(page, 'nat', '/chat?room=00000000-0000-4000-8000-000000000001');
    assert.equal(new URL(page.url()).pathname, '/chat');
    await sleep(300);
    assert.deepEqual(dialogs, []);
    assert.deepEqual(hits, []);
  } finally {
    await context.close();
  }
});

test('?sockjs_path= that is not a path here is refused', async () => {
  const { context, page } = await newUserPage(browser, anonymous.url);
  const hits = await offsite(context, anonymous.url);
  try {
    await signInByName(page, 'sam', '/');
    for (const path of ['.evil.com/s', '@evil.example/s', '//evil.example/s']) {
      await page.goto(`/?transport=sockjs&sockjs_path=${encodeURIComponent(path)}`);
      // It connects, over SockJS, to this server's own endpoint.
      await waitConnected(page, 'sockjs');
    }
    assert.deepEqual(hits, []);
  } finally {
    await context.close();
  }
});

test('after sign-in no token is in the page storage; the cookie alone serves the admin page', async () => {
  const { context, page } = await newUserPage(browser, jwt.url);
  const hits = await offsite(context, jwt.url);
  const stored = () =>
    page.evaluate(() => JSON.stringify({ local: { ...localStorage }, session: { ...sessionStorage } }));
  try {
    // The development login, with a next= that is a script.
    await page.goto(`/signin?next=${encodeURIComponent('javascript:alert(document.cookie)')}`);
    await page.waitForSelector('#dev:not(.hidden)');
    await page.fill('#dev-sub', 'kim');
    await page.check('#dev-admin');
    await Promise.all([page.waitForURL((u) => u.pathname === '/' && u.origin === jwt.url), page.click('#dev-form button')]);
    assert.doesNotMatch(await stored(), /eyJ/, 'a token is in the page storage');
    const cookie = (await context.cookies()).find((c) => c.name === 'access_token');
    assert.ok(cookie && cookie.httpOnly, 'the HttpOnly cookie is set');
    assert.equal(await page.evaluate(() => document.cookie.includes('access_token')), false);

    // The admin API answers on the cookie: sessions are listed, nothing is denied.
    await page.goto('/admin');
    await waitConnected(page, 'websocket');
    await page.waitForSelector('#sessions tbody td:text-is("kim")');
    assert.equal(await page.textContent('#denied'), '');

    // A pasted token goes to the server once and is kept in the cookie only.
    const minted = await postJson(`${jwt.url}/api/dev/login`, { sub: 'lou', roles: [] });
    await context.clearCookies();
    await page.goto('/signin?next=/chat');
    await page.fill('#token', minted.body.token);
    await Promise.all([page.waitForURL((u) => u.pathname === '/chat'), page.click('#token-form button')]);
    await waitConnected(page, 'websocket');
    assert.match(await page.textContent('[data-user]'), /lou/);
    assert.doesNotMatch(await stored(), /eyJ/, 'the pasted token is in the page storage');
    assert.ok((await context.cookies()).find((c) => c.name === 'access_token' && c.httpOnly));

    // Signing out clears the cookie.
    await page.goto('/signin');
    await page.click('#sign-out');
    await page.waitForSelector('#signed-in:has-text("Not signed in")');
    assert.equal((await context.cookies()).find((c) => c.name === 'access_token'), undefined);
    assert.deepEqual(hits, []);
  } finally {
    await context.close();
  }
});
