"""Application destinations with stomp.py: the demo apps over TCP and WebSocket, user destinations
across a TCP and a WebSocket session, and the HTTP backend proxy against a backend
written in Python (http.server)."""

from __future__ import annotations

import json
import queue
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from herald_interop import WAIT, Client, Recorder, make_connection, receipt_id, unique


# ---------------------------------------------------------------- helpers


def connect_as(kind, server, login, opened):
    """A stomp.py client logged in as `login` (the shared helper always uses "guest")."""
    conn = make_connection(kind, server)
    rec = Recorder()
    conn.set_listener("recorder", rec)
    client = Client(kind, conn, rec)
    opened.append(client)
    conn.connect(login, "secret", wait=False)
    if not rec.connected.wait(WAIT):
        raise AssertionError(f"{kind}: no CONNECTED for {login} within {WAIT}s")
    return client


@pytest.fixture
def users():
    opened = []
    yield lambda kind, server, login: connect_as(kind, server, login, opened)
    for c in opened:
        c.close()


def send_app(client, destination, payload, confirm=True):
    body = payload if isinstance(payload, str) else json.dumps(payload)
    client.send(destination, body, headers={"content-type": "application/json"}, confirm=confirm)


def expect_nothing_more(client, what):
    """Round-trips a unique sentinel through a topic `client` subscribes to now; every
    message before it is unexpected."""
    dest = f"/topic/{unique('sentinel')}"
    client.subscribe(dest)
    client.send(dest, "sentinel", confirm=True)
    extra = []
    while True:
        m = client.rec.next_message(what=f"sentinel for {what}")
        if m.headers["destination"] == dest:
            break
        extra.append((m.headers["destination"], m.body))
    assert extra == [], f"{what}: unexpected messages {extra}"


def http(server, method, path, body=None):
    data = None if body is None else (body if isinstance(body, str) else json.dumps(body)).encode()
    req = urllib.request.Request(server.http_url + path, data=data, method=method)
    if data is not None:
        req.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=WAIT) as resp:
            status, text = resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def assert_recent(ts):
    from datetime import datetime, timezone

    t = datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert abs((datetime.now(timezone.utc) - t).total_seconds()) < 60, ts


# ---------------------------------------------------------------- seed apps


@pytest.mark.parametrize("kind", ["tcp12", "ws"])
def test_chat_send_private_and_greeting(herald, users, kind):
    alice, bob, carol = users(kind, herald, "alice"), users("tcp12", herald, "bob"), users("ws", herald, "carol")
    bob.subscribe("/topic/chat")
    bob.subscribe("/user/queue/messages")
    carol.subscribe("/user/queue/messages")
    bob.subscribe("/topic/greetings")

    send_app(alice, "/app/chat.send", {"content": "hello all"})
    m = bob.rec.next_message(what="chat message")
    assert m.headers["destination"] == "/topic/chat"
    v = json.loads(m.body)
    assert (v["sender"], v["content"]) == ("alice", "hello all")
    assert_recent(v["timestamp"])

    send_app(alice, "/app/chat.private", {"recipient": "bob", "content": "psst"})
    m = bob.rec.next_message(what="private message")
    assert m.headers["destination"] == "/user/queue/messages"
    v = json.loads(m.body)
    assert (v["sender"], v["recipient"], v["content"]) == ("alice", "bob", "psst")

    send_app(alice, "/app/hello", {"name": "<b>"})
    m = bob.rec.next_message(what="greeting")
    assert json.loads(m.body) == {"content": "Hello, &lt;b&gt;!"}
    expect_nothing_more(carol, "carol (not the recipient)")


@pytest.mark.parametrize("kind", ["tcp10", "tcp11", "tcp12", "ws"])
def test_bad_payload_errors_the_sender_only(herald, users, kind):
    bad, good = users(kind, herald, "mallory"), users("tcp12", herald, "alice")
    good.subscribe("/topic/chat")
    rid = receipt_id()
    bad.conn.send("/app/chat.send", "not json", headers={"receipt": rid})
    e = bad.rec.next_error()
    assert "invalid payload for /app/chat.send" in e.headers["message"], e.headers
    assert e.headers.get("receipt-id") == rid
    assert good.rec.errors.empty()
    send_app(good, "/app/chat.send", {"content": "fine"})
    assert json.loads(good.rec.next_message().body)["content"] == "fine"


