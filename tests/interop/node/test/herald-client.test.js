// herald-client (clients/herald-client) on @stomp/stompjs against a real herald: a
// connection cut for real (a TCP proxy drops it) while messages are published, resume
// after the window, recovery from history, token refresh on a live session, the
// notifications API with its live events.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { createHeraldClient, decodeJwt, isWildcard, refreshDelay } from '../../../../clients/herald-client/herald-client.js';
import { Inbox, sleep, startHerald, unique, withTimeout } from '../lib/herald.js';
import { AUTH_CONFIG, mint } from '../lib/jwt.js';
import { startProxy } from '../lib/proxy.js';

const PROTOCOLS = ['v12.stomp', 'v11.stomp', 'v10.stomp'];

/** A herald-client connecting through `port` (a proxy's, or the server's own). */
function heraldClient(server, port, options = {}) {
  const url = `ws://127.0.0.1:${port}/ws`;
  const client = createHeraldClient({
    url,
    httpUrl: server.httpUrl,
    Client,
    webSocketFactory: () => new WebSocket(url, PROTOCOLS),
    ...options,
    stomp: {
      reconnectDelay: 200,
      connectionTimeout: 5_000,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      debug: process.env.STOMP_DEBUG ? (m) => console.error(`[stomp] ${m}`) : () => {},
      ...(options.stomp || {}),
    },
  });
  client.connects = new Inbox();
  client.errors = new Inbox();
  client.gaps = new Inbox();
  client.on('connect', (c) => client.connects.push(c));
  client.on('error', (e) => client.errors.push(e));
  client.on('gap', (g) => client.gaps.push(g));
  return client;
}

