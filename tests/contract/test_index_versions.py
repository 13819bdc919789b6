"""Instance versions in the index (``commit_versions``, ``original=True`` reads), on every
backend: what a bulk update leaves behind, and what a replacing store and a delete do to it."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import orjson
import pytest

from dicom_core.domain.change_feed import ChangeState
from dicom_core.domain.identifiers import blob_key_for
from dicom_core.domain.model import InstanceKey, StoredInstance
from dicom_core.query.conditions import QueryLevel, QueryResource
from dicom_core.query.parser import parse_query
from dicom_core.services.external_metadata import parse_headers
from dicom_core.storage.ports import (
    ChangeQuery,
    IndexStore,
    InstanceBeingCreated,
    NewVersion,
    VersionsCommitted,
)
from tests.contract.test_index_store import instance, new_key, open_debts, store
from tests.support.stores import MEMORY, Stores, StoresFactory


def marked(key: InstanceKey, marker: str, patient_id: str = "P1") -> StoredInstance:
    metadata = orjson.dumps({"00080018": {"vr": "UI", "Value": [key.sop_uid]}, "m": marker})
    return instance(key, metadata=metadata, patient_id=patient_id)


async def update(
    index: IndexStore, keys: list[InstanceKey], based_on: list[int], marker: str
) -> tuple[list[int], VersionsCommitted]:
    """A bulk update's commit: new versions of ``keys`` (files under fresh keys), together.
    Returns the new versions' watermarks (0 for one not committed) and the outcome."""
    versions = [
        NewVersion(marked(key, marker, patient_id=marker), fresh_blob_key(key), base)
        for key, base in zip(keys, based_on, strict=True)
    ]
    outcome = await index.commit_versions(versions)
    watermarks = []
    for key in keys:
        record = await index.get_instance(key)
        blob_keys = [v.blob_key for v in versions if v.key == key]
        watermarks.append(record.watermark if record and record.blob_key in blob_keys else 0)
    return watermarks, outcome


def step_versions(keys: list[InstanceKey], based_on: list[int], marker: str) -> list[NewVersion]:
    """One run of a bulk-update step: new versions of ``keys``, each claimed as the step
    claims it (so another run of the same step takes its reservations back)."""
    return [
        NewVersion(marked(k, marker), fresh_blob_key(k), wm, claim=f"op-{wm}")
        for k, wm in zip(keys, based_on, strict=True)
    ]


def fresh_blob_key(key: InstanceKey) -> str:
    return blob_key_for(key.study_uid, key.series_uid, key.sop_uid, uuid4().hex)


def marker_of(document: bytes) -> str:
    return str(orjson.loads(document)["m"])


async def test_an_update_becomes_current_and_keeps_the_original(stores: Stores) -> None:
    index = stores.index
    study = new_key().study_uid
    keys = [new_key(study) for _ in range(2)]
    first = [await store(index, key, metadata=None) for key in keys]
    originals = [await index.get_instance(key) for key in keys]

    new, outcome = await update(index, keys, first, "v2")
    assert outcome.committed == tuple(keys)
    assert outcome.changed == ()
    assert outcome.obsolete_blob_keys == ()
    assert outcome.tags_indexed is (stores.backend == "local")

    for key, watermark, original in zip(keys, new, originals, strict=True):
        current = await index.get_instance(key)
        assert current is not None and current.watermark == watermark
        assert await index.get_instance(key, original=True) == original
    assert [r.watermark for r in await index.list_instances(study, partition=1)] == new
    assert [
        r.watermark for r in await index.list_instances(study, original=True, partition=1)
    ] == first
    assert [marker_of(d) for d in await index.get_metadata(study, partition=1)] == ["v2", "v2"]
    versioned = await index.get_versioned_metadata(study, original=True, partition=1)
    assert [orjson.loads(d).get("m") for d in versioned.documents] == [None, None]
    assert versioned.version == await index.metadata_version(study, original=True, partition=1)
    assert versioned.version != await index.metadata_version(study, partition=1)

    summary = await stores.raw_study_summary(study)
    assert summary is not None
    assert (summary["instances"], summary["patient_id"]) == (2, "v2")


async def test_a_second_update_drops_the_version_between_and_keeps_the_first(
    stores: Stores,
) -> None:
    index, key = stores.index, new_key()
    first = await store(index, key)
    original = await index.get_instance(key)
    [second], _ = await update(index, [key], [first], "v2")
    between = await index.get_instance(key)
    [third], outcome = await update(index, [key], [second], "v3")
    assert between is not None and original is not None
    assert outcome.obsolete_blob_keys == (between.blob_key,)
    assert await index.get_instance(key, original=True) == original
    current = await index.get_instance(key)
    assert current is not None and current.watermark == third


