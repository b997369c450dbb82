// Heart-beating with short server settings: negotiation and a connection that stays up.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  startHerald, connect, disconnect, subscribeConfirmed, unique, sleep,
} from '../lib/herald.js';

const SERVER_MS = 300;
let server;
before(async () => {
  server = await startHerald({
    HERALD_STOMP__HEARTBEAT_SEND: `${SERVER_MS}ms`,
    HERALD_STOMP__HEARTBEAT_RECEIVE: `${SERVER_MS}ms`,
  });
});
after(async () => {
  await server?.stop();
});

function parseHeartBeat(frame) {
  const hb = frame.headers['heart-beat'];
  assert.ok(hb, 'CONNECTED must carry a heart-beat header when the client asked for heart-beats');
  assert.match(hb, /^\d+,\d+$/);
  return hb.split(',').map(Number);
}

test('heart-beats are negotiated both ways and the connection survives many intervals idle', async () => {
  const CLIENT_MS = 400;
  const client = await connect(server, { heartbeatIncoming: CLIENT_MS, heartbeatOutgoing: CLIENT_MS });
  try {
    const [sx, sy] = parseHeartBeat(client.connectedFrame);
    // The server offers its configured 300 ms (or reports the negotiated max(300, 400)).
    const hi = Math.max(SERVER_MS, CLIENT_MS);
    assert.ok(sx >= SERVER_MS && sx <= hi, `server send interval ${sx} should be in [${SERVER_MS}, ${hi}]`);
    assert.ok(sy >= SERVER_MS && sy <= hi, `server receive interval ${sy} should be in [${SERVER_MS}, ${hi}]`);
    // Idle for about 8 negotiated periods: server must beat and must not drop us.
    await sleep(3_500);
    const periods = 3_500 / Math.max(CLIENT_MS, sx);
    assert.ok(client.events.heartbeatsReceived >= Math.floor(periods / 2),
      `expected at least ${Math.floor(periods / 2)} server heart-beats, got ${client.events.heartbeatsReceived}`);
    assert.equal(client.events.heartbeatLost, 0, 'stompjs saw the server go silent');
    assert.equal(client.events.closes.length, 0, 'connection closed during idle time');
    assert.ok(client.connected);
    // Still usable after the idle time.
    const dest = `/topic/${unique('alive')}`;
    const { inbox } = await subscribeConfirmed(client, dest);
    client.publish({ destination: dest, body: 'still here' });
    assert.equal((await inbox.next(3_000, 'message after idle period')).body, 'still here');
  } finally {
    await disconnect(client);
  }
});

test('the server sends no heart-beats to a client that wants none', async () => {
  // cx=CLIENT_MS (we send), cy=0 (we don't want any)
  const client = await connect(server, { heartbeatIncoming: 0, heartbeatOutgoing: 250 });
  try {
    const [, sy] = parseHeartBeat(client.connectedFrame);
    assert.ok(sy > 0);
    let frames = 0;
    client.rawSocket.on('message', () => {
      frames += 1;
    });
    await sleep(1_500);
    assert.equal(frames, 0, 'server sent data to a client that asked for no heart-beats');
    assert.equal(client.events.closes.length, 0);
    assert.ok(client.connected);
  } finally {
    await disconnect(client);
  }
});

test('a client that offers no heart-beats is not dropped by the server', async () => {
  const client = await connect(server, { heartbeatIncoming: 0, heartbeatOutgoing: 0 });
  try {
    await sleep(2_000); // several times the server's receive setting
    assert.equal(client.events.closes.length, 0, 'server closed an idle client that negotiated no heart-beats');
    assert.ok(client.connected);
    const dest = `/topic/${unique('noheartbeat')}`;
    const { inbox } = await subscribeConfirmed(client, dest);
    client.publish({ destination: dest, body: 'ok' });
    assert.equal((await inbox.next(3_000)).body, 'ok');
  } finally {
    await disconnect(client);
  }
});

test('the server closes a connection whose negotiated heart-beats stop arriving', async () => {
  const client = await connect(server, { heartbeatIncoming: 0, heartbeatOutgoing: 200 });
  try {
    const [, sy] = parseHeartBeat(client.connectedFrame);
    const negotiated = Math.max(200, sy);
    // Stop the client's pinger without closing the socket: the server must notice the silence.
    client._stompHandler._pinger?.stop();
    const closed = await client.events.closes.next(negotiated * 6 + 3_000, 'server to drop a silent client');
    assert.ok(closed);
  } finally {
    await client.deactivate({ force: true });
  }
});
