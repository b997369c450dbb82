// A foreign page cannot ride another user's SockJS session. Bob is signed in (an
// HttpOnly SameSite=Lax cookie on Herald's origin). A page of another site that he
// visits opens Herald's SockJS session URLs with top-level navigations (window.open:
// his cookie goes along, no Origin header) and a script tag, under a session id it
// chose; then the attacker, from anywhere and without the cookie, tries to send and
// receive on that id. Herald runs with jsonp and htmlfile on here, the worst case.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import { launchBrowser, newUserPage, postJson, shot, sleep, startHerald, waitConnected } from '../lib/harness.js';

const CONFIG = `
[auth]
[[auth.issuers]]
issuer = "herald-browser-test"
secret = "browser-test-secret-that-is-long-enough-for-hs256"

[web]
dev_login = true

[sockjs]
transports = ["websocket", "xhr-streaming", "xhr-polling", "eventsource", "htmlfile", "jsonp-polling"]
`;

const SESSION = 'ridden1';

let herald;
let browser;
let foreign;
let foreignUrl;
before(async () => {
  herald = await startHerald({ config: CONFIG });
  browser = await launchBrowser();
  // The attacker's site: another host name (localhost, not 127.0.0.1), so another site.
  foreign = createServer((req, res) => {
    res.setHeader('content-type', 'text/html');
    const base = herald.url;
    const open = ['jsonp?c=grab', 'eventsource', 'htmlfile?c=grab']
      .map((t) => `window.open(${JSON.stringify(`${base}/ws-sockjs/000/${SESSION}/${t}`)});`)
      .join('\n');
    res.end(`<!doctype html><title>cute cats</title>
<script>window.grab = (frame) => { window.got = (window.got || []).concat(frame); };</script>
<script src="${base}/ws-sockjs/000/${SESSION}/jsonp?c=grab&via=script"></script>
<script>${open}</script><p>cats</p>`);
  });
  await new Promise((r) => foreign.listen(0, '127.0.0.1', r));
  foreignUrl = `http://localhost:${foreign.address().port}/`;
});
after(async () => {
  await browser?.close();
  await herald?.stop();
  foreign?.close();
});

async function attackerSends() {
  const connect = JSON.stringify(['CONNECT\naccept-version:1.2\nhost:localhost\n\n\u0000']);
  const sent = await fetch(`${herald.url}/ws-sockjs/000/${SESSION}/xhr_send`, { method: 'POST', body: connect });
  const polled = await fetch(`${herald.url}/ws-sockjs/000/${SESSION}/xhr`, { method: 'POST' });
  return { sent: sent.status, polled: polled.status, body: await polled.text() };
}

test('a foreign page cannot ride another user\'s SockJS session', async () => {
  const bob = await newUserPage(browser, herald.url);
  try {
    const login = await bob.page.request.post(`${herald.url}/api/dev/login`, { data: { sub: 'bob', roles: [] } });
    assert.equal(login.status(), 200);
    const cookie = (await bob.context.cookies()).find((c) => c.name === 'access_token');
    assert.ok(cookie && cookie.httpOnly, 'bob is signed in with an HttpOnly cookie');

    // Bob visits the foreign page; it opens the SockJS URLs in his browser.
    const navigations = [];
    bob.context.on('response', (r) => {
      if (r.url().includes(`/ws-sockjs/000/${SESSION}/`)) navigations.push({ url: r.url(), status: r.status() });
    });
    // The script tag's refusal (JSON) is blocked by the browser itself (ORB): a failure.
    bob.context.on('requestfailed', (r) => {
      if (r.url().includes(`/ws-sockjs/000/${SESSION}/`)) navigations.push({ url: r.url(), failed: r.failure()?.errorText });
    });
    const page = await bob.context.newPage();
    await page.goto(foreignUrl);
    const deadline = Date.now() + 10_000;
    while (navigations.length < 4 && Date.now() < deadline) await sleep(100);
    await shot(page, 'sockjs-hijack-foreign-page');
    assert.ok(navigations.length >= 4, `the foreign page's requests reached Herald: ${JSON.stringify(navigations)}`);
    for (const n of navigations) assert.ok(n.status === 403 || n.failed, `refused: ${JSON.stringify(n)}`);
    assert.equal(await page.evaluate(() => window.got), undefined, 'the script tag got no frame');

    // The attacker, without the cookie, tries the id.
    const attack = await attackerSends();
    assert.notEqual(attack.sent, 204, `xhr_send was refused (${attack.sent})`);
    assert.ok(!/CONNECTED|user-name:bob/.test(attack.body), `no session as bob: ${attack.body}`);

    // Bob's own SockJS connection works as ever.
    await bob.page.goto('/chat?transport=sockjs');
    await waitConnected(bob.page, 'sockjs');
    assert.match(await bob.page.textContent('[data-connection-status]'), /bob/);
  } finally {
    await bob.context.close();
  }
});

test('a session opened by its user cannot be used by anyone else', async () => {
  const minted = await postJson(`${herald.url}/api/dev/login`, { sub: 'carol', roles: [] });
  assert.equal(minted.status, 200);
  const carol = await newUserPage(browser, herald.url);
  try {
    await carol.context.addCookies([{ name: 'access_token', value: minted.body.token, url: herald.url, httpOnly: true, sameSite: 'Lax' }]);
    await carol.page.goto('/');
    // Carol's page opens a session by the id it chose, over xhr-polling.
    const id = await carol.page.evaluate(async () => {
      const id = `carol${Math.random().toString(36).slice(2, 8)}`;
      const r = await fetch(`/ws-sockjs/000/${id}/xhr`, { method: 'POST' });
      if ((await r.text()) !== 'o\n') throw new Error('not opened');
      return id;
    });
    const sent = await fetch(`${herald.url}/ws-sockjs/000/${id}/xhr_send`, { method: 'POST', body: '["x"]' });
    assert.equal(sent.status, 403);
    assert.equal((await sent.json()).code, 'sockjs_session_owner');
    const own = await carol.page.evaluate(async (id) => (await fetch(`/ws-sockjs/000/${id}/xhr_send`, { method: 'POST', body: '["x"]' })).status, id);
    assert.equal(own, 204);
  } finally {
    await carol.context.close();
  }
});
