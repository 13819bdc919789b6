"""The local host's queue pump keeps a running message leased, as the Functions host does:
a function that runs longer than the lease is not delivered a second time meanwhile."""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any

import pytest

from functions_host.queues import MAX_FAILURE_BACKOFF, FailureStreak, QueuePump
from tests.fakes import FakeJobQueue

LEASE = 1.0


class SlowWorker:
    """Stands in for the runtime worker: each invocation takes ``seconds``."""

    protos = types.SimpleNamespace(
        ParameterBinding=lambda **fields: fields, TypedData=lambda **fields: fields
    )

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.invocations = 0

    async def invoke(self, function: Any, bindings: Any, **kwargs: Any) -> str:
        self.invocations += 1
        await asyncio.sleep(self.seconds)
        return "ok"

    def succeeded(self, response: str) -> bool:
        return response == "ok"

    def failure(self, response: str) -> str:
        return response


#: The queue-triggered function the pumps here deliver to, as the host indexes it.
FUNCTION = types.SimpleNamespace(name="step", trigger={"name": "msg", "queueName": "jobs"})


def pumping(queue: FakeJobQueue, worker: SlowWorker, **options: Any) -> QueuePump:
    """A pump of ``FUNCTION``'s queue that polls every 10 ms."""
    return QueuePump(
        worker,  # type: ignore[arg-type]
        [FUNCTION],  # type: ignore[list-item]
        lambda: queue,
        poll_interval=0.01,
        **options,
    )


async def test_a_long_running_message_stays_leased_and_is_settled_once() -> None:
    queue = FakeJobQueue()
    await queue.send("jobs", {"step": 1})
    worker = SlowWorker(seconds=LEASE * 3)
    pump = QueuePump(worker, [], lambda: queue, lease_seconds=LEASE)  # type: ignore[arg-type]
    [message] = await queue.receive("jobs", visibility_timeout=LEASE)

    seen_again: list[object] = []

    async def another_instance() -> None:
        while worker.invocations == 0 or not delivered.done():
            seen_again.extend(await queue.receive("jobs", visibility_timeout=LEASE))
            await asyncio.sleep(LEASE / 4)

    delivered = asyncio.ensure_future(pump._deliver(queue, FUNCTION, message))  # type: ignore[arg-type]
    await asyncio.gather(delivered, another_instance())
    assert seen_again == []  # never visible while it ran, three leases long
    assert queue.bodies("jobs") == []  # completed with the receipt of its latest lease


async def test_a_stop_mid_function_hands_the_message_back_soon() -> None:
    """A probe stopped the host (SIGTERM) during a reindex step: the restarted host waited
    25 s for the message's lease to run out before the job went on. It comes back after the
    hand-back delay now, not at once (another stopping worker would take it)."""
    queue = FakeJobQueue()
    await queue.send("jobs", {"step": 1})
    worker = SlowWorker(seconds=60)
    pump = pumping(queue, worker, lease_seconds=30, hand_back_seconds=LEASE)
    await pump.start()
    while worker.invocations == 0:
        await asyncio.sleep(0.01)
    await pump.stop()

    assert await queue.receive("jobs", visibility_timeout=30) == []  # not at once...
    await asyncio.sleep(LEASE * 1.5)
    # ...but after the hand-back delay, long before the 30 s lease, this delivery counted.
    [again] = await queue.receive("jobs", visibility_timeout=30)
    assert again.body == {"step": 1} and again.dequeue_count == 2


class FailsToCompleteOnce(FakeJobQueue):
    """The first ``complete`` fails, as a moment of the queue being unavailable would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def complete(self, message: Any) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("the queue is unreachable")
        await super().complete(message)


async def test_a_message_that_fails_to_settle_does_not_stop_the_polling() -> None:
    """Found in review: the failure ended the function's polling loop for good, silently."""
    queue = FailsToCompleteOnce()
    worker = SlowWorker(seconds=0)
    pump = pumping(queue, worker, batch_size=1)
    await queue.send("jobs", {"step": 1})
    await pump.start()
    while not queue.failed:
        await asyncio.sleep(0.01)
    await queue.send("jobs", {"step": 2})  # sent after the failure: only a live loop takes it
    for _ in range(500):
        if worker.invocations == 2:
            break
        await asyncio.sleep(0.01)
    await pump.stop()
    assert worker.invocations == 2


class FailsToReceive(FakeJobQueue):
    """``receive`` fails ``times`` times, as on a full disk, then works."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.left = times
        self.attempts = 0

    async def receive(self, queue: str, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.left > 0:
            self.left -= 1
            raise OSError(28, "database or disk is full")
        return await super().receive(queue, **kwargs)


async def test_a_queue_that_keeps_failing_is_polled_less_often_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A probe saw a traceback per poll on a full disk: about 3,000 log lines every 10 s."""
    queue = FailsToReceive(times=6)
    worker = SlowWorker(seconds=0)
    pump = pumping(queue, worker)
    await queue.send("jobs", {"step": 1})
    with caplog.at_level(logging.WARNING, logger="functions_host.queues"):
        await pump.start()
        for _ in range(300):
            if worker.invocations:
                break
            await asyncio.sleep(0.01)
        await pump.stop()
    assert worker.invocations == 1  # it recovers once the queue can be read
    assert queue.attempts >= 7  # six failures, then the one that worked (and maybe more)
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "receiving from queue jobs failed; retrying, repeats logged once a minute",
        "receiving from queue jobs works again after 6 failures",
    ]
    assert caplog.records[0].exc_info is not None


def test_the_backoff_doubles_up_to_its_ceiling() -> None:
    streak = FailureStreak("jobs", poll_interval=0.5)
    waits = [streak.failed(OSError("x")) for _ in range(10)]
    assert waits[:5] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert waits[5:] == [MAX_FAILURE_BACKOFF] * 5


def test_a_failing_queue_is_never_polled_sooner_than_a_healthy_one() -> None:
    streak = FailureStreak("jobs", poll_interval=45.0)
    assert [streak.failed(OSError("x")) for _ in range(3)] == [45.0, 45.0, 45.0]
