"""Deleting stored files without ever losing track of one.

Index rows go first (readers stop seeing the instance at once), then the file. If the file
delete fails, a message on the ``blob-cleanup`` queue retries it from a queue-triggered
function, so a transient storage error never leaves an orphan file behind.

With a delay (the azure backend's ``DICOM_AZURE_BLOB_DELETE_DELAY_SECONDS``) every delete goes
through that queue, made visible only after the delay: a retrieve that opened the blob before
the delete keeps reading it that long (Blob Storage, unlike a local file held open, has no
other way to keep a deleted object readable for a reader already streaming it).

A process can die between the index step that drops an instance and the delete of its file.
So the step records a ``BlobDebt`` with its files, and the index forgets it only once the
janitor has taken them. ``BlobDebtSweep`` (the ``jobs_settle_blob_debts`` timer) hands the
debts older than ``DEBT_GRACE`` to the janitor again: deleting a file twice is harmless, as
keys are never reused, and the grace keeps the sweep from doubling the work of steps still
in progress.

A store whose commit failed without a refusal (a timeout, an outage) cannot tell whether the
index took it: the batch may have landed, or may land yet. Its file goes through the queue,
deleted only if the index does not name it then (``delete_unless_named``): the handler
releases the store's reservation first, so that a commit still in flight can no longer land,
and keeps the file when the instance (or its original) names it. A probe froze Cosmos DB as
a commit was sent: the store gave up, deleted the file at once, and the batch landed after,
naming a file that was gone.

A delete that still fails on a message's last allowed delivery (a directory made read-only, a
disk error) is not given up to the poison queue, where nothing would ever try it again and the
file would stay for good: the message is sent again, visible ``RESEND_FIRST_DELAY`` seconds
later, doubling each round, for ``RESEND_ROUNDS`` rounds (about a day), and only then fails.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from dicom_core.domain.model import InstanceKey, Reservation
from dicom_core.domain.timestamps import utc_now
from dicom_core.storage.ports import BlobStore, IndexStore, JobQueue, settle_debt

log = logging.getLogger(__name__)

CLEANUP_QUEUE = "blob-cleanup"
MESSAGE_SCHEMA = 1
#: Seconds before the first resend of a delete that failed every delivery; doubled each round.
RESEND_FIRST_DELAY = 300
#: Resends before a delete is given up: 5 minutes to about 10.7 hours, some 21 hours in all.
RESEND_ROUNDS = 8
#: How long after a commit of unknown outcome its file is checked (``delete_unless_named``).
#: The check is safe whenever it runs (it releases the reservation first, so no commit of it
#: can land after); the wait only gives an index that just failed a moment to come back.
UNKNOWN_COMMIT_DELAY = 10
#: How old a blob debt must be before the sweep takes it: the step that recorded it settles
#: it itself within seconds, unless its process died.
DEBT_GRACE = timedelta(minutes=5)
#: Debts one sweep settles at most; the rest wait for the next tick.
DEBTS_PER_SWEEP = 100


class BlobJanitor:
    def __init__(
        self,
        blobs: BlobStore,
        queue: JobQueue,
        *,
        delay_seconds: float = 0,
        index: IndexStore | None = None,
    ) -> None:
        """``index``: what ``delete_unless_named``'s messages are checked against."""
        self._blobs = blobs
        self._queue = queue
        self._delay = delay_seconds
        self._index = index

    async def delete_unless_named(self, reservation: Reservation) -> None:
        """Delete the reservation's file through the cleanup queue, unless the index names it
        when the message is handled (a store whose commit may or may not have been applied).
        Never at once: if even the queue cannot take the message, the file stays (litter
        rather than a lost instance)."""
        key = reservation.key
        body = {
            "schema": MESSAGE_SCHEMA,
            "blob": reservation.blob_key,
            "unless": {
                "partition": key.partition,
                "study": key.study_uid,
                "series": key.series_uid,
                "sop": key.sop_uid,
                "watermark": reservation.watermark,
            },
        }
        try:
            await self._queue.send(CLEANUP_QUEUE, body, delay_seconds=UNKNOWN_COMMIT_DELAY)
        except Exception:
            log.warning(
                "could not queue the check of %s; the file stays",
                reservation.blob_key,
                exc_info=True,
            )

    async def delete(self, blob_key: str, *, unseen: bool = False) -> None:
        """Delete now, or after the delay; on failure, leave the work to the cleanup queue.

        ``unseen``: the file was never visible (a store that failed before its commit), so no
        retrieve can have opened it and the delay protects nobody: it goes at once.
        """
        if self._delay > 0 and not unseen:
            try:
                await self._queue.send(
                    CLEANUP_QUEUE,
                    {"schema": MESSAGE_SCHEMA, "blob": blob_key},
                    delay_seconds=self._delay,
                )
                return
            except Exception:
                # Better to cut a reader (it sees a truncated body) than to lose the file.
                log.warning(
                    "queueing the delete of %s failed; deleting now", blob_key, exc_info=True
                )
        try:
            await self._blobs.delete(blob_key)
        except Exception:
            log.warning("deleting %s failed; queued for cleanup", blob_key, exc_info=True)
            await self._queue.send(CLEANUP_QUEUE, {"schema": MESSAGE_SCHEMA, "blob": blob_key})

    async def handle_message(self, body: dict[str, Any], *, final_attempt: bool = False) -> None:
        """Queue handler: delete the named blob (idempotent; raises to be retried). On the
        message's ``final_attempt``, a failure sends it again later instead (module
        docstring), until its rounds run out."""
        if body.get("schema") != MESSAGE_SCHEMA or not isinstance(body.get("blob"), str):
            raise ValueError(f"unexpected {CLEANUP_QUEUE} message: {body!r}")
        try:
            if "unless" in body:
                if not await self._named(body["blob"], body["unless"]):
                    # Unnamed now, but perhaps named a moment ago (a commit that landed, then
                    # a PUT that replaced it): the delay protects readers as for any delete.
                    await self.delete(body["blob"])
                return
            await self._blobs.delete(body["blob"])
        except Exception:
            round_ = body.get("round", 0)
            if not final_attempt or not isinstance(round_, int) or round_ >= RESEND_ROUNDS:
                raise
            delay = RESEND_FIRST_DELAY * 2**round_
            log.warning(
                "deleting %s keeps failing; trying again in %d s",
                body["blob"],
                delay,
                exc_info=True,
            )
            await self._queue.send(
                CLEANUP_QUEUE, {**body, "round": round_ + 1}, delay_seconds=delay
            )

    async def _named(self, blob_key: str, unless: dict[str, Any]) -> bool:
        """Whether the index names ``blob_key`` as the instance's current version or its
        original, once the store's reservation is released (a commit of it still in flight
        then fails, so the answer cannot change after it)."""
        if self._index is None:
            raise RuntimeError("a conditional cleanup needs the index")
        key = InstanceKey(
            str(unless["study"]),
            str(unless["series"]),
            str(unless["sop"]),
            partition=int(unless["partition"]),
        )
        reservation = Reservation(
            key=key, watermark=int(unless["watermark"]), blob_key=blob_key, upsert=True
        )
        await self._index.abort_instance(reservation)
        for original in (False, True):
            record = await self._index.get_instance(key, original=original)
            if record is not None and record.blob_key == blob_key:
                return True
        return False


class BlobDebtSweep:
    """Settles the blob debts that index steps left (their process died, or the janitor
    could not take the files then): the timer-triggered ``jobs_settle_blob_debts``."""

    def __init__(self, index: IndexStore, janitor: BlobJanitor) -> None:
        self._index = index
        self._janitor = janitor

    async def sweep(self, now: datetime | None = None) -> int:
        """Settle one page of debts older than ``DEBT_GRACE``; returns how many were."""
        due = (now or utc_now()) - DEBT_GRACE
        debts = await self._index.blob_debts(due, DEBTS_PER_SWEEP)
        settled = 0
        for debt in debts:
            if await settle_debt(debt, self._janitor.delete, self._index.forget_blob_debt):
                settled += 1
        if debts:
            log.info("blob debts: %d of %d settled", settled, len(debts))
        return settled
