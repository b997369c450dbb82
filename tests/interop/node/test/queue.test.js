// /queue semantics: one consumer per message, round robin, acks, NACK redelivery.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHerald, connect, disconnect, subscribeConfirmed, expectReceipt, unique, firstOf,
} from '../lib/herald.js';

let server;
const clients = [];
async function client(opts) {
  const c = await connect(server, opts);
  clients.push(c);
  return c;
}
before(async () => {
  server = await startHerald();
});
after(async () => {
  for (const c of clients) await disconnect(c);
  await server?.stop();
});

/** Publish with a receipt so that we know the server has the messages. */
async function publishAll(c, destination, bodies, headers = {}) {
  for (const body of bodies.slice(0, -1)) c.publish({ destination, body, headers });
  const r = expectReceipt(c);
  c.publish({ destination, body: bodies.at(-1), headers: { ...headers, receipt: r.id } });
  await r.done;
}

test('queue messages are spread round robin over two subscribers, each delivered once', async () => {
  const [p, c1, c2] = [await client(), await client(), await client()];
  const dest = `/queue/${unique('work')}`;
  const s1 = await subscribeConfirmed(c1, dest);
  const s2 = await subscribeConfirmed(c2, dest);
  const bodies = Array.from({ length: 10 }, (_, i) => `job-${i}`);
  await publishAll(p, dest, bodies);
  const got1 = [];
  const got2 = [];
  for (let i = 0; i < 5; i++) got1.push((await s1.inbox.next(5_000, `c1 job ${i}`)).body);
  for (let i = 0; i < 5; i++) got2.push((await s2.inbox.next(5_000, `c2 job ${i}`)).body);
  const extra = [...(await s1.inbox.drain(300)), ...(await s2.inbox.drain(0))];
  assert.deepEqual(extra.map((m) => m.body), [], 'no message may be delivered twice');
  assert.deepEqual([...got1, ...got2].sort(), [...bodies].sort(), 'every message delivered exactly once');
  // Strict alternation: each consumer got every other message, in publish order.
  const evens = bodies.filter((_, i) => i % 2 === 0);
  const odds = bodies.filter((_, i) => i % 2 === 1);
  assert.ok(
    (JSON.stringify(got1) === JSON.stringify(evens) && JSON.stringify(got2) === JSON.stringify(odds)) ||
      (JSON.stringify(got1) === JSON.stringify(odds) && JSON.stringify(got2) === JSON.stringify(evens)),
    `expected strict round robin, got c1=${got1} c2=${got2}`,
  );
  s1.sub.unsubscribe();
  s2.sub.unsubscribe();
});

test('client-ack subscription: MESSAGE carries an ack id, NACK redelivers to the other subscriber', async () => {
  const [p, c1, c2] = [await client(), await client(), await client()];
  const dest = `/queue/${unique('nack')}`;
  const s1 = await subscribeConfirmed(c1, dest, { ack: 'client-individual' });
  const s2 = await subscribeConfirmed(c2, dest, { ack: 'client-individual' });
  await publishAll(p, dest, ['payload'], { 'x-attempt': 'first' });

  // Whoever gets it NACKs it. (Both clients number their subscriptions the
  // same way, so the inbox, not the subscription header, tells who got it.)
  const [idx, first] = await firstOf([s1.inbox, s2.inbox], 5_000, 'the message on either consumer');
  const other = idx === 0 ? s2 : s1;
  assert.equal(first.body, 'payload');
  assert.ok(first.headers.ack, 'STOMP 1.2 MESSAGE on a non-auto subscription must carry an ack header');
  assert.equal(first.headers['x-attempt'], 'first');
  const r = expectReceipt(idx === 0 ? c1 : c2);
  first.nack({ receipt: r.id });
  await r.done;

  const again = await other.inbox.next(5_000, 'redelivery after NACK');
  assert.equal(again.body, 'payload');
  assert.equal(again.headers['x-attempt'], 'first', 'custom headers survive redelivery');
  assert.equal(again.headers.subscription, other.sub.id);
  assert.ok(again.headers.ack);
  again.ack();
  // Acked now: nobody sees it again.
  const leftovers = [...(await s1.inbox.drain(500)), ...(await s2.inbox.drain(0))];
  assert.deepEqual(leftovers.map((m) => m.body), []);
  s1.sub.unsubscribe();
  s2.sub.unsubscribe();
});

