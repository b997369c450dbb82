"""Resuming a broken session with stomp.py: nothing but the CONNECT header `resume`
(the last CONNECTED's `resume-token`), then the same SUBSCRIBE as before."""

import time

import pytest

from herald_interop import receipt_id, unique


@pytest.mark.parametrize("kind", ["tcp12", "ws"])
def test_a_broken_session_resumes_with_what_it_missed(herald, clients, kind):
    dest = f"/topic/{unique('py-resume')}"
    first = clients(kind, herald)
    connected = first.rec.connected_frame.headers
    assert connected["resumed"] == "false"
    token = connected["resume-token"]
    sub_id = first.subscribe(dest)
    pub = clients("tcp12", herald)
    for i in range(1, 4):
        pub.send(dest, f"m{i}", confirm=True)
    assert [first.rec.next_message().body for _ in range(3)] == ["m1", "m2", "m3"]

    # The connection breaks without DISCONNECT; publishing goes on once the server
    # has seen it go (what is written into a connection as it dies is the
    # resume-by-offset case: herald-client's, not this recipe's).
    first.abort()
    time.sleep(0.5)
    for i in range(4, 7):
        pub.send(dest, f"m{i}", confirm=True)

    again = clients(kind, herald, headers={"resume": token})
    connected = again.rec.connected_frame.headers
    assert connected["resumed"] == "true"
    assert connected["resume-token"] != token
    # What an app does after connecting: subscribe as before (same id): the same
    # subscription, no second copy.
    rid = receipt_id()
    again.conn.subscribe(dest, id=sub_id, headers={"receipt": rid})
    again.rec.wait_receipt(rid)
    pub.send(dest, "m7", confirm=True)
    got = [again.rec.next_message() for _ in range(4)]
    assert [m.body for m in got] == ["m4", "m5", "m6", "m7"]
    assert got[0].headers["recovered"] == "true"
    assert all(m.headers["subscription"] == sub_id for m in got)
    assert again.rec.drain_messages(0.3) == []


def test_a_token_from_another_session_does_not_resume_after_disconnect(herald, clients):
    first = clients("tcp12", herald)
    token = first.rec.connected_frame.headers["resume-token"]
    first.subscribe(f"/topic/{unique('py-bye')}")
    first.close()  # DISCONNECT: the session ends for good
    again = clients("tcp12", herald, headers={"resume": token})
    assert again.rec.connected_frame.headers["resumed"] == "false"
