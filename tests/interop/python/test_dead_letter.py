"""Redelivery marking and dead-letter queues with stomp.py: `redelivered:true` on a
redelivery, a poisoned message in `/queue/dlq.<name>` after broker.max_redeliveries,
and NACK requeue:false."""

import pytest

from herald_interop import receipt_id, unique

ACK_KINDS = ("tcp11", "tcp12", "ws")  # NACK needs STOMP 1.1+


@pytest.fixture
def limited(herald_with_env):
    return herald_with_env({"HERALD_BROKER__MAX_REDELIVERIES": "2"})


def nack(client, frame, **headers):
    rid = receipt_id()
    client.nack(frame, receipt=rid, **headers)
    client.rec.wait_receipt(rid)


@pytest.mark.parametrize("kind", ACK_KINDS)
def test_poisoned_message_is_redelivered_marked_then_dead_lettered(limited, clients, kind):
    pub, consumer, dlq = clients("tcp12", limited), clients(kind, limited), clients(kind, limited)
    name = unique("py-poison")
    dlq.subscribe(f"/queue/dlq.{name}")
    consumer.subscribe(f"/queue/{name}", ack="client-individual")
    pub.send(f"/queue/{name}", "poison", headers={"x-order": "7"}, confirm=True)

    first = consumer.rec.next_message(what="the first delivery")
    assert "redelivered" not in first.headers
    nack(consumer, first)
    for n in (1, 2):
        again = consumer.rec.next_message(what=f"redelivery {n}")
        assert again.body == "poison"
        assert again.headers.get("redelivered") == "true"
        nack(consumer, again)
    assert consumer.rec.drain_messages(0.3) == [], "no more than broker.max_redeliveries"

    letter = dlq.rec.next_message(what="the dead letter")
    assert letter.body == "poison"
    assert letter.headers["destination"] == f"/queue/dlq.{name}"
    assert letter.headers["original-destination"] == f"/queue/{name}"
    assert letter.headers["dead-letter-reason"] == "max-redeliveries"
    assert letter.headers["delivery-count"] == "3"
    assert letter.headers["x-order"] == "7"
    assert dlq.rec.drain_messages(0.3) == []


@pytest.mark.parametrize("kind", ACK_KINDS)
def test_nack_requeue_false_dead_letters_at_once(herald, clients, kind):
    pub, consumer, dlq = clients("tcp12", herald), clients(kind, herald), clients(kind, herald)
    name = unique("py-reject")
    dlq.subscribe(f"/queue/dlq.{name}")
    consumer.subscribe(f"/queue/{name}", ack="client-individual")
    pub.send(f"/queue/{name}", "rejected", confirm=True)
    m = consumer.rec.next_message()
    nack(consumer, m, requeue="false")
    letter = dlq.rec.next_message(what="the dead letter")
    assert letter.body == "rejected"
    assert letter.headers["dead-letter-reason"] == "nack"
    assert consumer.rec.drain_messages(0.3) == [], "not redelivered"
