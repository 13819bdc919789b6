"""``StoreService`` on the fakes: what each part becomes (stored, warned, failed with which
code) and what the index and the blob store hold afterwards.

The service takes the two-step store here (the fakes have no ``InstanceWriter``), the path
the azure backend takes.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset

from dicom_core.domain.instance import (
    INSTANCE_BEING_CREATED,
    INSTANCE_EXISTS,
    STUDY_MISMATCH,
    VALIDATION_FAILURE,
    WARNING_SOP_CLASS_MISMATCH,
    WARNING_VALIDATION,
)
from dicom_core.domain.model import InstanceKey, Reservation, StoredInstance
from dicom_core.services import store as store_module
from dicom_core.services.blob_cleanup import CLEANUP_QUEUE, UNKNOWN_COMMIT_DELAY, BlobJanitor
from dicom_core.services.external_metadata import ExternalMetadataService
from dicom_core.services.store import StoreResult, StoreService
from dicom_core.storage.ports import (
    BlobRelease,
    InstanceBeingCreated,
    InstanceExists,
    StorageUnavailable,
)
from tests.fakes import FakeIndexStore, Fakes
from tests.support.factories import make_dataset, to_bytes
from tests.support.index_rows import stored_instance

BASE = "http://dicom.test/v2"


def key_of(dataset: Dataset) -> InstanceKey:
    return InstanceKey(
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID, partition=1
    )


class Store:
    """The service over ``fakes``, called the way the web layer calls it."""

    def __init__(self, fakes: Fakes, tmp_path: Path, service: StoreService | None = None) -> None:
        janitor = BlobJanitor(fakes.blobs, fakes.queue)
        self.service = service or StoreService(
            fakes.index,
            fakes.blobs,
            janitor,
            external_metadata=ExternalMetadataService(fakes.external_metadata),
        )
        self.indexed: list[InstanceKey] = []
        self._spool = tmp_path / "parts"
        self._spool.mkdir(exist_ok=True)
        self._parts = 0

    async def __call__(
        self,
        *parts: Dataset | bytes,
        study_uid: str | None = None,
        upsert: bool = False,
        api_version: int = 2,
    ) -> StoreResult:
        paths = []
        for part in parts:
            self._parts += 1
            path = self._spool / f"{self._parts}.part"
            path.write_bytes(part if isinstance(part, bytes) else to_bytes(part))
            paths.append(path)

        async def receive_parts() -> list[Path]:
            return paths

        result = await self.service.store_instances(
            receive_parts,
            study_uid=study_uid,
            upsert=upsert,
            api_version=api_version,
            base_url=BASE,
            partition=1,
        )
        assert list(self._spool.iterdir()) == []  # every part consumed or removed
        return result


@pytest.fixture()
def store(fakes: Fakes, tmp_path: Path) -> Store:
    return Store(fakes, tmp_path)


async def test_store_instances_of_new_instances_commits_each_with_its_file(
    fakes: Fakes, store: Store
) -> None:
    first, second = make_dataset(), make_dataset()
    result = await store(first, second)
    assert result.status == 200 and result.failed == []
    assert [entry.key for entry in result.stored] == [key_of(first), key_of(second)]
    assert result.stored[0].retrieve_url == (
        f"{BASE}/studies/{first.StudyInstanceUID}/series/{first.SeriesInstanceUID}"
        f"/instances/{first.SOPInstanceUID}"
    )
    records = [await fakes.index.get_instance(key_of(ds)) for ds in (first, second)]
    assert sorted(fakes.blobs.objects) == sorted(r.blob_key for r in records if r is not None)
    assert fakes.index.claims == {}


async def test_store_instances_post_of_a_stored_instance_fails_45070_and_keeps_it(
    fakes: Fakes, store: Store
) -> None:
    dataset = make_dataset()
    await store(dataset)
    before = dict(fakes.blobs.objects)

    result = await store(make_dataset(**uids(dataset), PatientID="OTHER"))

    assert result.status == 409 and result.stored == []
    [failed] = result.failed
    assert (failed.failure_reason, failed.sop_uid) == (INSTANCE_EXISTS, dataset.SOPInstanceUID)
    assert fakes.blobs.objects == before
    assert fakes.index.claims == {}


async def test_store_instances_put_replaces_the_instance_and_deletes_the_old_file(
    fakes: Fakes, store: Store
) -> None:
    dataset = make_dataset()
    await store(dataset)
    old = await fakes.index.get_instance(key_of(dataset))
    assert old is not None

    result = await store(make_dataset(**uids(dataset), PatientID="NEW"), upsert=True)

    assert result.status == 200
    new = await fakes.index.get_instance(key_of(dataset))
    assert new is not None and new.watermark > old.watermark
    assert list(fakes.blobs.objects) == [new.blob_key]
    [metadata] = await fakes.index.get_metadata(dataset.StudyInstanceUID, partition=1)
    assert b'"NEW"' in metadata


async def test_store_instances_of_an_instance_being_stored_fails_45071(
    fakes: Fakes, store: Store
) -> None:
    dataset = make_dataset()
    await fakes.index.begin_instance(key_of(dataset), upsert=False)  # another request
    result = await store(dataset)
    assert [f.failure_reason for f in result.failed] == [INSTANCE_BEING_CREATED]
    assert fakes.blobs.objects == {}


class RivalCommitsFirst(FakeIndexStore):
    """Between this request's reserve and commit, another request stores the same instance."""

    async def commit_instance(
        self,
        reservation: Reservation,
        instance: StoredInstance,
        *,
        expires_at: datetime | None = None,
        release: BlobRelease | None = None,
    ) -> list[str]:
        if reservation.key not in self.stored:
            mine = self.claims.pop(reservation.key)
            rival = await self.begin_instance(reservation.key, upsert=False)
            await super().commit_instance(rival, instance)
            self.claims[reservation.key] = mine
        return await super().commit_instance(
            reservation, instance, expires_at=expires_at, release=release
        )


