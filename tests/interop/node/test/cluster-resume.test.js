// Resume across a two-node cluster with stock @stomp/stompjs and nothing but the
// README's five lines: a session on node A whose connection breaks is resumed on
// node B (a load balancer sending the reconnection elsewhere), with what was
// published meanwhile, once and in order. The nodes share a private redis-server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { after, before, test } from 'node:test';
import { Client } from '@stomp/stompjs';
import WebSocket from 'ws';
import { Inbox, sleep, startHerald, unique } from '../lib/herald.js';

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** Whether something accepts connections on `port`. */
const answers = (port) =>
  new Promise((resolve) => {
    const c = connect(port, '127.0.0.1', () => {
      c.end();
      resolve(true);
    });
    c.on('error', () => resolve(false));
  });

/** A private redis-server on a free port, nothing kept on disk. */
async function startRedis() {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: 'ignore',
  });
  let failure = null;
  child.once('error', (e) => { failure = e; });
  const deadline = Date.now() + 10_000;
  while (!(await answers(port))) {
    if (failure) throw new Error(`redis-server: ${failure.message}`);
    if (Date.now() > deadline) throw new Error('redis-server did not start within 10 s');
    await sleep(50);
  }
  return { url: `redis://127.0.0.1:${port}`, stop: () => child.kill('SIGKILL') };
}

let redis;
let a;
let b;

before(async () => {
  redis = await startRedis();
  const env = { HERALD_CLUSTER__REDIS_URL: redis.url };
  a = await startHerald(env);
  b = await startHerald(env);
});

after(async () => {
  await a?.stop();
  await b?.stop();
  redis?.stop();
});

async function publish(server, destination, body) {
  const r = await fetch(`${server.httpUrl}/api/publish`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ destination, body }),
  });
  assert.ok(r.ok, `publish: ${r.status} ${await r.text()}`);
}

async function until(what, predicate, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

test('stompjs with the resume recipe: a session broken on one node resumes on the other', async () => {
  const destination = `/topic/${unique('moving')}`;
  const got = [];
  const connects = new Inbox();
  let node = a;
  let socket;
  const client = new Client({
    webSocketFactory: () => {
      socket = new WebSocket(node.wsUrl, ['v12.stomp']);
      return socket;
    },
    connectHeaders: { login: unique('ann') },
    reconnectDelay: 200,
    heartbeatIncoming: 0,
    heartbeatOutgoing: 0,
  });
  // The README's five lines.
  let resumeToken;
  client.beforeConnect = () => { if (resumeToken) client.connectHeaders.resume = resumeToken; };
  client.onConnect = (frame) => {
    resumeToken = frame.headers['resume-token'];
    client.subscribe(destination, (m) => got.push(m.body), { id: 'moving' });
    connects.push(frame);
  };
  client.activate();
  try {
    const first = await connects.next(8_000, 'CONNECTED on node A');
    assert.equal(first.headers.resumed, 'false');
    await sleep(300); // the SUBSCRIBE is in place and node A listens on Redis
    await publish(b, destination, 'one');
    await until('the first message', () => got.length === 1);

    // The connection breaks; the load balancer sends the reconnection to node B.
    node = b;
    socket.terminate();
    await sleep(300);
    await publish(b, destination, 'two');
    await publish(a, destination, 'three');
    const again = await connects.next(15_000, 'CONNECTED on node B');
    assert.equal(again.headers.resumed, 'true', JSON.stringify(again.headers));
    await sleep(300);
    await publish(a, destination, 'four');
    await until('four messages', () => got.length >= 4);
    await sleep(300);
    assert.deepEqual(got, ['one', 'two', 'three', 'four']);
  } finally {
    await client.deactivate();
  }
});
