"""Data partitions keep their data apart: the same Study, Series and SOP Instance UIDs stored
in two partitions are two instances, and nothing read, searched or deleted in one reaches the
other (issue [6/7]: "Nothing crosses partitions").

Partition 1 is Microsoft.Default; 7 stands for any other. The Cosmos DB adapters keep
Microsoft.Default only so far (the settings refuse ``DICOM_DATA_PARTITIONS`` there): on that
backend the suite checks that another partition is refused rather than served from the
default one's documents.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.change_feed import ChangeAction
from dicom_core.domain.model import InstanceKey, StudyKey
from dicom_core.query.conditions import QueryResource
from dicom_core.query.parser import parse_query
from dicom_core.services.external_metadata import parse_headers
from dicom_core.storage.ports import ChangeQuery, IndexedInstance, IndexStore, NewVersion
from tests.contract.test_index_store import instance
from tests.contract.test_index_versions import fresh_blob_key
from tests.support.stores import MEMORY, Stores

DEFAULT, OTHER = 1, 7


@pytest.fixture()
def partitioned(stores: Stores) -> Stores:
    if stores.backend == "azure":
        pytest.skip("Cosmos DB keeps Microsoft.Default only so far (see the azure test below)")
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


async def test_cosmos_refuses_other_partitions_rather_than_serve_the_default(
    stores: Stores,
) -> None:
    if stores.backend != "azure":
        pytest.skip("the azure backend's interim refusal")
    default, other = twins()
    await store(stores.index, default, "A")
    with pytest.raises(ValueError, match="partition 7"):
        await stores.index.begin_instance(other, upsert=False)
    with pytest.raises(ValueError, match="partition 7"):
        await stores.index.get_instance(other)
    with pytest.raises(ValueError, match="partition 7"):
        await stores.index.list_instances(other.study_uid, partition=OTHER)


async def test_cosmos_refuses_other_partitions_in_a_bulk_update_and_a_reindex(
    stores: Stores,
) -> None:
    """The writes that take no reservation first (a bulk update's versions, extended query
    tag values) refuse another partition as the reads do, rather than write its instance over
    the default partition's one of the same UIDs."""
    if stores.backend != "azure":
        pytest.skip("the azure backend's interim refusal")
    default, other = twins()
    watermark = await store(stores.index, default, "A")
    version = NewVersion(instance(other, patient_id="B"), fresh_blob_key(other), watermark)
    with pytest.raises(ValueError, match="partition 7"):
        await stores.index.commit_versions([version])
    record = await stores.index.get_instance(default)
    assert record is not None and record.watermark == watermark
    [document] = await stores.index.get_metadata(default.study_uid, partition=DEFAULT)
    assert b'"A"' in document  # still the default partition's own
    tags = stores.query_tags
    with pytest.raises(ValueError, match="partition 7"):
        await tags.index_instance(other, watermark + 1, b"{}")
    with pytest.raises(ValueError, match="partition 7"):
        await tags.write_values([], [IndexedInstance(other, watermark + 1, b"{}")])