async def test_store_instances_that_lose_a_commit_race_fail_45071_and_leave_no_file(
    tmp_path: Path,
) -> None:
    fakes = Fakes(index=RivalCommitsFirst())
    ds = make_dataset()
    result = await Store(fakes, tmp_path)(ds)
    assert [f.failure_reason for f in result.failed] == [INSTANCE_BEING_CREATED]
    assert fakes.index.claims == {}
    # A refusal does not prove that no attempt of the commit landed: the file is checked
    # against the index by the cleanup queue, which finds the rival's file named, not ours.
    rival = await fakes.index.get_instance(key_of(ds))
    assert rival is not None
    [(queue, body, _)] = fakes.queue.sent
    assert queue == CLEANUP_QUEUE and body["blob"] != rival.blob_key
    assert list(fakes.blobs.objects) == [body["blob"]]  # kept until checked
    await janitor_of(fakes).handle_message(body)
    assert fakes.blobs.objects == {}  # this request's file, never named, is gone


async def test_store_instances_of_another_study_than_the_url_fail_43265(store: Store) -> None:
    result = await store(make_dataset(), study_uid="1.2.3")
    assert [f.failure_reason for f in result.failed] == [STUDY_MISMATCH]
    assert result.study_url == f"{BASE}/studies/1.2.3"


async def test_store_instances_of_a_part_that_is_not_dicom_fail_43264(
    fakes: Fakes, store: Store
) -> None:
    result = await store(b"not a DICOM file", make_dataset())
    assert result.status == 202
    assert [f.failure_reason for f in result.failed] == [VALIDATION_FAILURE]
    assert len(result.stored) == 1 and len(fakes.blobs.objects) == 1


async def test_store_instances_with_an_invalid_searchable_value_warn_on_v2(store: Store) -> None:
    result = await store(make_dataset(PatientBirthDate="notadate"))
    [stored] = result.stored
    assert (result.status, stored.warning_reason) == (202, WARNING_VALIDATION)
    assert "PatientBirthDate" in stored.comments[0]


