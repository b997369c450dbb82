// Transactions (client.begin/commit/abort) and receipts (watchForReceipt).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHerald, connect, disconnect, subscribeConfirmed, expectReceipt, unique, sendRaw,
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

/** Send a frame-producing call with a fresh receipt and wait for the RECEIPT. */
async function withReceipt(client, fn) {
  const r = expectReceipt(client);
  fn(r.id);
  const frame = await r.done;
  assert.equal(frame.command, 'RECEIPT');
  assert.equal(frame.headers['receipt-id'], r.id);
  return frame;
}

test('SEND, SUBSCRIBE, UNSUBSCRIBE, BEGIN, COMMIT, ABORT, ACK and NACK each get their RECEIPT', async () => {
  const dest = `/queue/${unique('receipts')}`;
  let inboxMsgs = [];
  const sub = await (async () => {
    let s;
    await withReceipt(b, (id) => {
      s = b.subscribe(dest, (m) => inboxMsgs.push(m), { ack: 'client-individual', receipt: id });
    });
    return s;
  })();
  await withReceipt(a, (id) => a.publish({ destination: dest, body: 'r1', headers: { receipt: id } }));
  await withReceipt(a, (id) => a.publish({ destination: dest, body: 'r2', headers: { receipt: id } }));
  for (let i = 0; i < 50 && inboxMsgs.length < 2; i++) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(inboxMsgs.map((m) => m.body), ['r1', 'r2']);
  await withReceipt(b, (id) => inboxMsgs[0].ack({ receipt: id }));
  await withReceipt(b, (id) => inboxMsgs[1].nack({ receipt: id }));
  // stompjs' begin()/commit()/abort() take no extra headers, so BEGIN/COMMIT/ABORT
  // with a receipt header go over the client's own WebSocket as raw frames.
  const tx2 = unique('tx');
  await withReceipt(a, (id) => sendRaw(a, 'BEGIN', { transaction: tx2, receipt: id }));
  await withReceipt(a, (id) => sendRaw(a, 'COMMIT', { transaction: tx2, receipt: id }));
  const tx3 = unique('tx');
  await withReceipt(a, (id) => sendRaw(a, 'BEGIN', { transaction: tx3, receipt: id }));
  await withReceipt(a, (id) => sendRaw(a, 'ABORT', { transaction: tx3, receipt: id }));
  await withReceipt(b, (id) => sub.unsubscribe({ receipt: id }));
});

test('receipts come back in the order the frames were sent', async () => {
  const dest = `/topic/${unique('order')}`;
  const order = [];
  const ids = Array.from({ length: 20 }, (_, i) => `ord-${process.pid}-${i}`);
  const all = Promise.all(ids.map((id) => new Promise((resolve) => a.watchForReceipt(id, () => {
    order.push(id);
    resolve();
  }))));
  ids.forEach((id) => a.publish({ destination: dest, body: id, headers: { receipt: id } }));
  await Promise.race([all, new Promise((_, rej) => setTimeout(() => rej(new Error(`got receipts ${order}`)), 5_000))]);
  assert.deepEqual(order, ids);
});

test('messages sent in a transaction are delivered only on COMMIT, in order', async () => {
  const dest = `/topic/${unique('txcommit')}`;
  const { sub, inbox } = await subscribeConfirmed(b, dest);
  const tx = a.begin();
  assert.ok(tx.id);
  a.publish({ destination: dest, body: 't1', headers: { transaction: tx.id } });
  a.publish({ destination: dest, body: 't2', headers: { transaction: tx.id, 'x-kind': 'tx' } });
  // A receipted, non-transactional frame after the SENDs proves the server has read them.
  await withReceipt(a, (id) => a.publish({ destination: `/topic/${unique('elsewhere')}`, body: 'x', headers: { receipt: id } }));
  assert.deepEqual((await inbox.drain(400)).map((m) => m.body), [], 'nothing may be delivered before COMMIT');
  tx.commit();
  assert.equal((await inbox.next(5_000, 't1 after COMMIT')).body, 't1');
  const t2 = await inbox.next(5_000, 't2 after COMMIT');
  assert.equal(t2.body, 't2');
  assert.equal(t2.headers['x-kind'], 'tx');
  assert.equal(t2.headers.transaction, undefined, 'the transaction header is not forwarded to subscribers');
  sub.unsubscribe();
});

test('messages sent in an aborted transaction are never delivered', async () => {
  const dest = `/topic/${unique('txabort')}`;
  const { sub, inbox } = await subscribeConfirmed(b, dest);
  const tx = a.begin();
  a.publish({ destination: dest, body: 'never-1', headers: { transaction: tx.id } });
  a.publish({ destination: dest, body: 'never-2', headers: { transaction: tx.id } });
  tx.abort();
  await withReceipt(a, (id) => a.publish({ destination: dest, body: 'after-abort', headers: { receipt: id } }));
  assert.equal((await inbox.next(5_000, 'after-abort')).body, 'after-abort');
  assert.deepEqual((await inbox.drain(400)).map((m) => m.body), []);
  sub.unsubscribe();
});

test('two transactions on one connection are independent', async () => {
  const dest = `/topic/${unique('txtwo')}`;
  const { sub, inbox } = await subscribeConfirmed(b, dest);
  const t1 = a.begin();
  const t2 = a.begin();
  assert.notEqual(t1.id, t2.id);
  a.publish({ destination: dest, body: 'from-t1', headers: { transaction: t1.id } });
  a.publish({ destination: dest, body: 'from-t2', headers: { transaction: t2.id } });
  t2.abort();
  t1.commit();
  assert.equal((await inbox.next(5_000, 'from-t1')).body, 'from-t1');
  assert.deepEqual((await inbox.drain(400)).map((m) => m.body), []);
  sub.unsubscribe();
});

test('an ACK inside an aborted transaction is rolled back; inside a committed one it sticks', async () => {
  const dest = `/queue/${unique('txack')}`;
  const c = await connect(server);
  const s = await subscribeConfirmed(c, dest, { ack: 'client-individual' });
  await withReceipt(a, (id) => {
    a.publish({ destination: dest, body: 'keep' });
    a.publish({ destination: dest, body: 'done', headers: { receipt: id } });
  });
  const keep = await s.inbox.next(5_000, 'keep');
  const done = await s.inbox.next(5_000, 'done');
  assert.deepEqual([keep.body, done.body], ['keep', 'done']);

  const aborted = c.begin();
  keep.ack({ transaction: aborted.id });
  aborted.abort();
  const committed = c.begin();
  done.ack({ transaction: committed.id });
  committed.commit();
  await withReceipt(c, (id) => c.publish({ destination: `/topic/${unique('sync')}`, body: '', headers: { receipt: id } }));

  const other = await connect(server);
  const so = await subscribeConfirmed(other, dest);
  await c.deactivate({ force: true }); // 'keep' is still unacked and must come back
  assert.equal((await so.inbox.next(5_000, "redelivery of 'keep'")).body, 'keep');
  assert.deepEqual((await so.inbox.drain(400)).map((m) => m.body), [], "'done' was acked in a committed tx");
  await disconnect(other);
});
