// Admin dashboard: the admin API (/api/admin/sessions, /destinations, /info), message
// rates computed from /metrics counters and drawn on a <canvas>, ERROR frames by
// reason, and a form that broadcasts a notification (POST /api/notifications).
import { $, api, connect, currentUser, el, renderHeader, serverSession } from './herald.js';

const POLL_MS = 1000;
const POINTS = 120;

const s = await serverSession();
const user = await currentUser();
renderHeader();
if (s.mode === 'jwt' && !(user && user.roles.includes(s.adminRole))) {
  $('#denied').textContent = `The admin API needs the ${s.adminRole} role: sign in with a token that has it.`;
}

// ------------------------------------------------------------------ /metrics

/** Prometheus text → Map(name → [{labels, value}]). */
export function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const kv of (m[3] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2];
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: Number(m[4]) });
  }
  return out;
}
const total = (metrics, name) => (metrics.get(name) || []).reduce((a, s) => a + s.value, 0);

const series = { in: [], out: [], frames: [] };
const errorHistory = []; // [{t, byReason: Map}]
let last = null;

async function pollMetrics() {
  const r = await fetch('/metrics');
  if (!r.ok) throw new Error(`/metrics: ${r.status}`);
  const m = parseMetrics(await r.text());
  const now = performance.now();
  const sample = {
    t: now,
    in: total(m, 'herald_messages_published_total'),
    out: total(m, 'herald_messages_delivered_total'),
    frames: total(m, 'herald_frames_in_total'),
  };
  if (last) {
    const dt = (sample.t - last.t) / 1000;
    for (const k of ['in', 'out', 'frames']) {
      series[k].push(Math.max(0, (sample[k] - last[k]) / dt));
      if (series[k].length > POINTS) series[k].shift();
    }
    $('#rate-in').textContent = fmt(series.in.at(-1));
    $('#rate-out').textContent = fmt(series.out.at(-1));
  }
  last = sample;
  const byReason = new Map((m.get('herald_error_frames_total') || []).map((s) => [s.labels.reason || '?', s.value]));
  errorHistory.push({ t: now, byReason });
  while (errorHistory.length && now - errorHistory[0].t > 60_000) errorHistory.shift();
  renderErrors(byReason);
  const subs = total(m, 'herald_subscriptions');
  $('#n-subs').textContent = subs;
  $('#n-dests').textContent = `${total(m, 'herald_destinations')} destinations`;
  draw();
  window.heraldChart = { ...series, points: series.in.length };
}

const fmt = (v) => (v === undefined ? '–' : v >= 100 ? Math.round(v).toString() : v.toFixed(1));

function renderErrors(byReason) {
  const oldest = errorHistory[0] ? errorHistory[0].byReason : new Map();
  const rows = [...byReason.entries()].sort((a, b) => b[1] - a[1]);
  $('#errors tbody').replaceChildren(
    ...(rows.length
      ? rows.map(([reason, n]) =>
          el('tr', {}, el('td', {}, reason), el('td', { class: 'num' }, n), el('td', { class: 'num' }, n - (oldest.get(reason) || 0))),
        )
      : [el('tr', {}, el('td', { colspan: 3, class: 'muted' }, 'no ERROR frames sent'))]),
  );
}

// ------------------------------------------------------------------ chart

const COLORS = { in: '#3457d5', out: '#1a7f37', frames: '#b26b00' };

function draw() {
  const canvas = $('#chart');
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (canvas.width !== w * dpr || canvas.height !== h * dpr) {
    canvas.width = w * dpr;
    canvas.height = h * dpr;
  }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 52;
  const bottom = h - 22;
  const top = 10;
  const right = w - 8;
  const max = niceMax(Math.max(1, ...series.in, ...series.out, ...series.frames));
  g.font = '11px system-ui, sans-serif';
  g.fillStyle = '#667085';
  g.strokeStyle = '#e3e6eb';
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = bottom - ((bottom - top) * i) / 4;
    g.beginPath();
    g.moveTo(left, y);
    g.lineTo(right, y);
    g.stroke();
    g.textAlign = 'right';
    g.fillText(String(Number(((max * i) / 4).toPrecision(3))), left - 6, y + 4);
  }
  g.textAlign = 'left';
  g.fillText(`last ${POINTS} s`, left, h - 6);
  g.textAlign = 'right';
  g.fillText('now', right, h - 6);
  const step = (right - left) / (POINTS - 1);
  for (const k of ['frames', 'out', 'in']) {
    const pts = series[k];
    if (pts.length < 2) continue;
    g.strokeStyle = COLORS[k];
    // "out" is drawn wider underneath "in", so equal rates still show both.
    g.lineWidth = k === 'out' ? 5 : 2;
    g.beginPath();
    pts.forEach((v, i) => {
      const x = right - (pts.length - 1 - i) * step;
      const y = bottom - (v / max) * (bottom - top);
      if (i === 0) g.moveTo(x, y);
      else g.lineTo(x, y);
    });
    g.stroke();
  }
}

function niceMax(v) {
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// ------------------------------------------------------------------ admin API

async function pollAdmin() {
  try {
    const [sessions, destinations, info] = await Promise.all([
      api('/api/admin/sessions'),
      api('/api/admin/destinations'),
      api('/api/admin/info'),
    ]);
    $('#denied').textContent = '';
    $('#n-sessions').textContent = sessions.length;
    const by = {};
    for (const x of sessions) by[`${x.node} ${x.transport}`] = (by[`${x.node} ${x.transport}`] || 0) + 1;
    $('#by-transport').textContent = Object.entries(by).map(([k, n]) => `${k}: ${n}`).join(' · ') || 'none';
    $('#node').textContent = info.node;
    $('#uptime').textContent = `v${info.version} · up ${info.uptimeSeconds} s`;
    $('#sessions tbody').replaceChildren(
      ...sessions.map((x) =>
        el(
          'tr',
          {},
          el('td', {}, x.id),
          el('td', {}, x.user || '–'),
          el('td', {}, x.transport),
          el('td', {}, x.node),
          el('td', {}, new Date(x.connectedAt).toLocaleTimeString()),
          el('td', {}, x.subscriptions.map((s) => s.destination).join(', ') || '–'),
          // What a plain-socket session noted about itself (the device an INIT named).
          el('td', {}, Object.entries(x.meta || {}).map(([k, v]) => `${k}: ${v}`).join(', ') || '–'),
        ),
      ),
    );
    $('#destinations tbody').replaceChildren(
      ...(destinations.length
        ? destinations.map((d) => el('tr', {}, el('td', {}, d.destination), el('td', { class: 'num' }, d.subscribers)))
        : [el('tr', {}, el('td', { colspan: 2, class: 'muted' }, 'no subscriptions'))]),
    );
  } catch (e) {
    $('#denied').textContent = e.message;
  }
}

$('#broadcast').onsubmit = async (e) => {
  e.preventDefault();
  try {
    const r = await api('/api/notifications', {
      method: 'POST',
      body: { broadcast: true, type: 'broadcast', title: $('#b-title').value, message: $('#b-message').value },
    });
    $('#b-result').textContent = `sent #${r.notifications[0].notificationId}, reached ${r.delivered} subscription(s)`;
    $('#b-message').value = '';
  } catch (err) {
    $('#b-result').textContent = err.message;
  }
};

connect({ user, onConnect: () => {} });
let tick = 0;
async function loop() {
  try {
    await pollMetrics();
  } catch (e) {
    $('#denied').textContent = e.message;
  }
  if (tick++ % 2 === 0) await pollAdmin();
  setTimeout(loop, POLL_MS);
}
addEventListener('resize', draw);
loop();
