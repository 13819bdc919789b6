"""Data partitions keep their data apart: the same Study, Series and SOP Instance UIDs stored
in two partitions are two instances, and nothing read, searched or deleted in one reaches the
other (issue [6/7]: "Nothing crosses partitions").

Partition 1 is Microsoft.Default; 7 stands for any other. On Cosmos DB they live in two
containers (``cosmos_placement``), so the suite checks both layouts and the reads that cover
both (the change feed, expiry).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.change_feed import ChangeAction
from dicom_core.domain.model import InstanceKey, StudyKey
from dicom_core.query.attributes import CORE_CATALOG
from dicom_core.query.conditions import QueryResource
from dicom_core.query.parser import parse_query
from dicom_core.services.external_metadata import attribute as external_attribute
from dicom_core.services.external_metadata import parse_headers
from dicom_core.storage.ports import ChangeQuery, IndexStore
from tests.contract.test_index_store import instance
from tests.contract.test_index_versions import update
from tests.support.stores import MEMORY, Stores

DEFAULT, OTHER = 1, 7


@pytest.fixture()
def partitioned(stores: Stores) -> Stores:
    return stores


@pytest.fixture()
def searched(partitioned: Stores) -> Stores:
    if partitioned.backend == MEMORY:
        pytest.skip("the fake index answers prepared search results; it evaluates none")
    return partitioned


def twins() -> tuple[InstanceKey, InstanceKey]:
    """One instance's UIDs in both partitions."""
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    return (
        InstanceKey(study, series, sop, partition=DEFAULT),
        InstanceKey(study, series, sop, partition=OTHER),
    )


async def twin_studies(
    index: IndexStore, patient_id: str
) -> tuple[str, list[InstanceKey], list[int]]:
    """A study of three instances stored in both partitions with the same UIDs: the study
    UID, partition 7's keys and their watermarks."""
    study, series = generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(3)]
    for sop in sops:
        await store(index, InstanceKey(study, series, sop, partition=DEFAULT), patient_id)
    others = [InstanceKey(study, series, sop, partition=OTHER) for sop in sops]
    return study, others, [await store(index, key, patient_id) for key in others]


async def store(
    index: IndexStore, key: InstanceKey, patient_id: str, expires_at: datetime | None = None
) -> int:
    metadata = orjson.dumps(
        {
            "00080018": {"vr": "UI", "Value": [key.sop_uid]},
            "00100020": {"vr": "LO", "Value": [patient_id]},
        }
    )
    reservation = await index.begin_instance(key, upsert=False)
    await index.commit_instance(
        reservation, instance(key, patient_id=patient_id, metadata=metadata), expires_at=expires_at
    )
    return reservation.watermark


async def test_the_same_uids_in_two_partitions_are_two_instances(partitioned: Stores) -> None:
    index = partitioned.index
    default, other = twins()
    first = await store(index, default, "IN-DEFAULT")
    second = await store(index, other, "IN-OTHER")  # not "already stored"
    assert first != second
    for key, watermark in ((default, first), (other, second)):
        record = await index.get_instance(key)
        assert record is not None and (record.key, record.watermark) == (key, watermark)
        listed = await index.list_instances(key.study_uid, partition=key.partition)
        assert [r.key for r in listed] == [key]
    [in_default] = await index.get_metadata(default.study_uid, partition=DEFAULT)
    [in_other] = await index.get_metadata(other.study_uid, partition=OTHER)
    assert b"IN-DEFAULT" in in_default and b"IN-OTHER" in in_other
    # Their metadata versions (ETags) differ, so one never revalidates the other.
    assert await index.metadata_version(
        default.study_uid, partition=DEFAULT
    ) != await index.metadata_version(other.study_uid, partition=OTHER)


async def test_a_partition_never_seen_has_nothing(partitioned: Stores) -> None:
    index = partitioned.index
    default, _ = twins()
    await store(index, default, "P")
    elsewhere = InstanceKey(default.study_uid, default.series_uid, default.sop_uid, partition=9)
    assert await index.get_instance(elsewhere) is None
    assert await index.list_instances(default.study_uid, partition=9) == []
    assert await index.metadata_version(default.study_uid, partition=9) is None


