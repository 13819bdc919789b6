"""Bulk update: the second long-running operation, one study per step.

``BulkUpdateJob.start`` records the operation, holding its studies (a second operation on one
of them is refused until this one finishes), with its first ``bulk-update-batches`` message.
Each message then drives one ``step``: update the next study (``StudyUpdater``: all of the
study's new versions committed together) and compare-and-set the checkpoint with the message
for the study after it. A crash or a redelivery repeats at most one study, and repeating one
does no harm: an instance that already holds the new values is left alone, and new files go
to the same keys.

The checkpoint carries the request and the results so far, so the operation record alone
answers ``GET /operations/{id}`` (``results``: studies processed, updated and failed,
instances updated, and errors, as Azure's update operations report them). The operation ends
Completed, or Failed when any study or instance failed, as Azure's does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import orjson

from dicom_core.domain.bulk_update import BulkUpdateRequest, parse_bulk_update_request
from dicom_core.domain.operations import (
    OperationKind,
    OperationStatusValues,
    new_operation_id,
)
from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY, is_default
from dicom_core.jobs.messages import MalformedMessage, OperationMessage
from dicom_core.jobs.operations import StepOutcome, running_percent, settle_stale
from dicom_core.services.bulk_update import StudyOutcome, StudyUpdater
from dicom_core.storage.ports import (
    Continuation,
    OperationConflict,
    OperationProgress,
    OperationRecord,
    OperationStore,
)

log = logging.getLogger(__name__)

BULK_UPDATE_QUEUE = "bulk-update-batches"
#: Instance errors listed per failed study; more are summarised in one line (as Azure does).
MAX_INSTANCE_ERRORS = 5


@dataclass(frozen=True, slots=True)
class UpdateResults:
    """The operation's ``results`` so far."""

    study_processed: int = 0
    study_updated: int = 0
    study_failed: int = 0
    instance_updated: int = 0
    errors: tuple[str, ...] = ()

    def with_study(self, study_uid: str, outcome: StudyOutcome) -> UpdateResults:
        failed = bool(outcome.errors)
        errors = self.errors
        if failed:
            listed = outcome.errors[:MAX_INSTANCE_ERRORS]
            more = len(outcome.errors) > MAX_INSTANCE_ERRORS
            errors += (
                f"Failed to update instances for study {study_uid}",
                *listed,
                *(
                    (
                        f"{len(outcome.errors) - MAX_INSTANCE_ERRORS} more instances of the"
                        " study failed to update.",
                    )
                    if more
                    else ()
                ),
            )
        return UpdateResults(
            study_processed=self.study_processed + 1,
            study_updated=self.study_updated + int(outcome.found and not failed),
            study_failed=self.study_failed + int(failed),
            instance_updated=self.instance_updated + outcome.instances_updated,
            errors=errors,
        )

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "studyProcessed": self.study_processed,
            "studyUpdated": self.study_updated,
            "studyFailed": self.study_failed,
            "instanceUpdated": self.instance_updated,
        }
        if self.errors:
            body["errors"] = list(self.errors)
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> UpdateResults:
        return cls(
            study_processed=int(body["studyProcessed"]),
            study_updated=int(body["studyUpdated"]),
            study_failed=int(body["studyFailed"]),
            instance_updated=int(body["instanceUpdated"]),
            errors=tuple(str(e) for e in body.get("errors") or ()),
        )


def study_hold(partition: int, study_uid: str) -> str:
    """The name under which an operation holds a study: its UID in Microsoft.Default (as
    before partitions existed, so holds of running operations keep working), prefixed with
    the partition's key elsewhere (``_`` never occurs in a UID, so the two never meet). The
    separator is ``|``, not ``/``: Cosmos DB keeps a hold as a document whose id is made from
    this name, and an id may not contain '/', '\\', '?' or '#'."""
    return study_uid if is_default(partition) else f"p_{partition}|{study_uid}"


@dataclass(frozen=True, slots=True)
class UpdateCheckpoint:
    """Where a bulk update stands: the request, the next study, the results so far, and
    the data partition whose studies it updates."""

    request: BulkUpdateRequest
    next_study: int
    results: UpdateResults
    partition: int = DEFAULT_PARTITION_KEY

    def to_json(self) -> dict[str, Any]:
        return {
            "request": self.request.to_json(),
            "nextStudy": self.next_study,
            "results": self.results.to_json(),
            # Written only where it says something, so a checkpoint of Microsoft.Default
            # reads back equal to one written before partitions existed (a step compares
            # its checkpoint with the operation's record).
            **({} if is_default(self.partition) else {"partition": self.partition}),
        }

    @classmethod
    def from_json(cls, body: Any) -> UpdateCheckpoint:
        if not isinstance(body, dict):
            raise ValueError(f"a bulk update checkpoint must be an object, not {body!r}")
        return cls(
            request=parse_bulk_update_request(orjson.dumps(body["request"])),
            next_study=int(body["nextStudy"]),
            results=UpdateResults.from_json(body["results"]),
            # Checkpoints written before data partitions existed are Microsoft.Default's.
            partition=int(body.get("partition", DEFAULT_PARTITION_KEY)),
        )