test('client ack mode: unacked messages are redelivered after the consumer disconnects', async () => {
  const p = await client();
  const c1 = await client();
  const dest = `/queue/${unique('unacked')}`;
  const s1 = await subscribeConfirmed(c1, dest, { ack: 'client' });
  await publishAll(p, dest, ['u1', 'u2', 'u3']);
  const m1 = await s1.inbox.next(5_000, 'u1');
  assert.equal(m1.body, 'u1');
  assert.equal((await s1.inbox.next(5_000, 'u2')).body, 'u2');
  assert.equal((await s1.inbox.next(5_000, 'u3')).body, 'u3');
  // Ack only the first ('client' mode acks cumulatively up to the named message).
  const r = expectReceipt(c1);
  m1.ack({ receipt: r.id });
  await r.done;

  // A second consumer is waiting when the first one drops its connection.
  const c2 = await client();
  const s2 = await subscribeConfirmed(c2, dest, { ack: 'auto' });
  assert.deepEqual((await s2.inbox.drain(200)).map((m) => m.body), [], 'in-flight messages stay with c1');
  await c1.deactivate({ force: true }); // no DISCONNECT: u2, u3 are unacked

  const got = [(await s2.inbox.next(5_000, 'redelivered u2')).body, (await s2.inbox.next(5_000, 'redelivered u3')).body];
  assert.deepEqual(got.sort(), ['u2', 'u3']);
  assert.deepEqual((await s2.inbox.drain(400)).map((m) => m.body), [], 'acked u1 must not come back');
  s2.sub.unsubscribe();
});

test('client ack is cumulative, client-individual is not', async () => {
  const p = await client();
  const dest = `/queue/${unique('cumulative')}`;

  // 'client': an ACK of the 3rd message acks the 1st and 2nd as well.
  const c1 = await client();
  const s1 = await subscribeConfirmed(c1, dest, { ack: 'client' });
  await publishAll(p, dest, ['c1', 'c2', 'c3']);
  const ms = [await s1.inbox.next(), await s1.inbox.next(), await s1.inbox.next()];
  assert.deepEqual(ms.map((m) => m.body), ['c1', 'c2', 'c3']);
  let r = expectReceipt(c1);
  ms[2].ack({ receipt: r.id });
  await r.done;

  const c2 = await client();
  const s2 = await subscribeConfirmed(c2, dest, { ack: 'client-individual' });
  await c1.deactivate({ force: true });
  assert.deepEqual((await s2.inbox.drain(500)).map((m) => m.body), [],
    "nothing may be redelivered: the 'client' ACK of c3 covered c1 and c2");

  // 'client-individual': an ACK of the 3rd message acks only that one.
  await publishAll(p, dest, ['i1', 'i2', 'i3']);
  const is = [await s2.inbox.next(), await s2.inbox.next(), await s2.inbox.next()];
  assert.deepEqual(is.map((m) => m.body), ['i1', 'i2', 'i3']);
  r = expectReceipt(c2);
  is[2].ack({ receipt: r.id });
  await r.done;

  const c3 = await client();
  const s3 = await subscribeConfirmed(c3, dest);
  await c2.deactivate({ force: true });
  const back = [(await s3.inbox.next(5_000, 'i1 back')).body, (await s3.inbox.next(5_000, 'i2 back')).body];
  assert.deepEqual(back.sort(), ['i1', 'i2']);
  assert.deepEqual((await s3.inbox.drain(400)).map((m) => m.body), [], 'i3 was acked individually');
  s3.sub.unsubscribe();
});

test('queue messages sent before anyone subscribes wait for the first subscriber', async () => {
  const p = await client();
  const dest = `/queue/${unique('buffered')}`;
  await publishAll(p, dest, ['early-1', 'early-2']);
  const c = await client();
  const s = await subscribeConfirmed(c, dest);
  assert.equal((await s.inbox.next(5_000, 'early-1')).body, 'early-1');
  assert.equal((await s.inbox.next(5_000, 'early-2')).body, 'early-2');
  s.sub.unsubscribe();
});
