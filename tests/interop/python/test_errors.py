"""Bad input: an ERROR frame whose message header names the problem, then the connection closes."""

import pytest

from herald_interop import unique

MAX_FRAME = 4096


def expect_error(r, payload: bytes | str, pattern: str):
    import re

    r.send(payload)
    f = r.read_frame()
    assert f.command == "ERROR", f"expected ERROR, got {f.command} {f.headers}"
    msg = f.headers.get("message", "")
    assert msg, f"ERROR without a message header: {f.headers}"
    assert re.search(pattern, msg, re.I), f"ERROR message {msg!r} does not name the problem ({pattern})"
    r.expect_closed()
    return f


def test_stomp_py_subscribe_without_destination(herald, clients):
    c = clients("tcp12", herald)
    c.conn.send_frame("SUBSCRIBE", {"id": "1"})
    err = c.rec.next_error()
    assert "destination" in err.headers.get("message", "").lower(), err.headers
    assert c.rec.disconnected.wait(5), "server must close the connection after ERROR"


def test_stomp_py_ws_duplicate_subscription_id(herald, clients):
    c = clients("ws", herald)
    c.conn.subscribe(f"/topic/{unique('a')}", id="same")
    c.conn.subscribe(f"/topic/{unique('b')}", id="same")
    err = c.rec.next_error()
    msg = err.headers.get("message", "")
    assert any(w in msg.lower() for w in ("same", "duplicate", "already", "in use", "exists")), msg
    assert c.rec.disconnected.wait(5)


@pytest.mark.parametrize(
    "frame,pattern",
    [
        ("FROBNICATE\n\n\x00", r"FROBNICATE|command"),
        ("SEND\n\nno destination\x00", r"destination"),
        ("SUBSCRIBE\ndestination:/topic/x\n\n\x00", r"\bid\b|subscription"),
        ("UNSUBSCRIBE\n\n\x00", r"\bid\b|subscription"),
        ("ACK\n\n\x00", r"\bid\b|ack"),
        ("COMMIT\ntransaction:never-begun\n\n\x00", r"transaction|never-begun"),
        ("BEGIN\n\n\x00", r"transaction"),
        ("SEND\ndestination:/topic/x\nx-bad:tab\\there\n\n\x00", r"escape|\\t|header"),
        ("SEND\ndestination:/topic/x\ncontent-length:3\n\nhello\x00", r"NUL|content-length|terminat|length"),
        ("SEND\ndestination:/topic/x\ncontent-length:abc\n\nhello\x00", r"content-length"),
    ],
    ids=[
        "unknown-command",
        "send-no-destination",
        "subscribe-no-id",
        "unsubscribe-no-id",
        "ack-no-id",
        "commit-unknown-tx",
        "begin-no-tx",
        "invalid-escape",
        "content-length-mismatch",
        "content-length-not-a-number",
    ],
)
def test_raw_bad_frame_gets_error(herald, raw, frame, pattern):
    r = raw(herald)
    r.connect("1.2")
    expect_error(r, frame, pattern)


def test_error_has_receipt_id_of_offending_frame(herald, raw):
    r = raw(herald)
    r.connect("1.2")
    f = expect_error(r, "SEND\nreceipt:oops-1\n\nx\x00", r"destination")
    assert f.headers.get("receipt-id") == "oops-1"


def test_frame_larger_than_max_frame(herald_with_env, raw):
    server = herald_with_env({"HERALD_STOMP__MAX_FRAME": str(MAX_FRAME)})
    r = raw(server)
    r.connect("1.2")
    # Just under the limit is fine…
    ok_body = "y" * (MAX_FRAME // 2)
    r.send(f"SEND\ndestination:/topic/ok\nreceipt:fits\n\n{ok_body}\x00")
    assert r.read_frame().headers.get("receipt-id") == "fits"
    # …over it is an ERROR.
    expect_error(r, f"SEND\ndestination:/topic/x\n\n{'x' * (MAX_FRAME * 2)}\x00", r"large|size|max|limit|exceed|long")


def test_header_names_case_sensitive_and_first_wins(herald, raw):
    """STOMP 1.2: repeated header -> first occurrence wins."""
    dest = f"/topic/{unique('py-repeat')}"
    sub, pub = raw(herald), raw(herald)
    sub.connect()
    pub.connect()
    sub.send(f"SUBSCRIBE\nid:r\ndestination:{dest}\nreceipt:ok\n\n\x00")
    assert sub.read_frame().command == "RECEIPT"
    pub.send(f"SEND\ndestination:{dest}\nx-rep:first\nx-rep:second\nX-Rep:upper\n\nb\x00")
    m = sub.read_frame()
    assert m.command == "MESSAGE"
    assert m.headers["x-rep"] == "first"
    assert m.headers.get("X-Rep") == "upper"
