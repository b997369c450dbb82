// Connection handshake over the /ws endpoint with real stompjs clients.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startHerald, connect, disconnect, makeClient, withTimeout } from '../lib/herald.js';

let server;
before(async () => {
  server = await startHerald();
});
after(async () => {
  await server?.stop();
});

test('GET /health answers 200', { skip: false }, async (t) => {
  if (!server.httpUrl) return t.skip('no http url for an external server');
  const res = await withTimeout(fetch(`${server.httpUrl}/health`), 5_000, 'GET /health');
  assert.equal(res.status, 200);
});

test('connects over /ws with the v12.stomp subprotocol and negotiates STOMP 1.2', async () => {
  const client = await connect(server, { protocols: ['v12.stomp'], versions: ['1.2'] });
  try {
    assert.equal(client.rawSocket.protocol, 'v12.stomp', 'server must select the offered subprotocol');
    assert.equal(client.connectedFrame.command, 'CONNECTED');
    assert.equal(client.connectedFrame.headers.version, '1.2');
    assert.equal(client.connectedVersion, '1.2');
    assert.ok(client.connected);
  } finally {
    await disconnect(client);
  }
});

test('offering every subprotocol picks one of them and negotiates the highest common version', async () => {
  const client = await connect(server); // v12.stomp, v11.stomp, v10.stomp / accept-version 1.2,1.1,1.0
  try {
    assert.ok(['v12.stomp', 'v11.stomp', 'v10.stomp'].includes(client.rawSocket.protocol),
      `selected subprotocol was ${JSON.stringify(client.rawSocket.protocol)}`);
    assert.equal(client.connectedFrame.headers.version, '1.2');
  } finally {
    await disconnect(client);
  }
});

test('v11.stomp with accept-version 1.1 negotiates STOMP 1.1', async () => {
  const client = await connect(server, { protocols: ['v11.stomp'], versions: ['1.1'] });
  try {
    assert.equal(client.rawSocket.protocol, 'v11.stomp');
    assert.equal(client.connectedFrame.headers.version, '1.1');
  } finally {
    await disconnect(client);
  }
});

test('v10.stomp with accept-version 1.0 negotiates STOMP 1.0', async () => {
  const client = await connect(server, { protocols: ['v10.stomp'], versions: ['1.0'] });
  try {
    assert.equal(client.rawSocket.protocol, 'v10.stomp');
    const v = client.connectedFrame.headers.version;
    assert.ok(v === undefined || v === '1.0', `CONNECTED version header was ${v}`);
  } finally {
    await disconnect(client);
  }
});

test('a WebSocket without any subprotocol is accepted too', async () => {
  const client = await connect(server, { protocols: [] });
  try {
    assert.equal(client.rawSocket.protocol, '');
    assert.equal(client.connectedFrame.headers.version, '1.2');
  } finally {
    await disconnect(client);
  }
});

test('DISCONNECT with a receipt gets the RECEIPT and then the socket closes', async () => {
  const client = await connect(server);
  let receipt;
  client.onDisconnect = (f) => {
    receipt = f;
  };
  await withTimeout(client.deactivate(), 5_000, 'deactivate');
  assert.ok(receipt, 'onDisconnect must fire, i.e. the DISCONNECT receipt arrived');
  assert.equal(receipt.command, 'RECEIPT');
  assert.match(receipt.headers['receipt-id'], /^close-/);
  assert.equal(client.connected, false);
});

test('an unsupported accept-version is refused with an ERROR', async () => {
  const client = makeClient(server, { protocols: [], versions: ['9.9'] });
  client.activate();
  try {
    const err = await client.events.errors.next(5_000, 'ERROR for accept-version 9.9');
    assert.equal(err.command, 'ERROR');
    assert.ok(err.headers.message, 'ERROR must carry a message header');
    await client.events.closes.next(5_000, 'socket close after ERROR');
    assert.equal(client.events.connected.length, 0);
  } finally {
    await client.deactivate({ force: true });
  }
});
