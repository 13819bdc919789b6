"""The ``JobQueue`` contract, on both backends, checked through the port and raw messages."""

from __future__ import annotations

import asyncio

import pytest

from dicom_core.storage.ports import POISON_SUFFIX, LeaseLost
from tests.support.stores import Stores


async def test_send_receive_complete(stores: Stores) -> None:
    queue = stores.queue_name()
    await stores.queue.send(queue, {"schema": 1, "blob": "a/b.dcm"})
    assert await stores.raw_messages(queue) == [{"schema": 1, "blob": "a/b.dcm"}]
    [message] = await stores.queue.receive(queue, visibility_timeout=30)
    assert (message.queue, message.body, message.dequeue_count) == (
        queue,
        {"schema": 1, "blob": "a/b.dcm"},
        1,
    )
    assert await stores.queue.receive(queue) == []  # leased: invisible to others
    await stores.queue.complete(message)
    assert await stores.raw_messages(queue) == []


async def test_receive_from_an_unused_queue_is_empty(stores: Stores) -> None:
    assert await stores.queue.receive(stores.queue_name()) == []


async def test_abandon_redelivers_with_a_higher_dequeue_count(stores: Stores) -> None:
    queue = stores.queue_name()
    await stores.queue.send(queue, {"n": 1})
    [first] = await stores.queue.receive(queue)
    await stores.queue.abandon(first)
    [second] = await stores.queue.receive(queue)
    assert second.body == {"n": 1}
    assert second.dequeue_count == 2
    await stores.queue.complete(second)


async def test_an_expired_lease_redelivers(stores: Stores) -> None:
    queue = stores.queue_name()
    await stores.queue.send(queue, {"n": 2})
    [first] = await stores.queue.receive(queue, visibility_timeout=1)
    await asyncio.sleep(1.5)
    [again] = await stores.queue.receive(queue)
    assert again.body == {"n": 2} and again.dequeue_count == 2
    await stores.queue.complete(again)


async def test_an_extended_lease_keeps_a_running_message_from_others(stores: Stores) -> None:
    queue = stores.queue_name()
    await stores.queue.send(queue, {"n": 3})
    [first] = await stores.queue.receive(queue, visibility_timeout=1)
    extended = await stores.queue.extend_lease(first, 30)
    assert extended.id == first.id and extended.body == first.body
    await asyncio.sleep(1.5)
    assert await stores.queue.receive(queue) == []  # still leased: not delivered again
    await stores.queue.complete(extended)  # settled with the latest lease
    await asyncio.sleep(0)
    assert await stores.queue.receive(queue, visibility_timeout=1) == []


async def test_a_lease_that_ran_out_cannot_be_extended(stores: Stores) -> None:
    queue = stores.queue_name()
    await stores.queue.send(queue, {"n": 4})
    [first] = await stores.queue.receive(queue, visibility_timeout=1)
    await asyncio.sleep(1.5)
    [again] = await stores.queue.receive(queue)  # delivered to someone else
    with pytest.raises(LeaseLost):
        await stores.queue.extend_lease(first, 30)
    await stores.queue.complete(again)


async def test_delayed_messages_wait(stores: Stores) -> None:
    queue = stores.queue_name()
    await stores.queue.send(queue, {"later": True}, delay_seconds=1)
    assert await stores.queue.receive(queue) == []
    await asyncio.sleep(1.5)
    [message] = await stores.queue.receive(queue)
    assert message.body == {"later": True}


async def test_receive_takes_at_most_the_number_asked_in_order(stores: Stores) -> None:
    queue = stores.queue_name()
    for n in range(5):
        await stores.queue.send(queue, {"n": n})
    first = await stores.queue.receive(queue, max_messages=3)
    rest = await stores.queue.receive(queue, max_messages=10)
    assert len(first) == 3
    assert sorted(m.body["n"] for m in [*first, *rest]) == list(range(5))


async def test_dead_letter_moves_the_message_to_the_poison_path(stores: Stores) -> None:
    queue = stores.queue_name()
    await stores.queue.send(queue, {"bad": True})
    [message] = await stores.queue.receive(queue)
    await stores.queue.dead_letter(message, "ValueError: unexpected message")
    assert await stores.queue.receive(queue) == []
    assert await stores.raw_messages(queue) == []
    assert await stores.raw_messages(queue, poison=True) == [{"bad": True}]
    # The poison queue is a queue of its own, as the Functions host's is: nothing polls it,
    # but an operator can receive from it.
    [parked] = await stores.queue.receive(queue + POISON_SUFFIX)
    assert parked.body == {"bad": True}


async def test_received_messages_carry_the_trigger_metadata_times(stores: Stores) -> None:
    queue = stores.queue_name()
    await stores.queue.send(queue, {"n": 1})
    [message] = await stores.queue.receive(queue, visibility_timeout=60)
    assert message.inserted_at is not None and message.next_visible_at is not None
    assert message.inserted_at.tzinfo is not None
    lease = (message.next_visible_at - message.inserted_at).total_seconds()
    assert 50 <= lease <= 70