async def test_store_instances_with_an_invalid_searchable_value_fail_on_v1(
    fakes: Fakes, store: Store
) -> None:
    result = await store(make_dataset(PatientBirthDate="notadate"), api_version=1)
    assert (result.status, [f.failure_reason for f in result.failed]) == (409, [VALIDATION_FAILURE])
    assert fakes.index.stored == {}


async def test_store_instances_with_an_invalid_other_value_warn_45063_on_v1(store: Store) -> None:
    result = await store(make_dataset(SeriesDescription="x" * 100), api_version=1)
    [stored] = result.stored
    assert (result.status, stored.warning_reason) == (202, WARNING_SOP_CLASS_MISMATCH)


async def test_store_instances_queue_the_delete_of_a_replaced_file_that_fails(
    fakes: Fakes, store: Store
) -> None:
    dataset = make_dataset()
    await store(dataset)
    old = await fakes.index.get_instance(key_of(dataset))
    assert old is not None
    fakes.blobs.fail_deletes = True
    result = await store(dataset, upsert=True)
    assert result.status == 200
    assert fakes.queue.bodies(CLEANUP_QUEUE) == [{"schema": 1, "blob": old.blob_key}]


async def test_store_instances_index_each_committed_instance_for_query_tags(
    fakes: Fakes, tmp_path: Path
) -> None:
    janitor = BlobJanitor(fakes.blobs, fakes.queue)
    service = StoreService(
        fakes.index,
        fakes.blobs,
        janitor,
        external_metadata=ExternalMetadataService(fakes.external_metadata),
        after_commit=fakes.query_tags.index_instance,
    )
    dataset = make_dataset()
    await Store(fakes, tmp_path, service)(dataset)
    record = await fakes.index.get_instance(key_of(dataset))
    assert record is not None
    [metadata] = await fakes.index.get_metadata(dataset.StudyInstanceUID, partition=1)
    assert fakes.query_tags.indexed == [(key_of(dataset), record.watermark, metadata)]


def uids(dataset: Dataset) -> dict[str, str]:
    """The identity of ``dataset``, to make another version of the same instance."""
    return {
        "study_uid": dataset.StudyInstanceUID,
        "series_uid": dataset.SeriesInstanceUID,
        "sop_uid": dataset.SOPInstanceUID,
    }


# -- reservation leases: a slow upload is never taken for an interrupted store --------------


class SlowBlobs:
    """Makes the fake blob store's uploads take ``seconds``."""

    def __init__(self, fakes: Fakes, seconds: float) -> None:
        real = fakes.blobs.put_file

        async def put_file(key: str, source: Path, *, overwrite: bool = False) -> None:
            await asyncio.sleep(seconds)
            await real(key, source, overwrite=overwrite)

        fakes.blobs.put_file = put_file  # type: ignore[method-assign]


def leased_store(fakes: Fakes, tmp_path: Path, lease: float) -> Store:
    service = StoreService(
        fakes.index,
        fakes.blobs,
        BlobJanitor(fakes.blobs, fakes.queue),
        external_metadata=ExternalMetadataService(fakes.external_metadata),
        lease_seconds=lease,
    )
    return Store(fakes, tmp_path, service)


async def test_an_upload_longer_than_the_lease_renews_it_and_keeps_its_instance(
    tmp_path: Path,
) -> None:
    fakes = Fakes(index=FakeIndexStore(stale_create_seconds=0.3))
    SlowBlobs(fakes, 1.0)
    ds = make_dataset()
    (tmp_path / "slow").mkdir()
    (tmp_path / "competing").mkdir()
    slow = asyncio.create_task(leased_store(fakes, tmp_path / "slow", 0.3)(ds))
    await asyncio.sleep(0.6)  # twice the lease into the upload: a competitor is refused
    competing = await leased_store(fakes, tmp_path / "competing", 0.3)(ds)
    assert [f.failure_reason for f in competing.failed] == [INSTANCE_BEING_CREATED]
    result = await slow
    assert result.failed == [] and len(result.stored) == 1
    assert fakes.index.renewals >= 2
    assert key_of(ds) in fakes.index.stored


