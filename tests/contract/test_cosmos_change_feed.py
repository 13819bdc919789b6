"""The Cosmos DB change feed's outbox and sequencer (``cosmos_change_feed``), on the emulator.

The contract suite (``test_change_feed``) holds the azure backend to what every backend
promises; these tests reach the states only Cosmos has: a pending change that no sequencer
ran for (a crash after the study's batch), one sequenced but not deleted (a crash after the
feed's batch), sequencers racing, changes of one instance waiting together, and an instance
with more live entries than one batch can move.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dicom_core.domain.change_feed import ChangeFeedEntry, ChangeState
from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.azure import cosmos_change_feed, cosmos_index
from dicom_core.storage.azure.cosmos_change_feed import sequence_pending
from dicom_core.storage.azure.cosmos_docs import pending_change_document
from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
from dicom_core.storage.azure.cosmos_io import query_items, read_item
from dicom_core.storage.azure.cosmos_placement import placement_of
from dicom_core.storage.azure.cosmos_schema import (
    FEED,
    FEED_HEAD_ID,
    FEED_PARTITION,
    PENDING_CHANGE,
)
from dicom_core.storage.azure.cosmos_session import Containers
from dicom_core.storage.ports import ChangeQuery
from tests.contract.test_change_feed import everything, summary, upsert
from tests.contract.test_index_store import instance, new_key, store
from tests.support.stores import Stores


@pytest.fixture()
async def cosmos(stores: Stores) -> AsyncIterator[Containers]:
    """The azure backend's containers (other backends skip)."""
    if stores.backend != "azure":
        pytest.skip("the Cosmos DB adapter's outbox and sequencer")
    assert isinstance(stores.index, CosmosIndexStore)
    yield await stores.index.session.containers()


