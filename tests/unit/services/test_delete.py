"""``DeleteService`` on the fakes: a study, series or instance delete takes exactly what its
UIDs name out of the index, then its files, and never leaves a file without an index entry."""

from __future__ import annotations

from datetime import datetime

import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.model import InstanceKey
from dicom_core.errors import NotFound
from dicom_core.services.blob_cleanup import CLEANUP_QUEUE, BlobJanitor
from dicom_core.services.delete import DeleteService
from dicom_core.storage.ports import BlobRelease, StorageUnavailable
from tests.fakes import FakeIndexStore, Fakes
from tests.support.index_rows import add_instance

STUDY, OTHER_STUDY = generate_uid(), generate_uid()
CT, MR = generate_uid(), generate_uid()


async def stored(fakes: Fakes, study: str, series: str) -> InstanceKey:
    """An instance in the index, with its file in the blob store."""
    key = InstanceKey(study, series, generate_uid(), partition=1)
    await add_instance(fakes.index, key.study_uid, key.series_uid, key.sop_uid)
    record = await fakes.index.get_instance(key)
    assert record is not None
    fakes.blobs.objects[record.blob_key] = b"DICM"
    return key


async def layout(fakes: Fakes) -> dict[str, list[InstanceKey]]:
    """Two series of two instances in one study, and another study of one instance."""
    return {
        "ct": [await stored(fakes, STUDY, CT), await stored(fakes, STUDY, CT)],
        "mr": [await stored(fakes, STUDY, MR), await stored(fakes, STUDY, MR)],
        "other": [await stored(fakes, OTHER_STUDY, generate_uid())],
    }


def service(fakes: Fakes, *, delay: float = 0) -> DeleteService:
    return DeleteService(fakes.index, BlobJanitor(fakes.blobs, fakes.queue, delay_seconds=delay))


def remaining(fakes: Fakes) -> set[InstanceKey]:
    return set(fakes.index.stored)


async def test_delete_of_a_study_takes_every_series_and_file_of_it(fakes: Fakes) -> None:
    keys = await layout(fakes)
    assert await service(fakes).delete(STUDY, partition=1) == 4
    assert remaining(fakes) == set(keys["other"])
    assert len(fakes.blobs.objects) == 1


async def test_delete_of_a_series_keeps_the_study_s_other_series(fakes: Fakes) -> None:
    keys = await layout(fakes)
    assert await service(fakes).delete(STUDY, CT, partition=1) == 2
    assert remaining(fakes) == {*keys["mr"], *keys["other"]}
    assert len(fakes.blobs.objects) == 3


async def test_delete_of_an_instance_takes_that_instance_only(fakes: Fakes) -> None:
    keys = await layout(fakes)
    gone = keys["ct"][0]
    assert (
        await service(fakes).delete(gone.study_uid, gone.series_uid, gone.sop_uid, partition=1) == 1
    )
    assert remaining(fakes) == {keys["ct"][1], *keys["mr"], *keys["other"]}
    assert len(fakes.blobs.objects) == 4


@pytest.mark.parametrize(
    ("uids", "message"),
    [
        ((generate_uid(),), "Study"),
        ((STUDY, generate_uid()), "Series"),
        ((STUDY, CT, generate_uid()), "Instance"),
    ],
)
async def test_delete_of_what_is_not_stored_is_404_naming_it(
    fakes: Fakes, uids: tuple[str, ...], message: str
) -> None:
    await layout(fakes)
    with pytest.raises(NotFound, match=f"^{message} {uids[-1]} was not found"):
        await service(fakes).delete(*uids, partition=1)
    assert len(fakes.index.stored) == 5


async def test_delete_with_a_delay_queues_each_file_for_later(fakes: Fakes) -> None:
    keys = await layout(fakes)
    assert await service(fakes, delay=30).delete(STUDY, MR, partition=1) == 2
    assert remaining(fakes) == {*keys["ct"], *keys["other"]}
    assert len(fakes.blobs.objects) == 5  # readers that opened them keep reading
    queued = [(queue, body["blob"], delay) for queue, body, delay in fakes.queue.sent]
    assert [(queue, delay) for queue, _, delay in queued] == [(CLEANUP_QUEUE, 30)] * 2
    assert {blob for _, blob, _ in queued} <= set(fakes.blobs.objects)


