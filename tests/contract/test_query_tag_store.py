"""The ``QueryTagStore`` port on both backends: reindex batches under at-least-once delivery.

A queue may deliver a reindex message twice, or deliver it again after its handler moved the
checkpoint but failed to send the continuation; neither may index twice, skip a batch, or
stall the operation. The batch step is ``dicom_core.jobs.reindex``'s; what is checked here is
that each backend's primitives (compare and set the checkpoint with its continuation, resend
a lost one) make it safe.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.extended_query_tags import QueryTagDefinition, QueryTagLevelValues
from dicom_core.domain.model import InstanceKey
from dicom_core.jobs.operations import StepOutcome
from dicom_core.jobs.reindex import ReindexCheckpoint, ReindexJob, plan_reindex
from dicom_core.storage.ports import JobQueue, QueryTagStore, TagConflict
from tests.support.index_rows import add_instance
from tests.support.stores import Stores

AGE = QueryTagDefinition(path="00101010", vr="AS", level=QueryTagLevelValues.STUDY)


def tag_store(stores: Stores, queue: JobQueue | None = None) -> QueryTagStore:
    """The backend's store, or (azure) one that sends its continuations through ``queue``."""
    if queue is None:
        return stores.query_tags
    from dicom_core.storage.azure.cosmos_eqt import CosmosQueryTagStore
    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore

    assert isinstance(stores.index, CosmosIndexStore)
    return CosmosQueryTagStore(stores.index.session, queue)


async def fill(stores: Stores, count: int) -> None:
    for n in range(count):
        await add_instance(
            stores.index,
            generate_uid(),
            generate_uid(),
            generate_uid(),
            metadata={"00101010": {"vr": "AS", "Value": [f"{n:03d}Y"]}},
        )


async def take(stores: Stores, queue: str) -> list[dict[str, Any]]:
    """Receive and settle every visible message of ``queue``; their bodies."""
    bodies: list[dict[str, Any]] = []
    while True:
        messages = await stores.queue.receive(queue, max_messages=32, visibility_timeout=60)
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message.body)
            await stores.queue.complete(message)


async def test_duplicates_do_nothing_and_the_operation_completes(stores: Stores) -> None:
    await fill(stores, 7)
    store, queue = tag_store(stores), stores.queue_name()
    operation = await store.add_tags(
        [AGE], "op1", max_tags=128, start=plan_reindex("op1", queue=queue)
    )
    assert operation.status == "NotStarted"
    with pytest.raises(TagConflict):
        await store.add_tags([AGE], "op2", max_tags=128, start=plan_reindex("op2", queue=queue))
    (first,) = await take(stores, queue)
    checkpoint = ReindexCheckpoint.from_json(first["checkpoint"])
    assert checkpoint.position.total == 7
    job = ReindexJob(store, batch_size=3, queue=queue)

    async def run(cp: ReindexCheckpoint) -> StepOutcome:
        return await job.batch("op1", cp)

    assert await run(checkpoint) is StepOutcome.CONTINUED
    (second,) = await take(stores, queue)
    assert await run(checkpoint) is StepOutcome.STALE  # redelivered: no batch, no message
    assert await take(stores, queue) == []
    outcomes = [await run(ReindexCheckpoint.from_json(second["checkpoint"]))]
    while outcomes[-1] is StepOutcome.CONTINUED:
        (following,) = await take(stores, queue)
        outcomes.append(await run(ReindexCheckpoint.from_json(following["checkpoint"])))
    assert outcomes == [StepOutcome.CONTINUED, StepOutcome.COMPLETED]
    done = await store.get_operation("op1")
    assert done is not None and done.status == "Completed" and done.percent_complete == 100
    tag = await store.get_tag("00101010")
    assert tag is not None and tag.status == "Ready" and tag.error_count == 0
    assert await run(checkpoint) is StepOutcome.STALE
    assert await take(stores, queue) == []
    assert await store.delete_tag("00101010")
    assert await store.get_tag("00101010") is None


class FailingOnce:
    """A queue whose first send fails after nothing was sent (a network error)."""

    def __init__(self, inner: JobQueue) -> None:
        self.inner = inner
        self.failed = False

    async def send(self, queue: str, body: dict[str, Any], *, delay_seconds: float = 0) -> None:
        if not self.failed:
            self.failed = True
            raise ConnectionError("the queue is unreachable")
        await self.inner.send(queue, body, delay_seconds=delay_seconds)


