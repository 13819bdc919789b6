"""The reindex batch step (dicom_core.jobs.reindex) against an in-memory fake of the adapter
primitives: crashes mid-batch, the last batch, deletions between batches, indexing errors,
lost continuations, and the message schemas a queue may still hold after an upgrade.

The contract suite (tests/contract/test_query_tag_store.py) runs the same step on both real
backends; these tests reach the corners a real store cannot be made to hit on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from dicom_core.domain.model import InstanceKey
from dicom_core.domain.operations import OperationKind
from dicom_core.jobs.checkpoint import WatermarkCheckpoint
from dicom_core.jobs.messages import MalformedMessage, OperationMessage
from dicom_core.jobs.operations import StepOutcome
from dicom_core.jobs.reindex import (
    DEFAULT_BATCH_SIZE,
    REINDEX_QUEUE,
    CheckpointContention,
    ReindexCheckpoint,
    ReindexJob,
    plan_reindex,
)
from dicom_core.jobs.retry import RetryRule
from dicom_core.storage.ports import (
    Continuation,
    IndexedInstance,
    OperationProgress,
    OperationRecord,
    QueryTagRecord,
)

AGE_KEY = 1


class Crash(Exception):
    """The process dies here (the fake raises where a real host would be killed)."""


@dataclass
class FakeReindexStore:
    """The ``ReindexPrimitives`` in memory, with switches to fail at chosen points."""

    instances: dict[int, IndexedInstance] = field(default_factory=dict)
    tags: dict[int, QueryTagRecord] = field(default_factory=dict)
    operations: dict[str, OperationRecord] = field(default_factory=dict)
    values: dict[tuple[int, str], tuple[int, str]] = field(default_factory=dict)
    errors: dict[tuple[int, str], str] = field(default_factory=dict)
    sent: list[Continuation] = field(default_factory=list)
    unsent: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)
    crash_after_values: int | None = None
    lose_next_send: bool = False
    lose_next_move_answer: bool = False
    contend_next_move: bool = False
    fail_writes: bool = False

    # -- set-up ---------------------------------------------------------------------------------

    def store(self, watermark: int, age: str | None) -> InstanceKey:
        key = InstanceKey("1.2", f"1.2.{watermark}", f"1.2.{watermark}.1", partition=1)
        doc = {} if age is None else {"00101010": {"vr": "AS", "Value": [age]}}
        self.instances[watermark] = IndexedInstance(key, watermark, orjson.dumps(doc))
        return key

    def add_age_tag(self, operation_id: str) -> dict[str, Any]:
        """What ``add_tags`` does: the tag, the operation and its first message."""
        self.tags[AGE_KEY] = QueryTagRecord(
            AGE_KEY, "00101010", "AS", None, "Instance", "Adding", "Enabled", 0, operation_id
        )
        checkpoint, first = plan_reindex(operation_id)(
            (AGE_KEY,), max(self.instances, default=0), len(self.instances)
        )
        self.operations[operation_id] = OperationRecord(
            operation_id, "Reindex", "NotStarted", 0, ("00101010",), checkpoint, "t", "t"
        )
        self.sent.append(first)
        return first.body

    # -- the primitives -------------------------------------------------------------------------

    async def list_tags(self) -> list[QueryTagRecord]:
        return sorted(self.tags.values(), key=lambda t: t.key)

    async def get_operation(self, operation_id: str) -> OperationRecord | None:
        return self.operations.get(operation_id)

    async def fail_operation(self, operation_id: str) -> None:
        op = self.operations[operation_id]
        if not op.done:
            self.operations[operation_id] = replace(op, status="Failed")

    async def read_watermark_range(
        self, after: int, until: int, limit: int
    ) -> list[IndexedInstance]:
        return [self.instances[w] for w in sorted(self.instances) if after < w <= until][:limit]

    async def write_values(
        self, tags: Sequence[QueryTagRecord], instances: Sequence[IndexedInstance]
    ) -> None:
        if self.fail_writes:
            raise ConnectionError("the index is unreachable")
        for n, instance in enumerate(instances):
            if self.crash_after_values is not None and n == self.crash_after_values:
                self.crash_after_values = None
                raise Crash
            assert instance.metadata is not None
            element = orjson.loads(instance.metadata).get("00101010")
            for tag in tags:
                entity = (tag.key, instance.key.sop_uid)
                if element is None:
                    continue
                value = str(element["Value"][0])
                if not value.endswith("Y"):
                    self.errors[entity] = f"{value} is not an age"
                    self.tags[tag.key] = replace(
                        self.tags[tag.key], query_status="Disabled", error_count=len(self.errors)
                    )
                    continue
                self.values[entity] = (instance.watermark, value)

    async def mark_tags_ready(self, tag_keys: Sequence[int]) -> None:
        for key in tag_keys:
            if key in self.tags and self.tags[key].status == "Adding":
                self.tags[key] = replace(self.tags[key], status="Ready", operation_id=None)

    async def compare_and_set_checkpoint(
        self,
        operation_id: str,
        expected: dict[str, Any],
        progress: OperationProgress,
        continuation: Continuation | None,
    ) -> bool:
        op = self.operations.get(operation_id)
        if op is None or op.done or op.checkpoint != expected:
            return False
        if self.contend_next_move:  # another writer touched the record: the ETag differs
            self.contend_next_move = False
            return False
        self.operations[operation_id] = replace(
            op,
            status=progress.status,
            percent_complete=progress.percent_complete,
            checkpoint=progress.checkpoint,
        )
        if self.lose_next_move_answer:  # moved, but a retried write found it moved already
            self.lose_next_move_answer = False
            if continuation is not None:
                self.unsent[operation_id] = (expected, progress.checkpoint)
            return False
        if continuation is not None:
            if self.lose_next_send:
                self.lose_next_send = False
                self.unsent[operation_id] = (expected, progress.checkpoint)
                raise ConnectionError("the queue is unreachable")
            self.sent.append(continuation)
        return True

    async def resend_continuation(
        self, operation_id: str, stale: dict[str, Any], continuation: Continuation
    ) -> None:
        if self.unsent.get(operation_id, (None, None))[0] == stale:
            del self.unsent[operation_id]
            self.sent.append(continuation)

    # -- helpers --------------------------------------------------------------------------------

    def take(self) -> list[dict[str, Any]]:
        bodies, self.sent = [c.body for c in self.sent], []
        return bodies


def started(
    count: int, *, batch_size: int = DEFAULT_BATCH_SIZE, ages: str | None = None
) -> tuple[FakeReindexStore, dict[str, Any], ReindexJob]:
    """``count`` instances stored (watermarks 1..count, age ``ages`` or ``{w:03d}Y``), the
    age tag just added with its first message taken off the queue, and the job to run it."""
    store = FakeReindexStore()
    for w in range(1, count + 1):
        store.store(w, ages or f"{w:03d}Y")
    first = store.add_age_tag("op")
    store.take()
    return store, first, ReindexJob(store, batch_size=batch_size)


async def drain(job: ReindexJob, store: FakeReindexStore) -> list[StepOutcome]:
    outcomes = []
    while bodies := store.take():
        for body in bodies:
            outcomes.append(await job.handle_message(body))
    return outcomes


async def test_the_operation_walks_every_batch_and_completes() -> None:
    store = FakeReindexStore()
    for w in range(1, 8):
        store.store(w, f"{w:03d}Y")
    store.add_age_tag("op")
    job = ReindexJob(store, batch_size=3)

    outcomes = await drain(job, store)

    assert outcomes == [StepOutcome.CONTINUED, StepOutcome.CONTINUED, StepOutcome.COMPLETED]
    op = store.operations["op"]
    assert (op.status, op.percent_complete) == ("Completed", 100)
    assert op.checkpoint is not None and op.checkpoint["done"] == 7
    assert store.tags[AGE_KEY].status == "Ready"
    assert len(store.values) == 7


async def test_progress_is_capped_below_100_until_the_last_batch() -> None:
    store, first, job = started(6, batch_size=3, ages="001Y")
    assert await job.handle_message(first) is StepOutcome.CONTINUED
    assert store.operations["op"].percent_complete == 50
    # 6 instances in batches of 3: the second batch is full, so only a third (empty) one
    # can tell that nothing is left.
    (second,) = store.take()
    assert await job.handle_message(second) is StepOutcome.CONTINUED
    assert store.operations["op"].percent_complete == 99
    (last,) = store.take()
    assert await job.handle_message(last) is StepOutcome.COMPLETED
    assert store.operations["op"].percent_complete == 100


async def test_a_crash_mid_batch_repeats_only_that_batch() -> None:
    store, first, job = started(5, batch_size=3)
    store.crash_after_values = 2  # two values written, then the host dies

    with pytest.raises(Crash):
        await job.handle_message(first)
    assert store.operations["op"].checkpoint == first["checkpoint"]  # nothing moved
    assert store.sent == []

    # the redelivery repeats the batch (upserts: no harm) and the operation goes on
    assert await job.handle_message(first) is StepOutcome.CONTINUED
    assert await drain(job, store) == [StepOutcome.COMPLETED]
    assert store.operations["op"].status == "Completed"
    assert len(store.values) == 5


async def test_a_redelivered_message_is_stale_and_sends_nothing() -> None:
    store, first, job = started(4, batch_size=2, ages="010Y")
    assert await job.handle_message(first) is StepOutcome.CONTINUED
    store.take()
    assert await job.handle_message(first) is StepOutcome.STALE
    assert store.sent == []


async def test_a_lost_continuation_is_sent_by_the_redelivery() -> None:
    store, first, job = started(3, batch_size=2, ages="010Y")
    store.lose_next_send = True
    with pytest.raises(ConnectionError):
        await job.handle_message(first)
    moved = store.operations["op"].checkpoint
    assert moved != first["checkpoint"] and store.sent == []

    assert await job.handle_message(first) is StepOutcome.STALE
    (resent,) = store.take()
    assert resent["checkpoint"] == moved
    assert await job.handle_message(first) is StepOutcome.STALE
    assert store.sent == []
    assert await job.handle_message(resent) is StepOutcome.COMPLETED


async def test_a_move_whose_answer_was_lost_still_sends_its_continuation() -> None:
    store, first, job = started(3, batch_size=2, ages="010Y")
    store.lose_next_move_answer = True
    assert await job.handle_message(first) is StepOutcome.STALE
    (continuation,) = store.take()
    assert continuation["checkpoint"] == store.operations["op"].checkpoint
    assert await job.handle_message(continuation) is StepOutcome.COMPLETED


async def test_a_move_lost_to_another_writer_is_retried_not_dropped() -> None:
    store, first, job = started(1, ages="010Y")
    store.contend_next_move = True
    with pytest.raises(CheckpointContention):
        await job.handle_message(first)
    assert await job.handle_message(first) is StepOutcome.COMPLETED


async def test_the_last_batch_may_be_empty_or_short() -> None:
    store = FakeReindexStore()
    store.add_age_tag("op")  # no instance at all
    job = ReindexJob(store, batch_size=3)
    assert await drain(job, store) == [StepOutcome.COMPLETED]
    op = store.operations["op"]
    assert (op.status, op.percent_complete) == ("Completed", 100)
    assert store.tags[AGE_KEY].status == "Ready"


async def test_an_instance_deleted_between_batches_is_skipped_and_the_count_still_ends() -> None:
    store, first, job = started(6, batch_size=3)
    assert await job.handle_message(first) is StepOutcome.CONTINUED
    del store.instances[5]  # deleted before the second batch reads it

    assert await drain(job, store) == [StepOutcome.COMPLETED]
    op = store.operations["op"]
    assert op.checkpoint is not None
    assert (op.status, op.percent_complete, op.checkpoint["done"]) == ("Completed", 100, 6)
    assert {sop for _, sop in store.values} == {f"1.2.{w}.1" for w in (1, 2, 3, 4, 6)}


async def test_an_instance_stored_after_the_start_is_not_the_reindex_business() -> None:
    store = FakeReindexStore()
    store.store(1, "001Y")
    store.add_age_tag("op")
    store.store(2, "002Y")  # the store path indexes it itself
    job = ReindexJob(store, batch_size=10)
    assert await drain(job, store) == [StepOutcome.COMPLETED]
    assert {sop for _, sop in store.values} == {"1.2.1.1"}


async def test_an_invalid_value_is_recorded_as_an_error_and_the_operation_completes() -> None:
    store = FakeReindexStore()
    store.store(1, "001Y")
    store.store(2, "not an age")
    store.store(3, None)  # no value: neither indexed nor an error
    store.add_age_tag("op")
    job = ReindexJob(store, batch_size=2)

    assert await drain(job, store) == [StepOutcome.CONTINUED, StepOutcome.COMPLETED]
    tag = store.tags[AGE_KEY]
    assert (tag.status, tag.query_status, tag.error_count) == ("Ready", "Disabled", 1)
    assert list(store.errors) == [(AGE_KEY, "1.2.2.1")]


async def test_a_failing_batch_fails_the_operation_on_the_final_attempt_only() -> None:
    store = FakeReindexStore()
    store.store(1, "001Y")
    first = store.add_age_tag("op")
    store.take()
    job = ReindexJob(store)
    store.fail_writes = True
    retry = RetryRule(max_dequeue_count=3)
    for attempt in (1, 2):
        with pytest.raises(ConnectionError):
            await job.handle_message(first, final_attempt=retry.is_final(attempt))
        assert store.operations["op"].status == "NotStarted"
    with pytest.raises(ConnectionError):
        await job.handle_message(first, final_attempt=retry.is_final(3))
    assert store.operations["op"].status == "Failed"
    assert await job.handle_message(first) is StepOutcome.STALE  # a failed one stays failed


async def test_a_completion_cut_short_before_the_tags_is_finished_by_the_redelivery() -> None:
    store = FakeReindexStore()
    store.store(1, "001Y")
    first = store.add_age_tag("op")
    store.take()
    checkpoint = ReindexCheckpoint.from_json(first["checkpoint"])
    done = ReindexCheckpoint(checkpoint.tag_keys, checkpoint.position.advanced(1, 1, finished=True))
    store.operations["op"] = replace(
        store.operations["op"], status="Completed", percent_complete=100, checkpoint=done.to_json()
    )
    assert await ReindexJob(store).handle_message(first) is StepOutcome.STALE
    assert store.tags[AGE_KEY].status == "Ready"


# -- the message schema --------------------------------------------------------------------------


def test_messages_are_written_in_schema_2_with_their_kind() -> None:
    store = FakeReindexStore()
    body = store.add_age_tag("op")
    assert body == {
        "schema": 2,
        "kind": "Reindex",
        "operationId": "op",
        "checkpoint": {"tagKeys": [1], "after": 0, "until": 0, "total": 0, "done": 0},
    }
    assert store.sent[0].queue == REINDEX_QUEUE


async def test_a_schema_1_message_queued_before_an_upgrade_is_still_processed() -> None:
    store = FakeReindexStore()
    store.store(1, "001Y")
    body = store.add_age_tag("op")
    store.take()
    legacy = {"schema": 1, "operationId": "op", "checkpoint": body["checkpoint"]}
    assert OperationMessage.from_json(legacy).kind is OperationKind.REINDEX
    assert await ReindexJob(store).handle_message(legacy) is StepOutcome.COMPLETED


@pytest.mark.parametrize(
    "body",
    [
        {"schema": 3, "kind": "Reindex", "operationId": "op", "checkpoint": {}},
        {"schema": 2, "kind": "Export", "operationId": "op", "checkpoint": {}},
        {"schema": 2, "operationId": "op", "checkpoint": {}},
        {"schema": 1, "operationId": 7, "checkpoint": {}},
        {"schema": 1, "operationId": "op"},
        ["not", "an", "object"],
    ],
)
async def test_unreadable_messages_are_refused(body: Any) -> None:
    with pytest.raises(MalformedMessage):
        await ReindexJob(FakeReindexStore()).handle_message(body)


def test_the_checkpoint_json_is_unchanged_from_schema_1() -> None:
    legacy = {"tagKeys": [3, 4], "after": 5, "until": 9, "total": 4, "done": 2}
    checkpoint = ReindexCheckpoint.from_json(legacy)
    assert checkpoint == ReindexCheckpoint((3, 4), WatermarkCheckpoint(5, 9, 4, 2))
    assert checkpoint.to_json() == legacy


# -- the retry rule ------------------------------------------------------------------------------


def test_the_retry_rule_reads_host_json(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text('{"extensions": {"queues": {"maxDequeueCount": 3}}}')
    rule = RetryRule.from_app_dir(tmp_path)
    assert rule == RetryRule(3)
    assert [rule.is_final(n) for n in (1, 2, 3)] == [False, False, True]
    assert RetryRule.from_app_dir(tmp_path / "missing") == RetryRule(5)


def test_the_app_and_the_local_host_read_the_same_count() -> None:
    import json

    root = Path(__file__).resolve().parents[2]
    configured = json.loads((root / "host.json").read_text())["extensions"]["queues"]
    assert RetryRule.from_app_dir(root).max_dequeue_count == configured["maxDequeueCount"]
