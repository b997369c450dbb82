// SockJS: forced with ?transport=sockjs, and as the fallback when the WebSocket fails.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { hasSockJs, launchBrowser, newUserPage, shot, signInByName, startHerald, waitConnected } from '../lib/harness.js';

let herald;
let browser;
let skip = false;
before(async () => {
  herald = await startHerald();
  browser = await launchBrowser();
  skip = !(await hasSockJs(herald.url)) && 'this herald serves no SockJS at /ws-sockjs ([sockjs])';
});
after(async () => {
  await browser?.close();
  await herald?.stop();
});

async function chatBetween(a, b, roomId) {
  for (const { page } of [a, b]) await page.waitForSelector('#members li:text-is("hugo")');
  await a.page.fill('#text', 'over sockjs');
  await a.page.press('#text', 'Enter');
  await b.page.waitForSelector('.msg.chat:has-text("over sockjs")');
  await b.page.fill('#text', 'over websocket');
  await b.page.press('#text', 'Enter');
  await a.page.waitForSelector('.msg.chat:has-text("over websocket")');
}

test('forced SockJS (?transport=sockjs) chats with a WebSocket user', async (t) => {
  if (skip) return t.skip(skip);
  const rooms = await (await fetch(`${herald.url}/api/rooms`)).json();
  const hugo = await newUserPage(browser, herald.url);
  const ines = await newUserPage(browser, herald.url);
  try {
    await signInByName(hugo.page, 'hugo', `/chat?room=${rooms[1].id}&transport=sockjs`);
    await waitConnected(hugo.page, 'sockjs');
    await signInByName(ines.page, 'ines', `/chat?room=${rooms[1].id}`);
    await waitConnected(ines.page, 'websocket');
    await chatBetween(hugo, ines, rooms[1].id);
    // Links keep the forced transport.
    assert.match(await hugo.page.getAttribute('nav a[href*="notifications"]', 'href'), /transport=sockjs/);
    await shot(hugo.page, 'sockjs-forced-chat');
    assert.deepEqual(hugo.page.errors, []);
  } finally {
    await hugo.context.close();
    await ines.context.close();
  }
});

test('forced SockJS over HTTP streaming/polling only', async (t) => {
  if (skip) return t.skip(skip);
  const rooms = await (await fetch(`${herald.url}/api/rooms`)).json();
  const hugo = await newUserPage(browser, herald.url);
  const ines = await newUserPage(browser, herald.url);
  try {
    await signInByName(hugo.page, 'hugo', `/chat?room=${rooms[2].id}&transport=sockjs&sockjs_transports=xhr-streaming,xhr-polling`);
    await waitConnected(hugo.page, 'sockjs');
    await signInByName(ines.page, 'ines', `/chat?room=${rooms[2].id}`);
    await chatBetween(hugo, ines, rooms[2].id);
  } finally {
    await hugo.context.close();
    await ines.context.close();
  }
});

test('falls back to SockJS when the WebSocket fails', async (t) => {
  if (skip) return t.skip(skip);
  const jo = await newUserPage(browser, herald.url);
  try {
    // Every plain WebSocket to /ws is cut before it reaches the server.
    await jo.context.routeWebSocket((url) => new URL(url).pathname === '/ws', (ws) => ws.close({ code: 1011, reason: 'blocked by test' }));
    await signInByName(jo.page, 'jo', '/');
    await waitConnected(jo.page, 'sockjs', 30_000);
    assert.equal(await jo.page.textContent('#conn-transport'), 'SockJS');
    await shot(jo.page, 'sockjs-fallback-home');
  } finally {
    await jo.context.close();
  }
});
