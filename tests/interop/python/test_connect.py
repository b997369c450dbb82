"""Connecting with stomp.py 1.0 / 1.1 / 1.2 over TCP and 1.2 over WebSocket."""

import threading
import urllib.request

import pytest

from herald_interop import KINDS, VERSION_OF, unique


def test_health_endpoint(herald):
    with urllib.request.urlopen(f"{herald.http_url}/health", timeout=5) as res:
        assert res.status == 200


@pytest.mark.parametrize("kind", KINDS)
def test_connect_negotiates_version(herald, clients, kind):
    c = clients(kind, herald)
    frame = c.rec.connected_frame
    assert frame.cmd == "CONNECTED"
    version = frame.headers.get("version")
    if VERSION_OF[kind] == "1.0":
        assert version in (None, "1.0"), f"1.0 client got version {version!r}"
    else:
        assert version == VERSION_OF[kind]
    assert c.conn.is_connected()


def test_ws_client_offers_no_subprotocol_and_is_accepted(herald, clients):
    c = clients("ws", herald)
    ws = c.conn.transport.socket
    assert ws.getstatus() == 101
    assert ws.getsubprotocol() is None  # stomp.py asks for none, and the server must not force one
    assert c.rec.connected_frame.headers.get("version") == "1.2"


@pytest.mark.parametrize("kind", KINDS)
def test_disconnect_receipt(herald, clients, kind):
    c = clients(kind, herald)
    rid = unique("bye")
    # stomp.py blocks in disconnect(receipt=...) until the RECEIPT arrives: run it on a thread.
    t = threading.Thread(target=c.conn.disconnect, kwargs={"receipt": rid}, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "no RECEIPT for DISCONNECT within 5s"
    assert c.rec.disconnected.wait(5), "connection did not close after the DISCONNECT receipt"
    assert not c.conn.is_connected()


def test_raw_connect_without_accept_version_is_stomp_1_0(herald, raw):
    r = raw(herald)
    r.send("CONNECT\nlogin:guest\npasscode:guest\n\n\x00")
    f = r.read_frame()
    assert f.command == "CONNECTED"
    assert f.headers.get("version") in (None, "1.0")


def test_raw_stomp_command_negotiates_highest_common_version(herald, raw):
    r = raw(herald)
    r.send("STOMP\naccept-version:1.0,1.1,1.2,2.0\nhost:localhost\n\n\x00")
    f = r.read_frame()
    assert f.command == "CONNECTED"
    assert f.headers.get("version") == "1.2"


def test_raw_crlf_line_endings_are_accepted_in_1_2(herald, raw):
    r = raw(herald)
    r.send("CONNECT\r\naccept-version:1.2\r\nhost:localhost\r\n\r\n\x00")
    assert r.read_frame().command == "CONNECTED"
    dest = f"/topic/{unique('crlf')}"
    r.send(f"SUBSCRIBE\r\nid:0\r\ndestination:{dest}\r\nreceipt:s\r\n\r\n\x00")
    assert r.read_frame().headers.get("receipt-id") == "s"
    r.send(f"SEND\r\ndestination:{dest}\r\n\r\ncrlf body\x00")
    m = r.read_frame()
    assert m.command == "MESSAGE"
    assert m.body == b"crlf body"
    assert m.headers["destination"] == dest


def test_frames_before_connect_are_rejected(herald, raw):
    r = raw(herald)
    r.send("SEND\ndestination:/topic/x\n\nhi\x00")
    f = r.read_frame()
    assert f.command == "ERROR"
    assert f.headers.get("message")
    r.expect_closed()


def test_unsupported_version_is_rejected(herald, raw):
    r = raw(herald)
    r.send("CONNECT\naccept-version:3.0\nhost:localhost\n\n\x00")
    f = r.read_frame()
    assert f.command == "ERROR"
    assert f.headers.get("message")
    r.expect_closed()


def test_ws_binary_mode_frames(herald):
    """stomp.py's binary_mode sends STOMP in binary WebSocket frames; herald must take those too."""
    import stomp  # noqa: F401
    from stomp.adapter.ws import WSStompConnection

    from herald_interop import Client, Recorder, WAIT

    conn = WSStompConnection([(herald.http_host, herald.http_port)], ws_path="/ws", binary_mode=True,
                             reconnect_attempts_max=1, timeout=WAIT)
    rec = Recorder()
    conn.set_listener("recorder", rec)
    c = Client("ws", conn, rec)
    try:
        conn.connect(wait=False)
        assert rec.connected.wait(WAIT), "no CONNECTED over binary WebSocket frames"
        dest = f"/topic/{unique('py-binary-ws')}"
        c.subscribe(dest)
        c.send(dest, "binary frames", headers={"x-b": "1"})
        m = rec.next_message()
        assert m.body == "binary frames"
        assert m.headers["x-b"] == "1"
    finally:
        c.close()
