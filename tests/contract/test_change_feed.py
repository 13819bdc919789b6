"""The ``ChangeFeedStore`` contract: what the index's changes leave in the feed, on every backend.

The entries are written by the index adapters with each change (store, replacing store,
delete); the port reads them. The claims checked: sequences strictly increase with no gap,
each change appears once in commit order, an entry's state follows its instance's later
changes, and the time window, skip and limit select as ``ChangeQuery`` says.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from dicom_core.domain.change_feed import ChangeAction, ChangeFeedEntry, ChangeState
from dicom_core.domain.model import InstanceKey
from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.ports import ChangeQuery, IndexStore
from tests.contract.test_index_store import instance, new_key, store
from tests.support.stores import Stores


async def upsert(index: IndexStore, key: InstanceKey, marker: str) -> int:
    reservation = await index.begin_instance(key, upsert=True)
    metadata = orjson.dumps({"00080018": {"vr": "UI", "Value": [key.sop_uid]}, "marker": marker})
    await index.commit_instance(reservation, instance(key, metadata=metadata))
    return reservation.watermark


async def everything(stores: Stores, **kwargs: object) -> list[ChangeFeedEntry]:
    return await stores.change_feed.read_changes(ChangeQuery(limit=1000, **kwargs))  # type: ignore[arg-type]


def summary(entries: list[ChangeFeedEntry]) -> list[tuple[str, str, ChangeState]]:
    return [(e.action.value, e.key.sop_uid, e.state) for e in entries]


async def test_an_empty_feed_has_no_entries_and_no_latest(stores: Stores) -> None:
    assert await everything(stores) == []
    assert await stores.change_feed.latest_change() is None


async def test_store_upsert_and_delete_append_entries_whose_states_follow(
    stores: Stores,
) -> None:
    index = stores.index
    a, b = new_key(), new_key()
    wm_a = await store(index, a)
    wm_b = await store(index, b)
    assert summary(await everything(stores)) == [
        ("create", a.sop_uid, ChangeState.CURRENT),
        ("create", b.sop_uid, ChangeState.CURRENT),
    ]

    wm_a2 = await upsert(index, a, "second")
    await index.delete_instances(b.study_uid, partition=1)
    entries = await everything(stores)
    assert summary(entries) == [
        ("create", a.sop_uid, ChangeState.REPLACED),
        ("create", b.sop_uid, ChangeState.DELETED),
        ("create", a.sop_uid, ChangeState.CURRENT),
        ("delete", b.sop_uid, ChangeState.DELETED),
    ]
    assert [e.watermark for e in entries] == [wm_a, wm_b, wm_a2, wm_b]
    assert [e.current_watermark for e in entries] == [wm_a2, None, wm_a2, None]
    sequences = [e.sequence for e in entries]
    assert sequences == list(range(sequences[0], sequences[0] + 4))
    assert all(e.key == a for e in entries if e.key.sop_uid == a.sop_uid)

    latest = await stores.change_feed.latest_change()
    assert latest == entries[-1]


async def test_storing_a_deleted_instance_again_replaces_its_earlier_entries(
    stores: Stores,
) -> None:
    """As the Azure service does: create, delete, create reads replaced, replaced, current."""
    index, key = stores.index, new_key()
    await store(index, key)
    await index.delete_instances(key.study_uid, key.series_uid, key.sop_uid, partition=1)
    again = await store(index, key)
    entries = await everything(stores)
    assert summary(entries) == [
        ("create", key.sop_uid, ChangeState.REPLACED),
        ("delete", key.sop_uid, ChangeState.REPLACED),
        ("create", key.sop_uid, ChangeState.CURRENT),
    ]
    assert [e.current_watermark for e in entries] == [again] * 3


async def test_a_store_that_began_before_a_delete_and_commits_after_it_follows_it(
    stores: Stores,
) -> None:
    """The store takes its watermark before the delete, but its change comes after: the feed
    keeps the order of the changes, not of the watermarks, and the store's entry stays
    current."""
    index, key = stores.index, new_key()
    first = await store(index, key)
    reservation = await index.begin_instance(key, upsert=True)
    await index.delete_instances(key.study_uid, key.series_uid, key.sop_uid, partition=1)
    await index.commit_instance(reservation, instance(key))
    entries = await everything(stores)
    assert summary(entries) == [
        ("create", key.sop_uid, ChangeState.REPLACED),
        ("delete", key.sop_uid, ChangeState.REPLACED),
        ("create", key.sop_uid, ChangeState.CURRENT),
    ]
    assert [e.watermark for e in entries] == [first, first, reservation.watermark]
    assert [e.current_watermark for e in entries] == [reservation.watermark] * 3


async def test_metadata_is_the_current_versions_and_absent_once_deleted(
    stores: Stores,
) -> None:
    index = stores.index
    kept, gone = new_key(), new_key()
    await upsert(index, kept, "first")
    await upsert(index, kept, "second")
    await store(index, gone)
    await index.delete_instances(gone.study_uid, partition=1)

    plain = await everything(stores)
    assert all(e.metadata is None for e in plain)
    entries = await everything(stores, include_metadata=True)
    by_action = {(e.action, e.key.sop_uid): e for e in entries}
    for entry in entries:
        if entry.key == kept:
            assert entry.metadata is not None
            assert orjson.loads(entry.metadata)["marker"] == "second"
    assert by_action[(ChangeAction.CREATE, gone.sop_uid)].metadata is None
    assert by_action[(ChangeAction.DELETE, gone.sop_uid)].metadata is None
    latest = await stores.change_feed.latest_change(include_metadata=True)
    assert latest is not None and latest.metadata is None


async def test_a_study_delete_records_every_instance_in_watermark_order(stores: Stores) -> None:
    index = stores.index
    study, series = new_key().study_uid, new_key().series_uid
    keys = [new_key(study, series) for _ in range(3)] + [new_key(study)]
    for key in keys:
        await store(index, key)
    await index.delete_instances(study, partition=1)
    deletes = [e for e in await everything(stores) if e.action is ChangeAction.DELETE]
    assert [e.key for e in deletes] == keys
    assert all(e.state is ChangeState.DELETED for e in await everything(stores))


async def test_paging_by_sequence_skip_and_limit(stores: Stores) -> None:
    index = stores.index
    keys = [new_key() for _ in range(5)]
    for key in keys:
        await store(index, key)
    entries = await everything(stores)
    first = entries[0].sequence

    page = await stores.change_feed.read_changes(ChangeQuery(limit=2, after_sequence=first))
    assert [e.key for e in page] == keys[1:3]
    page = await stores.change_feed.read_changes(ChangeQuery(limit=2, skip=3))
    assert [e.key for e in page] == keys[3:5]
    assert (
        await stores.change_feed.read_changes(
            ChangeQuery(limit=10, after_sequence=entries[-1].sequence)
        )
        == []
    )


async def test_a_time_window_keeps_the_entries_inside_it(stores: Stores) -> None:
    index = stores.index
    before, inside, after = new_key(), new_key(), new_key()
    await store(index, before)
    await asyncio.sleep(0.01)
    start = utc_timestamp()
    await store(index, inside)
    await asyncio.sleep(0.01)
    end = utc_timestamp()
    await asyncio.sleep(0.01)
    await store(index, after)

    window = await everything(stores, start_time=start, end_time=end)
    assert [e.key for e in window] == [inside]
    assert start <= window[0].timestamp < end
    assert [e.key for e in await everything(stores, start_time=start)] == [inside, after]
    assert [e.key for e in await everything(stores, end_time=end)] == [before, inside]


async def test_concurrent_stores_leave_a_gap_free_feed_with_each_change_once(
    stores: Stores,
) -> None:
    index = stores.index
    study = new_key().study_uid
    keys = [new_key(study if n % 2 else None) for n in range(24)]

    async def client(mine: list[InstanceKey]) -> None:
        for key in mine:
            await store(index, key)

    await asyncio.gather(*(client(keys[n::8]) for n in range(8)))
    entries = await everything(stores)
    sequences = [e.sequence for e in entries]
    assert sequences == list(range(sequences[0], sequences[0] + len(keys)))
    assert sorted(e.key.sop_uid for e in entries) == sorted(k.sop_uid for k in keys)


async def test_a_reader_following_concurrent_stores_misses_nothing(stores: Stores) -> None:
    """Read forward from the last sequence seen while 8 clients store: an entry that became
    visible after the reader passed its sequence would be missed, and the test would see
    fewer entries than stores."""
    index = stores.index
    keys = [new_key() for _ in range(32)]
    seen: list[ChangeFeedEntry] = []
    done = asyncio.Event()

    async def client(mine: list[InstanceKey]) -> None:
        for key in mine:
            await store(index, key)

    async def reader() -> None:
        last = 0
        while True:
            finished = done.is_set()
            page = await stores.change_feed.read_changes(ChangeQuery(limit=5, after_sequence=last))
            seen.extend(page)
            if page:
                last = page[-1].sequence
            elif finished:
                return
            await asyncio.sleep(0)

    async def writers() -> None:
        await asyncio.gather(*(client(keys[n::8]) for n in range(8)))
        done.set()

    await asyncio.gather(writers(), reader())
    assert sorted(e.key.sop_uid for e in seen) == sorted(k.sop_uid for k in keys)
    sequences = [e.sequence for e in seen]
    assert sequences == list(range(sequences[0], sequences[0] + len(keys)))


async def test_a_local_read_that_hands_out_entries_syncs_the_wal_first(
    stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: a commit becomes durable just after the writers' lock is released, so a reader
    could see an entry a power cut would take back (and its sequence be given out again). A
    read that returns entries therefore syncs the WAL; an empty read costs no sync."""
    if stores.backend != "local":
        pytest.skip("the SQLite adapter's WAL")
    from dicom_core.storage.local.sqlite_db import SqliteDatabase

    await store(stores.index, new_key())
    syncs: list[str] = []
    real_sync = SqliteDatabase.sync_wal

    def counted(db: SqliteDatabase) -> None:
        syncs.append(str(db.path))
        real_sync(db)

    monkeypatch.setattr(SqliteDatabase, "sync_wal", counted)
    assert await stores.change_feed.read_changes(ChangeQuery(limit=10, after_sequence=10**9)) == []
    assert syncs == []
    assert len(await everything(stores)) == 1
    assert len(syncs) == 1
    assert await stores.change_feed.latest_change() is not None
    assert len(syncs) == 2
