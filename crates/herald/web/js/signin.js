// Sign-in for the demo: a name (anonymous mode), a pasted token, or the development login.
// A token goes to the server once (POST /api/web/signin), which keeps it in the HttpOnly
// cookie; the page keeps none. ?next= is followed only when it is a path on this origin.
import { $, api, currentUser, localPath, renderHeader, serverSession, setName, tokenClaims } from './herald.js';

const next = localPath(new URLSearchParams(location.search).get('next')) || '/';
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
      if (s.mode !== 'anonymous') await api('/api/web/signout', { method: 'POST' }).catch(() => {});
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
    try {
      await api('/api/web/signin', { method: 'POST', body: { token } });
    } catch (err) {
      return fail(new Error(`the server refused the token: ${err.message}`));
    }
    location.href = next;
  };
  $('#dev-form').onsubmit = async (e) => {
    e.preventDefault();
    try {
      const roles = $('#dev-admin').checked ? [s.adminRole] : [];
      // The answer sets the HttpOnly cookie, which authenticates STOMP and REST alike.
      await api('/api/dev/login', { method: 'POST', body: { sub: $('#dev-sub').value.trim(), roles } });
      location.href = next;
    } catch (err) {
      fail(err);
    }
  };
}
renderCurrent();
renderHeader();
