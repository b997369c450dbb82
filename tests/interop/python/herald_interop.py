"""Helpers for the stomp.py interop tests: start herald, connect stomp.py
clients over TCP (1.0/1.1/1.2) and WebSocket, and a tiny raw STOMP socket for
the cases stomp.py cannot produce (malformed frames). Every wait is bounded."""

from __future__ import annotations

import itertools
import os
import queue
import re
import select
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

import stomp
from stomp.adapter.ws import WSStompConnection

LISTEN_RE = re.compile(r"^herald listening http=(\S+):(\d+) stomp=(\S+):(\d+)\s*$")
START_TIMEOUT = 20.0
WAIT = 5.0  # default bound for "this should arrive"


class HeraldProcess:
    """A running `herald serve` on ephemeral ports."""

    def __init__(self, env: dict[str, str] | None = None):
        bin_path = os.environ.get("HERALD_BIN")
        if not bin_path:
            raise RuntimeError("HERALD_BIN is not set (scripts/test.sh builds herald and exports it)")
        if not os.path.exists(bin_path):
            raise RuntimeError(f"HERALD_BIN={bin_path} does not exist")
        full_env = dict(os.environ)
        full_env.setdefault("RUST_LOG", "info")
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [bin_path, "serve", "--http", "127.0.0.1:0", "--stomp", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            text=True,
        )
        self._stderr: list[str] = []
        self._stdout: list[str] = []
        self._listening: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        try:
            m = self._listening.get(timeout=START_TIMEOUT)
        except queue.Empty:
            self._stopped = True
            self.proc.kill()
            raise RuntimeError(
                f"herald did not print its listening line within {START_TIMEOUT}s\n"
                f"stdout: {''.join(self._stdout)!r}\nstderr:\n{self.stderr()}"
            ) from None
        if m is None:
            code = self.proc.wait(timeout=5)
            raise RuntimeError(f"herald exited early with {code}\nstderr:\n{self.stderr()}")
        self.http_host, self.http_port = m.group(1), int(m.group(2))
        self.stomp_host, self.stomp_port = m.group(3), int(m.group(4))

    def _pump_stdout(self):
        for line in self.proc.stdout:
            self._stdout.append(line)
            m = LISTEN_RE.match(line.strip())
            if m:
                self._listening.put(m)
        self._listening.put(None)

    def _pump_stderr(self):
        for line in self.proc.stderr:
            self._stderr.append(line)
            if len(self._stderr) > 5000:
                del self._stderr[:1000]

    def stderr(self) -> str:
        return "".join(self._stderr)

    @property
    def http_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    def stop(self):
        if getattr(self, "_stopped", False):
            return
        self._stopped = True
        code = self.proc.poll()
        if code is not None:
            # Nobody asked it to stop: it crashed or was killed. Fail loudly, with its log.
            raise RuntimeError(
                f"herald (pid {self.proc.pid}) died during the tests with exit status {code}\n"
                f"--- herald stderr (tail) ---\n{self.stderr()[-8000:]}"
            )
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class Recorder(stomp.ConnectionListener):
    """Collects everything a stomp.py connection receives."""

    def __init__(self):
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.connected_frame = None
        self.messages: queue.Queue = queue.Queue()
        self.errors: queue.Queue = queue.Queue()
        self._receipts: dict[str, object] = {}
        self._receipt_cv = threading.Condition()
        self.heartbeats = 0
        self.heartbeat_timeouts = 0

    # --- stomp.py callbacks ---
    def on_connected(self, frame):
        self.connected_frame = frame
        self.connected.set()

    def on_disconnected(self):
        self.disconnected.set()

    def on_message(self, frame):
        self.messages.put(frame)

    def on_error(self, frame):
        self.errors.put(frame)

    def on_receipt(self, frame):
        with self._receipt_cv:
            self._receipts[frame.headers.get("receipt-id")] = frame
            self._receipt_cv.notify_all()

    def on_heartbeat(self):
        self.heartbeats += 1

    def on_heartbeat_timeout(self):
        self.heartbeat_timeouts += 1

    # --- bounded waits ---
    def next_message(self, timeout: float = WAIT, what: str = "a MESSAGE"):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None

    def next_error(self, timeout: float = WAIT):
        try:
            return self.errors.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"timed out after {timeout}s waiting for an ERROR frame") from None

    def drain_messages(self, wait: float) -> list:
        time.sleep(wait)
        out = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def wait_receipt(self, receipt_id: str, timeout: float = WAIT):
        deadline = time.monotonic() + timeout
        with self._receipt_cv:
            while receipt_id not in self._receipts:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for RECEIPT {receipt_id}")
                self._receipt_cv.wait(left)
            return self._receipts.pop(receipt_id)