async def test_an_update_based_on_a_replaced_version_changes_nothing(stores: Stores) -> None:
    index = stores.index
    study = new_key().study_uid
    stale_key, fresh_key = new_key(study), new_key(study)
    stale = await store(index, stale_key)
    fresh = await store(index, fresh_key)
    replacing = await index.begin_instance(stale_key, upsert=True)
    await index.commit_instance(replacing, instance(stale_key))  # a PUT came in between

    new, outcome = await update(index, [stale_key, fresh_key], [stale, fresh], "v2")
    assert outcome.committed == (fresh_key,)
    assert outcome.changed == (stale_key,)
    current = await index.get_instance(stale_key)
    assert current is not None and current.watermark == replacing.watermark
    assert await index.get_instance(stale_key, original=True) == current
    # No reservation is left behind: the instance can be stored or updated again.
    again = await index.begin_instance(stale_key, upsert=True)
    await index.abort_instance(again)
    fresh_now = await index.get_instance(fresh_key)
    assert fresh_now is not None and fresh_now.watermark == new[1]
    assert len(outcome.obsolete_blob_keys) == 1
    assert fresh_now.blob_key not in outcome.obsolete_blob_keys


async def test_a_replacing_store_drops_the_original(stores: Stores) -> None:
    index, key = stores.index, new_key()
    first = await store(index, key)
    original = await index.get_instance(key)
    [second], _ = await update(index, [key], [first], "v2")
    updated = await index.get_instance(key)
    reservation = await index.begin_instance(key, upsert=True)
    replaced = await index.commit_instance(reservation, instance(key))
    assert original is not None and updated is not None
    assert sorted(replaced) == sorted([original.blob_key, updated.blob_key])
    current = await index.get_instance(key, original=True)
    assert current is not None and current.watermark == reservation.watermark


async def test_a_delete_removes_every_version(stores: Stores) -> None:
    index, key = stores.index, new_key()
    first = await store(index, key)
    original = await index.get_instance(key)
    await update(index, [key], [first], "v2")
    updated = await index.get_instance(key)
    assert original is not None and updated is not None
    removed = await index.delete_instances(key.study_uid, partition=1)
    assert sorted(removed) == sorted([original.blob_key, updated.blob_key])
    assert await index.get_instance(key, original=True) is None
    assert await index.list_instances(key.study_uid, original=True, partition=1) == []


async def test_an_update_is_recorded_in_the_change_feed(stores: Stores) -> None:
    index, key = stores.index, new_key()
    first = await store(index, key)
    [second], _ = await update(index, [key], [first], "v2")
    entries = await stores.change_feed.read_changes(ChangeQuery(limit=10))
    assert [(e.action.value, e.watermark, e.state) for e in entries] == [
        ("create", first, ChangeState.REPLACED),
        ("update", second, ChangeState.CURRENT),
    ]


async def test_an_instance_another_store_holds_is_left_alone(stores: Stores) -> None:
    index, key = stores.index, new_key()
    first = await store(index, key)
    held = await index.begin_instance(key, upsert=True)  # a PUT is writing its file
    [watermark], outcome = await update(index, [key], [first], "v2")
    assert (watermark, outcome.changed, outcome.committed) == (0, (key,), ())
    await index.abort_instance(held)
    current = await index.get_instance(key)
    assert current is not None and current.watermark == first


async def test_deleting_an_updated_studys_last_instance_drops_its_external_metadata(
    stores: Stores,
) -> None:
    if stores.backend == MEMORY:
        pytest.skip("the fakes keep external metadata apart from the index")
    index, key = stores.index, new_key()
    first = await store(index, key)
    [value] = parse_headers([("msdicom-meta-LO-00091001", "kept with the study")])
    await stores.ports.external_metadata.save([key.study_uid], [value], partition=1)
    await update(index, [key], [first], "v2")
    assert (await stores.ports.external_metadata.study_values([key.study_uid], partition=1))[
        key.study_uid
    ]
    await index.delete_instances(key.study_uid, key.series_uid, key.sop_uid, partition=1)
    values = await stores.ports.external_metadata.study_values([key.study_uid], partition=1)
    assert not values.get(key.study_uid)