def update_results(operation: OperationRecord) -> dict[str, Any] | None:
    """The ``results`` of an update operation's record (None for other kinds)."""
    if operation.type != OperationKind.UPDATE.value or operation.checkpoint is None:
        return None
    return UpdateResults.from_json(operation.checkpoint["results"]).to_json()


class BulkUpdateJob:
    """Starts bulk updates and runs the ``bulk-update-batches`` queue's steps."""

    def __init__(
        self, store: OperationStore, updater: StudyUpdater, *, queue: str = BULK_UPDATE_QUEUE
    ) -> None:
        self._store = store
        self._updater = updater
        self._queue = queue

    async def start(self, request: BulkUpdateRequest, *, partition: int) -> OperationRecord:
        """Record the operation and send its first message; ``OperationConflict`` when
        another unfinished operation holds one of its studies (in the same partition)."""
        operation_id = new_operation_id()
        checkpoint = UpdateCheckpoint(request, 0, UpdateResults(), partition)
        holds = [study_hold(partition, study) for study in request.study_instance_uids]
        try:
            return await self._store.start_operation(
                operation_id,
                OperationKind.UPDATE,
                checkpoint=checkpoint.to_json(),
                first=self._message(operation_id, checkpoint),
                holds=holds,
            )
        except OperationConflict as exc:
            # The client is told of its studies, not of the names they are held under (a
            # store that lost a race may name several, joined by ", ").
            studies = dict(zip(holds, request.study_instance_uids, strict=True))
            held = ", ".join(studies.get(name, name) for name in exc.resource.split(", "))
            raise OperationConflict(held, exc.operation_id) from exc

    async def handle_message(self, body: Any, *, final_attempt: bool = False) -> StepOutcome:
        """One delivery. Raises to be retried; on the final attempt the operation is marked
        Failed first, since the message then goes to the poison queue."""
        message = OperationMessage.from_json(body)
        if message.kind is not OperationKind.UPDATE:
            raise MalformedMessage(f"not a bulk update message: {body!r}")
        try:
            checkpoint = UpdateCheckpoint.from_json(message.checkpoint)
            return await self.step(message.operation_id, checkpoint)
        except Exception:
            if final_attempt:
                log.error("bulk update %s failed for good", message.operation_id)
                await self._store.fail_operation(message.operation_id)
            raise

    async def step(self, operation_id: str, checkpoint: UpdateCheckpoint) -> StepOutcome:
        """Update the study ``checkpoint`` names and move the operation past it."""
        expected = checkpoint.to_json()
        operation = await self._store.get_operation(operation_id)
        if operation is None or operation.done or operation.checkpoint != expected:
            return await self._stale(operation_id, expected, operation)
        studies = checkpoint.request.study_instance_uids
        study_uid = studies[checkpoint.next_study]
        outcome = await self._updater.update_study(
            study_uid,
            checkpoint.request,
            partition=checkpoint.partition,
            operation_id=operation_id,
        )
        following = replace(
            checkpoint,
            next_study=checkpoint.next_study + 1,
            results=checkpoint.results.with_study(study_uid, outcome),
        )
        finished = following.next_study >= len(studies)
        continuation: Continuation | None = None
        if finished:
            status = (
                OperationStatusValues.FAILED
                if following.results.study_failed
                else OperationStatusValues.COMPLETED
            )
            progress = OperationProgress(status.value, 100, following.to_json())
        else:
            percent = running_percent(following.next_study, len(studies))
            progress = OperationProgress(
                OperationStatusValues.RUNNING.value, percent, following.to_json()
            )
            continuation = self._message(operation_id, following)
        if not await self._store.compare_and_set_checkpoint(
            operation_id, expected, progress, continuation
        ):
            current = await self._store.get_operation(operation_id)
            return await self._stale(operation_id, expected, current)
        return StepOutcome.COMPLETED if finished else StepOutcome.CONTINUED

    async def _stale(
        self, operation_id: str, expected: dict[str, Any], operation: OperationRecord | None
    ) -> StepOutcome:
        """A message whose checkpoint the operation has left: only make up for a lost send."""
        return await settle_stale(
            self._store,
            operation_id,
            expected,
            operation,
            lambda current: self._message(operation_id, UpdateCheckpoint.from_json(current)),
        )

    def _message(self, operation_id: str, checkpoint: UpdateCheckpoint) -> Continuation:
        message = OperationMessage(OperationKind.UPDATE, operation_id, checkpoint.to_json())
        return Continuation(self._queue, message.to_json())