def test_rooms_over_stomp_and_rest(herald, users):
    status, room = http(herald, "POST", "/api/rooms", {"name": unique("py-room")})
    assert status == 201, room
    rid = room["id"]
    status, err = http(herald, "POST", "/api/rooms", {"name": ""})
    assert status == 400 and "error" in err, err

    watcher, joiner = users("ws", herald, "watcher"), users("tcp12", herald, "jo")
    watcher.subscribe(f"/topic/chat/room/{rid}")
    send_app(joiner, "/app/chat/join", {"chatRoomId": rid, "writer": "Jo"})
    v = json.loads(watcher.rec.next_message(what="JOIN").body)
    assert (v["type"], v["writer"], v["members"]) == ("JOIN", "jo", ["jo"])
    assert http(herald, "GET", f"/api/rooms/{rid}")[1]["members"] == ["jo"]
    send_app(joiner, "/app/chat/message", {"chatRoomId": rid, "writer": "Jo", "message": "hey"})
    v = json.loads(watcher.rec.next_message(what="CHAT").body)
    assert (v["type"], v["message"]) == ("CHAT", "hey")
    joiner.close()
    v = json.loads(watcher.rec.next_message(what="LEAVE on disconnect").body)
    assert (v["type"], v["writer"], v["members"]) == ("LEAVE", "jo", [])
    assert http(herald, "GET", f"/api/rooms/{rid}")[1]["members"] == []


# ---------------------------------------------------------------- user destinations


def test_user_destination_reaches_every_session_tcp_and_ws(herald, users):
    bob_tcp, bob_ws, alice = users("tcp12", herald, "bob"), users("ws", herald, "bob"), users("tcp11", herald, "alice")
    for c in (bob_tcp, bob_ws, alice):
        c.subscribe("/user/queue/x")
    # The default rules let a client send only to its own user destinations.
    bob_ws.send("/user/bob/queue/x", "for bob", confirm=True)
    for c in (bob_tcp, bob_ws):
        m = c.rec.next_message(what="bob's message")
        assert (m.body, m.headers["destination"]) == ("for bob", "/user/queue/x")
    expect_nothing_more(alice, "alice")
    status, v = http(herald, "POST", "/api/users/bob/messages", {"destination": "/queue/x", "body": {"n": 1}})
    assert (status, v["delivered"]) == (202, 2), v
    assert isinstance(v["offset"], int) and isinstance(v["epoch"], str), v
    for c in (bob_tcp, bob_ws):
        assert json.loads(c.rec.next_message().body) == {"n": 1}
    expect_nothing_more(alice, "alice after REST")


# ---------------------------------------------------------------- HTTP backend in Python


class PyBackend:
    """A backend in another language: http.server answering Herald's proxy calls."""

    def __init__(self):
        self.requests: queue.Queue = queue.Queue()
        self.release = threading.Event()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("content-length") or 0)
                req = json.loads(self.rfile.read(length))
                backend.requests.put(req)
                path, user = req["path"], req["user"]
                if path == "/orders.create":
                    order = json.loads(req["body"])
                    self.reply(200, {"messages": [
                        {"destination": "/topic/orders", "body": {"order": order, "by": user}},
                        {"destination": "/queue/confirmations", "user": user, "body": "confirmed"},
                    ]})
                elif path == "/nothing":
                    self.reply(204, None)
                elif path == "/rejected":
                    self.reply(422, {"error": "python says no"})
                elif path == "/broken":
                    self.reply(503, {"error": "python backend overloaded"})
                elif path == "/hang":
                    backend.release.wait(30)
                    self.reply(204, None)
                else:
                    self.reply(404, {"error": f"no route {path}"})

            def reply(self, status, payload):
                data = b"" if payload is None else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # herald gave up (timeout) and closed the connection

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/herald"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def next_request(self, timeout=WAIT):
        try:
            return self.requests.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the backend received nothing within {timeout}s") from None

    def forget(self):
        """Drops what earlier tests left in the request log."""
        while not self.requests.empty():
            self.requests.get_nowait()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def backend():
    b = PyBackend()
    yield b
    b.stop()


