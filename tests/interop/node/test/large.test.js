// Large bodies: stompjs splits outgoing frames into several WebSocket messages.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  startHerald, connect, disconnect, subscribeConfirmed, expectReceipt, unique,
} from '../lib/herald.js';

const MAX_FRAME = 1024 * 1024;
let server;
let a;
let b;
before(async () => {
  server = await startHerald({
    HERALD_STOMP__MAX_FRAME: String(MAX_FRAME),
    HERALD_STOMP__OUTBOUND_QUEUE: String(4 * MAX_FRAME), // must be at least max_frame
  });
  // 16 KiB is stompjs' default chunk size; use a smaller, odd one so frames split often.
  a = await connect(server, { splitLargeFrames: true, maxWebSocketChunkSize: 7_000 });
  b = await connect(server);
});
after(async () => {
  await disconnect(a);
  await disconnect(b);
  await server?.stop();
});

function bigBody(chars) {
  // ASCII plus 2- and 3-byte UTF-8 characters; a running counter makes any reordering visible.
  let s = '';
  for (let i = 0; s.length < chars; i++) s += `${i.toString(36)}:é€ abc;`;
  return s.slice(0, chars);
}
const sha = (s) => createHash('sha256').update(s).digest('hex');

for (const kib of [17, 60, 300]) {
  test(`a ${kib} KiB body split into WebSocket chunks arrives intact`, async () => {
    const dest = `/topic/${unique(`big${kib}`)}`;
    const { sub, inbox } = await subscribeConfirmed(b, dest);
    const body = bigBody(kib * 1024);
    const bytes = Buffer.byteLength(body, 'utf8');
    assert.ok(bytes > 16 * 1024);
    const r = expectReceipt(a, 10_000);
    a.publish({ destination: dest, body, headers: { 'content-type': 'text/plain;charset=utf-8', 'x-sha': sha(body), receipt: r.id } });
    await r.done;
    const m = await inbox.next(10_000, `${kib} KiB message`);
    assert.equal(Number(m.headers['content-length']), bytes);
    assert.equal(m.headers['x-sha'], sha(body));
    assert.equal(m.body.length, body.length);
    assert.ok(m.body === body, 'body differs from what was sent');
    sub.unsubscribe();
  });
}

test('a burst of 300 messages of 2 KiB arrives complete and in order', async () => {
  const dest = `/topic/${unique('burst')}`;
  const { sub, inbox } = await subscribeConfirmed(b, dest);
  const pad = 'x'.repeat(2048);
  for (let i = 0; i < 300; i++) a.publish({ destination: dest, body: `${i}|${pad}` });
  for (let i = 0; i < 300; i++) {
    const m = await inbox.next(10_000, `burst message ${i}`);
    assert.equal(m.body, `${i}|${pad}`);
  }
  sub.unsubscribe();
});
