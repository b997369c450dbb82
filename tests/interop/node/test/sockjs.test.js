// STOMP over SockJS (sockjs-client 1.6 in Node) on each transport Node can run:
// websocket, xhr-streaming, xhr-polling and eventsource. A SockJS client and a plain
// WebSocket client share topics, and the plain JSON chat works over SockJS too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import SockJS from 'sockjs-client';
import {
  startHerald, connect, disconnect, subscribeConfirmed, unique, Inbox, withTimeout,
} from '../lib/herald.js';

let server;
let ws;
before(async () => {
  server = await startHerald();
  ws = await connect(server);
});
after(async () => {
  await disconnect(ws);
  await server?.stop();
});

function sockjsUrl(path = '/ws-sockjs') {
  return `${server.httpUrl}${path}`;
}

/** A stompjs client over SockJS restricted to one transport. */
async function connectSockJs(transport) {
  let sock;
  const client = await connect(server, {
    webSocketFactory: () => {
      sock = new SockJS(sockjsUrl(), null, { transports: [transport] });
      return sock;
    },
  });
  return { client, sock };
}

for (const transport of ['websocket', 'xhr-streaming', 'xhr-polling', 'eventsource']) {
  test(`stompjs over SockJS ${transport} and a WebSocket client see each other's messages`, async () => {
    const { client, sock } = await connectSockJs(transport);
    try {
      assert.equal(sock.transport, transport, 'sockjs-client used the transport asked for');
      const dest = `/topic/${unique(`sockjs-${transport}`)}`;
      const sockSub = await subscribeConfirmed(client, dest);
      const wsSub = await subscribeConfirmed(ws, dest);

      ws.publish({ destination: dest, body: 'from websocket ☃' });
      const m1 = await sockSub.inbox.next(10_000, `SockJS client's MESSAGE on ${dest}`);
      assert.equal(m1.body, 'from websocket ☃');
      const own = await wsSub.inbox.next(10_000, `the WebSocket client's own MESSAGE on ${dest}`);
      assert.equal(own.body, 'from websocket ☃');

      const big = 'x'.repeat(20_000) + ' "quoted" \n\u2028 end';
      client.publish({ destination: dest, body: big, headers: { 'x-n': '1' } });
      for (const inbox of [wsSub.inbox, sockSub.inbox]) {
        const m = await inbox.next(10_000, `MESSAGE from the SockJS client on ${dest}`);
        assert.ok(m.body === big, `body of ${m.body.length} chars differs from the ${big.length} sent`);
        assert.equal(m.headers['x-n'], '1');
      }
    } finally {
      await disconnect(client);
    }
  });
}

test('a receipt and a broker error reach a SockJS client', async () => {
  const { client } = await connectSockJs('xhr-streaming');
  try {
    const receipt = new Promise((resolve) => client.watchForReceipt('r-1', resolve));
    client.publish({ destination: `/topic/${unique('r')}`, body: 'x', headers: { receipt: 'r-1' } });
    const r = await withTimeout(receipt, 10_000, 'RECEIPT over SockJS');
    assert.equal(r.headers['receipt-id'], 'r-1');
    client.publish({ destination: '/nowhere/at-all', body: 'x' });
    const err = await client.events.errors.next(10_000, 'ERROR over SockJS');
    assert.match(err.headers.message, /destination/i);
  } finally {
    await disconnect(client);
  }
});

test('the plain JSON chat answers over SockJS at /ws/chat-sockjs', async () => {
  const rooms = await (await fetch(`${server.httpUrl}/api/rooms`)).json();
  const room = rooms[0].id;
  const sock = new SockJS(sockjsUrl('/ws/chat-sockjs'), null, { transports: ['xhr-streaming'] });
  const inbox = new Inbox();
  sock.onmessage = (e) => inbox.push(JSON.parse(e.data));
  await withTimeout(new Promise((resolve) => { sock.onopen = resolve; }), 10_000, 'SockJS open');
  try {
    sock.send(JSON.stringify({ chatRoomId: room, type: 'JOIN', writer: 'sock' }));
    const joined = await inbox.next(10_000, 'JOIN event');
    assert.equal(joined.type, 'JOIN');
    // Named like an anonymous CONNECT without a login; the payload's writer is ignored.
    assert.match(joined.writer, /^anonymous-/);
    assert.ok(joined.members.includes(joined.writer));
    sock.send('not json');
    const bad = await inbox.next(10_000, 'ERROR reply');
    assert.equal(bad.type, 'ERROR');
    sock.send(JSON.stringify({ chatRoomId: room, type: 'CHAT', writer: 'sock', message: 'hi' }));
    const chat = await inbox.next(10_000, 'CHAT event');
    assert.equal(chat.message, 'hi');
  } finally {
    sock.close();
  }
});
