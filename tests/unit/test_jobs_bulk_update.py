"""The bulk update operation (``dicom_core.jobs.bulk_update``) on in-memory fakes: starting
with its studies held, one study per step, results, stale and failing messages."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dicom_core.domain.bulk_update import BulkUpdateRequest, parse_bulk_update_request
from dicom_core.domain.operations import OperationStatusValues
from dicom_core.jobs.bulk_update import (
    BULK_UPDATE_QUEUE,
    MAX_INSTANCE_ERRORS,
    BulkUpdateJob,
    UpdateCheckpoint,
    UpdateResults,
    study_hold,
    update_results,
)
from dicom_core.jobs.operations import StepOutcome
from dicom_core.services.bulk_update import StudyOutcome
from dicom_core.storage.ports import OperationConflict
from tests.fakes import FakeJobQueue
from tests.fakes.operations import FakeOperationStore


def request(*studies: str) -> BulkUpdateRequest:
    body = {
        "studyInstanceUids": list(studies),
        "changeDataset": {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "New^Name"}]}},
    }
    return parse_bulk_update_request(orjson.dumps(body))


class Updater:
    """Answers each study with the outcome the test set (updated instances by default)."""

    def __init__(self, outcomes: dict[str, StudyOutcome] | None = None) -> None:
        self.outcomes = outcomes or {}
        self.calls: list[str] = []
        self.fail = False

    async def update_study(
        self, study_uid: str, request: BulkUpdateRequest, *, partition: int, operation_id: str
    ) -> StudyOutcome:
        self.calls.append(study_uid)
        if self.fail:
            raise RuntimeError("storage is down")
        return self.outcomes.get(study_uid, StudyOutcome(instances_updated=2))


def setup(
    updater: Updater | None = None,
) -> tuple[BulkUpdateJob, FakeOperationStore, FakeJobQueue, Updater]:
    queue = FakeJobQueue()
    store = FakeOperationStore(queue)
    updater = updater or Updater()
    return BulkUpdateJob(store, updater), store, queue, updater  # type: ignore[arg-type]


async def run_all(job: BulkUpdateJob, queue: FakeJobQueue) -> list[StepOutcome]:
    outcomes = []
    while messages := await queue.receive(BULK_UPDATE_QUEUE, max_messages=1):
        outcomes.append(await job.handle_message(messages[0].body))
        await queue.complete(messages[0])
    return outcomes


async def test_an_update_runs_one_study_per_message_and_completes() -> None:
    job, store, queue, updater = setup()
    operation = await job.start(request("1.2.1", "1.2.2", "1.2.3"), partition=1)
    assert operation.type == "update"
    assert await run_all(job, queue) == [
        StepOutcome.CONTINUED,
        StepOutcome.CONTINUED,
        StepOutcome.COMPLETED,
    ]
    assert updater.calls == ["1.2.1", "1.2.2", "1.2.3"]
    done = await store.get_operation(operation.operation_id)
    assert done is not None
    assert (done.status, done.percent_complete) == (OperationStatusValues.COMPLETED, 100)
    assert update_results(done) == {
        "studyProcessed": 3,
        "studyUpdated": 3,
        "studyFailed": 0,
        "instanceUpdated": 6,
    }
    assert store.holds == {}


async def test_a_study_held_by_a_running_update_refuses_another() -> None:
    job, store, queue, _ = setup()
    first = await job.start(request("1.2.1", "1.2.2"), partition=1)
    with pytest.raises(OperationConflict) as refused:
        await job.start(request("1.2.9", "1.2.2"), partition=1)
    assert (refused.value.resource, refused.value.operation_id) == ("1.2.2", first.operation_id)
    await run_all(job, queue)
    await job.start(request("1.2.2"), partition=1)  # free once the first has finished


async def test_holds_are_per_partition_and_a_refusal_names_the_study() -> None:
    """The 409's message is made from ``resource``: the study UID the client sent, never
    the partition-qualified name the operation holds it under."""
    job, _, _, _ = setup()
    first = await job.start(request("1.2.1", "1.2.2"), partition=7)
    with pytest.raises(OperationConflict) as refused:
        await job.start(request("1.2.2"), partition=7)
    assert (refused.value.resource, refused.value.operation_id) == ("1.2.2", first.operation_id)
    await job.start(request("1.2.2"), partition=1)  # the same UID in another partition


def test_a_hold_name_is_a_legal_cosmos_document_id() -> None:
    """Cosmos DB keeps a hold as the document ``h|{name}``, and its ids may not contain
    '/', '\\', '?' or '#' (a point read of one would address another path)."""
    for partition in (1, 7):
        name = study_hold(partition, "1.2.840.1")
        assert not set(name) & set("/\\?#"), name
        assert "1.2.840.1" in name
    assert study_hold(7, "1.2.3") != study_hold(1, "1.2.3") != study_hold(8, "1.2.3")


async def test_failed_studies_fail_the_operation_and_list_a_few_errors_each() -> None:
    many = StudyOutcome(instances_updated=1, errors=[f"instance {n} failed" for n in range(8)])
    job, store, queue, _ = setup(
        Updater({"1.2.2": many, "1.2.3": StudyOutcome(found=False, errors=["gone"])})
    )
    operation = await job.start(request("1.2.1", "1.2.2", "1.2.3"), partition=1)
    await run_all(job, queue)
    done = await store.get_operation(operation.operation_id)
    assert done is not None and done.status == OperationStatusValues.FAILED
    results = update_results(done)
    assert results is not None
    assert (results["studyUpdated"], results["studyFailed"], results["instanceUpdated"]) == (
        1,
        2,
        3,
    )
    errors = results["errors"]
    assert errors[0] == "Failed to update instances for study 1.2.2"
    assert errors[1 : 1 + MAX_INSTANCE_ERRORS] == [f"instance {n} failed" for n in range(5)]
    assert errors[1 + MAX_INSTANCE_ERRORS] == "3 more instances of the study failed to update."
    assert errors[-2:] == ["Failed to update instances for study 1.2.3", "gone"]


async def test_a_redelivered_message_does_nothing_once_its_step_moved_on() -> None:
    job, store, queue, updater = setup()
    operation = await job.start(request("1.2.1", "1.2.2"), partition=1)
    [first] = await queue.receive(BULK_UPDATE_QUEUE, max_messages=1)
    assert await job.handle_message(first.body) is StepOutcome.CONTINUED
    assert await job.handle_message(first.body) is StepOutcome.STALE  # redelivered
    assert updater.calls == ["1.2.1"]
    record = await store.get_operation(operation.operation_id)
    assert record is not None and record.checkpoint is not None
    assert UpdateCheckpoint.from_json(record.checkpoint).next_study == 1


async def test_the_last_delivery_of_a_failing_step_fails_the_operation() -> None:
    updater = Updater()
    updater.fail = True
    job, store, queue, _ = setup(updater)
    operation = await job.start(request("1.2.1"), partition=1)
    [message] = await queue.receive(BULK_UPDATE_QUEUE, max_messages=1)
    with pytest.raises(RuntimeError):
        await job.handle_message(message.body)
    still = await store.get_operation(operation.operation_id)
    assert still is not None and not still.done
    with pytest.raises(RuntimeError):
        await job.handle_message(message.body, final_attempt=True)
    failed = await store.get_operation(operation.operation_id)
    assert failed is not None and failed.status == OperationStatusValues.FAILED
    assert store.holds == {}


def test_the_checkpoint_round_trips_through_its_json() -> None:
    results = UpdateResults(2, 1, 1, 5, ("a", "b"))
    checkpoint = UpdateCheckpoint(request("1.2.1", "1.2.2"), 2, results)
    body: Any = orjson.loads(orjson.dumps(checkpoint.to_json()))
    assert UpdateCheckpoint.from_json(body) == checkpoint
