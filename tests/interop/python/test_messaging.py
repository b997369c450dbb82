"""Topic/queue messaging, acks, receipts and transactions with stomp.py."""

import pytest

from herald_interop import KINDS, receipt_id, unique

ACK_KINDS = ("tcp11", "tcp12", "ws")  # NACK and client-individual need STOMP 1.1+


@pytest.mark.parametrize("kind", KINDS)
def test_topic_pubsub(herald, clients, kind):
    pub, sub = clients(kind, herald), clients(kind, herald)
    dest = f"/topic/{unique('py-topic')}"
    sub_id = sub.subscribe(dest)
    pub.send(dest, "héllo wörld", content_type="text/plain", headers={"x-custom": "yes", "x-n": "42"})
    m = sub.rec.next_message()
    assert m.body == "héllo wörld"
    assert m.headers["destination"] == dest
    assert m.headers["subscription"] == sub_id
    assert m.headers.get("message-id")
    assert m.headers["x-custom"] == "yes"
    assert m.headers["x-n"] == "42"
    assert m.headers["content-type"] == "text/plain"
    assert int(m.headers["content-length"]) == len("héllo wörld".encode())


def test_topic_fan_out_across_transports_and_versions(herald, clients):
    subs = {kind: clients(kind, herald) for kind in KINDS}
    dest = f"/topic/{unique('py-fanout')}"
    for c in subs.values():
        c.subscribe(dest)
    for sender_kind in KINDS:
        subs[sender_kind].send(dest, f"from-{sender_kind}", headers={"x-from": sender_kind})
    for kind, c in subs.items():
        got = [c.rec.next_message(what=f"{kind} msg {i}") for i in range(len(KINDS))]
        assert sorted(m.body for m in got) == sorted(f"from-{k}" for k in KINDS), kind
        assert all(m.headers["x-from"] == m.body[len("from-"):] for m in got)
        assert c.rec.drain_messages(0.2) == []


@pytest.mark.parametrize("kind", ["tcp12", "ws"])
def test_topic_wildcards(herald, clients, kind):
    pub, sub = clients("tcp12", herald), clients(kind, herald)
    base = unique("py-wild")
    one = sub.subscribe(f"/topic/{base}.*")
    many = sub.subscribe(f"/topic/{base}/**")
    pub.send(f"/topic/{base}.a", "one-dot")
    pub.send(f"/topic/{base}/b/c", "two-slash")
    pub.send(f"/topic/{base}-other/x", "no-match", confirm=True)
    got = {(m.headers["subscription"], m.body) for m in [sub.rec.next_message(), sub.rec.next_message(), sub.rec.next_message()]}
    assert got == {(one, "one-dot"), (many, "one-dot"), (many, "two-slash")}
    assert sub.rec.drain_messages(0.3) == []


@pytest.mark.parametrize("kind", ["tcp12", "ws", "tcp10"])
def test_queue_round_robin(herald, clients, kind):
    pub, c1, c2 = clients("tcp12", herald), clients(kind, herald), clients(kind, herald)
    dest = f"/queue/{unique('py-queue')}"
    c1.subscribe(dest)
    c2.subscribe(dest)
    bodies = [f"job-{i}" for i in range(8)]
    for b in bodies:
        pub.send(dest, b)
    pub.sync()
    got1 = [c1.rec.next_message().body for _ in range(4)]
    got2 = [c2.rec.next_message().body for _ in range(4)]
    assert c1.rec.drain_messages(0.3) == [] and c2.rec.drain_messages(0) == []
    assert sorted(got1 + got2) == sorted(bodies)
    evens, odds = bodies[0::2], bodies[1::2]
    assert (got1, got2) in ((evens, odds), (odds, evens)), f"not round robin: {got1} / {got2}"


