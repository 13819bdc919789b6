"""The ``IndexStore`` contract, on both backends, checked through the port and a back door."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.identifiers import blob_key_for
from dicom_core.domain.index_attributes import normalized_forms
from dicom_core.domain.model import FrameIndex, IndexAttributes, InstanceKey, StoredInstance
from dicom_core.query.conditions import QueryLevel, QueryResource
from dicom_core.query.parser import parse_query
from dicom_core.storage.ports import BlobDebt, IndexStore, InstanceBeingCreated, InstanceExists
from tests.support.stores import Stores, StoresFactory

CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def new_key(study: str | None = None, series: str | None = None) -> InstanceKey:
    return InstanceKey(
        study or generate_uid(), series or generate_uid(), generate_uid(), partition=1
    )


def instance(
    key: InstanceKey,
    *,
    patient_id: str = "P1",
    modality: str = "CT",
    metadata: bytes | None = None,
    frames: FrameIndex | None = None,
) -> StoredInstance:
    study = {"PatientID": patient_id, "PatientName": "Doe^John", "StudyDate": "20240102"}
    series = {"Modality": modality}
    return StoredInstance(
        key=key,
        sop_class_uid=CT,
        transfer_syntax_uid=EXPLICIT,
        file_size=1234,
        metadata_json=metadata or orjson.dumps({"00080018": {"vr": "UI", "Value": [key.sop_uid]}}),
        attributes=IndexAttributes(
            study=dict(study),
            series=dict(series),
            instance={"InstanceNumber": 1},
            normalized=normalized_forms({**study, **series}),
        ),
        frames=frames,
    )


async def store(index: IndexStore, key: InstanceKey, **kwargs: object) -> int:
    reservation = await index.begin_instance(key, upsert=False)
    await index.commit_instance(reservation, instance(key, **kwargs))  # type: ignore[arg-type]
    return reservation.watermark


async def test_a_reserved_instance_is_invisible_until_committed(stores: Stores) -> None:
    index, key = stores.index, new_key()
    reservation = await index.begin_instance(key, upsert=False)
    assert reservation.key == key
    assert reservation.blob_key == blob_key_for(
        key.study_uid, key.series_uid, key.sop_uid, reservation.watermark
    )
    assert await index.get_instance(key) is None
    assert await index.list_instances(key.study_uid, partition=1) == []
    assert await index.get_metadata(key.study_uid, partition=1) == []
    assert await stores.raw_instance_states(key) == [("creating", reservation.watermark)]

    frames = FrameIndex(
        encapsulated=False, fragments=(((200, 512),), ((712, 512),)), frame_length=512
    )
    replaced = await index.commit_instance(reservation, instance(key, frames=frames))
    assert replaced == []
    record = await index.get_instance(key)
    assert record is not None
    assert (record.key, record.watermark, record.blob_key) == (
        key,
        reservation.watermark,
        reservation.blob_key,
    )
    assert (record.sop_class_uid, record.transfer_syntax_uid, record.file_size) == (
        CT,
        EXPLICIT,
        1234,
    )
    assert record.frames == frames
    assert record.created_at
    assert [r.key for r in await index.list_instances(key.study_uid, partition=1)] == [key]
    assert await index.get_metadata(key.study_uid, key.series_uid, key.sop_uid, partition=1) == [
        instance(key).metadata_json
    ]
    assert await stores.raw_instance_states(key) == [("created", reservation.watermark)]


async def test_a_second_store_of_a_reserved_instance_is_refused(stores: Stores) -> None:
    key = new_key()
    await stores.index.begin_instance(key, upsert=False)
    with pytest.raises(InstanceBeingCreated):
        await stores.index.begin_instance(key, upsert=False)
    with pytest.raises(InstanceBeingCreated):
        await stores.index.begin_instance(key, upsert=True)


async def test_post_of_a_stored_instance_is_refused_and_put_replaces_it(stores: Stores) -> None:
    index, key = stores.index, new_key()
    first = await store(index, key, patient_id="OLD")
    with pytest.raises(InstanceExists):
        await index.begin_instance(key, upsert=False)

    reservation = await index.begin_instance(key, upsert=True)
    assert reservation.watermark > first
    # While the replacement is being written, readers still see the stored version.
    record = await index.get_instance(key)
    assert record is not None and record.watermark == first
    replaced = await index.commit_instance(
        reservation, instance(key, patient_id="NEW", metadata=b'{"new": 1}')
    )
    assert replaced == [blob_key_for(key.study_uid, key.series_uid, key.sop_uid, first)]
    record = await index.get_instance(key)
    assert record is not None and record.watermark == reservation.watermark
    assert await index.get_metadata(key.study_uid, partition=1) == [b'{"new": 1}']
    assert await stores.raw_instance_states(key) == [("created", reservation.watermark)]
    summary = await stores.raw_study_summary(key.study_uid)
    assert summary is not None
    assert (summary["instances"], summary["patient_id"]) == (1, "new")


async def test_abort_releases_the_identity(stores: Stores) -> None:
    index, key = stores.index, new_key()
    reservation = await index.begin_instance(key, upsert=False)
    await index.abort_instance(reservation)
    assert await stores.raw_instance_states(key) == []
    again = await index.begin_instance(key, upsert=False)
    assert again.watermark != reservation.watermark
    await index.abort_instance(reservation)  # a stale abort leaves the new claim alone
    assert await stores.raw_instance_states(key) == [("creating", again.watermark)]


async def test_a_stale_reservation_is_taken_over_and_its_file_named(
    make_stores: StoresFactory,
) -> None:
    stores = await make_stores(DICOM_STALE_CREATE_SECONDS="1")
    key = new_key()
    crashed = await stores.index.begin_instance(key, upsert=False)
    await asyncio.sleep(1.2)
    taken = await stores.index.begin_instance(key, upsert=False)
    assert taken.abandoned_blob_keys == (crashed.blob_key,)
    await stores.index.commit_instance(taken, instance(key))
    assert await stores.raw_instance_states(key) == [("created", taken.watermark)]


async def test_a_taken_over_reservation_owes_its_file_even_if_the_store_never_commits(
    make_stores: StoresFactory,
) -> None:
    """A crashed store's file is named by nothing once its reservation is taken over. The
    takeover owes it at once: the store that took over may fail too (its upload, a second
    crash), and its commit, which also releases the file, then never comes."""
    stores = await make_stores(DICOM_STALE_CREATE_SECONDS="1")
    key = new_key()
    crashed = await stores.index.begin_instance(key, upsert=False)
    await asyncio.sleep(1.2)
    taken = await stores.index.begin_instance(key, upsert=False)
    await stores.index.abort_instance(taken)
    owed = await open_debts(stores.index, key.study_uid)
    assert [debt.blob_keys for debt in owed] == [(crashed.blob_key,)]
    assert await stores.raw_instance_states(key) == []


async def test_a_renewed_reservation_outlives_its_lease_and_still_commits(
    make_stores: StoresFactory,
) -> None:
    """A store writing a large file renews its lease; another store is refused all along,
    and the renewal leaves the reservation committable (on Cosmos DB: its ETag kept)."""
    stores = await make_stores(DICOM_STALE_CREATE_SECONDS="1")
    key = new_key()
    working = await stores.index.begin_instance(key, upsert=False)
    for _ in range(3):
        await asyncio.sleep(0.6)
        await stores.index.renew_instance(working)
        with pytest.raises(InstanceBeingCreated):
            await stores.index.begin_instance(key, upsert=False)
    await stores.index.commit_instance(working, instance(key))
    assert await stores.raw_instance_states(key) == [("created", working.watermark)]


async def test_renewing_a_reservation_taken_over_is_refused(make_stores: StoresFactory) -> None:
    stores = await make_stores(DICOM_STALE_CREATE_SECONDS="1")
    key = new_key()
    lapsed = await stores.index.begin_instance(key, upsert=False)
    await asyncio.sleep(1.2)
    taken = await stores.index.begin_instance(key, upsert=False)
    with pytest.raises(InstanceBeingCreated):
        await stores.index.renew_instance(lapsed)
    await stores.index.renew_instance(taken)
    await stores.index.commit_instance(taken, instance(key))
    with pytest.raises(InstanceBeingCreated):
        await stores.index.renew_instance(taken)  # committed: nothing left to renew


async def test_listing_is_oldest_first_and_scoped(stores: Stores) -> None:
    index = stores.index
    study, series_a, series_b = generate_uid(), generate_uid(), generate_uid()
    keys = [new_key(study, series_a), new_key(study, series_b), new_key(study, series_a)]
    for key in keys:
        await store(index, key)
    assert [r.key for r in await index.list_instances(study, partition=1)] == keys
    assert [r.key for r in await index.list_instances(study, series_a, partition=1)] == [
        keys[0],
        keys[2],
    ]
    assert await index.list_instances(study, generate_uid(), partition=1) == []
    assert len(await index.get_metadata(study, partition=1)) == 3
    assert len(await index.get_metadata(study, series_b, partition=1)) == 1


async def watermarks_of(index: IndexStore, *scope: str) -> str | None:
    """``metadata_version`` without the prefix naming the index."""
    version = await index.metadata_version(*scope, partition=1)
    return None if version is None else version.rsplit(":", 1)[-1]


async def test_metadata_version_names_the_stored_versions_of_a_scope(stores: Stores) -> None:
    """What metadata ETags are made of: the watermarks of the stored instances, oldest first,
    so each addition, replacement and deletion gives another version; a reservation does not."""
    index = stores.index
    study, series = generate_uid(), generate_uid()
    assert await watermarks_of(index, study) is None
    keys = [new_key(study, series), new_key(study, series), new_key(study)]
    marks = [await store(index, key) for key in keys]
    other = new_key(study, series)
    await index.begin_instance(other, upsert=False)  # reserved only: not part of any version
    assert await watermarks_of(index, study) == ",".join(map(str, marks))
    assert await watermarks_of(index, study, series) == f"{marks[0]},{marks[1]}"
    assert await watermarks_of(index, study, series, keys[1].sop_uid) == str(marks[1])
    assert await watermarks_of(index, study, series, generate_uid()) is None

    reservation = await index.begin_instance(keys[0], upsert=True)  # PUT: a new version
    await index.commit_instance(reservation, instance(keys[0], patient_id="P2"))
    assert await watermarks_of(index, study, series) == f"{marks[1]},{reservation.watermark}"

    # Deleting either of two instances leaves different versions, though as many remain.
    await index.delete_instances(study, series, keys[1].sop_uid, partition=1)
    assert await watermarks_of(index, study, series) == str(reservation.watermark)
    assert await watermarks_of(index, study) == f"{marks[2]},{reservation.watermark}"


async def test_versioned_metadata_is_the_metadata_with_its_version(stores: Stores) -> None:
    """What a metadata 200 reads, in one call: the documents ``get_metadata`` answers and the
    version ``metadata_version`` answers, at every level, and nothing for a missing scope."""
    index = stores.index
    study, series = generate_uid(), generate_uid()
    keys = [new_key(study, series), new_key(study, series), new_key(study)]
    for key in keys:
        await store(index, key)
    await index.begin_instance(new_key(study, series), upsert=False)  # reserved only
    for scope in [
        (study, None, None),
        (study, series, None),
        (study, series, keys[1].sop_uid),
        (study, series, generate_uid()),
        (generate_uid(), None, None),
    ]:
        found = await index.get_versioned_metadata(*scope, partition=1)
        assert found.version == await index.metadata_version(*scope, partition=1)
        assert list(found.documents) == await index.get_metadata(*scope, partition=1)
    assert (await index.get_versioned_metadata(generate_uid(), partition=1)).documents == ()


async def test_summaries_keep_the_latest_values_counts_and_modalities(stores: Stores) -> None:
    index = stores.index
    study = generate_uid()
    ct, mr = generate_uid(), generate_uid()
    await store(index, new_key(study, ct), patient_id="A", modality="CT")
    await store(index, new_key(study, ct), patient_id="B", modality="CT")
    last = new_key(study, mr)
    await store(index, last, patient_id="C", modality="MR")
    summary = await stores.raw_study_summary(study)
    assert summary is not None
    assert (summary["series"], summary["instances"]) == (2, 3)
    assert summary["modalities"] == ["CT", "MR"]
    assert summary["patient_id"] == "c"

    # Deleting the latest instance makes the one before it the latest again.
    assert len(await index.delete_instances(study, mr, last.sop_uid, partition=1)) == 1
    summary = await stores.raw_study_summary(study)
    assert summary is not None
    assert (summary["series"], summary["instances"], summary["modalities"]) == (1, 2, ["CT"])
    assert summary["patient_id"] == "b"
    stores.require_search()
    query = parse_query([("PatientID", "b")], QueryResource.ALL_INSTANCES, partition=1)
    found = await index.search(query)
    assert {m.study_uid for m in found} == {study}
    assert len(found) == 2  # both CT instances: the study's PatientID is now B


async def test_delete_returns_the_files_of_what_it_removed(stores: Stores) -> None:
    index = stores.index
    study, series = generate_uid(), generate_uid()
    keys = [new_key(study, series), new_key(study, series), new_key(study)]
    marks = [await store(index, key) for key in keys]
    blob = [
        blob_key_for(k.study_uid, k.series_uid, k.sop_uid, w)
        for k, w in zip(keys, marks, strict=True)
    ]

    assert await index.delete_instances(study, series, generate_uid(), partition=1) == []
    assert await index.delete_instances(generate_uid(), partition=1) == []
    assert await index.delete_instances(study, series, keys[0].sop_uid, partition=1) == [blob[0]]
    assert sorted(await index.delete_instances(study, series, partition=1)) == [blob[1]]
    assert await index.delete_instances(study, partition=1) == [blob[2]]
    assert await index.list_instances(study, partition=1) == []
    assert await stores.raw_study_summary(study) is None
    for key in keys:
        assert await stores.raw_instance_states(key) == []


async def test_a_large_study_is_deleted_whole(stores: Stores) -> None:
    """More instances than one Cosmos transactional batch holds (100 operations)."""
    index = stores.index
    study = generate_uid()
    series = [generate_uid() for _ in range(3)]
    keys = [new_key(study, series[n % 3]) for n in range(130)]
    semaphore = asyncio.Semaphore(8)

    async def add(key: InstanceKey) -> None:
        async with semaphore:
            await store(index, key)

    await asyncio.gather(*(add(key) for key in keys))
    summary = await stores.raw_study_summary(study)
    assert summary is not None and (summary["series"], summary["instances"]) == (3, 130)
    removed = await index.delete_instances(study, partition=1)
    assert len(removed) == len(set(removed)) == 130
    # Every step recorded the debt of its own files (Cosmos DB: one per batch).
    owed = [key for debt in await open_debts(index, study) for key in debt.blob_keys]
    assert sorted(owed) == sorted(removed)
    assert await index.list_instances(study, partition=1) == []
    assert await stores.raw_study_summary(study) is None


def debts_of(debts: list[BlobDebt], study: str) -> list[BlobDebt]:
    return [debt for debt in debts if debt.study.study_uid == study]


async def open_debts(index: IndexStore, study: str) -> list[BlobDebt]:
    """The study's debts, however young (other tests' debts share the store)."""
    later = datetime.now(UTC) + timedelta(minutes=1)
    return debts_of(await index.blob_debts(later, 10_000), study)


@pytest.mark.parametrize("partition", [1, 2])
async def test_a_delete_keeps_the_debt_of_its_files_until_they_are_released(
    stores: Stores, partition: int
) -> None:
    """A process that dies after the index step leaves a debt naming the files, which
    outlives it; a release that takes every file settles it at once."""
    index = stores.index
    dead, alive = generate_uid(), generate_uid()
    for study in (dead, alive):
        for _ in range(3):
            await store(index, replace(new_key(study), partition=partition))
    freed = await index.delete_instances(dead, partition=partition)  # released to no one
    [debt] = await open_debts(index, dead)
    assert sorted(debt.blob_keys) == sorted(freed) and len(freed) == 3
    assert debt.study.partition == partition
    assert debt.recorded_at <= datetime.now(UTC)
    # Recorded before a moment: listed; not before its own time (kept to the millisecond).
    just_after = debt.recorded_at + timedelta(milliseconds=1)
    assert debt.id in {d.id for d in await index.blob_debts(just_after, 10_000)}
    assert debt.id not in {d.id for d in await index.blob_debts(debt.recorded_at, 10_000)}
    await index.forget_blob_debt(debt)
    await index.forget_blob_debt(debt)  # gone already: nothing to do
    assert await open_debts(index, dead) == []

    released: list[str] = []

    async def release(blob_key: str) -> None:
        released.append(blob_key)

    freed = await index.delete_instances(alive, partition=partition, release=release)
    assert sorted(released) == sorted(freed) and len(freed) == 3
    assert await open_debts(index, alive) == []


async def test_a_debt_whose_release_fails_stays(stores: Stores) -> None:
    index = stores.index
    study = generate_uid()
    await store(index, new_key(study))

    async def refuse(blob_key: str) -> None:
        raise ConnectionError("the blob store is unreachable")

    freed = await index.delete_instances(study, partition=1, release=refuse)
    assert [debt.blob_keys for debt in await open_debts(index, study)] == [tuple(freed)]


async def test_a_scope_that_fits_one_batch_is_listed_once(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cosmos requests per delete (docs/azure-backend.md, "Cost per operation"): when the
    listing holds the whole scope and the batch removes all of it, no second listing is sent
    to confirm that nothing is left; what is outside the scope stays."""
    if stores.backend != "azure":
        pytest.skip("the local index deletes in one SQLite transaction")
    from dicom_core.storage.azure import cosmos_delete_step

    index = stores.index
    study, series = generate_uid(), generate_uid()
    keys = [new_key(study, series) for _ in range(3)] + [new_key(study)]
    for key in keys:
        await store(index, key)
    sent: list[str] = []
    listing = cosmos_delete_step.query_items

    async def counted(*args: object, **kwargs: object) -> object:
        sent.append(str(args[1]))
        return await listing(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cosmos_delete_step, "query_items", counted)
    assert len(await index.delete_instances(study, series, partition=1)) == 3
    assert sum("TOP @n" in sql for sql in sent) == 1
    assert [r.key for r in await index.list_instances(study, partition=1)] == [keys[3]]


