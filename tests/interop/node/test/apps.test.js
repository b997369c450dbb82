// Application destinations with real @stomp/stompjs 7 clients over /ws (and the `ws` package for the
// plain JSON WebSocket /ws/chat): routing by prefix, user destinations, the REST
// publish API, and the seeds' chat, greeting and rooms apps.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import {
  startHerald,
  connect,
  disconnect,
  subscribeConfirmed,
  expectReceipt,
  unique,
  withTimeout,
  Inbox,
} from '../lib/herald.js';

const WAIT = 5_000;

let server;
before(async () => {
  server = await startHerald();
});
after(async () => {
  await server?.stop();
});

/** A stompjs client logged in as `login`. */
const connectAs = (srv, login) => connect(srv, { connectHeaders: { login, passcode: 'x', host: '/' } });

/** Publish with a receipt and wait for it (the app SEND's handler is done). */
async function publishConfirmed(client, destination, body, headers = {}) {
  const r = expectReceipt(client);
  client.publish({ destination, body: typeof body === 'string' ? body : JSON.stringify(body), headers: { ...headers, receipt: r.id } });
  await r.done;
}

/**
 * Proves an inbox got nothing else: publish a unique sentinel to a topic the client
 * subscribed with `sentinelInbox`, wait for it, then the inbox must be empty.
 */
async function expectNothingMore(inbox, client, sentinelInbox, sentinelDest, what) {
  const body = unique('sentinel');
  await publishConfirmed(client, sentinelDest, body);
  for (;;) {
    const m = await sentinelInbox.next(WAIT, `sentinel for ${what}`);
    if (m.body === body) break;
  }
  assert.deepEqual(inbox.items.map((m) => m.body), [], `${what}: unexpected messages`);
}

async function httpJson(method, path, body, contentType = 'application/json') {
  const init = { method, headers: {} };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['content-type'] = contentType;
  }
  const res = await withTimeout(fetch(`${server.httpUrl}${path}`, init), WAIT, `${method} ${path}`);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json };
}

function assertRecentTimestamp(v) {
  assert.equal(typeof v.timestamp, 'string', `no timestamp in ${JSON.stringify(v)}`);
  const t = Date.parse(v.timestamp);
  assert.ok(!Number.isNaN(t), `timestamp ${v.timestamp} does not parse`);
  assert.ok(Math.abs(Date.now() - t) < 60_000, `timestamp ${v.timestamp} is not the server's now`);
}

/** A plain JSON WebSocket client of /ws/chat. */
async function openPlainChat(login) {
  const ws = new WebSocket(`${server.httpUrl.replace('http', 'ws')}/ws/chat?login=${encodeURIComponent(login)}`);
  const inbox = new Inbox();
  const closes = new Inbox();
  ws.on('message', (data) => inbox.push(JSON.parse(data.toString())));
  ws.on('close', (code) => closes.push(code));
  await withTimeout(new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  }), WAIT, '/ws/chat open');
  return { ws, inbox, closes, send: (v) => ws.send(typeof v === 'string' ? v : JSON.stringify(v)) };
}