@pytest.fixture(autouse=True)
def _fresh_backend_log(request):
    if "backend" in request.fixturenames:
        request.getfixturevalue("backend").forget()


@pytest.fixture(scope="module")
def herald_backend(backend):
    from herald_interop import HeraldProcess

    server = HeraldProcess({
        "HERALD_APPS__BACKEND__URL": backend.url,
        "HERALD_APPS__BACKEND__TIMEOUT": "2s",
        "HERALD_APPS__DEMO": "false",
    })
    yield server
    server.stop()


@pytest.mark.parametrize("kind", ["tcp12", "ws"])
def test_backend_request_and_published_answer(herald_backend, backend, users, kind):
    alice, bob = users(kind, herald_backend, "alice"), users("tcp12", herald_backend, "bob")
    for c in (alice, bob):
        c.subscribe("/topic/orders")
        c.subscribe("/user/queue/confirmations")
    session = alice.rec.connected_frame.headers["session"]
    alice.send("/app/orders.create", json.dumps({"item": "book"}),
               headers={"content-type": "application/json", "x-trace": "py-1"}, confirm=True)
    req = backend.next_request()
    assert req["destination"] == "/app/orders.create"
    assert req["path"] == "/orders.create"
    assert json.loads(req["body"]) == {"item": "book"}
    assert req["user"] == "alice" and req["roles"] == [] and req["session"] == session
    assert req["headers"]["x-trace"] == "py-1"
    got = {}
    for _ in range(2):
        m = alice.rec.next_message(what="a published answer")
        got[m.headers["destination"]] = m
    assert json.loads(got["/topic/orders"].body) == {"order": {"item": "book"}, "by": "alice"}
    assert got["/user/queue/confirmations"].body == "confirmed"
    assert bob.rec.next_message().headers["destination"] == "/topic/orders"
    expect_nothing_more(bob, "bob (not the confirmation's user)")


def test_backend_204_and_errors(herald_backend, backend, users):
    c = users("tcp12", herald_backend, "alice")
    c.subscribe("/topic/orders")
    send_app(c, "/app/nothing", {})
    assert backend.next_request()["path"] == "/nothing"
    expect_nothing_more(c, "after 204")
    for path, words in (("/rejected", ("422", "python says no")), ("/broken", ("503", "python backend overloaded"))):
        e_client = users("ws", herald_backend, "erin")
        rid = receipt_id()
        e_client.conn.send(f"/app{path}", "{}", headers={"receipt": rid})
        e = e_client.rec.next_error()
        for w in words:
            assert w in e.headers["message"], (path, e.headers)
        assert e.headers.get("receipt-id") == rid
    assert c.rec.errors.empty()
    send_app(c, "/app/nothing", {})  # alice's connection is unaffected


def test_backend_timeout_does_not_block_others(herald_backend, backend, users):
    slow, other = users("tcp12", herald_backend, "slowpoke"), users("ws", herald_backend, "other")
    other.subscribe("/topic/orders")
    slow.conn.send("/app/hang", "{}", headers={"receipt": receipt_id()})
    assert backend.next_request()["path"] == "/hang"
    # While slowpoke's call hangs in the backend, another session's round trips finish.
    send_app(other, "/app/orders.create", {"item": "pen"})
    assert backend.next_request()["user"] == "other"
    assert other.rec.next_message().headers["destination"] == "/topic/orders"
    assert slow.rec.errors.empty(), "slowpoke's call ended before the other session's round trip"
    e = slow.rec.next_error(timeout=WAIT + 2)
    assert "timed out" in e.headers["message"] and "/app/hang" in e.headers["message"], e.headers
    backend.release.set()


def test_unreachable_backend(herald_with_env, users):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = herald_with_env({"HERALD_APPS__BACKEND__URL": f"http://127.0.0.1:{port}/"})
    c = users("tcp12", server, "alice")
    c.conn.send("/app/orders.create", "{}", headers={"receipt": receipt_id()})
    e = c.rec.next_error()
    assert "unreachable" in e.headers["message"], e.headers
