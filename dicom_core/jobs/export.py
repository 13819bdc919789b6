"""Export: the third long-running operation, copying stored instances to a destination.

``ExportJob.start`` first opens the destination and prepares it (the container or directory
must exist; the empty error log is created), so a destination that cannot be written is a 400
and no operation. The request is then kept whole as a blob of the app's own store
(``operations/{id}/export-request.json``): it may name thousands of identifiers and carry a
connection string, and neither belongs in queue messages (64 KB on Storage queues) nor in the
operation record. The operation is recorded with its first ``export-batches`` message.

Each message then drives one ``step``: up to ``batch_size`` instances, in the order of the
request's identifiers and, within one, of the instances' watermarks (current versions only).
Each instance's stored bytes stream to the destination under
``{operation}/results/{study}/{series}/{instance}.dcm``; an identifier naming nothing stored,
or an instance whose file is gone, is skipped and written to ``{operation}/errors.log``. Then
the checkpoint (the next identifier, the last watermark done within it, the counts so far)
moves with a compare-and-set that sends the next message. A crash or a redelivery repeats at
most one step: its files are written again to the same names and its error lines appended
again (Azure's log warns of such repeats too), while the counts come from the checkpoint and
never count a repeat twice. A destination that fails (refused credentials, an outage) fails
the step, which is retried; the last allowed attempt fails the operation.

The operation's ``results`` are Azure's: ``exported``, ``skipped`` and ``errorHref``. It ends
Completed, also when instances were skipped, as Azure's does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dicom_core.domain.export import (
    NOT_FOUND,
    ExportIdentifier,
    ExportRequest,
    error_log_line,
    parse_export_request,
)
from dicom_core.domain.model import InstanceKey, InstanceRecord
from dicom_core.domain.operations import (
    OperationKind,
    OperationStatusValues,
    new_operation_id,
)
from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY, is_default
from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.jobs.messages import MalformedMessage, OperationMessage
from dicom_core.jobs.operations import StepOutcome, running_percent, settle_stale
from dicom_core.services.staging import spool_name
from dicom_core.storage.ports import (
    BlobNotFound,
    BlobStore,
    Continuation,
    ExportSink,
    ExportSinks,
    IndexStore,
    OperationProgress,
    OperationRecord,
    OperationStore,
)

log = logging.getLogger(__name__)

EXPORT_QUEUE = "export-batches"
DEFAULT_BATCH_SIZE = 100
#: Instances copied at once within a step.
COPY_CONCURRENCY = 4
#: Bytes one step copies at most (beside its instance count), so that a batch of large
#: instances ends well within the function's timeout; one instance always goes, whatever
#: its size.
STEP_BYTES = 2 << 30
#: Requests kept parsed in memory, by operation (a request never changes).
_CACHED_REQUESTS = 16
GONE = "The stored file of the instance is gone; it was deleted during the export."


def request_key(operation_id: str) -> str:
    """The blob key under which an export's request is kept while the operation runs."""
    return f"operations/{operation_id}/export-request.json"


@dataclass(frozen=True, slots=True)
class ExportResults:
    """The operation's ``results`` so far (Azure's names)."""

    error_href: str
    exported: int = 0
    skipped: int = 0

    def added(self, exported: int, skipped: int) -> ExportResults:
        return ExportResults(self.error_href, self.exported + exported, self.skipped + skipped)

    def to_json(self) -> dict[str, Any]:
        return {"errorHref": self.error_href, "exported": self.exported, "skipped": self.skipped}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> ExportResults:
        return cls(str(body["errorHref"]), int(body["exported"]), int(body["skipped"]))


@dataclass(frozen=True, slots=True)
class ExportCheckpoint:
    """Where an export stands: identifiers before ``next_identifier`` are done, and of that
    one the instances up to watermark ``after`` (0: none yet). The identifiers name
    instances of one data partition, ``partition``."""

    next_identifier: int
    after: int
    results: ExportResults
    partition: int = DEFAULT_PARTITION_KEY

    def to_json(self) -> dict[str, Any]:
        return {
            "nextIdentifier": self.next_identifier,
            "after": self.after,
            "results": self.results.to_json(),
            # Written only where it says something, so a checkpoint of Microsoft.Default
            # reads back equal to one written before partitions existed (a step compares
            # its checkpoint with the operation's record).
            **({} if is_default(self.partition) else {"partition": self.partition}),
        }

    @classmethod
    def from_json(cls, body: Any) -> ExportCheckpoint:
        if not isinstance(body, dict):
            raise ValueError(f"an export checkpoint must be an object, not {body!r}")
        return cls(
            next_identifier=int(body["nextIdentifier"]),
            after=int(body["after"]),
            results=ExportResults.from_json(body["results"]),
            # Checkpoints written before data partitions existed are Microsoft.Default's.
            partition=int(body.get("partition", DEFAULT_PARTITION_KEY)),
        )


