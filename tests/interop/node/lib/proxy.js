// A TCP proxy in front of a server, for cutting a client's connection for real: `cut()`
// destroys every proxied connection (both sides see the socket die, as when a network
// drops) and refuses new ones until `restore()`. Used by the browser tests too.
import { createConnection, createServer } from 'node:net';

/** Starts a proxy on 127.0.0.1 to `port`; resolves to {port, cut(), restore(), close()}. */
export async function startProxy(port, host = '127.0.0.1') {
  const pairs = new Set();
  let refusing = false;
  const server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ port, host });
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    port: server.address().port,
    /** Connections through the proxy now. */
    get open() {
      return pairs.size;
    },
    /** Drops every connection and refuses new ones. */
    cut() {
      refusing = true;
      for (const { client, upstream } of pairs) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    /** Refuses new connections, keeping those open now. */
    refuse() {
      refusing = true;
    },
    restore() {
      refusing = false;
    },
    async close() {
      this.cut();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
