"""How credit grants reach a worker (`learner/ingest_stream.StreamState`): on the Ack of the
batch being answered when they can, otherwise as one wake-up of the response generator that
sends every grant pending by then in one Ack -- and none is ever lost between the two."""

from __future__ import annotations

from rewardloop.learner.ingest_stream import GRANT, StreamState
from rewardloop.pb import trajectory_pb2


def drain(st: StreamState) -> list:
    """What the response generator takes from the queue, as it takes it."""
    out = []
    while not st.acks.empty():
        item = st.acks.get_nowait()
        if item is not GRANT:
            st.take_ack(item)
        out.append(item)
    return out


def test_grants_while_a_batch_is_answered_ride_on_its_ack():
    st = StreamState("s1", "w")
    st.begin_batch()
    st.add_grant(8)
    st.add_grant(8)
    assert drain(st) == []  # no wake-up, no message of their own
    st.end_batch(trajectory_pb2.Ack(batch_seq=3, credits=2))
    (ack,) = drain(st)
    assert ack.batch_seq == 3 and ack.credits == 18 and st.pending == 0


def test_grants_while_idle_wake_the_generator_once_and_add_up():
    st = StreamState("s1", "w")
    st.add_grant(8)
    st.add_grant(4)
    assert drain(st) == [GRANT]
    assert st.take_pending() == 12 and st.take_pending() == 0
    st.add_grant(1)
    assert drain(st) == [GRANT]  # the next grant wakes it again
    assert st.take_pending() == 1


def test_a_grant_taken_by_a_batch_ack_is_sent_once_and_later_ones_still_go_out():
    st = StreamState("s1", "w")
    st.add_grant(4)  # the generator is woken ...
    st.begin_batch()
    st.end_batch(trajectory_pb2.Ack(batch_seq=1))  # ... but a batch Ack takes the 4 first
    assert [getattr(x, "credits", x) for x in drain(st)] == [GRANT, 4]
    assert st.take_pending() == 0  # so the wake-up sends nothing
    st.add_grant(2)  # and the next grant wakes it again
    assert drain(st) == [GRANT] and st.take_pending() == 2


def test_idle_ends_a_batch_left_unanswered():
    st = StreamState("s1", "w")
    st.begin_batch()
    st.idle()  # the reader failed mid-batch: grants must not wait for an Ack that never comes
    st.add_grant(8)
    assert drain(st) == [GRANT] and st.take_pending() == 8


def test_grants_while_a_batch_ack_waits_for_the_generator_ride_on_it():
    st = StreamState("s1", "w")
    st.begin_batch()
    st.end_batch(trajectory_pb2.Ack(batch_seq=1, credits=1))  # queued, not yet taken
    st.add_grant(8)  # no wake-up: the queued Ack will carry it
    ack = st.acks.get_nowait()
    assert st.acks.empty()
    st.take_ack(ack)
    assert ack.credits == 9 and st.pending == 0
    st.add_grant(2)  # nothing queued now: this one wakes the generator
    assert drain(st) == [GRANT] and st.take_pending() == 2
