// The README's recipes for stock @stomp/stompjs, as written there: the five lines that
// resume a session across a dropped connection, and the token refresh SEND.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { expectReceipt, Inbox, sleep, startHerald, unique, withTimeout } from '../lib/herald.js';
import { AUTH_CONFIG, mint } from '../lib/jwt.js';
import { startProxy } from '../lib/proxy.js';

let server;
let proxy;
before(async () => {
  server = await startHerald({}, { config: AUTH_CONFIG });
  proxy = await startProxy(server.httpPort);
});
after(async () => {
  await proxy?.close();
  await server?.stop();
});

const url = () => `ws://127.0.0.1:${proxy.port}/ws`;

async function until(what, predicate, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Resolves once the server has no session of `user` (it noticed the connection die). */
async function sessionGone(user) {
  const admin = mint('ops', 60, { roles: ['ADMIN'] });
  const deadline = Date.now() + 10_000;
  for (;;) {
    const r = await fetch(`${server.httpUrl}/api/admin/sessions`, { headers: { authorization: `Bearer ${admin}` } });
    if (!r.ok) assert.fail(`GET /api/admin/sessions: ${r.status} ${await r.text()}`);
    if (!(await r.json()).some((s) => s.user === user)) return;
    if (Date.now() > deadline) assert.fail(`the server still has a session of ${user}`);
    await sleep(20);
  }
}

async function publish(destination, body) {
  const service = mint('publisher', 60, { roles: ['SERVICE'] });
  const r = await fetch(`${server.httpUrl}/api/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${service}` },
    body: JSON.stringify({ destination, body }),
  });
  if (!r.ok) assert.fail(`publish: ${r.status} ${await r.text()}`);
}

test('README: five lines of stompjs resume the session across a dropped connection', async () => {
  const destination = `/topic/${unique('recipe')}`;
  const user = unique('rita');
  const got = [];
  const connects = new Inbox();
  const client = new Client({
    webSocketFactory: () => new WebSocket(url(), ['v12.stomp']),
    connectHeaders: { Authorization: `Bearer ${mint(user, 300)}` },
    reconnectDelay: 200,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
  });
  const onMessage = (m) => got.push(m.body);
  // The recipe, as the README has it:
  let resumeToken = null;
  client.beforeConnect = () => { if (resumeToken) client.connectHeaders.resume = resumeToken; };
  client.onConnect = (frame) => {
    resumeToken = frame.headers['resume-token'];
    client.subscribe(destination, onMessage, { id: 'chat' });
    connects.push(frame);
  };
  const unhandled = [];
  client.onUnhandledMessage = (m) => unhandled.push(m);
  client.activate();
  try {
    const first = await connects.next(8_000, 'CONNECTED');
    assert.ok(first.headers['resume-token'], 'CONNECTED carries a resume token');
    const r = expectReceipt(client);
    client.publish({ destination: `/topic/${unique('settle')}`, headers: { receipt: r.id } });
    await r.done;
    await publish(destination, 'one');
    // 'one' arrives before the cut, and the others are published once the server knows
    // the connection is gone: stock stompjs cannot tell the server what it got, and
    // what the proxy acknowledged as it died counts as delivered (README: behind a
    // proxy the peer that acknowledges is the proxy; herald-client renews from its own
    // last offset for that).
    await until('the first message', () => got.length === 1);
    proxy.cut();
    await sessionGone(user);
    await publish(destination, 'two');
    await publish(destination, 'three');
    await sleep(300);
    proxy.restore();
    const again = await connects.next(15_000, 'the reconnection');
    assert.equal(again.headers.resumed, 'true');
    await publish(destination, 'four');
    await until('four messages', () => got.length >= 4);
    await sleep(300);
    assert.deepEqual(got, ['one', 'two', 'three', 'four']);
    assert.equal(unhandled.length, 0);
  } finally {
    await client.deactivate();
  }
});


test('README: a SEND to /herald/token with a receipt refreshes the token of a live session', async () => {
  const user = unique('sam');
  const client = new Client({
    webSocketFactory: () => new WebSocket(url(), ['v12.stomp']),
    connectHeaders: { Authorization: `Bearer ${mint(user, 2)}` },
    reconnectDelay: 0,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
  });
  const connects = new Inbox();
  const errors = [];
  const closes = [];
  client.onConnect = (frame) => connects.push(frame);
  client.onStompError = (frame) => errors.push(frame.headers.message);
  client.onWebSocketClose = () => closes.push(true);
  client.activate();
  try {
    await connects.next(8_000, 'CONNECTED');
    const fetchToken = async () => mint(user, 60);
    let refreshed;
    const receiptCame = new Promise((resolve) => {
      refreshed = resolve;
    });
    // The recipe, as the README has it (its console.log made a resolve):
    const receipt = `token-${Date.now()}`;
    client.watchForReceipt(receipt, () => refreshed('token refreshed'));
    client.publish({ destination: '/herald/token', headers: { token: await fetchToken(), receipt } });
    assert.equal(await withTimeout(receiptCame, 5_000, 'the RECEIPT'), 'token refreshed');
    await sleep(3_500); // past the first token's exp (no leeway configured)
    assert.equal(client.connected, true);
    assert.deepEqual(errors, []);
    assert.deepEqual(closes, []);
  } finally {
    await client.deactivate();
  }
});