async def test_cosmos_commits_a_small_studys_versions_in_one_batch(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to STUDY_BATCH_VERSIONS versions of a study are one transactional batch."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's batches")
    from dicom_core.storage.azure import cosmos_index

    monkeypatch.setattr(cosmos_index, "STUDY_BATCH_VERSIONS", 3)
    index = stores.index
    batches = record_batches(index, monkeypatch)
    study = new_key().study_uid
    keys = [new_key(study) for _ in range(3)]
    first = [await store(index, key) for key in keys]
    batches.clear()
    new, outcome = await update(index, keys, first, "v2")
    assert set(outcome.committed) == set(keys) and outcome.changed == ()
    assert [names.count("instance") for names in batches] == [3]
    assert [names.count("original") for names in batches] == [3]
    assert all(w > 0 for w in new)


async def test_cosmos_never_sends_a_batch_of_versions_over_100_operations(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty versions in twenty series took 101 operations: the emulator accepts such a
    batch, Cosmos DB refuses it (over 100), so a second update of such a study (each batch
    also owes the versions it drops) is checked against the limit itself."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's batches")
    index = stores.index
    study = new_key().study_uid
    keys = [new_key(study) for _ in range(20)]  # a series each
    first = [await store(index, key) for key in keys]
    batches = record_batches(index, monkeypatch)
    second, outcome = await update(index, keys, first, "v2")
    third, again = await update(index, keys, second, "v3")
    assert set(outcome.committed) == set(again.committed) == set(keys)
    assert all(third) and len(again.obsolete_blob_keys) == 20
    assert max(len(names) for names in batches) <= 100
    assert sum(names.count("instance") for names in batches) == 40