def export_results(operation: OperationRecord) -> dict[str, Any] | None:
    """The ``results`` of an export operation's record (None for other kinds)."""
    if operation.type != OperationKind.EXPORT.value or operation.checkpoint is None:
        return None
    return ExportResults.from_json(operation.checkpoint["results"]).to_json()


@dataclass(slots=True)
class _Batch:
    """What one step did: counts and error log lines."""

    exported: int = 0
    skipped: int = 0
    copied: int = 0
    """Instances this step has sent to be copied (exported, or skipped as gone)."""
    errors: list[bytes] = field(default_factory=list)

    def skip(self, identifier: str, message: str) -> None:
        self.skipped += 1
        self.errors.append(error_log_line(identifier, message, utc_timestamp()))


class ExportJob:
    """Starts exports and runs the ``export-batches`` queue's steps."""

    def __init__(
        self,
        store: OperationStore,
        index: IndexStore,
        blobs: BlobStore,
        sinks: ExportSinks,
        *,
        staging_dir: Path,
        batch_size: int = DEFAULT_BATCH_SIZE,
        queue: str = EXPORT_QUEUE,
    ) -> None:
        self._store = store
        self._index = index
        self._blobs = blobs
        self._sinks = sinks
        self._staging_dir = staging_dir
        self._batch_size = batch_size
        self._queue = queue
        self._requests: dict[str, ExportRequest] = {}

    async def start(self, request: ExportRequest, *, partition: int) -> OperationRecord:
        """Prepare the destination, keep the request and record the operation with its first
        message; ``ExportDestinationError`` when the destination cannot be written."""
        operation_id = new_operation_id()
        sink = self._sinks.open(request.destination, operation_id)
        try:
            await sink.prepare()
        finally:
            await sink.close()
        await self._keep_request(operation_id, request)
        checkpoint = ExportCheckpoint(0, 0, ExportResults(sink.error_href), partition)
        try:
            return await self._store.start_operation(
                operation_id,
                OperationKind.EXPORT,
                checkpoint=checkpoint.to_json(),
                first=self._message(operation_id, checkpoint),
            )
        except BaseException:
            await self._forget_request(operation_id)
            raise

    async def handle_message(self, body: Any, *, final_attempt: bool = False) -> StepOutcome:
        """One delivery. Raises to be retried; on the final attempt the operation is marked
        Failed first, since the message then goes to the poison queue."""
        message = OperationMessage.from_json(body)
        if message.kind is not OperationKind.EXPORT:
            raise MalformedMessage(f"not an export message: {body!r}")
        try:
            checkpoint = ExportCheckpoint.from_json(message.checkpoint)
            return await self.step(message.operation_id, checkpoint)
        except Exception:
            if final_attempt:
                log.error("export %s failed for good", message.operation_id)
                await self._store.fail_operation(message.operation_id)
                await self._forget_request(message.operation_id)
            raise

    async def step(self, operation_id: str, checkpoint: ExportCheckpoint) -> StepOutcome:
        """Copy the batch after ``checkpoint`` and move the operation past it."""
        expected = checkpoint.to_json()
        operation = await self._store.get_operation(operation_id)
        if operation is None or operation.done or operation.checkpoint != expected:
            return await self._stale(operation_id, expected, operation)
        request = await self._request(operation_id)
        identifiers = request.identifiers
        batch = _Batch()
        position, after = checkpoint.next_identifier, checkpoint.after
        sink = self._sinks.open(request.destination, operation_id)
        try:
            budget, room = self._batch_size, STEP_BYTES
            while position < len(identifiers) and budget > 0 and room > 0:
                identifier = identifiers[position]
                records = await self._instances(identifier, checkpoint.partition)
                if not records and after == 0:
                    batch.skip(str(identifier), NOT_FOUND[identifier.level])
                pending = [r for r in records if r.watermark > after]
                chosen = _within(pending[:budget], room, first=batch.copied == 0)
                await self._copy(sink, chosen, batch)
                batch.copied += len(chosen)
                room -= sum(record.file_size for record in chosen)
                # An identifier with nothing left costs one too, so a step visits at most
                # batch_size identifiers however many name nothing.
                budget -= max(len(chosen), 1)
                if len(pending) > len(chosen):
                    if chosen:  # else the next instance waits for the next step's room
                        after = chosen[-1].watermark
                    break
                position, after = position + 1, 0
            if batch.errors:
                await sink.append_errors(b"".join(batch.errors))
        finally:
            await sink.close()
        following = ExportCheckpoint(
            position,
            after,
            checkpoint.results.added(batch.exported, batch.skipped),
            checkpoint.partition,
        )
        finished = position >= len(identifiers)
        continuation: Continuation | None = None
        if finished:
            progress = OperationProgress(
                OperationStatusValues.COMPLETED.value, 100, following.to_json()
            )
        else:
            progress = OperationProgress(
                OperationStatusValues.RUNNING.value,
                running_percent(position, len(identifiers)),
                following.to_json(),
            )
            continuation = self._message(operation_id, following)
        if not await self._store.compare_and_set_checkpoint(
            operation_id, expected, progress, continuation
        ):
            current = await self._store.get_operation(operation_id)
            return await self._stale(operation_id, expected, current)
        if finished:
            await self._forget_request(operation_id)
        return StepOutcome.COMPLETED if finished else StepOutcome.CONTINUED

    async def _instances(
        self, identifier: ExportIdentifier, partition: int
    ) -> list[InstanceRecord]:
        """The current versions of the instances ``identifier`` names, by watermark."""
        if identifier.series_uid is not None and identifier.sop_uid is not None:
            key = InstanceKey(
                identifier.study_uid, identifier.series_uid, identifier.sop_uid, partition=partition
            )
            record = await self._index.get_instance(key)
            return [] if record is None else [record]
        records = await self._index.list_instances(
            identifier.study_uid, identifier.series_uid, partition=partition
        )
        return sorted(records, key=lambda r: r.watermark)

    async def _copy(self, sink: ExportSink, records: list[InstanceRecord], batch: _Batch) -> None:
        """Stream each record's stored file to the sink, a few at a time; a file gone from
        the blob store is skipped, any other failure fails the step."""
        limit = asyncio.Semaphore(COPY_CONCURRENCY)

        async def copy(record: InstanceRecord) -> None:
            async with limit:
                try:
                    reader = await self._blobs.open_reader(record.blob_key)
                except BlobNotFound:
                    key = record.key
                    batch.skip(f"{key.study_uid}/{key.series_uid}/{key.sop_uid}", GONE)
                    return
                try:
                    await sink.write_instance(record.key, reader.read_stream(), reader.size)
                finally:
                    await reader.close()
                batch.exported += 1

        try:
            async with asyncio.TaskGroup() as group:
                for record in records:
                    group.create_task(copy(record))
        except ExceptionGroup as failed:
            # The first failure is the step's: it is retried as a whole.
            raise failed.exceptions[0] from failed

    async def _keep_request(self, operation_id: str, request: ExportRequest) -> None:
        staged = self._staging_dir / spool_name()
        await asyncio.to_thread(staged.write_bytes, request.to_body())
        try:
            await self._blobs.put_file(request_key(operation_id), staged)
        finally:
            with contextlib.suppress(FileNotFoundError):
                staged.unlink()
        self._remember(operation_id, request)

    async def _request(self, operation_id: str) -> ExportRequest:
        cached = self._requests.get(operation_id)
        if cached is not None:
            return cached
        body = b"".join([c async for c in self._blobs.read_stream(request_key(operation_id))])
        request = parse_export_request(body)
        self._remember(operation_id, request)
        return request

    def _remember(self, operation_id: str, request: ExportRequest) -> None:
        self._requests[operation_id] = request
        while len(self._requests) > _CACHED_REQUESTS:
            del self._requests[next(iter(self._requests))]

    async def _forget_request(self, operation_id: str) -> None:
        """Delete the kept request (it may hold a connection string) once it is no longer
        needed; best effort, a leftover only takes space."""
        self._requests.pop(operation_id, None)
        try:
            await self._blobs.delete(request_key(operation_id))
        except Exception:
            log.warning("could not delete the request of export %s", operation_id)

    async def _stale(
        self, operation_id: str, expected: dict[str, Any], operation: OperationRecord | None
    ) -> StepOutcome:
        if operation is None or operation.done:
            # A crash between the last checkpoint and the request's deletion: its secrets
            # (a SAS, a connection string) must not outlive the operation.
            await self._forget_request(operation_id)
        return await settle_stale(
            self._store,
            operation_id,
            expected,
            operation,
            lambda current: self._message(operation_id, ExportCheckpoint.from_json(current)),
        )

    def _message(self, operation_id: str, checkpoint: ExportCheckpoint) -> Continuation:
        message = OperationMessage(OperationKind.EXPORT, operation_id, checkpoint.to_json())
        return Continuation(self._queue, message.to_json())


def _within(records: list[InstanceRecord], room: int, *, first: bool) -> list[InstanceRecord]:
    """The leading ``records`` whose sizes fit in ``room`` bytes; at least one when the
    step has copied nothing yet, so that every step makes progress."""
    chosen: list[InstanceRecord] = []
    for record in records:
        if record.file_size > room and (chosen or not first):
            break
        chosen.append(record)
        room -= record.file_size
    return chosen
