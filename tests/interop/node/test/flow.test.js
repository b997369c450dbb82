// Where the reference brokers agree, with stompjs: a burst reaches a reader while a
// stalled subscriber is closed (producer flow control), and a poisoned queue message
// is marked redelivered, then dead-lettered.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  startHerald, connect, disconnect, subscribeConfirmed, expectReceipt, unique, withTimeout,
} from '../lib/herald.js';

const SEND_TIMEOUT_S = 2;
let server;
const clients = [];
async function client(opts) {
  const c = await connect(server, opts);
  clients.push(c);
  return c;
}
before(async () => {
  server = await startHerald({
    HERALD_STOMP__SEND_TIMEOUT: `${SEND_TIMEOUT_S}s`,
    HERALD_BROKER__MAX_REDELIVERIES: '2',
  });
});
after(async () => {
  for (const c of clients) await disconnect(c);
  await server?.stop();
});

/** A raw STOMP subscriber that stops reading once subscribed; resolves when closed. */
async function stalledSubscriber(destination) {
  const sock = net.connect(server.stompPort, server.stompHost);
  let seen = '';
  const closed = new Promise((resolve) => sock.once('close', resolve));
  sock.on('error', () => {});
  await withTimeout(
    new Promise((resolve) => {
      sock.on('data', (d) => {
        seen += d.toString('latin1');
        if (seen.includes('receipt-id:sub')) {
          sock.pause(); // from here on nothing is read
          resolve();
        }
      });
      sock.write('CONNECT\naccept-version:1.2\nhost:localhost\n\n\0');
      sock.write(`SUBSCRIBE\nid:stalled\ndestination:${destination}\nreceipt:sub\n\n\0`);
    }),
    5_000,
    'the stalled subscriber to subscribe',
  );
  return { closed, destroy: () => sock.destroy() };
}

test('a burst of 3,000 x 2 KB reaches the reader; the stalled subscriber is closed', async () => {
  const dest = `/topic/${unique('burst')}`;
  const stalled = await stalledSubscriber(dest);
  const reader = await client();
  const { inbox } = await subscribeConfirmed(reader, dest);
  const publisher = await client();
  const body = 'x'.repeat(2048);
  const started = Date.now();
  for (let n = 0; n < 3000; n++) publisher.publish({ destination: dest, body, headers: { n: String(n) } });
  const r = expectReceipt(publisher, (SEND_TIMEOUT_S + 20) * 1000);
  publisher.publish({ destination: dest, body, headers: { n: '3000', receipt: r.id } });
  await r.done;
  const took = Date.now() - started;
  for (let n = 0; n <= 3000; n++) {
    const m = await inbox.next(20_000, `message ${n}`);
    assert.equal(m.headers.n, String(n), 'the reader lost or reordered a message');
  }
  assert.equal(reader.events.errors.length, 0, 'the reader got an ERROR');
  // The server closed the stalled subscriber (its own server: nothing else here is a
  // slow consumer). The client cannot tell yet: what its buffers hold comes first.
  const metrics = await (await fetch(`${server.httpUrl}/metrics`)).text();
  const closes = Number(/^herald_slow_consumer_closes_total (\d+)/m.exec(metrics)?.[1] ?? 0);
  assert.equal(closes, 1, 'one session closed as a slow consumer');
  stalled.destroy();
  console.error(`the last RECEIPT came ${took} ms after the burst began`);
});

test('a NACKed queue message comes back redelivered, then goes to its dead-letter queue', async () => {
  const dest = `/queue/${unique('poison')}`;
  const dlq = dest.replace('/queue/', '/queue/dlq.');
  const consumer = await client();
  const watcher = await client();
  const dead = await subscribeConfirmed(watcher, dlq);
  const { inbox } = await subscribeConfirmed(consumer, dest, { ack: 'client-individual' });
  const publisher = await client();
  const r = expectReceipt(publisher);
  publisher.publish({ destination: dest, body: 'poison', headers: { receipt: r.id, 'x-order': '7' } });
  await r.done;
  // max_redeliveries = 2: delivered three times, dead-lettered at the third NACK.
  for (let i = 0; i < 3; i++) {
    const m = await inbox.next(5_000, `delivery ${i}`);
    assert.equal(m.body, 'poison');
    assert.equal(m.headers.redelivered, i === 0 ? undefined : 'true', `delivery ${i}`);
    m.nack();
  }
  const letter = await dead.inbox.next(5_000, 'the dead letter');
  assert.equal(letter.body, 'poison');
  assert.equal(letter.headers['original-destination'], dest);
  assert.equal(letter.headers['dead-letter-reason'], 'max-redeliveries');
  assert.equal(letter.headers['x-order'], '7');
  assert.deepEqual(await inbox.drain(300), [], 'nothing comes back after it is dead-lettered');
});

test('NACK with requeue:false dead-letters at once', async () => {
  const dest = `/queue/${unique('reject')}`;
  const watcher = await client();
  const dead = await subscribeConfirmed(watcher, dest.replace('/queue/', '/queue/dlq.'));
  const consumer = await client();
  const { inbox } = await subscribeConfirmed(consumer, dest, { ack: 'client-individual' });
  consumer.publish({ destination: dest, body: 'rejected' });
  const m = await inbox.next(5_000, 'the message');
  m.nack({ requeue: 'false' });
  const letter = await dead.inbox.next(5_000, 'the dead letter');
  assert.equal(letter.headers['dead-letter-reason'], 'nack');
  assert.deepEqual(await inbox.drain(300), []);
});