_counter = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}"


def receipt_id() -> str:
    return unique("rcpt")


KINDS = ("tcp10", "tcp11", "tcp12", "ws")
VERSION_OF = {"tcp10": "1.0", "tcp11": "1.1", "tcp12": "1.2", "ws": "1.2"}


@dataclass
class Client:
    kind: str
    conn: object
    rec: Recorder
    _sub_ids: itertools.count = field(default_factory=itertools.count)

    @property
    def version(self) -> str:
        return VERSION_OF[self.kind]

    def subscribe(self, destination: str, ack: str = "auto", headers: dict | None = None, confirm: bool = True) -> str:
        sub_id = f"sub-{next(self._sub_ids)}"
        hdrs = dict(headers or {})
        rid = receipt_id() if confirm else None
        if rid:
            hdrs["receipt"] = rid
        if self.kind == "tcp10":
            hdrs["id"] = sub_id  # 1.0: id optional, but we want to match MESSAGE.subscription
            self.conn.subscribe(destination, ack=ack, headers=hdrs)
        else:
            self.conn.subscribe(destination, id=sub_id, ack=ack, headers=hdrs)
        if rid:
            self.rec.wait_receipt(rid)
        return sub_id

    def send(self, destination: str, body, headers: dict | None = None, confirm: bool = False, **kw):
        hdrs = dict(headers or {})
        rid = receipt_id() if confirm else None
        if rid:
            hdrs["receipt"] = rid
        self.conn.send(destination, body, headers=hdrs, **kw)
        if rid:
            self.rec.wait_receipt(rid)

    def ack(self, frame, **kw):
        if self.version == "1.2":
            self.conn.ack(frame.headers["ack"], **kw)
        elif self.version == "1.1":
            self.conn.ack(frame.headers["message-id"], frame.headers["subscription"], **kw)
        else:
            self.conn.ack(frame.headers["message-id"], **kw)

    def nack(self, frame, **kw):
        if self.version == "1.2":
            self.conn.nack(frame.headers["ack"], **kw)
        else:
            self.conn.nack(frame.headers["message-id"], frame.headers["subscription"], **kw)

    def sync(self):
        """Round trip a receipted no-op-ish frame so that everything sent before has been processed."""
        self.send(f"/topic/{unique('sync')}", "", confirm=True)

    def close(self, timeout: float = 3.0):
        """DISCONNECT (with receipt) if still connected; always tear the socket down."""
        try:
            if self.conn.is_connected():
                self.conn.disconnect()
                self.rec.disconnected.wait(timeout)
        except Exception:
            pass
        finally:
            self.abort()

    def abort(self):
        """Drop the connection without DISCONNECT."""
        # websocket-client's shutdown() only close()s its socket; while stomp.py's
        # receiver thread sits in recv() the kernel then sends no FIN until that
        # recv times out. Shut the raw socket down first so the drop is immediate.
        t = self.conn.transport
        raw_sock = getattr(t.socket, "sock", t.socket)
        if raw_sock is not None:
            try:
                raw_sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            self.conn.transport.disconnect_socket()
        except Exception:
            pass
        try:
            self.conn.transport.stop()
        except Exception:
            pass


