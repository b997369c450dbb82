// Home: what this server is, and this page's own live connection.
import { $, connect, currentUser, renderHeader, requestedTransport, serverSession } from './herald.js';

const s = await serverSession();
$('#node').textContent = s.node;
$('#version').textContent = `version ${s.version}`;
$('#mode').textContent = s.mode === 'anonymous' ? 'anonymous mode' : `JWT mode${s.devLogin ? ' · development login on' : ''}`;
const user = await currentUser();
$('#who').textContent = user ? user.name : 'nobody';
renderHeader();
if (requestedTransport() === 'sockjs') {
  $('#switch-transport').href = '/';
  $('#switch-transport').textContent = 'use WebSocket';
}
connect({
  user,
  onConnect: () => {},
  onStatus: ({ state, transport, detail }) => {
    $('#conn-state').textContent = state;
    $('#conn-transport').textContent = transport === 'sockjs' ? 'SockJS' : 'WebSocket';
    $('#conn-detail').textContent = detail;
    if (transport === 'sockjs' && requestedTransport() !== 'sockjs') {
      $('#switch-transport').textContent = 'fell back: the WebSocket failed';
      $('#switch-transport').removeAttribute('href');
    }
  },
});
