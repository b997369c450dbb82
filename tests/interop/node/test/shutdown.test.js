// Graceful shutdown (SIGTERM): connected clients get an ERROR frame and the server exits cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startHerald, connect, withTimeout } from '../lib/herald.js';

test('SIGTERM sends connected stompjs clients an ERROR and closes them, then herald exits 0', async (t) => {
  const server = await startHerald();
  if (server.external) return t.skip('external server');
  const clients = [await connect(server), await connect(server, { protocols: ['v11.stomp'], versions: ['1.1'] })];
  try {
    const exit = server.stop(); // SIGTERM, SIGKILL after 5 s
    for (const c of clients) {
      const err = await c.events.errors.next(5_000, 'ERROR on shutdown');
      assert.match(err.headers.message ?? '', /shut|stop|terminat|going away/i, `message: ${err.headers.message}`);
      await c.events.closes.next(5_000, 'close after shutdown ERROR');
    }
    await exit;
    assert.equal(server.exitStatus().signal, null, 'herald had to be killed: it did not exit after SIGTERM');
    assert.equal(server.exitStatus().code, 0);
  } finally {
    for (const c of clients) await c.deactivate({ force: true });
    await server.stop();
  }
});

test('binary WebSocket frames (forceBinaryWSFrames) work like text frames', async () => {
  const server = await startHerald();
  const a = await connect(server, { forceBinaryWSFrames: true });
  const b = await connect(server);
  try {
    const inbox = [];
    const r = new Promise((resolve) => b.watchForReceipt('sub-ok', resolve));
    b.subscribe('/topic/binary-frames', (m) => inbox.push(m), { receipt: 'sub-ok' });
    await withTimeout(r, 5_000, 'SUBSCRIBE receipt');
    a.publish({ destination: '/topic/binary-frames', body: 'sent as a binary frame', headers: { 'x-k': 'v' } });
    for (let i = 0; i < 50 && inbox.length === 0; i++) await new Promise((res) => setTimeout(res, 100));
    assert.equal(inbox.length, 1);
    assert.equal(inbox[0].body, 'sent as a binary frame');
    assert.equal(inbox[0].headers['x-k'], 'v');
  } finally {
    await a.deactivate({ force: true });
    await b.deactivate({ force: true });
    await server.stop();
  }
});