class FlakyRenewals(FakeIndexStore):
    """An index whose first ``failures`` renewals fail as an outage would."""

    def __init__(self, failures: int, stale_create_seconds: float) -> None:
        super().__init__(stale_create_seconds=stale_create_seconds)
        self.failures = failures

    async def renew_instance(self, reservation: Reservation) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StorageUnavailable("the index did not answer")
        await super().renew_instance(reservation)


async def test_a_failed_renewal_is_tried_again_before_the_lease_lapses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three failures in a row: retried a turn apart, the lease (0.6 s, a turn of 0.2 s) would
    lapse at 0.6 s and the competitor at 0.7 s would take the instance over; retried after
    RENEW_RETRY_SECONDS, the third retry renews it by about 0.26 s."""
    monkeypatch.setattr(store_module, "RENEW_RETRY_SECONDS", 0.02)
    index = FlakyRenewals(3, stale_create_seconds=0.6)
    fakes = Fakes(index=index)
    SlowBlobs(fakes, 1.0)
    ds = make_dataset()
    (tmp_path / "slow").mkdir()
    (tmp_path / "competing").mkdir()
    slow = asyncio.create_task(leased_store(fakes, tmp_path / "slow", 0.6)(ds))
    await asyncio.sleep(0.7)
    competing = await leased_store(fakes, tmp_path / "competing", 0.6)(ds)
    assert [f.failure_reason for f in competing.failed] == [INSTANCE_BEING_CREATED]
    result = await slow
    assert result.failed == [] and len(result.stored) == 1
    assert index.failures == 0 and index.renewals >= 2


async def test_a_quick_store_renews_nothing(fakes: Fakes, tmp_path: Path) -> None:
    result = await leased_store(fakes, tmp_path, 120)(make_dataset())
    assert len(result.stored) == 1 and fakes.index.renewals == 0


# -- a commit of unknown outcome: its file is checked later, never deleted at once ----------


class CommitOutcomeUnknown(FakeIndexStore):
    """A commit that raises StorageUnavailable: with ``lands``, after the index applied it
    (its answer was lost); without, before. ``abort_fails``: the store's release of its
    reservation fails too (the index is still down)."""

    def __init__(self, *, lands: bool, abort_fails: bool = False) -> None:
        super().__init__()
        self.lands = lands
        self.abort_fails = abort_fails

    async def commit_instance(
        self,
        reservation: Reservation,
        instance: StoredInstance,
        *,
        expires_at: datetime | None = None,
        release: BlobRelease | None = None,
    ) -> list[str]:
        if self.lands:
            await super().commit_instance(reservation, instance, expires_at=expires_at)
        raise StorageUnavailable("Cosmos DB is not reachable right now (ServiceResponseTimeout)")

    async def abort_instance(self, reservation: Reservation) -> None:
        if self.abort_fails:
            self.abort_fails = False
            raise StorageUnavailable("Cosmos DB is not reachable right now")
        await super().abort_instance(reservation)


async def fail_to_store(fakes: Fakes, tmp_path: Path, ds: Dataset) -> dict[str, Any]:
    """Store ``ds``, which fails with 503; the cleanup message it leaves for its file."""
    with pytest.raises(StorageUnavailable):
        await Store(fakes, tmp_path)(ds)
    [(queue, body, delay)] = fakes.queue.sent
    assert (queue, delay) == (CLEANUP_QUEUE, UNKNOWN_COMMIT_DELAY) and "unless" in body
    assert body["blob"] in fakes.blobs.objects  # not deleted at once
    return body


def janitor_of(fakes: Fakes) -> BlobJanitor:
    return BlobJanitor(fakes.blobs, fakes.queue, index=fakes.index)


async def test_a_commit_whose_answer_was_lost_keeps_its_file(tmp_path: Path) -> None:
    """A probe froze Cosmos DB as a commit was sent: the store gave up and deleted the file,
    then the batch landed, and the instance named a file that was gone."""
    fakes = Fakes(index=CommitOutcomeUnknown(lands=True))
    ds = make_dataset()
    body = await fail_to_store(fakes, tmp_path, ds)
    await janitor_of(fakes).handle_message(body)
    record = await fakes.index.get_instance(key_of(ds))
    assert record is not None and record.blob_key == body["blob"]
    assert body["blob"] in fakes.blobs.objects


async def test_a_commit_that_never_landed_has_its_file_deleted_by_the_check(
    tmp_path: Path,
) -> None:
    fakes = Fakes(index=CommitOutcomeUnknown(lands=False))
    body = await fail_to_store(fakes, tmp_path, make_dataset())
    await janitor_of(fakes).handle_message(body)
    assert fakes.blobs.objects == {}


async def test_the_check_releases_a_reservation_left_so_its_commit_can_no_longer_land(
    tmp_path: Path,
) -> None:
    index = CommitOutcomeUnknown(lands=False, abort_fails=True)
    fakes = Fakes(index=index)
    ds = make_dataset()
    body = await fail_to_store(fakes, tmp_path, ds)
    [claim] = index.claims.values()  # the store could not release it
    await janitor_of(fakes).handle_message(body)
    assert fakes.blobs.objects == {} and index.claims == {}
    with pytest.raises(InstanceBeingCreated):  # a commit arriving late is refused
        await FakeIndexStore.commit_instance(index, claim.reservation, stored_instance(key_of(ds)))


class LandsThenRefused(FakeIndexStore):
    """The commit's first attempt lands with its answer lost; a bulk update then makes that
    version the instance's original; the retry is refused (the instance exists)."""

    async def commit_instance(
        self,
        reservation: Reservation,
        instance: StoredInstance,
        *,
        expires_at: datetime | None = None,
        release: BlobRelease | None = None,
    ) -> list[str]:
        await super().commit_instance(reservation, instance, expires_at=expires_at)
        key = reservation.key
        landed = self.stored[key]
        update = Reservation(key=key, watermark=10_000, blob_key="updated.dcm", upsert=True)
        self.originals[key] = landed
        self.stored[key] = (self._record(update, instance), instance)
        raise InstanceExists(key)


