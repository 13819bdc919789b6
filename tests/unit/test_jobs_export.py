"""The export operation (``dicom_core.jobs.export``) on in-memory fakes: starting, batches
with checkpoints, skipped identifiers, repeated and failing steps, and the kept request."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import orjson
import pytest

from dicom_core.domain.export import (
    ExportRequest,
    error_log_path,
    parse_export_request,
    result_path,
)
from dicom_core.domain.model import IndexAttributes, InstanceKey, StoredInstance
from dicom_core.domain.operations import OperationStatusValues
from dicom_core.jobs.export import (
    EXPORT_QUEUE,
    GONE,
    ExportJob,
    export_results,
    request_key,
)
from dicom_core.jobs.operations import StepOutcome
from dicom_core.storage.ports import ExportDestinationError
from tests.fakes import Fakes
from tests.fakes.export import FakeExportSinks


def request(*values: str) -> ExportRequest:
    body = {
        "source": {"type": "identifiers", "settings": {"values": list(values)}},
        "destination": {
            "type": "azureblob",
            "settings": {
                "connectionString": "UseDevelopmentStorage=true",
                "blobContainerName": "out",
            },
        },
    }
    return parse_export_request(orjson.dumps(body))


class Setup:
    def __init__(self, tmp_path: Path, batch_size: int = 100) -> None:
        self.fakes = Fakes()
        self.sinks = FakeExportSinks()
        assert self.fakes.operations is not None
        self.operations = self.fakes.operations
        self.job = self.make_job(tmp_path, batch_size)

    def make_job(self, tmp_path: Path, batch_size: int) -> ExportJob:
        return ExportJob(
            self.operations,
            self.fakes.index,
            self.fakes.blobs,
            self.sinks,
            staging_dir=tmp_path,
            batch_size=batch_size,
        )

    async def store(self, study: str, series: str, sop: str) -> bytes:
        """Store an instance whose file holds bytes naming it; returns them."""
        key = InstanceKey(study, series, sop, partition=1)
        reservation = await self.fakes.index.begin_instance(key, upsert=True)
        data = f"DICM {study}/{series}/{sop} ".encode() * 50
        self.fakes.blobs.objects[reservation.blob_key] = data
        instance = StoredInstance(
            key=key,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            transfer_syntax_uid="1.2.840.10008.1.2.1",
            file_size=len(data),
            metadata_json=b"{}",
            attributes=IndexAttributes(),
        )
        await self.fakes.index.commit_instance(reservation, instance)
        return data

    async def run_all(self, *, job: ExportJob | None = None) -> list[StepOutcome]:
        outcomes = []
        queue = self.fakes.queue
        while messages := await queue.receive(EXPORT_QUEUE, max_messages=1):
            outcomes.append(await (job or self.job).handle_message(messages[0].body))
            await queue.complete(messages[0])
        return outcomes

    def error_lines(self, operation_id: str) -> list[dict[str, str]]:
        log = self.sinks.files[error_log_path(operation_id)]
        return [orjson.loads(line) for line in log.splitlines()]


async def test_an_export_copies_studies_series_and_instances_byte_for_byte(
    tmp_path: Path,
) -> None:
    s = Setup(tmp_path)
    study = [await s.store("1.1", "1.1.1", f"1.1.1.{n}") for n in range(3)]
    series = [await s.store("2.1", "2.1.1", "2.1.1.1"), await s.store("2.1", "2.1.2", "2.1.2.1")]
    single = await s.store("3.1", "3.1.1", "3.1.1.1")

    operation = await s.job.start(request("1.1", "2.1/2.1.1", "3.1/3.1.1/3.1.1.1"), partition=1)
    assert operation.type == "export"
    assert len(operation.operation_id) == 32 and int(operation.operation_id, 16) >= 0
    assert s.fakes.blobs.objects[request_key(operation.operation_id)]  # the request is kept
    assert await s.run_all() == [StepOutcome.COMPLETED]

    op = operation.operation_id
    expected = {
        result_path(op, InstanceKey("1.1", "1.1.1", f"1.1.1.{n}", partition=1)): study[n]
        for n in range(3)
    }
    expected[result_path(op, InstanceKey("2.1", "2.1.1", "2.1.1.1", partition=1))] = series[0]
    expected[result_path(op, InstanceKey("3.1", "3.1.1", "3.1.1.1", partition=1))] = single
    expected[error_log_path(op)] = b""
    assert s.sinks.files == expected
    assert f"{op}/results/1.1/1.1.1/1.1.1.0.dcm" in expected
    done = await s.operations.get_operation(op)
    assert done is not None
    assert (done.status, done.percent_complete) == (OperationStatusValues.COMPLETED, 100)
    assert export_results(done) == {
        "errorHref": f"memory://{op}/errors.log",
        "exported": 5,
        "skipped": 0,
    }
    # Finished: the kept request (it may hold a connection string) is gone; sinks closed.
    assert request_key(op) not in s.fakes.blobs.objects
    assert s.sinks.open_sinks == 0
    assert os.listdir(tmp_path) == []


async def test_identifiers_naming_nothing_are_skipped_and_logged(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    await s.store("1.1", "1.1.1", "1.1.1.1")
    operation = await s.job.start(
        request("9.9", "1.1", "1.1/8.8", "1.1/1.1.1/7.7", "1.1/1.1.1/1.1.1.1"), partition=1
    )
    await s.run_all()
    done = await s.operations.get_operation(operation.operation_id)
    assert done is not None and done.status == OperationStatusValues.COMPLETED
    results = export_results(done)
    assert results is not None
    assert (results["exported"], results["skipped"]) == (2, 3)
    lines = s.error_lines(operation.operation_id)
    assert [(line["Identifier"], line["Error"]) for line in lines] == [
        ("9.9", "The specified study cannot be found."),
        ("1.1/8.8", "The specified series cannot be found."),
        ("1.1/1.1.1/7.7", "The specified instance cannot be found."),
    ]
    assert all(line["Timestamp"].endswith("Z") for line in lines)


async def test_a_big_export_runs_in_checkpointed_batches(tmp_path: Path) -> None:
    s = Setup(tmp_path, batch_size=2)
    for n in range(5):
        await s.store("1.1", "1.1.1", f"1.1.1.{n}")
    for n in range(3):
        await s.store(f"2.{n}", "2.1", f"2.1.{n}")
    identifiers = ("1.1", *(f"2.{n}" for n in range(3)), "4.4")
    operation = await s.job.start(request(*identifiers), partition=1)
    percents = []
    queue = s.fakes.queue
    while messages := await queue.receive(EXPORT_QUEUE, max_messages=1):
        body = messages[0].body
        assert len(orjson.dumps(body)) < 1024  # the request is not in the message
        await s.job.handle_message(body)
        await queue.complete(messages[0])
        current = await s.operations.get_operation(operation.operation_id)
        assert current is not None
        percents.append(current.percent_complete)
    # 2 instances a step: the study of 5 takes two steps and a half, the studies of one fill
    # the rest of the third and the fourth, the missing study the fifth. Identifiers done
    # make the percentage.
    assert percents == [0, 0, 40, 80, 100]
    done = await s.operations.get_operation(operation.operation_id)
    assert done is not None
    assert export_results(done) == {
        "errorHref": f"memory://{operation.operation_id}/errors.log",
        "exported": 8,
        "skipped": 1,
    }
    assert len(s.sinks.writes) == 8  # each instance written once


async def test_an_instance_stored_into_a_study_being_exported_is_exported_too(
    tmp_path: Path,
) -> None:
    s = Setup(tmp_path, batch_size=2)
    for n in range(3):
        await s.store("1.1", "1.1.1", f"1.1.1.{n}")
    operation = await s.job.start(request("1.1"), partition=1)
    [first] = await s.fakes.queue.receive(EXPORT_QUEUE, max_messages=1)
    assert await s.job.handle_message(first.body) is StepOutcome.CONTINUED
    await s.fakes.queue.complete(first)
    await s.store("1.1", "1.1.2", "1.1.2.9")  # a higher watermark than any exported
    await s.run_all()
    done = await s.operations.get_operation(operation.operation_id)
    assert done is not None
    assert export_results(done)["exported"] == 4  # type: ignore[index]


async def test_a_redelivered_message_exports_nothing_twice(tmp_path: Path) -> None:
    s = Setup(tmp_path, batch_size=2)
    for n in range(3):
        await s.store("1.1", "1.1.1", f"1.1.1.{n}")
    operation = await s.job.start(request("1.1"), partition=1)
    [first] = await s.fakes.queue.receive(EXPORT_QUEUE, max_messages=1)
    assert await s.job.handle_message(first.body) is StepOutcome.CONTINUED
    # The same message again (a lost completion): stale, nothing written or counted.
    writes = len(s.sinks.writes)
    assert await s.job.handle_message(first.body) is StepOutcome.STALE
    assert len(s.sinks.writes) == writes
    await s.fakes.queue.complete(first)
    await s.run_all()
    done = await s.operations.get_operation(operation.operation_id)
    assert done is not None
    assert export_results(done)["exported"] == 3  # type: ignore[index]


async def test_a_step_that_fails_midway_is_repeated_whole_and_loses_nothing(
    tmp_path: Path,
) -> None:
    s = Setup(tmp_path, batch_size=4)
    data = {f"1.1.1.{n}": await s.store("1.1", "1.1.1", f"1.1.1.{n}") for n in range(6)}
    operation = await s.job.start(request("1.1"), partition=1)
    s.sinks.fail_writes_after = 2
    [message] = await s.fakes.queue.receive(EXPORT_QUEUE, max_messages=1)
    with pytest.raises(ExportDestinationError):
        await s.job.handle_message(message.body)
    current = await s.operations.get_operation(operation.operation_id)
    assert current is not None and current.status == OperationStatusValues.NOT_STARTED
    s.sinks.fail_writes_after = None
    await s.fakes.queue.abandon(message)
    # A fresh job (a restarted host): the request is read back from the blob store.
    again = s.make_job(tmp_path, 4)
    await s.run_all(job=again)
    done = await s.operations.get_operation(operation.operation_id)
    assert done is not None and done.status == OperationStatusValues.COMPLETED
    assert export_results(done)["exported"] == 6  # type: ignore[index]
    op = operation.operation_id
    for sop, expected in data.items():
        assert (
            s.sinks.files[result_path(op, InstanceKey("1.1", "1.1.1", sop, partition=1))]
            == expected
        )


async def test_the_last_attempt_fails_the_operation_and_drops_the_request(
    tmp_path: Path,
) -> None:
    s = Setup(tmp_path)
    await s.store("1.1", "1.1.1", "1.1.1.1")
    operation = await s.job.start(request("1.1"), partition=1)
    s.sinks.fail_writes_after = 0
    [message] = await s.fakes.queue.receive(EXPORT_QUEUE, max_messages=1)
    with pytest.raises(ExportDestinationError):
        await s.job.handle_message(message.body, final_attempt=True)
    done = await s.operations.get_operation(operation.operation_id)
    assert done is not None and done.status == OperationStatusValues.FAILED
    assert export_results(done)["exported"] == 0  # type: ignore[index]
    assert request_key(operation.operation_id) not in s.fakes.blobs.objects


async def test_a_file_gone_from_the_blob_store_is_skipped(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    await s.store("1.1", "1.1.1", "1.1.1.1")
    await s.store("1.1", "1.1.1", "1.1.1.2")
    record = await s.fakes.index.get_instance(InstanceKey("1.1", "1.1.1", "1.1.1.2", partition=1))
    assert record is not None
    del s.fakes.blobs.objects[record.blob_key]
    operation = await s.job.start(request("1.1"), partition=1)
    await s.run_all()
    done = await s.operations.get_operation(operation.operation_id)
    assert done is not None and done.status == OperationStatusValues.COMPLETED
    results = export_results(done)
    assert results is not None and (results["exported"], results["skipped"]) == (1, 1)
    [line] = s.error_lines(operation.operation_id)
    assert (line["Identifier"], line["Error"]) == ("1.1/1.1.1/1.1.1.2", GONE)


async def test_a_destination_that_cannot_be_written_starts_nothing(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.sinks.missing = True
    with pytest.raises(ExportDestinationError):
        await s.job.start(request("1.1"), partition=1)
    assert s.operations.operations == {}
    assert s.fakes.queue.bodies(EXPORT_QUEUE) == []
    assert s.fakes.blobs.objects == {}
    assert s.sinks.open_sinks == 0


async def test_other_kinds_have_no_export_results(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    operation = await s.job.start(request("1.1"), partition=1)
    assert export_results(operation) is not None
    assert export_results(dataclasses.replace(operation, type="update")) is None


async def test_a_request_left_by_a_crash_after_the_last_step_goes_with_a_redelivery(
    tmp_path: Path,
) -> None:
    """The last step moved the checkpoint to Completed, then the process died before it
    deleted the kept request (with its SAS or connection string): the redelivered message
    is stale, and deletes it."""
    s = Setup(tmp_path)
    await s.store("1.1", "1.1.1", "1.1.1.1")
    operation = await s.job.start(request("1.1"), partition=1)
    [last] = await s.fakes.queue.receive(EXPORT_QUEUE, max_messages=1)
    assert await s.job.handle_message(last.body) is StepOutcome.COMPLETED
    key = request_key(operation.operation_id)
    s.fakes.blobs.objects[key] = b"{}"  # as the crash left it
    assert await s.job.handle_message(last.body) is StepOutcome.STALE
    assert key not in s.fakes.blobs.objects


async def test_a_step_stops_at_its_byte_budget_and_always_makes_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps are bounded in bytes as well as instances, so large instances never make a
    step outlive the function's timeout; an instance larger than the budget still goes,
    alone in its step."""
    from dicom_core.jobs import export as export_job

    s = Setup(tmp_path, batch_size=100)
    sizes = [len(await s.store("1.1", "1.1.1", f"1.1.1.{n}")) for n in range(5)]
    monkeypatch.setattr(export_job, "STEP_BYTES", sizes[0] * 2)  # two instances a step
    operation = await s.job.start(request("1.1"), partition=1)
    outcomes = await s.run_all()
    assert outcomes == [StepOutcome.CONTINUED] * 2 + [StepOutcome.COMPLETED]
    monkeypatch.setattr(export_job, "STEP_BYTES", 1)  # smaller than any instance
    again = await s.job.start(request("1.1"), partition=1)
    assert len(await s.run_all()) == 5  # one instance a step, never none
    for done in (operation, again):
        current = await s.operations.get_operation(done.operation_id)
        assert current is not None and export_results(current)["exported"] == 5  # type: ignore[index]
