// Chat rooms (Spring chat-room apps): the room list (GET/POST /api/rooms) and one room over STOMP —
// subscribe /topic/chat/room/{id}, SEND /app/chat/join, /app/chat/message, /app/chat/leave.
// Who is in the room: GET /api/rooms/{id} first, then the member list every JOIN and
// LEAVE event carries.
import { $, api, connect, el, renderHeader, requireUser, timeOf } from './herald.js';

const params = new URLSearchParams(location.search);
const roomId = params.get('room');
const user = await requireUser();
renderHeader();

const roomHref = (id) => {
  const u = new URL(location.href);
  u.search = '';
  u.searchParams.set('room', id);
  if (params.get('transport')) u.searchParams.set('transport', params.get('transport'));
  return u.pathname + u.search;
};

async function loadRooms() {
  try {
    const rooms = await api('/api/rooms');
    $('#rooms').replaceChildren(
      ...rooms.map((r) =>
        el(
          'li',
          {},
          el(
            'a',
            { href: roomHref(r.id), 'aria-current': r.id === roomId ? 'page' : null, dataset: { roomId: r.id } },
            r.name,
            el('span', { class: 'count' }, `${r.members.length}`),
          ),
        ),
      ),
    );
    $('#rooms-error').textContent = '';
  } catch (e) {
    $('#rooms-error').textContent = e.message;
  }
}

$('#create-room').onsubmit = async (e) => {
  e.preventDefault();
  try {
    const room = await api('/api/rooms', { method: 'POST', body: { name: $('#room-name').value } });
    location.href = roomHref(room.id);
  } catch (err) {
    $('#rooms-error').textContent = err.message;
  }
};

await loadRooms();

function showMembers(members) {
  $('#members').replaceChildren(...members.map((m) => el('li', { class: m === user.name ? 'me' : '' }, m)));
  $('#member-count').textContent = members.length;
  $('#member-count').dataset.count = members.length;
  const count = document.querySelector(`[data-room-id="${CSS.escape(roomId)}"] .count`);
  if (count) count.textContent = members.length;
}

function addLine(node) {
  const box = $('#messages');
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  box.append(node);
  if (atBottom) box.scrollTop = box.scrollHeight;
}

function onEvent(ev) {
  if (ev.members) showMembers(ev.members);
  if (ev.type === 'CHAT') {
    addLine(
      el(
        'div',
        { class: `msg chat${ev.writer === user.name ? ' mine' : ''}` },
        el('span', { class: 'who' }, ev.writer),
        el('span', { class: 'text' }, ev.message),
        el('span', { class: 'when' }, timeOf(ev.timestamp)),
      ),
    );
  } else if (ev.type === 'JOIN' || ev.type === 'LEAVE') {
    addLine(el('div', { class: `msg event ${ev.type.toLowerCase()}` }, ev.message, el('span', { class: 'when' }, timeOf(ev.timestamp))));
  }
}

if (roomId) {
  let room;
  try {
    room = await api(`/api/rooms/${encodeURIComponent(roomId)}`);
  } catch (e) {
    $('#no-room').replaceChildren(el('p', { class: 'error' }, e.message));
  }
  if (room) {
    $('#no-room').classList.add('hidden');
    $('#room').classList.remove('hidden');
    $('#room-title').textContent = room.name;
    $('#room-id').textContent = `you are ${user.name}`;
    document.title = `${room.name} · Herald`;
    showMembers(room.members);
    const topic = `/topic/chat/room/${roomId}`;
    const conn = connect({
      user,
      onConnect: (client, frame, { reconnected }) => {
        // (Re)joining after the subscription: we see our own JOIN and the member list.
        // The server writes as our principal: no writer is sent.
        conn.publish('/app/chat/join', { chatRoomId: roomId });
        if (reconnected) addLine(el('div', { class: 'msg event' }, 'reconnected'));
        $('#send-button').disabled = false;
      },
      onStatus: ({ state }) => {
        $('#send-button').disabled = state !== 'connected';
      },
      onError: (msg) => addLine(el('div', { class: 'msg event error' }, `error: ${msg}`)),
    });
    // Once: the subscription holds across reconnects, and a resumed session replays
    // what was said meanwhile.
    conn.subscribe(topic, (m) => onEvent(JSON.parse(m.body)), {
      onGap: () => addLine(el('div', { class: 'msg event' }, 'some messages may be missing')),
    });
    $('#send').onsubmit = (e) => {
      e.preventDefault();
      const text = $('#text').value.trim();
      if (!text || !conn.client.connected) return;
      conn.publish('/app/chat/message', { chatRoomId: roomId, message: text });
      $('#text').value = '';
    };
    addEventListener('pagehide', () => {
      if (conn.client.connected) conn.publish('/app/chat/leave', { chatRoomId: roomId });
    });
    $('#text').focus();
  }
} else {
  // No room open: still show the connection status.
  connect({ user, onConnect: () => {} });
}