async def test_concurrent_stores_into_one_study_lose_no_count(stores: Stores) -> None:
    index = stores.index
    study, series = generate_uid(), generate_uid()
    keys = [new_key(study, series if n % 2 else None) for n in range(24)]
    await asyncio.gather(*(store(index, key, patient_id=f"P{n}") for n, key in enumerate(keys)))
    summary = await stores.raw_study_summary(study)
    assert summary is not None
    assert summary["instances"] == 24
    assert summary["series"] == 1 + 12
    records = await index.list_instances(study, partition=1)
    assert sorted(r.key for r in records) == sorted(keys)
    newest = max(records, key=lambda r: r.watermark)
    assert summary["latest"] == newest.watermark


async def test_concurrent_stores_of_one_instance_admit_exactly_one(stores: Stores) -> None:
    key = new_key()

    async def attempt() -> str:
        try:
            await store(stores.index, key)
        except (InstanceExists, InstanceBeingCreated) as exc:
            return type(exc).__name__
        return "stored"

    outcomes = await asyncio.gather(*(attempt() for _ in range(6)))
    assert outcomes.count("stored") == 1
    assert [state for state, _ in await stores.raw_instance_states(key)] == ["created"]


async def store_between_check_and_reservation(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, key: InstanceKey
) -> list[int]:
    """Make the next POST of ``key`` lose the race the concurrent test above hits by chance.

    On Cosmos a POST reads the instance (is it stored?), then creates its reservation: two
    requests. Right after that read answers nothing, another store of ``key`` runs whole, its
    commit deleting its own reservation, so the POST's create finds no reservation in its way.
    Returns the watermark that store committed, once it has.
    """
    if stores.backend != "azure":
        pytest.skip("only the Cosmos index checks and reserves in two requests")
    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
    from dicom_core.storage.azure.cosmos_schema import instance_id

    assert isinstance(stores.index, CosmosIndexStore)
    c = await stores.index.session.containers()
    read = c.index.read_item
    armed, winner = [True], []

    async def read_then_store(item: str, *args: object, **kwargs: object) -> object:
        try:
            return await read(item, *args, **kwargs)  # not stored: a 404 (raised)
        finally:
            if armed and item == instance_id(key.series_uid, key.sop_uid):
                armed.clear()
                winner.append(await store(stores.index, key))

    monkeypatch.setattr(c.index, "read_item", read_then_store)
    return winner


