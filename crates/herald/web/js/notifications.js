// Notifications center on herald-client's notifications API:
// - list (newest first, cursor paging) and the unread count;
// - live copies on /user/queue/notifications (and broadcasts on /topic/notifications);
//   `{"event":"read", ids, unreadCount}` there when another session of ours read some;
// - mark read (one, or all);
// - across a reconnect the session resumes and what arrived meanwhile is replayed; when
//   it cannot be (a gap herald-client reports), the first page is fetched again.
//   Everything is kept by id, so nothing shows twice.
// - a redirectPath becomes a link or a click target only through safeHref (a path on
//   this origin or an http(s) URL): the data comes from whoever sent the notification.
import { $, connect, el, renderHeader, requireUser, safeHref } from './herald.js';

const PAGE = 50;

const user = await requireUser();
renderHeader();

const items = new Map(); // notificationId → notification
let unread = 0;
let nextCursor = null;
let syncs = 0;
// When this page's connection last came back (a notification created before then and
// delivered after it arrived while the page was away), or null before any reconnect.
let backAt = null;

const conn = connect({
  user,
  onConnect: (client, frame, { reconnected }) => {
    // Subscribed first (herald-client did), then fetched: whatever is published in
    // between is in one or the other (or both, and merged by id).
    if (reconnected) backAt = Date.now();
    else sync('page');
  },
});
const notes = conn.herald.notifications();
notes.on('notification', onNotification);
notes.on('read', onRead);
// Missed events nothing could replay: fetch the first page again (merged by id).
notes.on('reload', () => sync('sync'));

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
    const page = await notes.list({ limit: PAGE });
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
  const page = await notes.list({ limit: PAGE, cursor: nextCursor });
  for (const n of page.items) merge(n, 'page');
  nextCursor = page.nextCursor;
  render();
}

async function markRead(id) {
  try {
    const r = await notes.markRead(id);
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
    await notes.markAllRead();
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

function onRead({ ids, unreadCount, all }) {
  for (const id of ids) {
    const n = items.get(id);
    if (n) n.read = true;
  }
  if (all) for (const n of items.values()) n.read = true;
  setUnread(unreadCount);
  render();
}

function onNotification(n) {
  const away = backAt !== null && Date.parse(n.createdAt) < backAt;
  const fresh = merge(n, away ? 'sync' : 'live');
  if (fresh && !n.read) {
    setUnread(unread + 1);
    desktopNotify(n);
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