@pytest.fixture()
def no_sequencing_after_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores and deletes leave their pending changes, as if each crashed after its batch."""

    async def crashed(c: Containers, *, study: str | None = None) -> int:
        return 0

    monkeypatch.setattr(cosmos_index, "sequence_pending", crashed)


async def pending_changes(c: Containers) -> list[dict[str, Any]]:
    return await query_items(
        c.index, "SELECT * FROM c WHERE c.kind = @kind", {"@kind": PENDING_CHANGE}
    )


async def feed_documents(c: Containers) -> list[dict[str, Any]]:
    return await query_items(
        c.system,
        "SELECT * FROM c WHERE c.pk = @pk AND c.kind = @kind",
        {"@pk": FEED_PARTITION, "@kind": FEED},
        partition=FEED_PARTITION,
    )


def gap_free(entries: list[ChangeFeedEntry]) -> bool:
    sequences = [e.sequence for e in entries]
    return sequences == list(range(1, len(entries) + 1))


async def test_a_store_records_a_pending_change_that_its_sequencer_takes(
    stores: Stores, cosmos: Containers
) -> None:
    key = new_key()
    watermark = await store(stores.index, key)
    assert await pending_changes(cosmos) == []
    (entry,) = await feed_documents(cosmos)
    assert (entry["seq"], entry["action"], entry["wm"], entry["cur"]) == (
        1,
        "create",
        watermark,
        watermark,
    )
    assert entry["id"].startswith("p|")
    head = await read_item(cosmos.system, FEED_HEAD_ID, FEED_PARTITION)
    assert head is not None and head["last"] == 1


async def test_a_pending_change_left_by_a_crash_is_sequenced_by_the_next_read(
    stores: Stores, cosmos: Containers
) -> None:
    key = new_key()
    await cosmos.index.create_item(pending_change_document("create", key, 41, utc_timestamp()))
    assert len(await pending_changes(cosmos)) == 1

    latest = await stores.change_feed.latest_change(include_metadata=True)
    assert latest is not None
    assert (latest.sequence, latest.key, latest.watermark) == (1, key, 41)
    assert latest.metadata is None  # no instance document holds version 41
    assert await pending_changes(cosmos) == []


async def test_a_change_sequenced_but_not_deleted_gets_one_entry(
    stores: Stores, cosmos: Containers, no_sequencing_after_writes: None
) -> None:
    key = new_key()
    await store(stores.index, key)
    (left,) = await pending_changes(cosmos)
    assert await sequence_pending(cosmos) == 1
    # The pending change comes back, as if the sequencer had died before deleting it.
    await cosmos.index.create_item({k: v for k, v in left.items() if not k.startswith("_")})

    other = new_key()
    await store(stores.index, other)
    entries = await everything(stores)
    assert [e.key for e in entries] == [key, other]
    assert gap_free(entries)
    assert await pending_changes(cosmos) == []


async def test_racing_sequencers_leave_a_gap_free_feed_with_each_change_once(
    stores: Stores, cosmos: Containers
) -> None:
    studies = [new_key().study_uid for _ in range(4)]
    keys = [new_key(studies[n % 4]) for n in range(40)]
    for n, key in enumerate(keys):
        change = pending_change_document("create", key, 1000 + n, utc_timestamp())
        await cosmos.index.create_item(change)

    readers = [sequence_pending(cosmos) for _ in range(4)]
    writers = [sequence_pending(cosmos, study=placement_of(1).study(study)) for study in studies]
    counts = await asyncio.gather(*readers, *writers)

    assert sum(counts) >= len(keys)  # a change found sequenced already counts for its finder
    entries = await everything(stores)
    assert gap_free(entries)
    assert sorted(e.key.sop_uid for e in entries) == sorted(k.sop_uid for k in keys)
    assert await pending_changes(cosmos) == []
    head = await read_item(cosmos.system, FEED_HEAD_ID, FEED_PARTITION)
    assert head is not None and head["last"] == len(keys)


async def test_changes_of_one_instance_waiting_together_keep_their_order(
    stores: Stores, cosmos: Containers, no_sequencing_after_writes: None
) -> None:
    """A store takes its watermark, a delete of the older version commits, then the store:
    sequenced together, the delete still comes before the store (``change_order``)."""
    index, key = stores.index, new_key()
    first = await store(index, key)
    await upsert(index, key, "second")
    reservation = await index.begin_instance(key, upsert=True)
    await index.delete_instances(key.study_uid, partition=1)
    await index.commit_instance(reservation, instance(key))
    assert len(await pending_changes(cosmos)) == 4

    entries = await everything(stores)
    assert summary(entries) == [
        ("create", key.sop_uid, ChangeState.REPLACED),
        ("create", key.sop_uid, ChangeState.REPLACED),
        ("delete", key.sop_uid, ChangeState.REPLACED),
        ("create", key.sop_uid, ChangeState.CURRENT),
    ]
    assert entries[0].watermark == first
    assert [e.current_watermark for e in entries] == [reservation.watermark] * 4
    assert gap_free(entries)


@pytest.mark.parametrize("sequenced_by", ["writers", "reader"])
async def test_an_instance_with_more_entries_than_a_batch_holds_moves_them_first(
    stores: Stores,
    cosmos: Containers,
    monkeypatch: pytest.MonkeyPatch,
    sequenced_by: str,
) -> None:
    """With batches of 4 operations, the fourth version of an instance has three entries to
    move besides its own and the head: they are moved in a batch of their own first."""
    if sequenced_by == "reader":

        async def crashed(c: Containers, *, study: str | None = None) -> int:
            return 0

        monkeypatch.setattr(cosmos_index, "sequence_pending", crashed)
    monkeypatch.setattr(cosmos_change_feed, "BATCH_OPERATIONS", 4)
    index, key = stores.index, new_key()
    watermarks = [await upsert(index, key, f"v{n}") for n in range(6)]
    entries = await everything(stores)
    assert [e.watermark for e in entries] == watermarks
    assert [e.current_watermark for e in entries] == [watermarks[-1]] * 6
    assert [e.state for e in entries] == [ChangeState.REPLACED] * 5 + [ChangeState.CURRENT]

    await index.delete_instances(key.study_uid, partition=1)
    entries = await everything(stores)
    assert [e.state for e in entries] == [ChangeState.DELETED] * 7
    assert gap_free(entries)
    assert await pending_changes(cosmos) == []


async def test_a_read_sequences_more_than_one_batch_of_waiting_changes(
    stores: Stores, cosmos: Containers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cosmos_change_feed, "PENDING_PER_ROUND", 3)
    study = new_key().study_uid
    keys = [new_key(study) for _ in range(8)]
    for n, key in enumerate(keys):
        await cosmos.index.create_item(
            pending_change_document("create", key, 500 + n, utc_timestamp())
        )
    page = await stores.change_feed.read_changes(ChangeQuery(limit=2, after_sequence=6))
    assert [e.key for e in page] == keys[6:]
    assert await pending_changes(cosmos) == []