def make_connection(kind: str, server: HeraldProcess, heartbeats=(0, 0)):
    hp = [(server.stomp_host, server.stomp_port)]
    common = dict(reconnect_attempts_max=1, timeout=WAIT)
    if kind == "tcp10":
        return stomp.Connection10(hp, **common)
    # Only for pointing the suite at another broker by hand; herald ignores the host header.
    common["vhost"] = os.environ.get("HERALD_INTEROP_VHOST")
    if kind == "tcp11":
        return stomp.Connection11(hp, heartbeats=heartbeats, **common)
    if kind == "tcp12":
        return stomp.Connection12(hp, heartbeats=heartbeats, **common)
    if kind == "ws":
        return WSStompConnection(
            [(server.http_host, server.http_port)], ws_path="/ws", heartbeats=heartbeats, **common
        )
    raise ValueError(kind)


def connect(kind: str, server: HeraldProcess, heartbeats=(0, 0), headers: dict | None = None) -> Client:
    conn = make_connection(kind, server, heartbeats)
    rec = Recorder()
    conn.set_listener("recorder", rec)
    client = Client(kind, conn, rec)
    conn.connect("guest", "guest", wait=False, headers=headers or {})
    deadline = time.monotonic() + WAIT
    while not rec.connected.is_set() and not rec.disconnected.is_set() and time.monotonic() < deadline:
        rec.connected.wait(0.05)
    if not rec.connected.is_set():
        errors = []
        while not rec.errors.empty():
            errors.append(rec.errors.get_nowait())
        client.abort()
        raise AssertionError(
            f"{kind}: no CONNECTED within {WAIT}s; errors={[(e.headers, e.body) for e in errors]}"
        )
    return client


# ---------------------------------------------------------------- raw STOMP


@dataclass
class RawFrame:
    command: str
    headers: dict
    body: bytes


class RawStomp:
    """A bare TCP STOMP connection: send exact bytes, read frames, detect close."""

    def __init__(self, server: HeraldProcess):
        self.sock = socket.create_connection((server.stomp_host, server.stomp_port), timeout=WAIT)
        self.buf = b""
        self.closed = False

    def send(self, data: bytes | str):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def connect(self, version: str = "1.2", extra: str = "") -> RawFrame:
        self.send(f"CONNECT\naccept-version:{version}\nhost:localhost\n{extra}\n\x00")
        f = self.read_frame()
        assert f.command == "CONNECTED", f"expected CONNECTED, got {f}"
        return f

    def _fill(self, deadline: float) -> bool:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([self.sock], [], [], left)
        if not r:
            return False
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, OSError):
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def read_frame(self, timeout: float = WAIT) -> RawFrame:
        deadline = time.monotonic() + timeout
        while True:
            # Skip heart-beat EOLs between frames.
            self.buf = self.buf.lstrip(b"\r\n")
            frame = self._parse()
            if frame is not None:
                return frame
            if not self._fill(deadline):
                raise AssertionError(
                    f"no complete frame within {timeout}s (closed={self.closed}, buffered={self.buf[:200]!r})"
                )

    def _parse(self) -> RawFrame | None:
        head_end = self.buf.find(b"\n\n")
        crlf_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0 and crlf_end < 0:
            return None
        if crlf_end >= 0 and (head_end < 0 or crlf_end < head_end):
            head, body_start = self.buf[:crlf_end], crlf_end + 4
        else:
            head, body_start = self.buf[:head_end], head_end + 2
        lines = head.decode().replace("\r\n", "\n").split("\n")
        command, headers = lines[0], {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.setdefault(k, v)
        if "content-length" in headers:
            n = int(headers["content-length"])
            if len(self.buf) < body_start + n + 1:
                return None
            body = self.buf[body_start : body_start + n]
            assert self.buf[body_start + n : body_start + n + 1] == b"\x00", "frame not NUL-terminated"
            self.buf = self.buf[body_start + n + 1 :]
        else:
            nul = self.buf.find(b"\x00", body_start)
            if nul < 0:
                return None
            body = self.buf[body_start:nul]
            self.buf = self.buf[nul + 1 :]
        return RawFrame(command, headers, body)

    def expect_closed(self, timeout: float = WAIT) -> bytes:
        """Wait for the server to close; return any bytes received meanwhile."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if not self._fill(deadline) and not self.closed:
                raise AssertionError(f"server did not close the connection within {timeout}s")
        return self.buf

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