async function publish(server, destination, body, headers = {}) {
  const r = await fetch(`${server.httpUrl}/api/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ destination, body }),
  });
  if (!r.ok) assert.fail(`publish to ${destination}: ${r.status} ${await r.text()}`);
  return r.json();
}

/**
 * Resolves once the server has read every frame the client sent so far (a session's
 * frames are handled in order; a RECEIPT answers the last): its SUBSCRIBEs are in place.
 */
const settled = (herald) => herald.publishConfirmed({ destination: `/topic/${unique('settle')}` });

/** Waits until `predicate()` holds. */
async function until(what, predicate, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

describe('herald-client: pure helpers', () => {
  test('decodeJwt reads the claims without verifying; anything else is null', () => {
    const token = mint('alice', 60);
    const claims = decodeJwt(token);
    assert.equal(claims.sub, 'alice');
    assert.equal(typeof claims.exp, 'number');
    assert.equal(decodeJwt('not a token'), null);
    assert.equal(decodeJwt(''), null);
  });

  test('refreshDelay: 30 s before exp, or at 80% of a short life', () => {
    const now = 1_000_000;
    assert.equal(refreshDelay(now + 3_600_000, now), 3_600_000 - 30_000);
    assert.equal(refreshDelay(now + 10_000, now), 8_000);
    assert.equal(refreshDelay(now - 1, now), 0);
    assert.equal(refreshDelay(undefined, now), null);
  });

  test('isWildcard knows whole-segment wildcards only', () => {
    assert.ok(isWildcard('/topic/prices/**'));
    assert.ok(isWildcard('/topic/chat.*'));
    assert.ok(isWildcard('/topic/#'));
    assert.ok(!isWildcard('/topic/a*b'));
    assert.ok(!isWildcard('/user/queue/notifications'));
  });
});

/** A herald (anonymous mode, `env` added) and a proxy in front of it, per suite. */
function serverBehindProxy(env = {}) {
  const ctx = {};
  before(async () => {
    ctx.server = await startHerald(env, { config: '# defaults\n' });
    ctx.proxy = await startProxy(ctx.server.httpPort);
  });
  after(async () => {
    await ctx.proxy?.close();
    await ctx.server?.stop();
  });
  return ctx;
}

describe('herald-client: resume (anonymous)', () => {
  const ctx = serverBehindProxy();

  test('a connection dropped for seconds while messages are published: every message arrives once, in order', async () => {
    const { server, proxy } = ctx;
    const herald = heraldClient(server, proxy.port, { connectHeaders: { login: unique('ann') } });
    const destination = `/topic/${unique('resume')}`;
    const got = [];
    herald.subscribe(destination, (m) => got.push(m.body));
    herald.activate();
    try {
      const first = await herald.connects.next(8_000, 'CONNECTED');
      await settled(herald);
      assert.equal(first.resumed, false);
      assert.ok(first.frame.headers['resume-token'], 'CONNECTED carries a resume token');

      // Publish throughout: before, during and after a cut of the connection.
      const sent = [];
      let i = 0;
      const send = async (n) => {
        for (let k = 0; k < n; k++) {
          const body = `m${++i}`;
          await publish(server, destination, body);
          sent.push(body);
          await sleep(20);
        }
      };
      await send(10);
      proxy.cut();
      await send(30);
      await sleep(300);
      proxy.restore();
      await send(10);
      const again = await herald.connects.next(15_000, 'the reconnection');
      assert.equal(again.reconnected, true);
      assert.equal(again.resumed, true, 'the reconnection resumed the session');
      await send(10);
      await until(`${sent.length} messages (got ${got.length})`, () => got.length >= sent.length);
      await sleep(300); // a repeat would come now
      assert.deepEqual(got, sent);
      assert.equal(herald.gaps.length, 0, 'no gap was reported');
    } finally {
      await herald.deactivate();
    }
  });

  test('a message in flight when the connection is cut arrives after the resume', async () => {
    const { server, proxy } = ctx;
    const herald = heraldClient(server, proxy.port, { connectHeaders: { login: unique('eve') } });
    const destination = `/topic/${unique('inflight')}`;
    const got = [];
    herald.subscribe(destination, (m) => got.push(m.body));
    herald.activate();
    try {
      await herald.connects.next(8_000, 'CONNECTED');
      await settled(herald);
      await publish(server, destination, 'seen');
      await until('the first message', () => got.length === 1);
      // Cut as soon as the server has taken it: it is on its way to the client.
      await publish(server, destination, 'in flight');
      proxy.cut();
      await publish(server, destination, 'while away');
      await sleep(300);
      proxy.restore();
      const again = await herald.connects.next(15_000, 'the reconnection');
      assert.equal(again.resumed, true);
      await until('three messages', () => got.length >= 3);
      await sleep(300);
      assert.deepEqual(got, ['seen', 'in flight', 'while away']);
      assert.equal(herald.gaps.length, 0);
    } finally {
      await herald.deactivate();
    }
  });

  test('a resumed wildcard subscription, which history cannot replay, is told recovered:false', async () => {
    const { server, proxy } = ctx;
    const herald = heraldClient(server, proxy.port, { connectHeaders: { login: unique('fox') } });
    const base = `/topic/${unique('wild')}`;
    const got = new Inbox();
    const gaps = new Inbox();
    herald.subscribe(`${base}/*`, (m) => got.push(m.body), { onGap: (g) => gaps.push(g) });
    herald.activate();
    try {
      await herald.connects.next(8_000, 'CONNECTED');
      await settled(herald);
      await publish(server, `${base}/a`, 'before');
      assert.equal(await got.next(5_000, 'the first message'), 'before');
      proxy.cut();
      await publish(server, `${base}/b`, 'while away');
      await sleep(300);
      proxy.restore();
      const again = await herald.connects.next(15_000, 'the reconnection');
      assert.equal(again.resumed, true);
      const gap = await gaps.next(5_000, 'the gap');
      assert.equal(gap.reason, 'recovered:false');
      await settled(herald);
      await publish(server, `${base}/c`, 'after');
      assert.equal(await got.next(5_000, 'a live message'), 'after');
      assert.equal(gaps.length, 0);
    } finally {
      await herald.deactivate();
    }
  });

  test('a subscription dropped while disconnected stays dropped after the resume', async () => {
    const { server, proxy } = ctx;
    const herald = heraldClient(server, proxy.port, { connectHeaders: { login: unique('dot') } });
    const kept = `/topic/${unique('kept')}`;
    const dropped = `/topic/${unique('dropped')}`;
    const got = new Inbox();
    herald.subscribe(kept, (m) => got.push(`kept:${m.body}`));
    const sub = herald.subscribe(dropped, (m) => got.push(`dropped:${m.body}`));
    const unhandled = [];
    herald.stomp.onUnhandledMessage = (m) => unhandled.push(m);
    herald.activate();
    try {
      await herald.connects.next(8_000, 'CONNECTED');
      proxy.cut();
      sub.unsubscribe();
      await sleep(300);
      proxy.restore();
      const again = await herald.connects.next(15_000, 'the reconnection');
      assert.equal(again.resumed, true);
      await settled(herald);
      await publish(server, dropped, 'x');
      await publish(server, kept, 'y');
      assert.equal(await got.next(5_000, 'the kept subscription'), 'kept:y');
      await sleep(300);
      assert.equal(got.length, 0);
      assert.equal(unhandled.length, 0, 'the server delivered nothing on the dropped subscription');
    } finally {
      await herald.deactivate();
    }
  });
});

describe('herald-client: after the resume window (1 s)', () => {
  const ctx = serverBehindProxy({ HERALD_STOMP__RESUME_WINDOW: '1s' });

  test('after the resume window: a clean new session, resumed:false, and recovered:false told', async () => {
    const { server, proxy } = ctx;
    const herald = heraldClient(server, proxy.port, { connectHeaders: { login: unique('bea') }, offsetRecovery: false });
    const destination = `/topic/${unique('late')}`;
    const got = new Inbox();
    const gaps = [];
    herald.subscribe(destination, (m) => got.push(m.body), { onGap: (g) => gaps.push(g) });
    herald.activate();
    try {
      const first = await herald.connects.next(8_000, 'CONNECTED');
      await settled(herald);
      await publish(server, destination, 'before');
      assert.equal(await got.next(5_000, 'the first message'), 'before');

      proxy.cut();
      await publish(server, destination, 'while away');
      await sleep(2_500); // past the 1 s window
      proxy.restore();
      const again = await herald.connects.next(15_000, 'the reconnection');
      assert.equal(again.frame.headers.resumed, 'false');
      assert.equal(again.resumed, false);
      assert.notEqual(again.frame.headers.session, first.frame.headers.session, 'a new session');

      // The new session works: the subscription is in place again, and told of the gap.
      await settled(herald);
      assert.deepEqual(gaps, [{ destination, reason: 'recovered:false' }]);
      await publish(server, destination, 'after');
      assert.equal(await got.next(5_000, 'a message on the new session'), 'after');
    } finally {
      await herald.deactivate();
    }
  });

  test('after the resume window, a topic subscription is renewed from history with offset', async () => {
    const { server, proxy } = ctx;
    const herald = heraldClient(server, proxy.port, { connectHeaders: { login: unique('cid') } });
    const destination = `/topic/${unique('history')}`;
    const got = [];
    const recovered = [];
    herald.subscribe(destination, (m) => {
      got.push(m.body);
      if (m.headers.recovered) recovered.push(m.headers.recovered);
    });
    herald.activate();
    try {
      await herald.connects.next(8_000, 'CONNECTED');
      await settled(herald);
      for (const b of ['a', 'b']) await publish(server, destination, b);
      await until('the first two messages', () => got.length === 2);
      proxy.cut();
      for (const b of ['c', 'd', 'e']) await publish(server, destination, b);
      await sleep(2_500);
      proxy.restore();
      const again = await herald.connects.next(15_000, 'the reconnection');
      assert.equal(again.resumed, false);
      await settled(herald);
      await publish(server, destination, 'f');
      await until('six messages', () => got.length >= 6);
      await sleep(200);
      assert.deepEqual(got, ['a', 'b', 'c', 'd', 'e', 'f']);
      assert.deepEqual(recovered, ['true']);
      assert.equal(herald.gaps.length, 0);
    } finally {
      await herald.deactivate();
    }
  });
});

describe('herald-client: token refresh (JWT)', () => {
  let server;
  before(async () => {
    server = await startHerald({}, { config: AUTH_CONFIG });
  });
  after(async () => {
    await server?.stop();
  });

  test('a token refreshed three times on one session, past its first expiry', async () => {
    const user = unique('erin');
    const tokens = [];
    const herald = heraldClient(server, server.httpPort, {
      getToken: () => {
        const token = mint(user, 3);
        tokens.push(token);
        return token;
      },
    });
    const refreshed = new Inbox();
    herald.on('token', (t) => refreshed.push(t));
    const closes = [];
    herald.on('close', (c) => closes.push(c));
    const destination = `/topic/${unique('refresh')}`;
    const got = new Inbox();
    herald.subscribe(destination, (m) => got.push(m.body));
    herald.activate();
    try {
      const first = await herald.connects.next(8_000, 'CONNECTED');
      assert.equal(first.frame.headers['user-name'], user);
      await settled(herald);
      const firstExp = decodeJwt(tokens[0]).exp;
      for (let n = 1; n <= 3; n++) {
        const t = await refreshed.next(10_000, `refresh ${n}`);
        assert.equal(t.token, tokens[n]);
      }
      // Past the first token's expiry (no leeway configured), on the same connection.
      await until('the first token to expire', () => Date.now() / 1000 > firstExp + 1);
      const service = mint('publisher', 60, { roles: ['SERVICE'] });
      await publish(server, destination, 'still here', { authorization: `Bearer ${service}` });
      assert.equal(await got.next(5_000, 'a message after the first expiry'), 'still here');
      assert.equal(herald.connects.length, 0, 'no reconnection');
      assert.deepEqual(closes, []);
      assert.equal(herald.errors.length, 0, JSON.stringify(herald.errors.items.map((e) => e.message)));
    } finally {
      await herald.deactivate();
    }
  });

  test('a refresh naming another user gets an ERROR and ends the session', async () => {
    const user = unique('fay');
    const herald = heraldClient(server, server.httpPort, {
      getToken: () => mint(user, 300),
      stomp: { reconnectDelay: 0 },
    });
    const closed = new Inbox();
    herald.on('close', (c) => closed.push(c));
    herald.activate();
    try {
      await herald.connects.next(8_000, 'CONNECTED');
      await assert.rejects(herald.refreshToken(mint(unique('mallory'), 300)), (e) => {
        assert.ok(e.message.length > 0);
        return true;
      });
      const error = herald.errors.items.find((e) => e.frame);
      assert.ok(error, 'an ERROR frame');
      assert.ok(error.frame.headers.message, 'the ERROR says why');
      await closed.next(5_000, 'the session to end');
    } finally {
      await herald.deactivate();
    }
  });

  test('a refresh the server refuses: the client connects again with a fresh token and its subscriptions', async () => {
    const user = unique('gil');
    let calls = 0;
    const herald = heraldClient(server, server.httpPort, {
      // The second token names someone else (refused on the live session); the ones
      // after are right again.
      getToken: () => mint(++calls === 2 ? unique('mallory') : user, 300),
    });
    const destination = `/topic/${unique('refused')}`;
    const got = new Inbox();
    herald.subscribe(destination, (m) => got.push(m.body));
    herald.activate();
    try {
      const first = await herald.connects.next(8_000, 'CONNECTED');
      await assert.rejects(herald.refreshToken());
      const again = await herald.connects.next(10_000, 'the reconnection');
      assert.equal(again.frame.headers['user-name'], user);
      assert.notEqual(again.frame.headers.session, first.frame.headers.session);
      assert.equal(calls, 3, 'a fresh token for the new connection');
      await settled(herald);
      const service = mint('publisher', 60, { roles: ['SERVICE'] });
      await publish(server, destination, 'after', { authorization: `Bearer ${service}` });
      assert.equal(await got.next(5_000, 'a message on the new connection'), 'after');
    } finally {
      await herald.deactivate();
    }
  });
});

describe('herald-client: notifications', () => {
  let server;
  before(async () => {
    server = await startHerald({}, { config: '# defaults\n' });
  });
  after(async () => {
    await server?.stop();
  });

  const create = async (body) => {
    const r = await fetch(`${server.httpUrl}/api/notifications`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'info', title: 'T', ...body }),
    });
    if (r.status !== 201) assert.fail(`create: ${r.status} ${await r.text()}`);
    return r.json();
  };

  test('list with cursor paging, unread count, mark read, live events and read sync', async () => {
    const user = unique('gus');
    const mk = () =>
      heraldClient(server, server.httpPort, { connectHeaders: { login: user }, httpHeaders: { 'X-User': user } });
    const phone = mk();
    const laptop = mk();
    const notesPhone = phone.notifications();
    const notesLaptop = laptop.notifications();
    const live = new Inbox();
    const reads = new Inbox();
    notesPhone.on('notification', (n) => live.push(n));
    notesPhone.on('read', (r) => reads.push(r));
    phone.activate();
    laptop.activate();
    try {
      await phone.connects.next(8_000, 'CONNECTED');
      await laptop.connects.next(8_000, 'CONNECTED');
      await settled(phone);
      await settled(laptop);
      const ids = [];
      for (let i = 1; i <= 5; i++) ids.push((await create({ user, message: `n${i}` })).notifications[0].notificationId);
      for (let i = 1; i <= 5; i++) assert.equal((await live.next(5_000, `notification ${i}`)).message, `n${i}`);

      const seen = [];
      for await (const page of notesLaptop.pages({ limit: 2 })) seen.push(...page.items.map((n) => n.notificationId));
      assert.deepEqual(seen, [...ids].reverse());
      assert.equal(await notesLaptop.unreadCount(), 5);

      const marked = await notesLaptop.markRead([ids[0], ids[1]]);
      assert.equal(marked.unreadCount, 3);
      const r1 = await reads.next(5_000, 'the first read event');
      assert.deepEqual(r1, { ids: [ids[0]], unreadCount: 4, all: false });
      assert.deepEqual(await reads.next(5_000, 'the second read event'), { ids: [ids[1]], unreadCount: 3, all: false });
      const unread = await notesLaptop.list({ unread: true });
      assert.deepEqual(unread.items.map((n) => n.notificationId), [ids[4], ids[3], ids[2]]);

      await notesLaptop.markAllRead();
      const all = await reads.next(5_000, 'the read-all event');
      assert.equal(all.all, true);
      assert.equal(all.unreadCount, 0);
      assert.equal(await notesPhone.unreadCount(), 0);

      const broadcast = await create({ broadcast: true, message: 'to everyone' });
      const b = await live.next(5_000, 'the broadcast');
      assert.equal(b.notificationId, broadcast.notifications[0].notificationId);
      assert.equal(b.broadcast, true);
    } finally {
      await phone.deactivate();
      await laptop.deactivate();
    }
  });

  test('a REST error carries the status and code', async () => {
    const herald = heraldClient(server, server.httpPort, { httpHeaders: { 'X-User': unique('hal') } });
    const notes = herald.notifications({ live: false });
    await assert.rejects(notes.markRead(987654321), (e) => e.status === 404 && e.code === 'not_found');
    await assert.rejects(notes.list({ limit: 0 }), (e) => e.status === 400);
  });
});

test('herald serves the same herald-client at /web/js/herald-client.js', async () => {
  const server = await startHerald();
  try {
    const { readFile } = await import('node:fs/promises');
    const local = await readFile(new URL('../../../../clients/herald-client/herald-client.js', import.meta.url), 'utf8');
    const r = await withTimeout(fetch(`${server.httpUrl}/web/js/herald-client.js`), 5_000, 'GET herald-client.js');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/javascript/);
    assert.equal(await r.text(), local);
  } finally {
    await server.stop();
  }
});