async def test_delete_whose_file_delete_fails_queues_the_file(fakes: Fakes) -> None:
    keys = await layout(fakes)
    fakes.blobs.fail_deletes = True
    gone = keys["other"][0]
    assert await service(fakes).delete(gone.study_uid, partition=1) == 1
    [(queue, body, delay)] = fakes.queue.sent
    assert (queue, delay) == (CLEANUP_QUEUE, 0)
    assert body["blob"] in fakes.blobs.objects  # still there, and not forgotten


class FailsAfterOneStep(FakeIndexStore):
    """An index that deletes in steps (as Cosmos DB does) and fails after the first."""

    async def delete_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        release: BlobRelease | None = None,
        expired_by: datetime | None = None,
    ) -> list[str]:
        first = next(key for key in self.stored if key.study_uid == study_uid)
        await super().delete_instances(*uids_of(first), partition=partition, release=release)
        raise StorageUnavailable("the index stopped answering")


def uids_of(key: InstanceKey) -> tuple[str, str, str]:
    return key.study_uid, key.series_uid, key.sop_uid


async def test_delete_that_fails_midway_still_deletes_the_files_of_the_steps_done() -> None:
    fakes = Fakes(index=FailsAfterOneStep())
    await layout(fakes)
    with pytest.raises(StorageUnavailable):
        await service(fakes).delete(STUDY, partition=1)
    # One instance left the index, and its file went with it; the rest are intact.
    assert len(fakes.index.stored) == 4 and len(fakes.blobs.objects) == 4
    for record, _ in fakes.index.stored.values():
        assert record.blob_key in fakes.blobs.objects


async def test_a_delete_leaves_no_debt_once_its_files_are_gone(fakes: Fakes) -> None:
    await layout(fakes)
    await service(fakes).delete(STUDY, partition=1)
    assert fakes.index.debts == {}


async def test_a_delete_whose_files_cannot_be_released_still_succeeds_and_keeps_the_debt(
    fakes: Fakes,
) -> None:
    keys = await layout(fakes)
    fakes.blobs.fail_deletes = True
    fakes.queue.fail_sends = True  # nowhere to hand the files to
    assert await service(fakes).delete(STUDY, MR, partition=1) == 2
    assert remaining(fakes) == {*keys["ct"], *keys["other"]}
    [debt] = fakes.index.debts.values()
    assert len(debt.blob_keys) == 2 and set(debt.blob_keys) <= set(fakes.blobs.objects)


async def test_a_partial_delete_refreshes_the_study_s_tag_values_and_survives_a_failure(
    fakes: Fakes,
) -> None:
    """``after_delete`` runs once a series or instance delete committed (the study keeps
    instances whose values may now be the latest); not after a study delete, nor a 404. Its
    failure leaves the delete done."""
    keys = await layout(fakes)
    calls: list[tuple[str, int]] = []

    async def refresh(study: str, partition: int) -> None:
        calls.append((study, partition))
        raise StorageUnavailable("the index is away")

    janitor = BlobJanitor(fakes.blobs, fakes.queue, delay_seconds=0)
    deletes = DeleteService(fakes.index, janitor, after_delete=refresh)
    assert await deletes.delete(STUDY, CT, keys["ct"][0].sop_uid, partition=1) == 1
    assert await deletes.delete(STUDY, MR, partition=1) == 2
    assert calls == [(STUDY, 1), (STUDY, 1)]
    with pytest.raises(NotFound):
        await deletes.delete(STUDY, MR, partition=1)
    assert await deletes.delete(OTHER_STUDY, partition=1) == 1
    assert calls == [(STUDY, 1), (STUDY, 1)]
    assert remaining(fakes) == {keys["ct"][1]}
