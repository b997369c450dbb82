// Bad input gets an ERROR frame naming the problem, onStompError fires, and the connection closes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHerald, connect, disconnect, sendRaw, subscribeConfirmed, unique,
} from '../lib/herald.js';

const MAX_FRAME = 8192;
let server;
before(async () => {
  server = await startHerald({ HERALD_STOMP__MAX_FRAME: String(MAX_FRAME) });
});
after(async () => {
  await server?.stop();
});

/** Connect, run `provoke`, and return the ERROR frame after checking the socket closes. */
async function expectError(provoke, clientOpts = {}) {
  const client = await connect(server, clientOpts);
  let fired = 0;
  const prev = client.onStompError;
  client.onStompError = (f) => {
    fired += 1;
    prev(f);
  };
  try {
    provoke(client);
    const err = await client.events.errors.next(5_000, 'ERROR frame');
    assert.equal(fired, 1, 'onStompError must fire once');
    assert.equal(err.command, 'ERROR');
    assert.ok(err.headers.message, `ERROR must carry a message header, got ${JSON.stringify(err.headers)}`);
    const closed = await client.events.closes.next(5_000, 'the server to close the connection after ERROR');
    assert.ok(closed);
    assert.equal(client.connected, false);
    return err;
  } finally {
    await client.deactivate({ force: true });
  }
}

test('SUBSCRIBE with an id that is already in use on the connection', async () => {
  const err = await expectError((c) => {
    c.subscribe('/topic/one', () => {}, { id: 'dup' });
    c.subscribe('/topic/two', () => {}, { id: 'dup' });
  });
  assert.match(err.headers.message, /dup|already|in use|duplicate|exists/i);
});

test('SUBSCRIBE without a destination header', async () => {
  const err = await expectError((c) => sendRaw(c, 'SUBSCRIBE', { id: 'no-dest' }));
  assert.match(err.headers.message, /destination/i);
});

test('SEND without a destination header', async () => {
  const err = await expectError((c) => sendRaw(c, 'SEND', {}, 'hello'));
  assert.match(err.headers.message, /destination/i);
});

test('an unknown command', async () => {
  const err = await expectError((c) => sendRaw(c, 'FROBNICATE', { foo: 'bar' }));
  assert.match(err.headers.message, /FROBNICATE|command/i);
});

test('a frame larger than HERALD_STOMP__MAX_FRAME', async () => {
  const err = await expectError((c) =>
    c.publish({ destination: '/topic/too-big', body: 'x'.repeat(MAX_FRAME * 2) }),
  { splitLargeFrames: true, maxWebSocketChunkSize: 4096 });
  assert.match(err.headers.message, /large|size|max|limit|exceed|long/i);
});

test('COMMIT of a transaction that was never begun', async () => {
  const err = await expectError((c) => sendRaw(c, 'COMMIT', { transaction: 'nope' }));
  assert.match(err.headers.message, /transaction|nope/i);
});

test('an ERROR carries the receipt-id of the frame that caused it', async () => {
  const err = await expectError((c) => sendRaw(c, 'SUBSCRIBE', { id: 'x', receipt: 'bad-1' }));
  assert.equal(err.headers['receipt-id'], 'bad-1', 'STOMP 1.2: ERROR for a frame with receipt should include receipt-id');
});

test("an error on one connection does not affect another client's subscriptions", async () => {
  const good = await connect(server);
  try {
    const dest = `/topic/${unique('survivor')}`;
    const { inbox } = await subscribeConfirmed(good, dest);
    await expectError((c) => sendRaw(c, 'SEND', {}, 'no destination'));
    good.publish({ destination: dest, body: 'fine' });
    assert.equal((await inbox.next(3_000)).body, 'fine');
  } finally {
    await disconnect(good);
  }
});