@pytest.mark.parametrize(
    "resource",
    [QueryResource.ALL_STUDIES, QueryResource.ALL_SERIES, QueryResource.ALL_INSTANCES],
)
async def test_a_search_sees_its_own_partition_only(
    searched: Stores, resource: QueryResource
) -> None:
    index = searched.index
    default, other = twins()
    await store(index, default, "SEARCH-DEFAULT")
    await store(index, other, "SEARCH-OTHER")

    async def found(partition: int, patient_id: str) -> list[str]:
        query = parse_query([("PatientID", patient_id)], resource, partition=partition)
        return [m.study_uid for m in await index.search(query)]

    assert await found(DEFAULT, "SEARCH-DEFAULT") == [default.study_uid]
    assert await found(OTHER, "SEARCH-OTHER") == [other.study_uid]
    assert await found(DEFAULT, "SEARCH-OTHER") == []
    assert await found(OTHER, "SEARCH-DEFAULT") == []
    scoped = parse_query(
        [], QueryResource.STUDY_INSTANCES, partition=OTHER, study_uid=other.study_uid
    )
    assert [(m.sop_uid, m.instance_watermark) for m in await index.search(scoped)] == [
        (other.sop_uid, (await index.get_instance(other)).watermark)  # type: ignore[union-attr]
    ]


async def test_a_delete_in_one_partition_leaves_the_other(partitioned: Stores) -> None:
    index = partitioned.index
    default, other = twins()
    await store(index, default, "GONE")
    kept = await store(index, other, "KEPT")
    removed = await index.delete_instances(default.study_uid, partition=DEFAULT)
    assert len(removed) == 1
    assert await index.get_instance(default) is None
    record = await index.get_instance(other)
    assert record is not None and record.watermark == kept
    if partitioned.backend != MEMORY:
        query = parse_query([], QueryResource.ALL_STUDIES, partition=OTHER)
        assert other.study_uid in [m.study_uid for m in await index.search(query)]
    # Deleting where nothing is stored deletes nothing, even with the other partition full.
    assert await index.delete_instances(default.study_uid, partition=DEFAULT) == []


async def test_change_feed_entries_name_their_partition(partitioned: Stores) -> None:
    index = partitioned.index
    default, other = twins()
    await store(index, default, "A")
    await store(index, other, "B")
    await index.delete_instances(other.study_uid, partition=OTHER)
    entries = await partitioned.ports.change_feed.read_changes(ChangeQuery(limit=100))
    mine = [(e.action, e.key) for e in entries if e.key.sop_uid == default.sop_uid]
    assert mine == [
        (ChangeAction.CREATE, default),
        (ChangeAction.CREATE, other),
        (ChangeAction.DELETE, other),
    ]


async def test_a_partition_s_feed_holds_its_entries_only(partitioned: Stores) -> None:
    index, feed = partitioned.index, partitioned.ports.change_feed
    default, other = twins()
    await store(index, default, "A")
    await store(index, other, "B")
    mine = await feed.read_changes(ChangeQuery(limit=1000, partition=OTHER))
    assert {e.key.partition for e in mine} == {OTHER}
    assert other in [e.key for e in mine]
    latest = await feed.latest_change(partition=DEFAULT)
    assert latest is not None and latest.key == default
    assert await feed.latest_change(partition=9) is None


async def test_expiry_is_per_partition(partitioned: Stores) -> None:
    index = partitioned.index
    default, other = twins()
    soon = datetime(2001, 1, 1, tzinfo=UTC)
    await store(index, default, "A")  # never expires
    await store(index, other, "B", expires_at=soon)
    due = await index.expired_studies(soon + timedelta(seconds=1), 100)
    assert StudyKey(other.study_uid, partition=OTHER) in due
    assert StudyKey(default.study_uid, partition=DEFAULT) not in due
    # The sweep's conditional delete in the default partition finds nothing expired there.
    expired = soon + timedelta(seconds=1)
    assert (
        await index.delete_instances(default.study_uid, partition=DEFAULT, expired_by=expired) == []
    )
    assert await index.delete_instances(other.study_uid, partition=OTHER, expired_by=expired)
    assert await index.get_instance(default) is not None