async def test_a_post_that_reserves_after_a_store_committed_leaves_no_reservation(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loser of that race holds a reservation until its commit finds the instance
    stored; the refusal comes with the reservation released, whatever its caller does."""
    key = new_key()
    winner = await store_between_check_and_reservation(stores, monkeypatch, key)
    with pytest.raises(InstanceExists):
        await store(stores.index, key)
    assert await stores.raw_instance_states(key) == [("created", winner[0])]


async def test_a_post_refused_on_a_retry_releases_what_its_failed_attempt_reserved(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same race, and the reservation's create is applied but its answer lost (a
    transient error): the retry finds the instance stored, and the reservation the failed
    attempt made is released before the POST is refused."""
    from azure.core.exceptions import ServiceResponseError

    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore

    key = new_key()
    winner = await store_between_check_and_reservation(stores, monkeypatch, key)
    assert isinstance(stores.index, CosmosIndexStore)
    c = await stores.index.session.containers()
    create = c.index.create_item
    lost: list[str] = []

    async def create_then_lose_the_answer(body: dict[str, object], **kwargs: object) -> object:
        created = await create(body, **kwargs)
        if winner and not lost and body.get("kind") == "reservation":  # the loser's create
            lost.append(str(body["id"]))
            raise ServiceResponseError("connection reset after the create was applied")
        return created

    monkeypatch.setattr(c.index, "create_item", create_then_lose_the_answer)
    with pytest.raises(InstanceExists):
        await stores.index.begin_instance(key, upsert=False)
    assert lost  # the failed attempt did reserve
    assert await stores.raw_instance_states(key) == [("created", winner[0])]


async def test_a_post_reads_its_instance_document_once_and_a_put_once(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request fewer per stored instance on Cosmos: a POST's check before its upload is
    the only read of its instance document (its commit's batch creates the document and
    would fail on one stored since), and a PUT, which has no check, reads it at its commit."""
    if stores.backend != "azure":
        pytest.skip("counts Cosmos requests")
    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
    from dicom_core.storage.azure.cosmos_schema import instance_id

    assert isinstance(stores.index, CosmosIndexStore)
    c = await stores.index.session.containers()
    read = c.index.read_item
    reads: list[str] = []

    async def counting_read(item: str, *args: object, **kwargs: object) -> object:
        reads.append(item)
        return await read(item, *args, **kwargs)

    monkeypatch.setattr(c.index, "read_item", counting_read)
    key = new_key()
    document = instance_id(key.series_uid, key.sop_uid)
    await store(stores.index, key)
    assert reads.count(document) == 1
    reads.clear()
    reservation = await stores.index.begin_instance(key, upsert=True)
    await stores.index.commit_instance(reservation, instance(key, patient_id="P2"))
    assert reads.count(document) == 1
    assert [state for state, _ in await stores.raw_instance_states(key)] == ["created"]


async def test_large_metadata_round_trips(stores: Stores) -> None:
    """DICOM JSON that does not fit one Cosmos document (2 MB) even compressed."""
    key = new_key()
    payload = orjson.dumps({"7FE10010": {"vr": "OB", "InlineBinary": os.urandom(1_600_000).hex()}})
    await store(stores.index, key, metadata=payload)
    assert await stores.index.get_metadata(
        key.study_uid, key.series_uid, key.sop_uid, partition=1
    ) == [payload]
    assert await stores.index.get_metadata(key.study_uid, partition=1) == [payload]
    reservation = await stores.index.begin_instance(key, upsert=True)
    await stores.index.commit_instance(reservation, instance(key, metadata=b"{}"))
    assert await stores.index.get_metadata(key.study_uid, partition=1) == [b"{}"]
    await stores.index.delete_instances(key.study_uid, partition=1)
    assert await stores.index.get_metadata(key.study_uid, partition=1) == []


async def test_metadata_slices_deleted_while_read_are_a_retryable_error_not_a_crash(
    stores: Stores,
) -> None:
    """Metadata over a Cosmos document's size is kept in slices, read after the document: a
    delete in between used to leave nothing to join (a 500). It is ``MetadataGone`` now, a
    503 to try again, which a search answers by reading its summaries again."""
    if stores.backend != "azure":
        pytest.skip("only Cosmos DB keeps metadata in slices")
    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
    from dicom_core.storage.azure.cosmos_io import MetadataGone
    from dicom_core.storage.azure.cosmos_placement import placement_of
    from dicom_core.storage.azure.cosmos_schema import METAPART, instance_id
    from dicom_core.storage.azure.cosmos_session import unpack_metadata
    from dicom_core.storage.ports import StorageUnavailable

    assert isinstance(stores.index, CosmosIndexStore)
    key = new_key()
    payload = orjson.dumps({"7FE10010": {"vr": "OB", "InlineBinary": os.urandom(1_600_000).hex()}})
    await store(stores.index, key, metadata=payload)
    c = await stores.index.session.containers()
    study = placement_of(1).study(key.study_uid)
    doc = await c.index.read_item(instance_id(key.series_uid, key.sop_uid), study.key)
    assert doc["metaParts"] > 1
    assert await unpack_metadata(c.index, study, doc) == payload
    slices = [
        item
        async for item in c.index.query_items(
            "SELECT c.id FROM c WHERE c.kind = @kind",
            parameters=[{"name": "@kind", "value": METAPART}],
            partition_key=study.key,
        )
    ]
    await c.index.delete_item(slices[-1]["id"], partition_key=study.key)
    with pytest.raises(MetadataGone) as gone:
        await unpack_metadata(c.index, study, doc)
    assert isinstance(gone.value, StorageUnavailable)

    # A search meets it as a document deleted meanwhile: it reads the summary again, which
    # here still names the broken document, and leaves the study out of the page.
    found = await stores.index.search(
        parse_query([("StudyInstanceUID", key.study_uid)], QueryResource.ALL_STUDIES, partition=1),
        metadata=frozenset({QueryLevel.STUDY}),
    )
    assert found == []


async def test_search_pages_newest_first_with_aggregates_and_metadata(stores: Stores) -> None:
    stores.require_search()
    index = stores.index
    patient = f"PAT-{generate_uid()[-12:]}"
    study_a, study_b = generate_uid(), generate_uid()
    a1 = new_key(study_a)
    await store(index, a1, patient_id=patient, modality="CT")
    await store(index, new_key(study_a, a1.series_uid), patient_id=patient, modality="CT")
    await store(index, new_key(study_a), patient_id=patient, modality="SR")
    b1 = new_key(study_b)
    await store(index, b1, patient_id=patient.lower(), modality="MR")

    query = parse_query([("PatientID", patient)], QueryResource.ALL_STUDIES, partition=1)
    found = await index.search(query, metadata=frozenset({QueryLevel.STUDY}))
    assert [m.study_uid for m in found] == [study_b, study_a]
    by_study = {m.study_uid: m for m in found}
    assert (by_study[study_a].study_series, by_study[study_a].study_instances) == (2, 3)
    assert by_study[study_a].modalities == ("CT", "SR")
    assert by_study[study_b].study_metadata == instance(b1).metadata_json

    page = await index.search(
        parse_query(
            [("PatientID", patient), ("limit", "1"), ("offset", "1")],
            QueryResource.ALL_STUDIES,
            partition=1,
        )
    )
    assert [m.study_uid for m in page] == [study_a]

    series = await index.search(
        parse_query(
            [("StudyInstanceUID", study_a), ("ModalitiesInStudy", "ct")],
            QueryResource.ALL_SERIES,
            partition=1,
        ),
        metadata=frozenset({QueryLevel.SERIES}),
    )
    assert len(series) == 2
    assert {m.series_instances for m in series} == {1, 2}
    assert all(m.series_metadata for m in series)

    instances = await index.search(
        parse_query(
            [("Modality", "ct"), ("SeriesInstanceUID", a1.series_uid)],
            QueryResource.STUDY_INSTANCES,
            study_uid=study_a,
            partition=1,
        ),
        metadata=frozenset({QueryLevel.INSTANCE}),
    )
    assert [m.sop_uid for m in instances][-1] == a1.sop_uid
    assert instances[-1].instance_metadata == instance(a1).metadata_json
    assert all(m.series_instances == 2 and m.study_instances == 3 for m in instances)


SEARCHED_LEVELS = [QueryResource.ALL_STUDIES, QueryResource.ALL_SERIES, QueryResource.ALL_INSTANCES]


def all_metadata(resource: QueryResource) -> frozenset[QueryLevel]:
    levels = list(QueryLevel)
    return frozenset(levels[: levels.index(resource.level) + 1])


@pytest.mark.parametrize("resource", SEARCHED_LEVELS)
async def test_a_latest_instance_deleted_during_a_search_gives_way_to_the_new_latest(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, resource: QueryResource
) -> None:
    """On Cosmos a search reads the summaries, then their latest instances' documents. When a
    delete runs in between, the study and series are still there: their summaries are read
    again and the match carries the new latest instance's attributes. Before, the match came
    with no attributes (the QIDO answer held an empty object); never the match dropped."""
    if stores.backend != "azure":
        pytest.skip("only the Cosmos search reads the latest documents after the query")
    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
    from dicom_core.storage.azure.cosmos_schema import instance_id

    assert isinstance(stores.index, CosmosIndexStore)
    index = stores.index
    patient = f"PAT-{generate_uid()[-12:]}"
    first = new_key()
    latest = new_key(first.study_uid, first.series_uid)
    await store(index, first, patient_id=patient)
    await store(index, latest, patient_id=patient)
    c = await index.session.containers()
    read = c.index.read_item
    deleted: list[str] = []
    delete_once = asyncio.Lock()

    async def delete_then_read(item: str, *args: object, **kwargs: object) -> object:
        # Every read of the latest document, the first and those racing it, comes after
        # the delete: as if it had run between the search's query and its reads.
        if item == instance_id(latest.series_uid, latest.sop_uid):
            async with delete_once:
                if not deleted:
                    deleted.append(item)
                    await index.delete_instances(
                        latest.study_uid, latest.series_uid, latest.sop_uid, partition=1
                    )
        return await read(item, *args, **kwargs)

    monkeypatch.setattr(c.index, "read_item", delete_then_read)
    query = parse_query([("PatientID", patient)], resource, partition=1)
    found = await index.search(query, metadata=all_metadata(resource))
    assert deleted
    # The deleted instance's own match is gone; the study and series remain, with the
    # attributes of the instance that is now their latest.
    assert [match.study_uid for match in found] == [first.study_uid]
    (match,) = found
    assert match.study_metadata == instance(first).metadata_json
    assert match.study_instances == 1
    if resource is not QueryResource.ALL_STUDIES:
        assert match.series_metadata == instance(first).metadata_json
    if resource is QueryResource.ALL_INSTANCES:
        assert match.sop_uid == first.sop_uid


@pytest.mark.parametrize("resource", SEARCHED_LEVELS)
async def test_a_match_whose_latest_instance_stays_unreadable_is_left_out(
    stores: Stores, monkeypatch: pytest.MonkeyPatch, resource: QueryResource
) -> None:
    """A summary that keeps naming a document that cannot be read (deletes racing the search
    round after round): the match is left out of the page, never given without attributes."""
    if stores.backend != "azure":
        pytest.skip("only the Cosmos search reads the latest documents after the query")
    from azure.cosmos.exceptions import CosmosResourceNotFoundError

    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
    from dicom_core.storage.azure.cosmos_schema import instance_id

    assert isinstance(stores.index, CosmosIndexStore)
    patient = f"PAT-{generate_uid()[-12:]}"
    gone, kept = new_key(), new_key()
    await store(stores.index, gone, patient_id=patient)
    await store(stores.index, kept, patient_id=patient)
    c = await stores.index.session.containers()
    read = c.index.read_item
    vanished = instance_id(gone.series_uid, gone.sop_uid)

    async def never_readable(item: str, *args: object, **kwargs: object) -> object:
        if item == vanished:
            raise CosmosResourceNotFoundError(message="deleted meanwhile")
        return await read(item, *args, **kwargs)

    monkeypatch.setattr(c.index, "read_item", never_readable)
    query = parse_query([("PatientID", patient)], resource, partition=1)
    found = await stores.index.search(query, metadata=all_metadata(resource))
    assert [match.study_uid for match in found] == [kept.study_uid]
    assert all(
        match.study_metadata and (resource is QueryResource.ALL_STUDIES or match.series_metadata)
        for match in found
    )


async def test_a_post_whose_commit_answer_is_lost_is_stored_once_by_its_retry(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A POST's first commit attempt takes its instance as not stored; the retry after a lost
    answer must read it, find its own commit and succeed, not refuse it as a duplicate."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos commit is retried by its session")
    from azure.core.exceptions import ServiceResponseError

    from dicom_core.storage.azure.cosmos_index import CosmosIndexStore

    index = stores.index
    assert isinstance(index, CosmosIndexStore)
    execute = index._execute
    lost: list[str] = []

    async def lose_the_answer(c: object, study: object, plan: object) -> object:
        result = await execute(c, study, plan)  # type: ignore[arg-type]
        if "instance" in plan.names and not lost:  # type: ignore[attr-defined]
            lost.append("instance")
            raise ServiceResponseError("connection reset after the batch was applied")
        return result

    monkeypatch.setattr(index, "_execute", lose_the_answer)
    key = new_key()
    watermark = await store(index, key)
    assert lost
    assert await stores.raw_instance_states(key) == [("created", watermark)]
    summary = await index.search(
        parse_query([("StudyInstanceUID", key.study_uid)], QueryResource.ALL_STUDIES, partition=1)
    )
    assert [m.study_instances for m in summary] == [1]


async def test_search_may_leave_out_the_documents_the_caller_has_cached(stores: Stores) -> None:
    """``cached`` names, by watermark, latest-instance documents the caller holds: the matches
    are the same, each document is left out (Cosmos DB: no point read for it) or unchanged."""
    stores.require_search()
    index = stores.index
    study = generate_uid()
    first = new_key(study)
    marks = [await store(index, first), await store(index, new_key(study, first.series_uid))]
    query = parse_query([], QueryResource.STUDY_INSTANCES, study_uid=study, partition=1)
    levels = frozenset(QueryLevel)
    full = await index.search(query, metadata=levels)
    asked: list[int] = []

    def cached(watermark: int) -> bool:
        asked.append(watermark)
        return watermark == marks[1]  # the series' and study's latest, and one instance

    found = await index.search(query, metadata=levels, cached=cached)
    assert len(found) == len(full) == 2
    documents = ("study_metadata", "series_metadata", "instance_metadata")
    for match, whole in zip(found, full, strict=True):
        for name in documents:
            assert getattr(match, name) in (None, getattr(whole, name))
        assert replace(match, **dict.fromkeys(documents)) == replace(
            whole, **dict.fromkeys(documents)
        )
    newest, older = found
    if stores.backend == "azure":
        assert set(asked) == set(marks)
        assert (newest.study_metadata, newest.series_metadata, newest.instance_metadata) == (
            None,
            None,
            None,
        )
        assert older.instance_metadata == full[1].instance_metadata
