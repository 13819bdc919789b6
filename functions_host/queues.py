"""Queue-triggered functions, delivered as the host's queue trigger delivers them.

Each message reaches the runtime as an InvocationRequest: the body as the trigger's string
input (the text the producer wrote, base64-decoded on Storage queues by the queue adapter),
and the trigger metadata the host adds (DequeueCount, Id, PopReceipt, InsertionTime,
ExpirationTime, NextVisibleTime). A failed invocation is retried until host.json's
``maxDequeueCount`` (``dicom_core.jobs.RetryRule``, the rule the app's handlers read too),
then the message goes to the ``<queue>-poison`` queue, on the SQLite queue and on Azure
Storage queues alike.

Differences from Azure, on purpose: the host backs an idle queue's polling off up to
``maxPollingInterval`` (a minute by default); this one polls every ``poll_interval`` seconds so
a job starts promptly on a laptop. A failed message is made visible again at once rather than
after ``visibilityTimeout``, so retries do not stall tests for 30 s each. The message of a
function a stop cuts short comes back after ``HAND_BACK_SECONDS``. A message is leased
for 30 s (the host: 10 minutes), so a killed host's job comes back within 30 s, and, as the
host does, the lease is renewed while the function runs (every half lease), so a long step (a
bulk update of a large study) is never delivered a second time while it still runs.

While a queue cannot be read (a full disk, a locked index, Azurite away), its poller waits
longer after each failed attempt, up to ``MAX_FAILURE_BACKOFF`` seconds, and logs the first
failure with its traceback and then one line a minute, not a traceback per poll: a probe on a
full disk saw about 3,000 log lines every 10 s, onto the disk that was full.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

from dicom_core.jobs.retry import RetryRule
from dicom_core.storage.ports import JobQueue, LeaseLost, QueueMessage
from functions_host.worker import IndexedFunction, RuntimeWorker

log = logging.getLogger("functions_host.queues")

#: After a stop cuts a function short, its message is visible again this many seconds later:
#: past the other workers' own stop (their HTTP drain is serve.py's graceful timeout, 5 s),
#: well before its lease.
HAND_BACK_SECONDS = 10.0
#: The longest wait between attempts to read a queue that keeps failing.
MAX_FAILURE_BACKOFF = 30.0
#: While a queue keeps failing, one log line per this many seconds.
FAILURE_LOG_SECONDS = 60.0


class FailureStreak:
    """Failed attempts to read one queue in a row: how long to wait before the next one, and
    which of them to log."""

    def __init__(self, name: str, poll_interval: float) -> None:
        self._name = name
        self._poll = poll_interval
        self.count = 0
        self._logged_at = 0.0

    def failed(self, exc: Exception) -> float:
        """Log the failure as the streak warrants; the seconds to wait before trying again."""
        self.count += 1
        now = time.monotonic()
        if self.count == 1:
            log.error(
                "receiving from queue %s failed; retrying, repeats logged once a minute",
                self._name,
                exc_info=exc,
            )
            self._logged_at = now
        elif now - self._logged_at >= FAILURE_LOG_SECONDS:
            log.error(
                "receiving from queue %s still fails (%d attempts): %r", self._name, self.count, exc
            )
            self._logged_at = now
        ceiling = max(MAX_FAILURE_BACKOFF, self._poll)  # never sooner than a healthy poll
        return float(min(self._poll * 2 ** min(self.count, 16), ceiling))

    def succeeded(self) -> None:
        if self.count:
            log.warning(
                "receiving from queue %s works again after %d failures", self._name, self.count
            )
            self.count = 0


class QueuePump:
    """Polls each queue-triggered function's queue and invokes it, ``batch_size`` at a time."""

    def __init__(
        self,
        worker: RuntimeWorker,
        functions: list[IndexedFunction],
        queue_factory: Callable[[], JobQueue],
        *,
        retry: RetryRule | None = None,
        batch_size: int = 4,
        poll_interval: float = 0.5,
        lease_seconds: float = 30.0,
        hand_back_seconds: float = HAND_BACK_SECONDS,
    ) -> None:
        self._worker = worker
        self._functions = functions
        self._factory = queue_factory
        self._retry = retry or RetryRule()
        self._batch = batch_size
        self._poll = poll_interval
        self._lease = lease_seconds
        self._hand_back = hand_back_seconds
        self._queue: JobQueue | None = None
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        if not self._functions:
            return
        self._queue = self._factory()
        for function in self._functions:
            self._tasks.append(asyncio.create_task(self._run(function)))

    async def stop(self) -> None:
        self._stopping.set()
        await cancel_all(self._tasks)
        if self._queue is not None:
            queue, self._queue = self._queue, None
            await queue.close()

    async def _run(self, function: IndexedFunction) -> None:
        assert self._queue is not None
        queue, name = self._queue, str(function.trigger["queueName"])
        streak = FailureStreak(name, self._poll)
        while not self._stopping.is_set():
            wait = self._poll
            try:
                messages = await queue.receive(
                    name, max_messages=self._batch, visibility_timeout=self._lease
                )
            except Exception as exc:
                wait = streak.failed(exc)
                messages = []
            else:
                streak.succeeded()
            if messages:
                outcomes = await asyncio.gather(
                    *(self._deliver(queue, function, m) for m in messages),
                    return_exceptions=True,
                )
                # A delivery that failed to settle its message (the queue unavailable a
                # moment) must not end this loop: the message comes back when its lease ends.
                for message, outcome in zip(messages, outcomes, strict=True):
                    if isinstance(outcome, Exception):
                        log.error(
                            "settling message %s of queue %s failed: %r", message.id, name, outcome
                        )
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=wait)

    async def _deliver(
        self, queue: JobQueue, function: IndexedFunction, message: QueueMessage
    ) -> None:
        protos = self._worker.protos
        binding = protos.ParameterBinding(
            name=str(function.trigger["name"]),
            data=protos.TypedData(string=orjson.dumps(message.body).decode()),
        )
        leased = [message]
        renewing = asyncio.create_task(self._keep_leased(queue, leased))
        try:
            response = await self._worker.invoke(
                function,
                [binding],
                trigger_metadata=trigger_metadata(protos, message),
                retry=(message.dequeue_count - 1, self._retry.max_dequeue_count - 1),
            )
            error = None if self._worker.succeeded(response) else self._worker.failure(response)
        except TimeoutError:
            error = "the function timed out (host.json functionTimeout)"
        except asyncio.CancelledError:
            # The host is stopping mid-function: hand the message back soon, as the host
            # releases a message whose function did not finish, rather than after the rest of
            # its lease. Not at once: the other workers stop too, each after draining its HTTP
            # requests (serve.py's graceful timeout, 5 s), and one still polling would take
            # the message, be stopped in turn, and spend another of its deliveries.
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing  # so that the renewal task cannot extend after the hand-back
            try:
                await queue.extend_lease(leased[0], self._hand_back)
            except LeaseLost:
                pass  # received again or settled meanwhile: no longer this delivery's
            except Exception:
                log.warning("could not hand back message %s at the stop", leased[0].id)
            raise
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        message = leased[0]  # settled with the receipt of its latest lease
        if error is None:
            await queue.complete(message)
            return
        log.error("queue function %s failed on message %s: %s", function.name, message.id, error)
        if self._retry.is_final(message.dequeue_count):
            await queue.dead_letter(message, error)
        else:
            await queue.abandon(message)

    async def _keep_leased(self, queue: JobQueue, leased: list[QueueMessage]) -> None:
        """Extend the message's lease every half lease while its function runs; stop if the
        lease was lost (the message is then someone else's to settle)."""
        while True:
            await asyncio.sleep(self._lease / 2)
            try:
                leased[0] = await queue.extend_lease(leased[0], self._lease)
            except LeaseLost:
                log.warning("lost the lease of message %s while it ran", leased[0].id)
                return
            except Exception:
                log.exception("could not extend the lease of message %s", leased[0].id)


async def cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel a pump's tasks, wait for each to end, and forget them (the queue and timer
    pumps stop alike)."""
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    tasks.clear()


def trigger_metadata(protos: Any, message: QueueMessage) -> Mapping[str, Any]:
    """The queue trigger's metadata, typed as the host sends it: numbers and times as JSON."""

    def when(moment: datetime | None) -> Any:
        return protos.TypedData(json=orjson.dumps(moment.isoformat()).decode()) if moment else None

    fields = {
        "Id": protos.TypedData(string=message.id),
        "PopReceipt": protos.TypedData(string=message.receipt),
        "DequeueCount": protos.TypedData(json=str(message.dequeue_count)),
        "InsertionTime": when(message.inserted_at),
        "ExpirationTime": when(message.expires_at),
        "NextVisibleTime": when(message.next_visible_at),
    }
    return {key: value for key, value in fields.items() if value is not None}
