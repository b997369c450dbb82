"""Producer flow control with stomp.py: a burst to a topic reaches the subscriber
that reads; the one that has stopped reading is closed; the publisher's last
RECEIPT comes."""

import socket
import time

import pytest

from herald_interop import WAIT, unique

BURST = 3000
BODY = "x" * 2048
SEND_TIMEOUT = 2.0
# A bound on a wait, not a speed claim: the stall is noticed within 1.5 x
# send_timeout; the rest is a few MiB on loopback, on a shared machine.
SLACK = 20.0


def stalled_subscriber(server, dest):
    """A raw STOMP subscriber with a tiny receive buffer that never reads again."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(WAIT)
    s.connect((server.stomp_host, server.stomp_port))
    s.sendall(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
    s.sendall(f"SUBSCRIBE\nid:stalled\ndestination:{dest}\nreceipt:sub\n\n\0".encode())
    got = b""
    while b"receipt-id:sub" not in got:
        chunk = s.recv(4096)
        assert chunk, "the stalled subscriber was closed before it subscribed"
        got += chunk
    return s


def closed_within(s, limit):
    """Reads (and drops) everything until the server closes the socket."""
    deadline = time.monotonic() + limit
    s.settimeout(0.5)
    while time.monotonic() < deadline:
        try:
            if not s.recv(1 << 16):
                return True
        except socket.timeout:
            continue
        except OSError:
            return True
    return False


@pytest.mark.parametrize("kind", ["tcp12", "ws"])
def test_a_burst_reaches_the_reader_and_the_stalled_subscriber_is_closed(herald_with_env, clients, kind):
    server = herald_with_env({"HERALD_STOMP__SEND_TIMEOUT": f"{int(SEND_TIMEOUT)}s"})
    dest = f"/topic/{unique('py-burst')}"
    stalled = stalled_subscriber(server, dest)
    reader = clients(kind, server)
    reader.subscribe(dest)
    publisher = clients(kind, server)

    start = time.monotonic()
    for n in range(BURST):
        publisher.conn.send(dest, BODY, headers={"n": str(n)})
    publisher.send(dest, BODY, headers={"n": str(BURST)}, confirm=False, receipt="last")
    publisher.rec.wait_receipt("last", timeout=SEND_TIMEOUT + SLACK)
    took = time.monotonic() - start

    got = [reader.rec.next_message(timeout=SLACK, what=f"message {n}") for n in range(BURST + 1)]
    assert [int(m.headers["n"]) for m in got] == list(range(BURST + 1))
    assert reader.rec.errors.empty(), [e.headers for e in list(reader.rec.errors.queue)]
    assert closed_within(stalled, WAIT + SEND_TIMEOUT), "the stalled subscriber is still connected"
    print(f"{kind}: the last RECEIPT came {took:.2f}s after the burst began")