describe('routing by prefix', () => {
  test('a SEND to /app/** reaches the handler, never subscribers (not even /topic/**)', async () => {
    const sender = await connectAs(server, 'alice');
    const watcher = await connectAs(server, 'watcher');
    try {
      const all = await subscribeConfirmed(watcher, '/topic/**');
      await publishConfirmed(sender, '/app/hello', { name: 'route' }, { 'x-raw-marker': 'yes' });
      const m = await all.inbox.next(WAIT, 'the greeting');
      assert.equal(m.headers.destination, '/topic/greetings');
      assert.equal(m.headers['x-raw-marker'], undefined, 'the raw SEND leaked');
      assert.deepEqual(JSON.parse(m.body), { content: 'Hello, route!' });
      await expectNothingMore(all.inbox, sender, all.inbox, '/topic/sentinel-route', 'wildcard subscriber');
    } finally {
      await disconnect(sender);
      await disconnect(watcher);
    }
  });

  test('SUBSCRIBE to an application destination is an ERROR', async () => {
    const c = await connectAs(server, 'alice');
    try {
      c.subscribe('/app/chat.send', () => {});
      const e = await c.events.errors.next(WAIT, 'ERROR');
      assert.match(e.headers.message, /\/app\/chat\.send/);
    } finally {
      await disconnect(c);
    }
  });

  test('configurable prefixes: app_prefixes ["/publish/"], user_prefix "/member/"', async () => {
    const custom = await startHerald({
      HERALD_ROUTING__APP_PREFIXES: '["/publish/"]',
      HERALD_ROUTING__USER_PREFIX: '/member/',
    });
    const alice = await connectAs(custom, 'alice');
    const bob = await connectAs(custom, 'bob');
    try {
      const greet = await subscribeConfirmed(bob, '/topic/greetings');
      const pm = await subscribeConfirmed(bob, '/member/queue/messages');
      await publishConfirmed(alice, '/publish/hello', { name: 'Bob' });
      assert.deepEqual(JSON.parse((await greet.inbox.next(WAIT, 'greeting')).body), { content: 'Hello, Bob!' });
      await publishConfirmed(alice, '/publish/chat.private', { recipient: 'bob', content: 'psst' });
      const m = await pm.inbox.next(WAIT, 'private message on /member/queue/messages');
      assert.equal(m.headers.destination, '/member/queue/messages');
      assert.equal(JSON.parse(m.body).content, 'psst');
      // A user destination is its owner's to send to (alice's would be refused).
      await publishConfirmed(bob, '/member/bob/queue/messages', 'direct');
      assert.equal((await pm.inbox.next(WAIT, 'direct user message')).body, 'direct');
      alice.publish({ destination: '/app/hello', body: '{"name":"x"}' });
      const e = await alice.events.errors.next(WAIT, 'ERROR for /app/ (no longer a prefix)');
      assert.match(e.headers.message, /unknown destination '\/app\/hello'/);
    } finally {
      await disconnect(alice);
      await disconnect(bob);
      await custom.stop();
    }
  });
});

describe('user destinations', () => {
  // The default rules let a client send only to its own user destinations; bob's
  // second session sends to bob.
  test('SEND /user/bob/queue/x reaches every session of bob and not alice', async () => {
    const bob1 = await connectAs(server, 'bob');
    const bob2 = await connectAs(server, 'bob');
    const alice = await connectAs(server, 'alice');
    try {
      const b1 = await subscribeConfirmed(bob1, '/user/queue/x');
      const b2 = await subscribeConfirmed(bob2, '/user/queue/x');
      const a = await subscribeConfirmed(alice, '/user/queue/x');
      const s = await subscribeConfirmed(alice, '/topic/sentinel-user');
      await publishConfirmed(bob2, '/user/bob/queue/x', 'for bob');
      for (const inbox of [b1.inbox, b2.inbox]) {
        const m = await inbox.next(WAIT, "bob's message");
        assert.equal(m.body, 'for bob');
        assert.equal(m.headers.destination, '/user/queue/x');
      }
      await expectNothingMore(a.inbox, alice, s.inbox, '/topic/sentinel-user', 'alice');
    } finally {
      for (const c of [bob1, bob2, alice]) await disconnect(c);
    }
  });
});

