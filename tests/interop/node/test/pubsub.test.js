// Topic publish/subscribe and wildcard subscriptions between real stompjs clients.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHerald, connect, disconnect, subscribeConfirmed, expectReceipt, unique,
} from '../lib/herald.js';

let server;
let a;
let b;
before(async () => {
  server = await startHerald();
  a = await connect(server);
  b = await connect(server);
});
after(async () => {
  await disconnect(a);
  await disconnect(b);
  await server?.stop();
});

test('a topic message from one client reaches another with its headers', async () => {
  const dest = `/topic/${unique('news')}`;
  const { sub, inbox } = await subscribeConfirmed(b, dest);
  const body = JSON.stringify({ hello: 'wörld', n: 42 });
  a.publish({
    destination: dest,
    body,
    headers: { 'content-type': 'application/json;charset=utf-8', 'x-trace-id': 'abc-123', priority: '7' },
  });
  const m = await inbox.next(5_000, `MESSAGE on ${dest}`);
  assert.equal(m.command, 'MESSAGE');
  assert.equal(m.body, body);
  assert.equal(m.headers.destination, dest);
  assert.equal(m.headers.subscription, sub.id);
  assert.ok(m.headers['message-id'], 'MESSAGE must carry a message-id');
  assert.equal(m.headers['content-type'], 'application/json;charset=utf-8');
  assert.equal(m.headers['x-trace-id'], 'abc-123', 'custom header must be passed through');
  assert.equal(m.headers.priority, '7');
  assert.equal(Number(m.headers['content-length']), Buffer.byteLength(body, 'utf8'),
    'content-length counts UTF-8 bytes');
  assert.equal(m.headers.ack, undefined, 'auto-ack subscriptions carry no ack header');
  sub.unsubscribe();
});

test('every topic subscriber gets every message, in order', async () => {
  const dest = `/topic/${unique('fanout')}`;
  const sa = await subscribeConfirmed(a, dest);
  const sb = await subscribeConfirmed(b, dest);
  const sb2 = await subscribeConfirmed(b, dest); // a second subscription on the same connection
  for (let i = 0; i < 5; i++) a.publish({ destination: dest, body: `m${i}` });
  for (const [name, s] of [['a', sa], ['b', sb], ['b#2', sb2]]) {
    const got = [];
    for (let i = 0; i < 5; i++) got.push((await s.inbox.next(5_000, `${name} message ${i}`)).body);
    assert.deepEqual(got, ['m0', 'm1', 'm2', 'm3', 'm4'], `subscriber ${name}`);
    assert.equal(s.inbox.length, 0);
  }
  // The two subscriptions on b are told apart by their subscription header.
  const ids = new Set();
  a.publish({ destination: dest, body: 'which' });
  ids.add((await sb.inbox.next()).headers.subscription);
  ids.add((await sb2.inbox.next()).headers.subscription);
  assert.deepEqual([...ids].sort(), [sb.sub.id, sb2.sub.id].sort());
  await sa.inbox.next();
  [sa, sb, sb2].forEach((s) => s.sub.unsubscribe());
});

test('after UNSUBSCRIBE no more messages arrive', async () => {
  const dest = `/topic/${unique('unsub')}`;
  const { sub, inbox } = await subscribeConfirmed(b, dest);
  a.publish({ destination: dest, body: 'one' });
  assert.equal((await inbox.next()).body, 'one');
  const r = expectReceipt(b);
  sub.unsubscribe({ receipt: r.id });
  await r.done;
  a.publish({ destination: dest, body: 'two' });
  const late = await inbox.drain(500);
  assert.deepEqual(late.map((m) => m.body), []);
});

test('a publisher does not need to subscribe, and messages to a topic with no subscriber vanish', async () => {
  const dest = `/topic/${unique('nobody')}`;
  // Receipted, so the server has handled it before the subscription exists (a and b
  // are separate connections: without it the SUBSCRIBE could overtake the SEND).
  const r = expectReceipt(a);
  a.publish({ destination: dest, body: 'lost', headers: { receipt: r.id } });
  await r.done;
  const { inbox } = await subscribeConfirmed(b, dest);
  a.publish({ destination: dest, body: 'seen' });
  assert.equal((await inbox.next()).body, 'seen');
  assert.deepEqual((await inbox.drain(300)).map((m) => m.body), []);
});

test("wildcard '*' matches exactly one segment, with '.' or '/' as separators", async () => {
  const base = unique('wild');
  const { sub, inbox } = await subscribeConfirmed(b, `/topic/${base}.*`);
  a.publish({ destination: `/topic/${base}.eu`, body: 'dot-one' });
  a.publish({ destination: `/topic/${base}/us`, body: 'slash-one' });
  a.publish({ destination: `/topic/${base}.eu.paris`, body: 'two-deep' });
  a.publish({ destination: `/topic/${base}`, body: 'zero-deep' });
  a.publish({ destination: `/topic/${base}x.eu`, body: 'other-prefix' });
  const r = expectReceipt(a);
  a.publish({ destination: `/topic/${base}.end`, body: 'end', headers: { receipt: r.id } });
  await r.done;
  const got = [];
  for (;;) {
    const m = await inbox.next(5_000, 'wildcard messages');
    got.push(m.body);
    if (m.body === 'end') break;
  }
  got.push(...(await inbox.drain(200)).map((m) => m.body));
  assert.deepEqual(got.sort(), ['dot-one', 'end', 'slash-one']);
  sub.unsubscribe();
});

test("wildcard '**' matches one or more segments and reports the concrete destination", async () => {
  const base = unique('deep');
  const { sub, inbox } = await subscribeConfirmed(b, `/topic/${base}/**`);
  const dests = [`/topic/${base}/a`, `/topic/${base}/a/b`, `/topic/${base}.a.b.c`];
  for (const d of dests) a.publish({ destination: d, body: d });
  a.publish({ destination: `/topic/${base}-sibling/a`, body: 'sibling' });
  a.publish({ destination: `/topic/${base}/end`, body: 'end' });
  const got = [];
  for (;;) {
    const m = await inbox.next(5_000, '** messages');
    if (m.body !== 'end') assert.equal(m.headers.destination, m.body, 'MESSAGE destination is the published one');
    got.push(m.body);
    if (m.body === 'end') break;
  }
  got.push(...(await inbox.drain(200)).map((m) => m.body));
  assert.deepEqual(got.sort(), [...dests, 'end'].sort());
  sub.unsubscribe();
});

test('binary bodies survive the round trip byte for byte', async () => {
  const dest = `/topic/${unique('bin')}`;
  const { sub, inbox } = await subscribeConfirmed(b, dest);
  const bytes = new Uint8Array(300);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7) % 256; // includes NUL bytes
  a.publish({ destination: dest, binaryBody: bytes, headers: { 'content-type': 'application/octet-stream' } });
  const m = await inbox.next();
  assert.equal(Number(m.headers['content-length']), bytes.length);
  assert.deepEqual(Buffer.from(m.binaryBody), Buffer.from(bytes));
  sub.unsubscribe();
});