async def test_a_refused_retry_of_a_commit_that_landed_keeps_the_file_its_original_names(
    tmp_path: Path,
) -> None:
    """Review found a 45071 that deleted the file a bulk update had made the original."""
    fakes = Fakes(index=LandsThenRefused())
    ds = make_dataset()
    result = await Store(fakes, tmp_path)(ds)
    assert [f.failure_reason for f in result.failed] == [INSTANCE_BEING_CREATED]
    [(_, body, _)] = fakes.queue.sent
    await janitor_of(fakes).handle_message(body)
    original = await fakes.index.get_instance(key_of(ds), original=True)
    assert original is not None and original.blob_key == body["blob"]
    assert body["blob"] in fakes.blobs.objects


async def test_the_check_of_an_unnamed_file_deletes_it_with_the_delete_delay(
    tmp_path: Path,
) -> None:
    """A commit may have landed and been replaced by a PUT within the check's wait, so a
    reader may be streaming the file: an unnamed file goes as any deleted one does."""
    fakes = Fakes(index=CommitOutcomeUnknown(lands=False))
    body = await fail_to_store(fakes, tmp_path, make_dataset())
    delayed = BlobJanitor(fakes.blobs, fakes.queue, delay_seconds=30, index=fakes.index)
    await delayed.handle_message(body)
    assert body["blob"] in fakes.blobs.objects  # not at once
    (queue, later, delay) = fakes.queue.sent[-1]
    assert (queue, later, delay) == (
        CLEANUP_QUEUE,
        {"schema": body["schema"], "blob": body["blob"]},
        30,
    )
