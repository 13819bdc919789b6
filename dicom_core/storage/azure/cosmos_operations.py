"""Long-running operations on Cosmos DB: ``CosmosOperationStore``.

Operation records (``kind`` "operation", ``id`` ``o|{id}``) live in the ``system`` container's
partition ``pk`` = "querytags", which they share with the extended query tag definitions so
that adding tags creates the tags and their reindex operation in one transactional batch.
What an operation holds (a bulk update, its studies) is there too: a ``hold`` document
(``id`` ``h|{resource}``) naming its holder, created or taken over in the same batch that
creates the operation, so two operations never start on one resource. A hold whose holder
has finished is free; finishing deletes its holds (a hold left behind by a failure to delete
is free anyway). A start cut by a crash between its batch and its first message would hold its
resources for ever: once ``ABANDONED_START_SECONDS`` have passed, the next start marks it
Failed and takes them, in its own batch.

Every read-modify-write of an operation replaces on the ETag read before it. Continuation
(at-least-once queue delivery): a step moves the operation's checkpoint with a compare-and-set,
keeping the checkpoint it came from (``previous``) and ``sent`` = false, and only then sends
the next message (and sets ``sent``). A message whose checkpoint is not current does nothing,
except when it is ``previous`` and the continuation was not sent: the send failed after the
move, and the retried message sends it again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from azure.cosmos.exceptions import CosmosBatchOperationError

from dicom_core.domain.operations import FINISHED_STATUSES, OperationKind, OperationStatusValues
from dicom_core.domain.timestamps import seconds_since, utc_timestamp
from dicom_core.storage.azure.cosmos_docs import without_system_properties
from dicom_core.storage.azure.cosmos_io import (
    delete_if_present,
    query_items,
    read_item,
    replace_if_unchanged,
)
from dicom_core.storage.azure.cosmos_session import Containers, CosmosSession
from dicom_core.storage.ports import (
    Continuation,
    JobQueue,
    OperationConflict,
    OperationProgress,
    OperationRecord,
)

log = logging.getLogger(__name__)
Doc = dict[str, Any]

OPERATION_PARTITION = "querytags"
OPERATION_KIND = "operation"
HOLD_KIND = "hold"
_CAS_ATTEMPTS = 10
#: A start sends its first message right after its batch; one still unsent this much later
#: was cut by a crash, and its holds are taken over (the operation is marked Failed).
ABANDONED_START_SECONDS = 300


def operation_id_of(operation_id: str) -> str:
    return f"o|{operation_id}"


def _never_started(operation: Doc) -> bool:
    """An operation whose start was cut between its batch and its first message: still
    NotStarted, its message never marked sent, and older than any start takes."""
    return (
        operation["status"] == OperationStatusValues.NOT_STARTED.value
        and not operation.get("sent")
        and seconds_since(str(operation["createdAt"])) > ABANDONED_START_SECONDS
    )


def hold_id(resource: str) -> str:
    return f"h|{resource}"


def operation_record(doc: Doc) -> OperationRecord:
    checkpoint = doc.get("checkpoint")
    return OperationRecord(
        operation_id=str(doc["operationId"]),
        type=str(doc["type"]),
        status=str(doc["status"]),
        percent_complete=int(doc["percentComplete"]),
        resources=tuple(str(r) for r in doc["resources"]),
        checkpoint=dict(checkpoint) if checkpoint else None,
        created_at=str(doc["createdAt"]),
        updated_at=str(doc["updatedAt"]),
    )


class CosmosOperationStore:
    """``OperationStore`` on Cosmos DB (see the module docstring for the documents)."""

    def __init__(self, session: CosmosSession, queue: JobQueue) -> None:
        self._session = session
        self._queue = queue

    async def start_operation(
        self,
        operation_id: str,
        kind: OperationKind,
        *,
        checkpoint: dict[str, Any],
        first: Continuation,
        holds: Sequence[str] = (),
    ) -> OperationRecord:
        now = utc_timestamp()
        op_doc: Doc = {
            "id": operation_id_of(operation_id),
            "pk": OPERATION_PARTITION,
            "kind": OPERATION_KIND,
            "operationId": operation_id,
            "type": kind.value,
            "status": OperationStatusValues.NOT_STARTED.value,
            "percentComplete": 0,
            "resources": [],
            "checkpoint": checkpoint,
            "previous": None,
            "sent": False,
            "createdAt": now,
            "updatedAt": now,
        }

        async def write(c: Containers) -> None:
            for _ in range(_CAS_ATTEMPTS):
                batch: list[tuple[Any, ...]] = []
                abandoned: set[str] = set()
                for resource in holds:
                    held = await read_item(c.system, hold_id(resource), OPERATION_PARTITION)
                    doc = {
                        "id": hold_id(resource),
                        "pk": OPERATION_PARTITION,
                        "kind": HOLD_KIND,
                        "resource": resource,
                        "operationId": operation_id,
                    }
                    if held is None:
                        batch.append(("create", (doc,)))
                        continue
                    holder = await read_item(
                        c.system, operation_id_of(str(held["operationId"])), OPERATION_PARTITION
                    )
                    if holder is not None and _never_started(holder):
                        # Its start died between its batch and its first message: fail it.
                        if str(holder["id"]) not in abandoned:
                            abandoned.add(str(holder["id"]))
                            failed = without_system_properties(holder)
                            failed.update(status=OperationStatusValues.FAILED.value, updatedAt=now)
                            batch.append(
                                (
                                    "replace",
                                    (failed["id"], failed),
                                    {"if_match_etag": holder["_etag"]},
                                )
                            )
                    elif holder is not None and holder["status"] not in FINISHED_STATUSES:
                        raise OperationConflict(resource, str(held["operationId"]))
                    batch.append(("replace", (doc["id"], doc), {"if_match_etag": held["_etag"]}))
                batch.append(("create", (op_doc,)))
                try:
                    await c.system.execute_item_batch(
                        batch_operations=batch, partition_key=OPERATION_PARTITION
                    )
                    return
                except CosmosBatchOperationError as exc:
                    # 409/412: a racing start took a hold; 404: the finished holder's release
                    # deleted the hold between our read and our batch. Read again.
                    if exc.status_code not in (404, 409, 412):
                        raise
            raise OperationConflict(", ".join(holds), "(a concurrent start)")

        await self._session.run(write)
        try:
            await self._queue.send(first.queue, first.body)
        except Exception:
            # Without its first message the operation would never run: undo the start.
            log.exception("could not enqueue operation %s; removing it", operation_id)
            await self._session.run(lambda c: self._remove(c, operation_id))
            raise
        try:
            await self._mark_sent(operation_id, checkpoint)
        except Exception:  # only an optimisation for redeliveries: the start has succeeded
            log.warning("could not mark the first message of %s sent", operation_id)
        return operation_record(op_doc)

    async def _remove(self, c: Containers, operation_id: str) -> None:
        await self._release(c, operation_id)
        await delete_if_present(c.system, operation_id_of(operation_id), OPERATION_PARTITION)

    @staticmethod
    async def _release(c: Containers, operation_id: str) -> None:
        """Delete the operation's holds (best effort: a finished holder's hold is free)."""
        try:
            found = await query_items(
                c.system,
                "SELECT c.id FROM c WHERE c.pk = @pk AND c.kind = @kind AND c.operationId = @op",
                {"@pk": OPERATION_PARTITION, "@kind": HOLD_KIND, "@op": operation_id},
                partition=OPERATION_PARTITION,
            )
            for doc in found:
                await delete_if_present(c.system, str(doc["id"]), OPERATION_PARTITION)
        except Exception:
            log.warning("could not release the holds of operation %s", operation_id)

    async def get_operation(self, operation_id: str) -> OperationRecord | None:
        doc = await self._session.run(
            lambda c: read_item(c.system, operation_id_of(operation_id), OPERATION_PARTITION)
        )
        return None if doc is None else operation_record(doc)

    async def fail_operation(self, operation_id: str) -> None:
        async def write(c: Containers) -> None:
            for _ in range(_CAS_ATTEMPTS):
                doc = await read_item(c.system, operation_id_of(operation_id), OPERATION_PARTITION)
                if doc is None or doc["status"] in FINISHED_STATUSES:
                    return
                doc["status"] = OperationStatusValues.FAILED.value
                doc["updatedAt"] = utc_timestamp()
                if await replace_if_unchanged(c.system, doc):
                    await self._release(c, operation_id)
                    return

        await self._session.run(write)

    async def _mark_sent(self, operation_id: str, checkpoint: dict[str, Any]) -> None:
        """Note that ``checkpoint``'s message went out, unless the operation moved past it
        meanwhile (then ``sent`` belongs to a newer checkpoint, whose message may not be)."""

        async def write(c: Containers) -> None:
            for _ in range(_CAS_ATTEMPTS):
                doc = await read_item(c.system, operation_id_of(operation_id), OPERATION_PARTITION)
                if doc is None or doc["checkpoint"] != checkpoint or doc.get("sent"):
                    return
                doc["sent"] = True
                if await replace_if_unchanged(c.system, doc):
                    return

        await self._session.run(write)

    async def compare_and_set_checkpoint(
        self,
        operation_id: str,
        expected: dict[str, Any],
        progress: OperationProgress,
        continuation: Continuation | None,
    ) -> bool:
        """An ETag-guarded replace of the operation, then the send (Cosmos and the queue share
        no transaction): ``previous`` and ``sent`` let ``resend_continuation`` make up for a
        send that failed, when the old message is redelivered."""

        async def move(c: Containers) -> bool:
            op = await read_item(c.system, operation_id_of(operation_id), OPERATION_PARTITION)
            if op is None or op["status"] in FINISHED_STATUSES:
                return False
            if op["checkpoint"] != expected:
                return False
            op["status"] = progress.status
            op["percentComplete"] = progress.percent_complete
            op["previous"] = expected
            op["checkpoint"] = progress.checkpoint
            op["sent"] = continuation is None
            op["updatedAt"] = utc_timestamp()
            return await replace_if_unchanged(c.system, op)

        if not await self._session.run(move):
            return False
        if progress.status in FINISHED_STATUSES:
            await self._session.run(lambda c: self._release(c, operation_id))
        if continuation is not None:
            await self._queue.send(continuation.queue, continuation.body)
            await self._mark_sent(operation_id, progress.checkpoint)
        return True

    async def resend_continuation(
        self, operation_id: str, stale: dict[str, Any], continuation: Continuation
    ) -> None:
        op = await self._session.run(
            lambda c: read_item(c.system, operation_id_of(operation_id), OPERATION_PARTITION)
        )
        if op is None or op.get("previous") != stale or op.get("sent"):
            return
        await self._queue.send(continuation.queue, continuation.body)
        await self._mark_sent(operation_id, dict(op["checkpoint"]))
