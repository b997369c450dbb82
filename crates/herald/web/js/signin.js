// Sign-in for the demo: a name (anonymous mode), a pasted token, or the development login.
import { $, api, currentUser, renderHeader, serverSession, setName, setToken, storedToken, tokenClaims } from './herald.js';

const next = new URLSearchParams(location.search).get('next') || '/';
const s = await serverSession(true);
const show = (id) => $(id).classList.remove('hidden');
const fail = (e) => {
  $('#error').textContent = e.message || String(e);
};

async function renderCurrent() {
  const user = await currentUser();
  const box = $('#current');
  box.replaceChildren();
  const p = document.createElement('p');
  p.id = 'signed-in';
  p.textContent = user
    ? `Signed in as ${user.name}${user.roles.length ? ` (roles: ${user.roles.join(', ')})` : ''} — by ${user.via}.`
    : `Not signed in. This server is in ${s.mode === 'anonymous' ? 'anonymous' : 'JWT'} mode${s.required ? ' and requires a token' : ''}.`;
  box.append(p);
  if (s.error) {
    const e = document.createElement('p');
    e.className = 'error';
    e.textContent = `The stored credentials were refused: ${s.error}`;
    box.append(e);
  }
  if (user) {
    const out = document.createElement('button');
    out.className = 'secondary';
    out.id = 'sign-out';
    out.textContent = 'Sign out';
    out.onclick = async () => {
      setName('');
      setToken('');
      if (s.devLogin) await api('/api/dev/logout', { method: 'POST' }).catch(() => {});
      await serverSession(true);
      renderCurrent();
      renderHeader();
    };
    const go = document.createElement('a');
    go.href = next;
    go.textContent = 'Continue';
    go.style.marginLeft = '1rem';
    box.append(out, go);
  }
}

if (s.mode === 'anonymous') {
  show('#anonymous');
  $('#name-form').onsubmit = (e) => {
    e.preventDefault();
    setName($('#name').value.trim());
    location.href = next;
  };
} else {
  show('#jwt');
  if (s.devLogin) show('#dev');
  $('#token-form').onsubmit = async (e) => {
    e.preventDefault();
    const token = $('#token').value.trim();
    if (!tokenClaims(token)) return fail(new Error('that is not a JWT (three base64url parts)'));
    setToken(token);
    const check = await serverSession(true);
    if (!check.user) {
      setToken('');
      return fail(new Error(`the server refused the token: ${check.error || 'unknown reason'}`));
    }
    location.href = next;
  };
  $('#dev-form').onsubmit = async (e) => {
    e.preventDefault();
    try {
      const roles = $('#dev-admin').checked ? [s.adminRole] : [];
      const r = await api('/api/dev/login', { method: 'POST', body: { sub: $('#dev-sub').value.trim(), roles } });
      // The cookie authenticates the WebSocket/SockJS handshake; the bearer copy is for
      // the admin REST API, which reads only the Authorization header.
      setToken(r.token);
      location.href = next;
    } catch (err) {
      fail(err);
    }
  };
  if (storedToken()) $('#token').value = storedToken();
}
renderCurrent();
renderHeader();
