// Notifications center on the notifications REST API and live delivery:
// - GET /api/notifications (newest first, cursor paging) and the unread count;
// - live copies on /user/queue/notifications (and broadcasts on /topic/notifications);
//   `{"event":"read", ids, unreadCount}` there when another session of ours read some;
// - POST /api/notifications/{id}/read and /read-all;
// - after every reconnect the first page is fetched again, so what arrived while we
//   were disconnected shows up; everything is kept by id, so nothing shows twice.
// - a redirectPath becomes a link or a click target only through safeHref (a path on
//   this origin or an http(s) URL): the data comes from whoever sent the notification.
import { $, api, connect, el, renderHeader, requireUser, safeHref } from './herald.js';

const USER_DEST = '/user/queue/notifications';
const BROADCAST_DEST = '/topic/notifications';
const PAGE = 50;

const user = await requireUser();
renderHeader();

const items = new Map(); // notificationId → notification
let unread = 0;
let nextCursor = null;
let syncs = 0;

function setUnread(n) {
  unread = Math.max(0, n);
  const badge = $('#unread');
  badge.textContent = unread;
  badge.dataset.count = unread;
  document.title = `${unread ? `(${unread}) ` : ''}Notifications · Herald`;
}

function render() {
  const sorted = [...items.values()].sort((a, b) => b.notificationId - a.notificationId);
  $('#list').replaceChildren(
    ...sorted.map((n) => {
      const href = safeHref(n.redirectPath);
      return el(
        'li',
        { class: n.read ? 'read' : 'unread', dataset: { id: n.notificationId, origin: n.origin || 'page' } },
        el(
          'div',
          { class: 'body' },
          el('div', { class: 'title' }, n.title || n.type || 'Notification'),
          el('div', { class: 'message' }, n.message),
          el(
            'div',
            { class: 'meta' },
            `#${n.notificationId} · ${n.type}${n.broadcast ? ' · broadcast' : ''} · ${new Date(n.createdAt).toLocaleString()}`,
            n.origin === 'live' ? ' · live' : n.origin === 'sync' ? ' · arrived while you were away' : '',
          ),
          href ? el('a', { class: 'open', href, rel: 'noopener noreferrer' }, 'Open') : null,
        ),
        n.read ? null : el('button', { class: 'secondary mark-read', type: 'button', onclick: () => markRead(n.notificationId) }, 'Mark read'),
      );
    }),
  );
  $('#empty').classList.toggle('hidden', items.size > 0);
  $('#more').classList.toggle('hidden', !nextCursor);
  $('#summary').textContent = `${items.size} shown · ${unread} unread · signed in as ${user.name}`;
}

/** Adds or updates by id; true when it was new. */
function merge(n, origin) {
  const known = items.get(n.notificationId);
  items.set(n.notificationId, { ...known, ...n, origin: known ? known.origin : origin });
  return !known;
}

/** The first page (again): at start and after every reconnect. */
async function sync(origin) {
  try {
    const page = await api(`/api/notifications?limit=${PAGE}`);
    for (const n of page.items) merge(n, origin);
    if (syncs++ === 0) nextCursor = page.nextCursor;
    setUnread(page.unreadCount);
    $('#error').textContent = '';
  } catch (e) {
    $('#error').textContent = e.message;
  }
  render();
}

async function older() {
  if (!nextCursor) return;
  const page = await api(`/api/notifications?limit=${PAGE}&cursor=${encodeURIComponent(nextCursor)}`);
  for (const n of page.items) merge(n, 'page');
  nextCursor = page.nextCursor;
  render();
}

async function markRead(id) {
  try {
    const r = await api(`/api/notifications/${id}/read`, { method: 'POST' });
    const n = items.get(id);
    if (n) n.read = true;
    setUnread(r.unreadCount);
  } catch (e) {
    $('#error').textContent = e.message;
  }
  render();
}

async function markAllRead() {
  try {
    await api('/api/notifications/read-all', { method: 'POST' });
    for (const n of items.values()) n.read = true;
    setUnread(0);
  } catch (e) {
    $('#error').textContent = e.message;
  }
  render();
}

function desktopNotify(n) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const shown = new Notification(n.title || 'Herald', { body: n.message, tag: `herald-${n.notificationId}` });
    const href = safeHref(n.redirectPath);
    shown.onclick = () => {
      window.focus();
      if (href) location.href = href;
    };
  } catch {
    // Some browsers allow notifications only from a service worker.
  }
}

function onLive(message) {
  let body;
  try {
    body = JSON.parse(message.body);
  } catch {
    return;
  }
  const event = message.headers['herald-event'] || body.event;
  if (event === 'read') {
    for (const id of body.ids || []) {
      const n = items.get(id);
      if (n) n.read = true;
    }
    if (body.all) for (const n of items.values()) n.read = true;
    setUnread(body.unreadCount);
  } else if (body.notificationId !== undefined) {
    const fresh = merge({ ...body, read: Boolean(body.read) }, 'live');
    if (fresh && !body.read) {
      setUnread(unread + 1);
      desktopNotify(body);
    }
  }
  render();
}

function renderPermission() {
  const b = $('#allow-desktop');
  if (!('Notification' in window)) {
    b.disabled = true;
    b.textContent = 'Desktop notifications unsupported';
  } else if (Notification.permission === 'granted') {
    b.disabled = true;
    b.textContent = 'Desktop notifications on';
  } else if (Notification.permission === 'denied') {
    b.disabled = true;
    b.textContent = 'Desktop notifications blocked';
  }
}

$('#allow-desktop').onclick = async () => {
  await Notification.requestPermission();
  renderPermission();
};
$('#read-all').onclick = markAllRead;
$('#more').onclick = older;
renderPermission();

connect({
  user,
  onConnect: (client, frame, { reconnected }) => {
    client.subscribe(USER_DEST, onLive);
    client.subscribe(BROADCAST_DEST, onLive);
    // Subscribed first, then fetched: whatever is published in between is in one or
    // the other (or both, and merged by id).
    sync(reconnected ? 'sync' : 'page');
  },
});
