"""Heart-beats with stomp.py's own heart-beat thread, over TCP and WebSocket."""

import time

import pytest

from herald_interop import unique

SERVER_MS = 300


@pytest.fixture(scope="module")
def fast_herald():
    from herald_interop import HeraldProcess

    server = HeraldProcess(
        {"HERALD_STOMP__HEARTBEAT_SEND": f"{SERVER_MS}ms", "HERALD_STOMP__HEARTBEAT_RECEIVE": f"{SERVER_MS}ms"}
    )
    yield server
    server.stop()


@pytest.mark.parametrize("kind", ["tcp11", "tcp12", "ws"])
def test_heartbeats_keep_an_idle_connection_up(fast_herald, clients, kind):
    c = clients(kind, fast_herald, heartbeats=(400, 400))
    hb = c.rec.connected_frame.headers.get("heart-beat")
    assert hb, "CONNECTED must answer a heart-beat request with a heart-beat header"
    sx, sy = (int(v) for v in hb.split(","))
    assert SERVER_MS <= sx <= 400 and SERVER_MS <= sy <= 400, f"heart-beat:{hb}"
    time.sleep(3.0)  # ~7 negotiated intervals of silence from the application
    assert c.rec.heartbeats >= 3, f"only {c.rec.heartbeats} server heart-beats in 3s"
    assert c.rec.heartbeat_timeouts == 0
    assert not c.rec.disconnected.is_set(), "connection dropped while both sides were heart-beating"
    dest = f"/topic/{unique('py-hb')}"
    c.subscribe(dest)
    c.send(dest, "still alive")
    assert c.rec.next_message().body == "still alive"


@pytest.mark.parametrize("version", ["1.0", "1.2"])
def test_client_without_heart_beat_header_gets_no_heart_beats(fast_herald, raw, version):
    """No heart-beat header in CONNECT means 0,0: the server must not send EOLs (nor drop us)."""
    r = raw(fast_herald)
    r.connect(version)
    time.sleep(1.0)
    r.sock.setblocking(False)
    try:
        data = r.sock.recv(100)
    except BlockingIOError:
        data = None
    assert data is None, f"server sent {data!r} to a client that asked for no heart-beats"
    r.sock.setblocking(True)
    r.send("SEND\ndestination:/topic/x\nreceipt:alive\n\n\x00")
    assert r.read_frame().headers.get("receipt-id") == "alive"