async def test_a_failed_continuation_is_sent_by_the_retry(stores: Stores) -> None:
    if stores.backend != "azure":
        pytest.skip("the local store enqueues in the batch's own transaction")
    await fill(stores, 5)
    queue = stores.queue_name()
    store = tag_store(stores)
    await store.add_tags([AGE], "op", max_tags=128, start=plan_reindex("op", queue=queue))
    (first,) = await take(stores, queue)
    checkpoint = ReindexCheckpoint.from_json(first["checkpoint"])
    flaky = tag_store(stores, FailingOnce(stores.queue))  # type: ignore[arg-type]
    with pytest.raises(ConnectionError):
        await ReindexJob(flaky, batch_size=2, queue=queue).batch("op", checkpoint)
    assert await take(stores, queue) == []
    moved = await store.get_operation("op")
    assert moved is not None and moved.checkpoint is not None and moved.checkpoint["after"] > 0
    # The retry of the same message indexes nothing again but sends the continuation once.
    job = ReindexJob(store, batch_size=2, queue=queue)
    retried = await job.batch("op", checkpoint)
    assert retried is StepOutcome.STALE
    (resent,) = await take(stores, queue)
    assert resent["checkpoint"] == moved.checkpoint
    again = await job.batch("op", checkpoint)
    assert again is StepOutcome.STALE
    assert await take(stores, queue) == []


async def test_cosmos_study_delete_keeps_the_values_of_an_instance_stored_meanwhile(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A study delete drops the values its removed instances wrote, not those of an instance a
    concurrent store commits into the study while the delete runs (it stays in the index, so
    a search on the tag must still find it)."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos adapter's delete; SQLite drops values row by row in triggers")
    from dicom_core.domain.model import InstanceKey
    from dicom_core.storage.azure import cosmos_index
    from dicom_core.storage.azure.cosmos_extended_values import VALUE_KIND, value_partition
    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
    from dicom_core.storage.azure.cosmos_io import query_items

    index = stores.index
    assert isinstance(index, CosmosIndexStore)
    store, queue = tag_store(stores), stores.queue_name()
    await store.add_tags([AGE], "op", max_tags=128, start=plan_reindex("op", queue=queue))
    study, series = generate_uid(), generate_uid()

    async def stored(sop: str, age: str) -> tuple[InstanceKey, int]:
        metadata = {"00101010": {"vr": "AS", "Value": [age]}}
        watermark = await add_instance(index, study, series, sop, metadata=metadata)
        key = InstanceKey(study, series, sop, partition=1)
        await store.index_instance(key, watermark, orjson.dumps(metadata))
        return key, watermark

    await stored(generate_uid(), "030Y")
    original = cosmos_index.delete_step
    late: list[tuple[InstanceKey, int]] = []

    async def step_then_store(*args: Any, **kwargs: Any) -> Any:
        result = await original(*args, **kwargs)
        if not late:  # a store commits right after the delete's batch
            late.append(await stored(generate_uid(), "040Y"))
        return result

    monkeypatch.setattr(cosmos_index, "delete_step", step_then_store)
    await index.delete_instances(study, partition=1)
    ((key, watermark),) = late
    assert await index.get_instance(key) is not None
    c = await index.session.containers()
    values = await query_items(
        c.system,
        "SELECT * FROM c WHERE c.pk = @pk AND c.kind = @kind",
        {"@pk": value_partition(study, partition=1), "@kind": VALUE_KIND},
        partition=value_partition(study, partition=1),
    )
    assert [(v["wm"], v["text"]) for v in values] == [(watermark, "040Y")]


async def rows_of_tag(stores: Stores, store: QueryTagStore, tag_key: int) -> int:
    """Value and error rows the backend holds for the tag numbered ``tag_key``."""
    if stores.backend == "local":
        from dicom_core.storage.local.sqlite_eqt import SqliteQueryTagStore

        assert isinstance(store, SqliteQueryTagStore)
        conn = store._db.connection()
        return sum(
            int(
                conn.execute(
                    f"SELECT COUNT(*) FROM {table} WHERE tag_key = ?", (tag_key,)
                ).fetchone()[0]
            )
            for table in ("eqt_value", "eqt_error")
        )
    from dicom_core.storage.azure.cosmos_eqt import error_partition
    from dicom_core.storage.azure.cosmos_extended_values import VALUE_KIND
    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
    from dicom_core.storage.azure.cosmos_io import query_items

    assert isinstance(stores.index, CosmosIndexStore)
    c = await stores.index.session.containers()
    values = await query_items(
        c.system,
        "SELECT c.id FROM c WHERE c.tag = @key AND c.kind = @value",
        {"@key": tag_key, "@value": VALUE_KIND},
    )
    # Error documents name no tag: they live in the tag's own partition.
    errors = await query_items(
        c.system,
        "SELECT c.id FROM c WHERE c.pk = @pk",
        {"@pk": error_partition(tag_key)},
        partition=error_partition(tag_key),
    )
    return len(values) + len(errors)