async def test_external_metadata_belongs_to_the_partition_s_study(partitioned: Stores) -> None:
    store_ = partitioned.ports.external_metadata
    default, other = twins()
    await store(partitioned.index, default, "A")
    await store(partitioned.index, other, "B")
    [value] = parse_headers([("msdicom-meta-LO-00091001", "the other partition's")])
    await store_.save([other.study_uid], [value], partition=OTHER)
    assert await store_.study_values([other.study_uid], partition=DEFAULT) == {}
    assert other.study_uid in await store_.study_values([other.study_uid], partition=OTHER)


async def test_a_search_on_external_metadata_sees_its_own_partition_only(
    searched: Stores,
) -> None:
    """A condition on a value kept beside the index (external metadata, extended query tags)
    is resolved against the searched partition's values only."""
    index, values = searched.index, searched.ports.external_metadata
    default, other = twins()
    await store(index, default, "A")
    await store(index, other, "B")
    [mine] = parse_headers([("msdicom-meta-LO-00091002", "only-in-the-other")])
    await values.save([other.study_uid], [mine], partition=OTHER)
    catalog = CORE_CATALOG.with_extended([external_attribute("00091002", "LO")])

    async def found(partition: int) -> list[str]:
        query = parse_query(
            [("00091002", "only-in-the-other")],
            QueryResource.ALL_STUDIES,
            partition=partition,
            catalog=catalog,
        )
        return [m.study_uid for m in await index.search(query)]

    assert await found(OTHER) == [other.study_uid]
    assert await found(DEFAULT) == []