describe('REST publish API', () => {
  test('POST /api/publish: string body is text/plain, JSON body is application/json', async () => {
    const c = await connectAs(server, 'alice');
    try {
      const dest = `/topic/${unique('rest')}`;
      const { inbox } = await subscribeConfirmed(c, dest);
      let r = await httpJson('POST', '/api/publish', { destination: dest, body: 'plain', headers: { 'x-a': '1' } });
      assert.equal(r.status, 202, JSON.stringify(r.json));
      assert.equal(r.json.delivered, 1, JSON.stringify(r.json));
      assert.equal(r.json.offset, 1, 'the first message of this destination');
      assert.equal(typeof r.json.epoch, 'string');
      let m = await inbox.next(WAIT, 'text message');
      assert.equal(m.body, 'plain');
      assert.match(m.headers['content-type'], /^text\/plain/);
      assert.equal(m.headers['x-a'], '1');
      r = await httpJson('POST', '/api/publish', { destination: dest, body: { n: 1 } });
      assert.equal(r.status, 202);
      m = await inbox.next(WAIT, 'JSON message');
      assert.equal(m.headers['content-type'], 'application/json');
      assert.deepEqual(JSON.parse(m.body), { n: 1 });
    } finally {
      await disconnect(c);
    }
  });

  test('POST /api/publish: 400 with an "error" naming the problem', async () => {
    const cases = [
      ['{"destination": "/topic/x", "body": ', /JSON/i],
      [{ body: 'x' }, /destination/],
      [{ destination: '/nowhere/x', body: 'x' }, /unknown destination '\/nowhere\/x'/],
      [{ destination: '/app/chat.send', body: { content: 'x' } }, /application destination '\/app\/chat\.send'/],
    ];
    for (const [body, re] of cases) {
      const r = await httpJson('POST', '/api/publish', body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${JSON.stringify(r.json)}`);
      assert.match(r.json.error, re, JSON.stringify(body));
    }
  });

  test('POST /api/users/{user}/messages reaches that user only', async () => {
    const bob = await connectAs(server, 'bob');
    const alice = await connectAs(server, 'alice');
    try {
      const b = await subscribeConfirmed(bob, '/user/queue/messages');
      const a = await subscribeConfirmed(alice, '/user/queue/messages');
      const s = await subscribeConfirmed(alice, '/topic/sentinel-rest-user');
      const r = await httpJson('POST', '/api/users/bob/messages', { destination: '/queue/messages', body: { hi: 'bob' } });
      assert.equal(r.status, 202, JSON.stringify(r.json));
      assert.deepEqual(JSON.parse((await b.inbox.next(WAIT, "bob's message")).body), { hi: 'bob' });
      await expectNothingMore(a.inbox, alice, s.inbox, '/topic/sentinel-rest-user', 'alice');
    } finally {
      await disconnect(bob);
      await disconnect(alice);
    }
  });
});

describe('seed apps', () => {
  test('/app/chat.send → /topic/chat with a server timestamp; /app/chat.private → recipient only', async () => {
    const alice = await connectAs(server, 'alice');
    const bob = await connectAs(server, 'bob');
    const carol = await connectAs(server, 'carol');
    try {
      const chat = await subscribeConfirmed(bob, '/topic/chat');
      const bobPm = await subscribeConfirmed(bob, '/user/queue/messages');
      const carolPm = await subscribeConfirmed(carol, '/user/queue/messages');
      const carolSentinel = await subscribeConfirmed(carol, '/topic/sentinel-pm');
      await publishConfirmed(alice, '/app/chat.send', { content: 'hello all' });
      const v = JSON.parse((await chat.inbox.next(WAIT, 'chat message')).body);
      assert.equal(v.sender, 'alice');
      assert.equal(v.content, 'hello all');
      assertRecentTimestamp(v);
      await publishConfirmed(alice, '/app/chat.private', { recipient: 'bob', content: 'psst' });
      const p = JSON.parse((await bobPm.inbox.next(WAIT, 'private message')).body);
      assert.deepEqual([p.sender, p.recipient, p.content], ['alice', 'bob', 'psst']);
      assertRecentTimestamp(p);
      await expectNothingMore(carolPm.inbox, carol, carolSentinel.inbox, '/topic/sentinel-pm', 'carol');
    } finally {
      for (const c of [alice, bob, carol]) await disconnect(c);
    }
  });

  test('/app/hello {name:"<b>"} → /topic/greetings {content:"Hello, &lt;b&gt;!"}', async () => {
    const c = await connectAs(server, 'alice');
    try {
      const g = await subscribeConfirmed(c, '/topic/greetings');
      await publishConfirmed(c, '/app/hello', { name: '<b>' });
      assert.deepEqual(JSON.parse((await g.inbox.next(WAIT, 'greeting')).body), { content: 'Hello, &lt;b&gt;!' });
    } finally {
      await disconnect(c);
    }
  });

  test('bad payload → ERROR to the sender only, others unaffected', async () => {
    const bad = await connectAs(server, 'mallory');
    const good = await connectAs(server, 'alice');
    try {
      const chat = await subscribeConfirmed(good, '/topic/chat');
      const r = expectReceipt(bad);
      bad.publish({ destination: '/app/chat.send', body: 'not json', headers: { receipt: r.id } });
      const e = await bad.events.errors.next(WAIT, 'ERROR for a bad payload');
      assert.match(e.headers.message, /invalid payload for \/app\/chat\.send/);
      assert.equal(e.headers['receipt-id'], r.id);
      r.done.catch(() => {});
      assert.equal(good.events.errors.length, 0);
      await publishConfirmed(good, '/app/chat.send', { content: 'still fine' });
      assert.equal(JSON.parse((await chat.inbox.next(WAIT, 'chat after the bad one')).body).content, 'still fine');
    } finally {
      await disconnect(bad);
      await disconnect(good);
    }
  });

  test('rooms REST: GET/POST /api/rooms, 400 for an empty name, GET /api/rooms/{id}', async () => {
    let r = await httpJson('GET', '/api/rooms');
    assert.equal(r.status, 200);
    assert.ok(r.json.length >= 3, JSON.stringify(r.json));
    r = await httpJson('POST', '/api/rooms', { name: 'Node room' });
    assert.equal(r.status, 201, JSON.stringify(r.json));
    assert.equal(r.json.name, 'Node room');
    const id = r.json.id;
    r = await httpJson('GET', `/api/rooms/${id}`);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.members, []);
    r = await httpJson('GET', '/api/rooms');
    assert.ok(r.json.some((room) => room.id === id));
    for (const body of [{ name: '' }, { name: '  ' }, {}]) {
      r = await httpJson('POST', '/api/rooms', body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status}`);
      assert.equal(typeof r.json.error, 'string');
    }
    r = await httpJson('GET', '/api/rooms/no-such-room');
    assert.equal(r.status, 404);
  });

  test('rooms: a stompjs client and a plain /ws/chat client in one room see each other', async () => {
    const created = await httpJson('POST', '/api/rooms', { name: unique('room') });
    const id = created.json.id;
    const topic = `/topic/chat/room/${id}`;
    const stompc = await connectAs(server, 'alice');
    const plain = await openPlainChat('pat');
    try {
      const room = await subscribeConfirmed(stompc, topic);
      await publishConfirmed(stompc, '/app/chat/join', { chatRoomId: id, writer: 'Alice' });
      let v = JSON.parse((await room.inbox.next(WAIT, 'JOIN Alice')).body);
      assert.deepEqual([v.type, v.writer, v.chatRoomId, v.members], ['JOIN', 'alice', id, ['alice']]);

      plain.send({ chatRoomId: id, type: 'JOIN', writer: 'Pat' });
      v = await plain.inbox.next(WAIT, 'JOIN Pat on /ws/chat');
      assert.deepEqual([v.type, v.writer, v.members], ['JOIN', 'pat', ['alice', 'pat']]);
      assert.deepEqual(JSON.parse((await room.inbox.next(WAIT, 'JOIN Pat on STOMP')).body), v);
      let r = await httpJson('GET', `/api/rooms/${id}`);
      assert.deepEqual(r.json.members, ['alice', 'pat']);

      plain.send({ chatRoomId: id, type: 'CHAT', writer: 'Pat', message: 'hi from ws' });
      for (const got of [await plain.inbox.next(WAIT, 'own chat'), JSON.parse((await room.inbox.next(WAIT, 'ws chat on STOMP')).body)]) {
        assert.deepEqual([got.type, got.writer, got.message], ['CHAT', 'pat', 'hi from ws']);
        assertRecentTimestamp(got);
      }
      await publishConfirmed(stompc, '/app/chat/message', { chatRoomId: id, writer: 'Alice', message: 'hi from stomp' });
      for (const got of [await plain.inbox.next(WAIT, 'stomp chat on ws'), JSON.parse((await room.inbox.next(WAIT, 'own chat')).body)]) {
        assert.deepEqual([got.type, got.writer, got.message], ['CHAT', 'alice', 'hi from stomp']);
      }

      // Bad /ws/chat messages: an ERROR to that socket, which stays open; STOMP side undisturbed.
      const bad = [
        ['not json at all', /invalid chat message/],
        [{ type: 'CHAT', writer: 'Pat', message: 'x' }, /chatRoomId/],
        [{ chatRoomId: 'no-such-room', type: 'CHAT', writer: 'Pat', message: 'x' }, /unknown room/],
        [{ chatRoomId: id, type: 'SHOUT', writer: 'Pat', message: 'x' }, /unknown message type/],
      ];
      for (const [msg, re] of bad) {
        plain.send(msg);
        const e = await plain.inbox.next(WAIT, `ERROR for ${JSON.stringify(msg)}`);
        assert.equal(e.type, 'ERROR', JSON.stringify(e));
        assert.match(e.error, re);
      }
      assert.equal(plain.ws.readyState, WebSocket.OPEN);
      plain.send({ chatRoomId: id, type: 'CHAT', writer: 'Pat', message: 'after errors' });
      assert.equal((await plain.inbox.next(WAIT, 'chat after errors')).message, 'after errors');
      assert.equal(JSON.parse((await room.inbox.next(WAIT, 'chat after errors on STOMP')).body).message, 'after errors');

      // LEAVE via /app/chat/leave, then the plain client's disconnect.
      await publishConfirmed(stompc, '/app/chat/leave', { chatRoomId: id });
      v = await plain.inbox.next(WAIT, 'LEAVE Alice');
      assert.deepEqual([v.type, v.writer, v.members], ['LEAVE', 'alice', ['pat']]);
      await room.inbox.next(WAIT, 'LEAVE Alice on STOMP');
      plain.ws.close();
      v = JSON.parse((await room.inbox.next(WAIT, 'LEAVE Pat after close')).body);
      assert.deepEqual([v.type, v.writer, v.members], ['LEAVE', 'pat', []]);
      r = await httpJson('GET', `/api/rooms/${id}`);
      assert.deepEqual(r.json.members, []);
    } finally {
      plain.ws.terminate();
      await disconnect(stompc);
    }
  });

  test('rooms: a STOMP disconnect leaves; an unknown room is an ERROR to the sender', async () => {
    const id = (await httpJson('POST', '/api/rooms', { name: unique('room') })).json.id;
    const watcher = await connectAs(server, 'watcher');
    const joiner = await connectAs(server, 'jo');
    const lost = await connectAs(server, 'lost');
    try {
      const room = await subscribeConfirmed(watcher, `/topic/chat/room/${id}`);
      await publishConfirmed(joiner, '/app/chat/join', { chatRoomId: id, writer: 'Jo' });
      assert.equal(JSON.parse((await room.inbox.next(WAIT, 'JOIN')).body).type, 'JOIN');
      assert.deepEqual((await httpJson('GET', `/api/rooms/${id}`)).json.members, ['jo']);
      await disconnect(joiner);
      const v = JSON.parse((await room.inbox.next(WAIT, 'LEAVE on disconnect')).body);
      assert.deepEqual([v.type, v.writer, v.members], ['LEAVE', 'jo', []]);

      lost.publish({ destination: '/app/chat/message', body: JSON.stringify({ chatRoomId: 'nope', writer: 'L', message: 'x' }) });
      const e = await lost.events.errors.next(WAIT, 'ERROR for an unknown room');
      assert.match(e.headers.message, /unknown room 'nope'/);
      assert.equal(watcher.events.errors.length, 0);
    } finally {
      await disconnect(watcher);
      await disconnect(lost);
    }
  });
});
