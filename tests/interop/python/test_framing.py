"""Framing where RabbitMQ and ActiveMQ agree, over a raw socket: a CONNECT whose
body is only end-of-lines connects, NULs and EOLs between frames are skipped, and
whatever an ERROR echoes of bad input cannot end the frame early."""

from herald_interop import unique


def test_a_connect_whose_body_is_one_eol_connects(herald, raw):
    r = raw(herald)
    r.send("CONNECT\naccept-version:1.2\nhost:localhost\n\n\n\x00")
    assert r.read_frame().command == "CONNECTED"
    r2 = raw(herald)
    r2.send("STOMP\naccept-version:1.2\nhost:localhost\n\n\r\n\n\x00")
    assert r2.read_frame().command == "CONNECTED"


def test_nuls_and_eols_between_frames_are_skipped(herald, raw):
    r = raw(herald)
    r.connect("1.2")
    dest = f"/topic/{unique('py-nul')}"
    r.send(f"\n\x00SUBSCRIBE\nid:0\ndestination:{dest}\nreceipt:s\n\n\x00\x00\r\n\x00")
    f = r.read_frame()
    assert (f.command, f.headers.get("receipt-id")) == ("RECEIPT", "s"), f
    r.send(f"\x00\nSEND\ndestination:{dest}\n\nafter a stray NUL\x00")
    m = r.read_frame()
    assert (m.command, m.body) == ("MESSAGE", b"after a stray NUL")


def test_an_echoed_command_is_escaped_and_cannot_end_the_frame(herald, raw):
    r = raw(herald)
    r.connect("1.2")
    r.send(b"FR\xff\x01OB\n\n\x00")
    rest = r.expect_closed()
    # One whole ERROR frame: its headers end before the NUL that ends it.
    head, sep, after = rest.partition(b"\n\n")
    assert sep and head.startswith(b"ERROR\n"), rest
    assert b"\x00" not in head, head
    message = next(line for line in head.split(b"\n") if line.startswith(b"message:"))
    assert b"\xff" not in message and b"\x01" not in message, message
    assert after.endswith(b"\x00") and after.count(b"\x00") == 1, after