async def test_a_batch_that_listed_a_tag_before_its_delete_leaves_nothing_of_it(
    stores: Stores,
) -> None:
    """A reindex batch lists the tags, then writes; a delete may run in between. What the
    batch writes for the deleted tag must not outlive it (a probe found 69 values and 13
    errors of a deleted tag left in SQLite for good)."""
    if stores.backend not in ("local", "azure"):
        pytest.skip("the adapters' writes; the fakes do not run reindex batches")
    for n in range(4):
        # Three values and one that cannot be indexed (an AS holds four characters).
        age = f"{n:03d}Y" if n < 3 else "forty years"
        await add_instance(
            stores.index,
            generate_uid(),
            generate_uid(),
            generate_uid(),
            metadata={"00101010": {"vr": "AS", "Value": [age]}},
        )
    store, queue = tag_store(stores), stores.queue_name()
    await store.add_tags([AGE], "op", max_tags=128, start=plan_reindex("op", queue=queue))
    listed = [tag for tag in await store.list_tags() if tag.path == "00101010"]
    instances = await store.read_watermark_range(0, 1 << 62, 10)
    assert len(listed) == 1 and len(instances) == 4

    assert await store.delete_tag("00101010")  # between the batch's listing and its writes
    # ...and added again under the same path: a new tag, which the old batch must not touch.
    await store.add_tags([AGE], "op2", max_tags=128, start=plan_reindex("op2", queue=queue))
    await store.write_values(listed, instances)

    assert await rows_of_tag(stores, store, listed[0].key) == 0
    again = await store.get_tag("00101010")
    assert again is not None and again.key != listed[0].key
    # The old batch's invalid value is no error of the new tag's.
    assert (again.query_status, again.error_count) == ("Enabled", 0)


async def study_level_values(stores: Stores, store: QueryTagStore, study: str) -> list[Any]:
    """The (watermark, text) of the study's study- and series-level values."""
    if stores.backend == "local":
        from dicom_core.storage.local.sqlite_eqt import SqliteQueryTagStore

        assert isinstance(store, SqliteQueryTagStore)
        rows = store._db.connection().execute(
            "SELECT watermark, text_value FROM eqt_value WHERE study_uid = ? AND sop_uid = ''",
            (study,),
        )
        return [(int(wm), text) for wm, text in rows.fetchall()]
    from dicom_core.storage.azure.cosmos_extended_values import VALUE_KIND, value_partition
    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
    from dicom_core.storage.azure.cosmos_io import query_items

    assert isinstance(stores.index, CosmosIndexStore)
    c = await stores.index.session.containers()
    pk = value_partition(study, partition=1)
    values = await query_items(
        c.system,
        "SELECT c.wm, c.text FROM c WHERE c.pk = @pk AND c.kind = @kind AND c.sop = ''",
        {"@pk": pk, "@kind": VALUE_KIND},
        partition=pk,
    )
    return [(int(v["wm"]), v["text"]) for v in values]


@pytest.mark.parametrize("page", [50, 1])
async def test_a_delete_of_the_newest_gives_the_study_value_of_the_newest_remaining(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, page: int
) -> None:
    """``refresh_after_delete``: the study-level value a deleted instance wrote is taken again
    from the newest remaining instance that has one (skipping one without), and goes when no
    remaining instance has one. (Page 1: the Cosmos adapter's listing, one instance a page.)"""
    if stores.backend not in ("local", "azure"):
        pytest.skip("the adapters' values; the fake keeps none")
    if page != 50:
        if stores.backend != "azure":
            pytest.skip("SQLite reads the instances through one cursor")
        from dicom_core.storage.azure import cosmos_eqt

        monkeypatch.setattr(cosmos_eqt, "REFRESH_PAGE", page)
    store, queue = tag_store(stores), stores.queue_name()
    await store.add_tags([AGE], "op", max_tags=128, start=plan_reindex("op", queue=queue))
    study, series = generate_uid(), generate_uid()

    async def stored(age: str | None) -> tuple[str, int]:
        sop = generate_uid()
        metadata = {"00101010": {"vr": "AS", "Value": [age]}} if age else {}
        watermark = await add_instance(stores.index, study, series, sop, metadata=metadata)
        await store.index_instance(
            InstanceKey(study, series, sop, partition=1), watermark, orjson.dumps(metadata)
        )
        return sop, watermark

    oldest, oldest_wm = await stored("030Y")
    await stored(None)
    newest, newest_wm = await stored("050Y")
    assert await study_level_values(stores, store, study) == [(newest_wm, "050Y")]
    await store.refresh_after_delete(study, partition=1)  # nothing stale: nothing changes
    assert await study_level_values(stores, store, study) == [(newest_wm, "050Y")]

    await stores.index.delete_instances(study, series, newest, partition=1)
    await store.refresh_after_delete(study, partition=1)
    assert await study_level_values(stores, store, study) == [(oldest_wm, "030Y")]

    await stores.index.delete_instances(study, series, oldest, partition=1)
    await store.refresh_after_delete(study, partition=1)
    assert await study_level_values(stores, store, study) == []