def record_batches(index: IndexStore, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The names of the operations of every batch the Cosmos DB index executes from now."""
    batches: list[list[str]] = []
    execute = index._execute  # type: ignore[attr-defined]

    async def recording(c: object, pk: str, plan: object) -> object:
        batches.append(list(plan.names))  # type: ignore[attr-defined]
        return await execute(c, pk, plan)

    monkeypatch.setattr(index, "_execute", recording)
    return batches


async def reader_view(index: IndexStore, study: str, keys: list[InstanceKey]) -> set[str]:
    """The markers every kind of read sees in the study: its metadata (and the version that
    names it), each instance on its own, its instances' QIDO metadata, and the originals."""
    seen: set[str] = set()
    versioned = await index.get_versioned_metadata(study, partition=1)
    seen.update(f"metadata:{orjson.loads(d).get('m')}" for d in versioned.documents)
    records = {r.key: r.watermark for r in await index.list_instances(study, partition=1)}
    one_by_one = {key: (await index.get_instance(key)) for key in keys}
    assert all(record is not None for record in one_by_one.values())
    assert {k: r.watermark for k, r in one_by_one.items() if r} == records
    assert versioned.version == await index.metadata_version(study, partition=1)
    assert versioned.version == ",".join(str(records[key]) for key in keys)
    query = parse_query([("StudyInstanceUID", study)], QueryResource.ALL_INSTANCES, partition=1)
    found = await index.search(query, metadata=frozenset({QueryLevel.INSTANCE}))
    seen.update(f"qido:{orjson.loads(m.instance_metadata or b'{}').get('m')}" for m in found)
    assert {m.instance_watermark for m in found} == set(records.values())
    originals = await index.get_versioned_metadata(study, original=True, partition=1)
    assert {orjson.loads(d).get("m") for d in originals.documents} == {None}  # first stored
    return seen


async def test_cosmos_makes_a_large_studys_versions_visible_at_once(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More versions than one batch holds are staged, flipped by one batch and rolled
    forward in several: before every batch, each read sees the study wholly before or
    wholly after the update, never some of each."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's staged commit")
    from dicom_core.storage.azure import cosmos_index, cosmos_staged_versions

    monkeypatch.setattr(cosmos_index, "STUDY_BATCH_VERSIONS", 3)
    monkeypatch.setattr(cosmos_staged_versions, "ROLL_FORWARD_VERSIONS", 2)
    index = stores.index
    study = new_key().study_uid
    keys = [new_key(study) for _ in range(5)]
    first = [await store(index, key, patient_id="v1") for key in keys]
    views: list[set[str]] = []
    execute = index._execute  # type: ignore[attr-defined]

    async def observed(c: object, pk: str, plan: object) -> object:
        views.append(await reader_view(index, study, keys))
        return await execute(c, pk, plan)

    monkeypatch.setattr(index, "_execute", observed)
    new, outcome = await update(index, keys, first, "v2")
    views.append(await reader_view(index, study, keys))

    assert set(outcome.committed) == set(keys) and outcome.changed == ()
    assert len(views) == 5  # the flip, three roll-forward batches, and after
    before, after = {"metadata:None", "qido:None"}, {"metadata:v2", "qido:v2"}
    assert views == [before, after, after, after, after]
    assert all(w > 0 for w in new)
    summary = await stores.raw_study_summary(study)
    assert summary is not None
    assert (summary["instances"], summary["patient_id"]) == (5, "v2")
    entries = await stores.change_feed.read_changes(ChangeQuery(limit=100))
    updates = [e.key for e in entries if e.action.value == "update" and e.key.study_uid == study]
    assert sorted(updates, key=keys.index) == keys


async def test_cosmos_settles_a_staged_update_a_crash_cut(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the flip leaves a study that reads as updated, and settle_versions
    rolls it forward (the feed gets its entries, the reservations go); a crash before the
    flip leaves it as it was, and settle_versions strips the staged versions."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's staged commit")
    import asyncio

    from dicom_core.storage.azure import cosmos_index, cosmos_staged_versions

    monkeypatch.setattr(cosmos_index, "STUDY_BATCH_VERSIONS", 2)
    # The crashed run's staging counts as abandoned at once (its lease is 5 minutes).
    monkeypatch.setattr(cosmos_staged_versions, "STAGING_LEASE_SECONDS", -1)
    index = stores.index
    for crash_at, expected in (("flip", "None"), ("roll", "v2")):
        study = new_key().study_uid
        keys = [new_key(study) for _ in range(4)]
        first = [await store(index, key) for key in keys]
        real_settle = cosmos_staged_versions.StagedVersions._settle_chunk
        real_flip = cosmos_staged_versions.StagedVersions._flip

        async def crash_flip(*args: object, **kwargs: object) -> bool:
            raise asyncio.CancelledError  # the process dies: nothing after it runs

        async def crash_roll(*args: object, **kwargs: object) -> int:
            raise asyncio.CancelledError

        if crash_at == "flip":
            monkeypatch.setattr(cosmos_staged_versions.StagedVersions, "_flip", crash_flip)
        else:
            monkeypatch.setattr(cosmos_staged_versions.StagedVersions, "_settle_chunk", crash_roll)
        # The first settle (of nothing) returns before any chunk; the crash hits this update.
        with pytest.raises(asyncio.CancelledError):
            await update(index, keys, first, "v2")
        monkeypatch.setattr(cosmos_staged_versions.StagedVersions, "_flip", real_flip)
        monkeypatch.setattr(cosmos_staged_versions.StagedVersions, "_settle_chunk", real_settle)

        assert await reader_view(index, study, keys) == {
            f"metadata:{expected}",
            f"qido:{expected}",
        }
        obsolete = await index.settle_versions(study, partition=1)  # released to no one
        assert await reader_view(index, study, keys) == {
            f"metadata:{expected}",
            f"qido:{expected}",
        }
        assert len(obsolete) == (4 if crash_at == "flip" else 0)  # the staged files
        # Owed by the batches that dropped them, so a crash now would not lose them.
        owed = [key for debt in await open_debts(index, study) for key in debt.blob_keys]
        assert sorted(owed) == sorted(obsolete)
        # Nothing staged is left: no open commit, no reservation, no staged version.
        leftovers = stores._cosmos(
            "SELECT c.id FROM c WHERE c.pk = @pk AND ((c.kind = 'commit' AND c.state != 'done')"
            " OR c.kind = 'reservation' OR IS_DEFINED(c.next))",
            {"@pk": study},
        )
        assert leftovers == []
        entries = await stores.change_feed.read_changes(ChangeQuery(limit=1000))
        updates = [e for e in entries if e.action.value == "update" and e.key.study_uid == study]
        assert len(updates) == (0 if crash_at == "flip" else 4)


async def test_an_original_read_racing_a_replacing_store_answers_the_new_instance(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cosmos DB reads the current document, then its original: a replacing store that ran
    between the two dropped the original, and the read answers the current document again
    (the replacement, which is now its own original) rather than nothing."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's two point reads")
    from dicom_core.storage.azure import cosmos_index_reads
    from dicom_core.storage.azure.cosmos_schema import original_id

    index = stores.index
    key = new_key()
    first = await store(index, key, metadata=None)
    await update(index, [key], [first], "v2")
    reservation = await index.begin_instance(key, upsert=True)
    await index.commit_instance(reservation, instance(key))  # drops the original
    replaced = reservation.watermark

    real_read = cosmos_index_reads.read_item
    stale_current: dict[str, object] = {}

    async def as_before_the_store(container: object, item_id: str, partition: str) -> object:
        found = await real_read(container, item_id, partition)
        if item_id == original_id(key.series_uid, key.sop_uid):
            assert found is None  # the replacing store took the original away
        elif not stale_current and found is not None:
            stale_current.update(found)
            return {**found, "hasOriginal": True}  # what was read before the store ran
        return found

    monkeypatch.setattr(cosmos_index_reads, "read_item", as_before_the_store)
    got = await index.get_instance(key, original=True)
    assert stale_current, "the read went another way"
    assert got is not None and got.watermark == replaced


async def test_a_replacing_store_keeps_the_debt_of_what_it_replaced_until_released(
    stores: Stores,
) -> None:
    """A process that dies after a PUT's commit leaves the replaced files as a debt (the
    sweep's); a commit handed a release settles it at once."""
    index, key = stores.index, new_key()
    first = await store(index, key)
    [_], _ = await update(index, [key], [first], "v2")
    original = await index.get_instance(key, original=True)
    updated = await index.get_instance(key)
    reservation = await index.begin_instance(key, upsert=True)
    replaced = await index.commit_instance(reservation, instance(key))  # released to no one
    assert original is not None and updated is not None
    [debt] = await open_debts(index, key.study_uid)
    assert (
        sorted(debt.blob_keys) == sorted(replaced) == sorted([original.blob_key, updated.blob_key])
    )
    await index.forget_blob_debt(debt)

    released: list[str] = []

    async def release(blob_key: str) -> None:
        released.append(blob_key)

    current = await index.get_instance(key)
    again = await index.begin_instance(key, upsert=True)
    assert await index.commit_instance(again, instance(key), release=release) == released
    assert current is not None and released == [current.blob_key]
    assert await open_debts(index, key.study_uid) == []
    # A first store replaces nothing, and owes nothing.
    other = new_key()
    await index.commit_instance(await index.begin_instance(other, upsert=False), instance(other))
    assert await open_debts(index, other.study_uid) == []


async def test_an_update_releases_the_version_it_drops(stores: Stores) -> None:
    index, key = stores.index, new_key()
    first = await store(index, key)
    [second], _ = await update(index, [key], [first], "v2")
    between = await index.get_instance(key)
    released: list[str] = []

    async def release(blob_key: str) -> None:
        released.append(blob_key)

    versions = [NewVersion(marked(key, "v3"), fresh_blob_key(key), second)]
    outcome = await index.commit_versions(versions, release=release)
    assert between is not None
    assert released == list(outcome.obsolete_blob_keys) == [between.blob_key]
    assert await open_debts(index, key.study_uid) == []


async def test_cosmos_keeps_a_bulk_updates_reservation_for_the_long_lease(
    make_stores: StoresFactory,
) -> None:
    """A store renews its reservation while it uploads; nothing renews a bulk update's
    while it stages and commits a large study, so those keep DICOM_STALE_CREATE_SECONDS
    rather than the two-minute lease (a PUT took them over, and the step failed)."""
    configured = await make_stores(DICOM_STALE_CREATE_SECONDS="1000")
    if configured.backend != "azure":
        pytest.skip("the Cosmos DB adapter's reservations")
    # As the app builds it: stores' lease two minutes, bulk updates' the setting.
    assert configured.index._stale_seconds == 120  # type: ignore[attr-defined]
    assert configured.index._unrenewed_lease == 1000  # type: ignore[attr-defined]
    stores = await make_stores(DICOM_STALE_CREATE_SECONDS="1")
    index = stores.index
    index._unrenewed_lease = 3600  # type: ignore[attr-defined]  # the short one, longer
    key = new_key()
    first = await store(index, key)
    version = NewVersion(marked(key, "v2"), fresh_blob_key(key), first)
    held = await index._reserve_for(version)  # type: ignore[attr-defined]
    await asyncio.sleep(1.2)
    with pytest.raises(InstanceBeingCreated):
        await index.begin_instance(key, upsert=True)
    await index.abort_instance(held)
    await index.abort_instance(await index.begin_instance(key, upsert=True))


async def test_cosmos_never_releases_a_file_an_overlapping_runs_staging_made_visible(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run 1 of a bulk-update step stages a large study and flips it; before it rolls
    forward, a run 2 of the same step (same claims, its own files, based on what it read
    before the flip) reserves, taking run 1's reservations over as an earlier attempt of its
    own. Run 1's files are visible by then: none may be released (a review found all three
    current versions naming released files)."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's staged commit")
    from dicom_core.storage.azure import cosmos_index, cosmos_staged_versions

    monkeypatch.setattr(cosmos_index, "STUDY_BATCH_VERSIONS", 2)
    index = stores.index
    study = new_key().study_uid
    keys = [new_key(study) for _ in range(3)]
    first = [await store(index, key) for key in keys]
    released: list[str] = []

    async def release(blob_key: str) -> None:
        released.append(blob_key)

    def run(marker: str) -> list[NewVersion]:
        return step_versions(keys, first, marker)

    real_settle = cosmos_staged_versions.StagedVersions.settle
    overlapping: list[VersionsCommitted] = []

    async def settle(  # type: ignore[no-untyped-def]
        self, placed, *, own=None, committed_only=False
    ) -> object:
        if own is not None and not overlapping:
            monkeypatch.setattr(cosmos_staged_versions.StagedVersions, "settle", real_settle)
            overlapping.append(await index.commit_versions(run("run2"), release=release))
        return await real_settle(self, placed, own=own, committed_only=committed_only)

    monkeypatch.setattr(cosmos_staged_versions.StagedVersions, "settle", settle)
    await index.commit_versions(run("run1"), release=release)
    assert overlapping
    named = {r.blob_key for k in keys if (r := await index.get_instance(k)) is not None}
    originals = {
        r.blob_key for k in keys if (r := await index.get_instance(k, original=True)) is not None
    }
    assert len(named) == 3
    assert not (named | originals) & set(released), "a file the index names was released"


