"""A study's expiry in the index, on every backend: what a store sets, what the sweep's page
lists, and the conditional delete that keeps a study whose expiry moved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydicom.uid import generate_uid

from dicom_core.domain.change_feed import ChangeAction, ChangeState
from dicom_core.domain.model import InstanceKey, StudyKey
from dicom_core.domain.timestamps import timestamp_of
from dicom_core.storage.ports import ChangeQuery, IndexStore, NewVersion
from tests.contract.test_index_store import instance, new_key
from tests.contract.test_index_versions import fresh_blob_key, marked
from tests.support.stores import Stores

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


async def store(index: IndexStore, key: InstanceKey, expires_at: datetime | None) -> int:
    reservation = await index.begin_instance(key, upsert=False)
    await index.commit_instance(reservation, instance(key), expires_at=expires_at)
    return reservation.watermark


async def expired(index: IndexStore, now: datetime, *studies: str) -> list[str]:
    """The sweep's page at ``now``, among ``studies`` (the index may hold other tests')."""
    found = await index.expired_studies(now, 1000)
    return [s.study_uid for s in found if s.study_uid in studies and s.partition == 1]


async def test_expired_studies_lists_those_due_the_earliest_first_up_to_the_limit(
    stores: Stores,
) -> None:
    index = stores.index
    # Far in the past, so that no other test's study is due before them.
    early = [new_key() for _ in range(3)]
    for minutes, key in enumerate(reversed(early)):
        await store(index, key, datetime(2001, 1, 1, 0, 3 - minutes, tzinfo=UTC))
    later, never = new_key(), new_key()
    await store(index, later, T0 + timedelta(hours=1))
    await store(index, never, None)
    studies = [key.study_uid for key in (*early, later, never)]

    assert await expired(index, T0, *studies) == [key.study_uid for key in early]
    assert await index.expired_studies(datetime(2001, 1, 1, 0, 10, tzinfo=UTC), 2) == [
        StudyKey(early[0].study_uid, partition=1),
        StudyKey(early[1].study_uid, partition=1),
    ]
    assert await expired(index, T0 + timedelta(hours=1), *studies) == [
        *(key.study_uid for key in early),
        later.study_uid,
    ]
    summary = await stores.raw_study_summary(later.study_uid)
    assert summary is not None
    assert summary["expires_at"] == timestamp_of(T0 + timedelta(hours=1))
    never_summary = await stores.raw_study_summary(never.study_uid)
    assert never_summary is not None and never_summary["expires_at"] is None


async def test_the_last_store_to_a_study_decides_its_expiry(stores: Stores) -> None:
    index = stores.index
    study = generate_uid()
    await store(index, new_key(study), T0)
    await store(index, new_key(study), None)  # cleared
    assert await expired(index, T0 + timedelta(days=1), study) == []
    await store(index, new_key(study), T0 + timedelta(hours=2))  # set again, later
    assert await expired(index, T0 + timedelta(hours=1), study) == []
    assert await expired(index, T0 + timedelta(hours=2), study) == [study]
    await store(index, new_key(study), T0 - timedelta(hours=1))  # moved earlier
    assert await expired(index, T0, study) == [study]


async def test_a_bulk_update_keeps_the_expiry(stores: Stores) -> None:
    index = stores.index
    key = new_key()
    watermark = await store(index, key, T0)
    outcome = await index.commit_versions(
        [NewVersion(marked(key, "v2", patient_id="v2"), fresh_blob_key(key), watermark)]
    )
    assert outcome.committed == (key,)
    assert await expired(index, T0, key.study_uid) == [key.study_uid]


async def test_a_conditional_delete_of_an_expired_study_removes_it_as_a_delete_does(
    stores: Stores,
) -> None:
    index = stores.index
    study = generate_uid()
    keys = [new_key(study), new_key(study)]
    for key in keys:
        await store(index, key, T0)
    start = await stores.change_feed.latest_change()

    blob_keys = await index.delete_instances(study, expired_by=T0, partition=1)

    assert len(blob_keys) == 2
    assert await index.list_instances(study, partition=1) == []
    assert await stores.raw_study_summary(study) is None
    changes = await stores.change_feed.read_changes(
        ChangeQuery(after_sequence=start.sequence if start else 0, limit=100)
    )
    deletes = [c for c in changes if c.key.study_uid == study]
    assert sorted(c.key for c in deletes) == sorted(keys)
    assert {(c.action, c.state) for c in deletes} == {(ChangeAction.DELETE, ChangeState.DELETED)}
    # The expiry went with the study: stored again without one, it never expires.
    await store(index, new_key(study), None)
    assert await expired(index, T0 + timedelta(days=1), study) == []


async def test_a_conditional_delete_keeps_a_study_not_yet_expired_or_never_expiring(
    stores: Stores,
) -> None:
    index = stores.index
    later, never = new_key(), new_key()
    await store(index, later, T0 + timedelta(seconds=1))
    await store(index, never, None)
    assert await index.delete_instances(later.study_uid, expired_by=T0, partition=1) == []
    assert await index.delete_instances(never.study_uid, expired_by=T0, partition=1) == []
    assert await index.delete_instances(generate_uid(), expired_by=T0, partition=1) == []
    assert [r.key for r in await index.list_instances(later.study_uid, partition=1)] == [later]
    assert [r.key for r in await index.list_instances(never.study_uid, partition=1)] == [never]


async def test_a_delete_of_part_of_a_study_keeps_the_expiry_of_the_rest(stores: Stores) -> None:
    index = stores.index
    study = generate_uid()
    gone, kept = new_key(study), new_key(study)
    await store(index, gone, T0)
    await store(index, kept, T0)
    await index.delete_instances(study, gone.series_uid, gone.sop_uid, partition=1)
    assert await expired(index, T0, study) == [study]