async def test_new_versions_stay_in_their_partition(
    partitioned: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bulk update's versions of one partition's study, committed in one batch and (on
    Cosmos DB) staged, flipped and rolled forward, leave the twin study alone."""
    if partitioned.backend == "azure":
        from dicom_core.storage.azure import cosmos_index

        monkeypatch.setattr(cosmos_index, "STUDY_BATCH_VERSIONS", 1)  # staged
    index = partitioned.index
    study, others, first = await twin_studies(index, "OLD")
    new, outcome = await update(index, others, first, "NEW")
    assert set(outcome.committed) == set(others) and all(new)
    assert {orjson.loads(d).get("m") for d in await index.get_metadata(study, partition=OTHER)} == {
        "NEW"
    }
    untouched = await index.get_metadata(study, partition=DEFAULT)
    assert len(untouched) == 3 and all(b"OLD" in d for d in untouched)
    settled = await index.settle_versions(study, partition=OTHER)
    assert not set(settled) & {
        r.blob_key for r in await index.list_instances(study, partition=OTHER)
    }
    entries = await partitioned.ports.change_feed.read_changes(
        ChangeQuery(limit=1000, partition=OTHER)
    )
    assert {e.key for e in entries if e.action is ChangeAction.UPDATE} == set(others)


async def test_cosmos_keeps_microsoft_default_in_index_and_the_others_in_partitioned(
    stores: Stores,
) -> None:
    """Microsoft.Default's documents stay as before partitions (``index``, no ``dp``); another
    partition's are in ``partitioned``, each with its ``dp``."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's document layout")
    default, other = twins()
    await store(stores.index, default, "A")
    await store(stores.index, other, "B")
    settings = stores.settings.azure
    assert settings is not None
    sql = "SELECT c.kind, c.dp FROM c WHERE c.pk = @pk"
    in_index = stores._cosmos(sql, {"@pk": default.study_uid})
    in_partitioned = stores._cosmos(
        sql, {"@pk": other.study_uid}, container=settings.cosmos_partitioned_container
    )
    assert {d["kind"] for d in in_index} >= {"instance", "series", "study"}
    assert all("dp" not in d for d in in_index)
    assert {d["kind"] for d in in_partitioned} >= {"instance", "series", "study"}
    assert all(d["dp"] == str(OTHER) for d in in_partitioned)


async def test_a_reindex_counts_and_indexes_every_partition(searched: Stores) -> None:
    """Adding an extended query tag reindexes the instances of every partition: the
    operation's total counts them all (its percentComplete comes from it), and a search on
    the tag in one partition then finds that partition's instance only."""
    from dicom_core.domain.extended_query_tags import QueryTagDefinition, QueryTagLevelValues
    from dicom_core.jobs.reindex import ReindexCheckpoint, ReindexJob, plan_reindex
    from tests.contract.test_query_tag_store import take
    from tests.support.index_rows import stored_instance

    index, tags = searched.index, searched.query_tags
    default, other = twins()
    for key in (default, other):
        reservation = await index.begin_instance(key, upsert=False)
        age = {"00101010": {"vr": "AS", "Value": [f"0{key.partition}0Y"]}}
        await index.commit_instance(reservation, stored_instance(key, metadata=age))
    queue = searched.queue_name()
    definition = QueryTagDefinition(path="00101010", vr="AS", level=QueryTagLevelValues.STUDY)
    await tags.add_tags([definition], "op", max_tags=128, start=plan_reindex("op", queue=queue))
    (first,) = await take(searched, queue)
    checkpoint = ReindexCheckpoint.from_json(first["checkpoint"])
    assert checkpoint.position.total == 2
    await ReindexJob(tags, batch_size=10, queue=queue).batch("op", checkpoint)
    tag = await tags.get_tag("00101010")
    assert tag is not None and tag.status == "Ready"
    catalog = CORE_CATALOG.with_extended([tag.attribute])

    async def found(partition: int, age: str) -> list[str]:
        query = parse_query(
            [("00101010", age)], QueryResource.ALL_STUDIES, partition=partition, catalog=catalog
        )
        return [m.study_uid for m in await index.search(query)]

    assert await found(OTHER, "070Y") == [other.study_uid]
    assert await found(DEFAULT, "010Y") == [default.study_uid]
    assert await found(DEFAULT, "070Y") == []
    assert await found(OTHER, "010Y") == []


async def test_a_bulk_update_interrupted_after_its_flip_settles_in_its_partition(
    partitioned: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cosmos DB: one partition's staged update dies after its flip; its readers (point reads,
    QIDO, the feed's metadata) see the new versions through that partition's commit
    document, the twin study in Microsoft.Default sees none of it, and settling rolls the
    partition's versions forward."""
    if partitioned.backend != "azure":
        pytest.skip("the Cosmos DB adapter's staged commit")
    from dicom_core.storage.azure import cosmos_index
    from tests.contract.test_cosmos_staged_versions import crash_after_the_flip
    from tests.contract.test_index_versions import marker_of

    monkeypatch.setattr(cosmos_index, "STUDY_BATCH_VERSIONS", 1)
    index = partitioned.index
    study, others, first = await twin_studies(index, "v1")
    await crash_after_the_flip(index, others, first, monkeypatch)

    assert {marker_of(d) for d in await index.get_metadata(study, partition=OTHER)} == {"v2"}
    assert all(b"v1" in d for d in await index.get_metadata(study, partition=DEFAULT))
    for partition, patient, expected in (
        (OTHER, "v2", [study]),
        (OTHER, "v1", []),
        (DEFAULT, "v1", [study]),
        (DEFAULT, "v2", []),
    ):
        query = parse_query(
            [("PatientID", patient)], QueryResource.ALL_STUDIES, partition=partition
        )
        assert [m.study_uid for m in await index.search(query)] == expected
    await index.settle_versions(study, partition=OTHER)
    entries = await partitioned.ports.change_feed.read_changes(
        ChangeQuery(limit=1000, partition=OTHER, include_metadata=True)
    )
    current = [e for e in entries if e.current_watermark is not None and e.key in others]
    assert current and all(e.metadata and marker_of(e.metadata) == "v2" for e in current)
    default_entries = await partitioned.ports.change_feed.read_changes(
        ChangeQuery(limit=1000, partition=DEFAULT, include_metadata=True)
    )
    defaults = [replace(key, partition=DEFAULT) for key in others]
    mine = [e for e in default_entries if e.key in defaults]
    assert len(mine) == 3 and all(e.metadata and b"v1" in e.metadata for e in mine)