async def test_cosmos_keeps_a_stripped_stagings_late_versions_invisible(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stages a large study past STAGING_LEASE_SECONDS; another run's settle strips
    what is staged so far. The first run goes on staging: what it stages after must stay
    invisible and its files may go, rather than be served (a review found the late versions
    visible at once, through the commit document's kept token, and their files released)."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's staged commit")
    from dicom_core.storage.azure import cosmos_index, cosmos_staged_versions

    monkeypatch.setattr(cosmos_index, "STUDY_BATCH_VERSIONS", 2)
    monkeypatch.setattr(cosmos_staged_versions, "STAGE_CONCURRENCY", 1)
    monkeypatch.setattr(cosmos_staged_versions, "STAGING_LEASE_SECONDS", -1)  # lapsed at once
    index = stores.index
    study = new_key().study_uid
    keys = [new_key(study) for _ in range(4)]
    first = [await store(index, key) for key in keys]
    real_stage_one = cosmos_staged_versions.StagedVersions._stage_one
    stripped: list[object] = []

    async def stage_one(  # type: ignore[no-untyped-def]
        self, c, placed, token, version, reservation
    ) -> str:
        result = await real_stage_one(self, c, placed, token, version, reservation)
        if not stripped:
            stripped.append(await self.settle(placed))  # another run, the lease lapsed
        return result

    monkeypatch.setattr(cosmos_staged_versions.StagedVersions, "_stage_one", stage_one)
    released: list[str] = []

    async def release(blob_key: str) -> None:
        released.append(blob_key)

    versions = [
        NewVersion(marked(k, "v2"), fresh_blob_key(k), wm)
        for k, wm in zip(keys, first, strict=True)
    ]
    outcome = await index.commit_versions(versions, release=release)
    current = {k: await index.get_instance(k) for k in keys}
    named = {r.blob_key for r in current.values() if r is not None}
    assert not named & set(released), "a file the index names was released"
    # What readers see is what the outcome says: committed versions new, the others old.
    for key in keys:
        record = current[key]
        assert record is not None
        assert (record.watermark not in first) == (key in outcome.committed)
    # Nothing the stripped run staged is left under next, and its files are released.
    leftovers = stores._cosmos(
        "SELECT c.id FROM c WHERE c.pk = @pk AND IS_DEFINED(c.next)", {"@pk": study}
    )
    assert leftovers == []
    owed = [blob for debt in await open_debts(index, study) for blob in debt.blob_keys]
    assert {v.blob_key for v in versions if v.key not in outcome.committed} <= set(released) | set(
        owed
    )