@pytest.mark.parametrize("kind", ACK_KINDS)
def test_client_individual_ack_and_nack(herald, clients, kind):
    pub, c1 = clients("tcp12", herald), clients(kind, herald)
    dest = f"/queue/{unique('py-ack')}"
    c1.subscribe(dest, ack="client-individual")
    for b in ("m1", "m2", "m3"):
        pub.send(dest, b)
    ms = [c1.rec.next_message(what=f"m{i}") for i in (1, 2, 3)]
    assert [m.body for m in ms] == ["m1", "m2", "m3"]
    if kind != "tcp11":
        assert all(m.headers.get("ack") for m in ms), "1.2 MESSAGE needs an ack header"
    # ACK m3 only (not cumulative), NACK m1: m1 goes to another consumer, m2 stays in flight.
    r1, r2 = receipt_id(), receipt_id()
    c1.ack(ms[2], receipt=r1)
    c1.rec.wait_receipt(r1)
    c2 = clients(kind, herald)
    c2.subscribe(dest, ack="client-individual")
    c1.nack(ms[0], receipt=r2)
    c1.rec.wait_receipt(r2)
    again = c2.rec.next_message(what="m1 redelivered after NACK")
    assert again.body == "m1"
    c2.ack(again)
    # Drop c1 without DISCONNECT: m2 was never acked and must be redelivered to c2.
    c1.abort()
    m2 = c2.rec.next_message(what="m2 redelivered after c1 dropped")
    assert m2.body == "m2"
    c2.ack(m2)
    assert c2.rec.drain_messages(0.5) == [], "m3 was acked and must not come back"


def test_client_ack_is_cumulative(herald, clients):
    pub, c1 = clients("tcp12", herald), clients("tcp12", herald)
    dest = f"/queue/{unique('py-cumulative')}"
    c1.subscribe(dest, ack="client")
    for b in ("a", "b", "c", "d"):
        pub.send(dest, b)
    ms = [c1.rec.next_message() for _ in range(4)]
    rid = receipt_id()
    c1.ack(ms[2], receipt=rid)  # acks a, b, c
    c1.rec.wait_receipt(rid)
    c2 = clients("tcp12", herald)
    c2.subscribe(dest)
    c1.abort()
    assert c2.rec.next_message(what="d redelivered").body == "d"
    assert c2.rec.drain_messages(0.5) == []


@pytest.mark.parametrize("kind", KINDS)
def test_receipts_for_each_frame(herald, clients, kind):
    c = clients(kind, herald)
    dest = f"/queue/{unique('py-receipts')}"
    rid = receipt_id()
    c.conn.send_frame("SUBSCRIBE", {"destination": dest, "id": "r-sub", "ack": "client", "receipt": rid})
    assert c.rec.wait_receipt(rid).headers["receipt-id"] == rid
    rid = receipt_id()
    c.conn.send(dest, "x", headers={"receipt": rid})
    c.rec.wait_receipt(rid)
    m = c.rec.next_message()
    rid = receipt_id()
    c.ack(m, receipt=rid)
    c.rec.wait_receipt(rid)
    tx = unique("tx")
    for cmd in ("BEGIN", "COMMIT"):
        rid = receipt_id()
        c.conn.send_frame(cmd, {"transaction": tx, "receipt": rid})
        c.rec.wait_receipt(rid)
    rid = receipt_id()
    c.conn.send_frame("UNSUBSCRIBE", {"id": "r-sub", "receipt": rid})
    c.rec.wait_receipt(rid)


@pytest.mark.parametrize("kind", KINDS)
def test_transaction_commit_and_abort(herald, clients, kind):
    pub, sub = clients(kind, herald), clients("tcp12", herald)
    dest = f"/topic/{unique('py-tx')}"
    sub.subscribe(dest)
    tx = pub.conn.begin()
    pub.conn.send(dest, "in-tx-1", headers={"transaction": tx})
    pub.conn.send(dest, "in-tx-2", headers={"transaction": tx})
    pub.sync()
    assert sub.rec.drain_messages(0.3) == [], "transactional SENDs leaked before COMMIT"
    pub.conn.commit(tx)
    assert [sub.rec.next_message().body, sub.rec.next_message().body] == ["in-tx-1", "in-tx-2"]

    tx2 = pub.conn.begin()
    pub.conn.send(dest, "aborted", headers={"transaction": tx2})
    pub.conn.abort(tx2)
    pub.send(dest, "after-abort", confirm=True)
    assert sub.rec.next_message().body == "after-abort"
    assert sub.rec.drain_messages(0.3) == []


@pytest.mark.parametrize("kind", ["tcp11", "tcp12", "ws"])
def test_header_escaping_round_trip(herald, clients, kind):
    pub, sub = clients(kind, herald), clients(kind, herald)
    dest = f"/topic/{unique('py-escape')}"
    sub.subscribe(dest)
    value = "a:b\nc\\d:"
    if kind != "tcp11":
        value += "\re"  # \r is escaped only from STOMP 1.2 on
    pub.send(dest, "escaped", headers={"x-tricky": value, "x-plain": "ok"})
    m = sub.rec.next_message()
    assert m.headers["x-tricky"] == value
    assert m.headers["x-plain"] == "ok"


def test_header_escaping_between_versions_on_the_wire(herald, raw):
    """A 1.2 subscriber sees escapes; a 1.0 subscriber sees the raw ':' (1.0 has no escaping)."""
    dest = f"/topic/{unique('py-wire')}"
    s12, s10, pub = raw(herald), raw(herald), raw(herald)
    s12.connect("1.2")
    s10.connect("1.0")
    pub.connect("1.2")
    for r in (s12, s10):
        r.send(f"SUBSCRIBE\nid:w\ndestination:{dest}\nreceipt:ok\n\n\x00")
        assert r.read_frame().command == "RECEIPT"
    pub.send(f"SEND\ndestination:{dest}\nx-url:http\\c//h\\c1/p\\\\q\n\nbody\x00")
    m12 = s12.read_frame()
    m10 = s10.read_frame()
    assert m12.command == m10.command == "MESSAGE"
    assert m12.headers["x-url"] == "http\\c//h\\c1/p\\\\q", f"1.2 wire value {m12.headers['x-url']!r}"
    assert m10.headers["x-url"] == "http://h:1/p\\q", f"1.0 wire value {m10.headers['x-url']!r}"


def test_utf8_and_binary_bodies(herald, raw):
    dest = f"/topic/{unique('py-bin')}"
    sub, pub = raw(herald), raw(herald)
    sub.connect()
    pub.connect()
    sub.send(f"SUBSCRIBE\nid:b\ndestination:{dest}\nreceipt:ok\n\n\x00")
    assert sub.read_frame().command == "RECEIPT"
    body = bytes(range(256)) * 4  # includes NULs, needs content-length
    pub.send(f"SEND\ndestination:{dest}\ncontent-type:application/octet-stream\ncontent-length:{len(body)}\n\n".encode() + body + b"\x00")
    m = sub.read_frame()
    assert m.command == "MESSAGE"
    assert m.body == body
    assert int(m.headers["content-length"]) == len(body)
    assert m.headers["content-type"] == "application/octet-stream"


def test_fragmented_and_coalesced_tcp_writes(herald, raw):
    dest = f"/topic/{unique('py-frag')}"
    r = raw(herald)
    data = (
        f"CONNECT\naccept-version:1.2\nhost:localhost\n\n\x00"
        f"SUBSCRIBE\nid:f\ndestination:{dest}\n\n\x00"
    ).encode()
    for i in range(len(data)):  # one byte per write
        r.send(data[i : i + 1])
    assert r.read_frame().command == "CONNECTED"
    # Several frames, heart-beat EOLs in between, all in one write.
    r.send(
        f"SEND\ndestination:{dest}\n\none\x00\n\n"
        f"SEND\ndestination:{dest}\ncontent-length:3\n\ntwo\x00\r\n"
        f"SEND\ndestination:{dest}\nreceipt:last\n\nthree\x00".encode()
    )
    frames = [r.read_frame() for _ in range(4)]
    msgs = [f.body for f in frames if f.command == "MESSAGE"]
    assert msgs == [b"one", b"two", b"three"]
    assert [f.headers.get("receipt-id") for f in frames if f.command == "RECEIPT"] == ["last"]
