"""The ``blob-cleanup`` handler: a delete that keeps failing is tried again later, in longer
and longer rounds, instead of being given up to the poison queue on its last delivery, where
nothing would ever try it again (a probe left files for good that way after a delete on a
directory made read-only for a moment)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.model import InstanceKey
from dicom_core.services.blob_cleanup import (
    CLEANUP_QUEUE,
    DEBT_GRACE,
    MESSAGE_SCHEMA,
    RESEND_FIRST_DELAY,
    RESEND_ROUNDS,
    BlobDebtSweep,
    BlobJanitor,
)
from tests.fakes import Fakes
from tests.support.index_rows import add_instance

KEY = "1.2.3/4.5.6/7.8.9_1.dcm"


class Refusing:
    """Makes the fake blob store refuse deletes until ``allow``."""

    def __init__(self, fakes: Fakes) -> None:
        self.refuse = True
        real = fakes.blobs.delete

        async def delete(key: str) -> bool:
            if self.refuse:
                raise PermissionError(13, "Permission denied")
            return await real(key)

        fakes.blobs.delete = delete  # type: ignore[method-assign]


def message(round_: int | None = None) -> dict[str, object]:
    body: dict[str, object] = {"schema": MESSAGE_SCHEMA, "blob": KEY}
    if round_ is not None:
        body["round"] = round_
    return body


async def test_a_failure_before_the_last_delivery_is_raised_to_be_retried() -> None:
    fakes = Fakes()
    Refusing(fakes)
    fakes.blobs.objects[KEY] = b"DICM"
    with pytest.raises(PermissionError):
        await BlobJanitor(fakes.blobs, fakes.queue).handle_message(message())
    assert await fakes.queue.receive(CLEANUP_QUEUE, visibility_timeout=30) == []


async def test_the_last_delivery_sends_the_delete_again_later_in_doubling_rounds() -> None:
    fakes = Fakes()
    refusing = Refusing(fakes)
    fakes.blobs.objects[KEY] = b"DICM"
    janitor = BlobJanitor(fakes.blobs, fakes.queue)
    sent: list[tuple[dict[str, object], float]] = []
    real_send = fakes.queue.send

    async def send(queue: str, body: dict[str, object], *, delay_seconds: float = 0) -> None:
        sent.append((body, delay_seconds))
        await real_send(queue, body, delay_seconds=delay_seconds)

    fakes.queue.send = send  # type: ignore[method-assign]
    body = message()
    for round_ in range(RESEND_ROUNDS):
        await janitor.handle_message(body, final_attempt=True)  # not raised: sent again
        body, delay = sent[-1]
        assert body["round"] == round_ + 1
        assert delay == RESEND_FIRST_DELAY * 2**round_
    with pytest.raises(PermissionError):  # rounds spent: now it goes to the poison queue
        await janitor.handle_message(body, final_attempt=True)
    # Once deletes work again, a resent message removes the file.
    refusing.refuse = False
    await janitor.handle_message(message(round_=3), final_attempt=True)
    assert KEY not in fakes.blobs.objects


# -- blob debts: what a delete leaves when its process dies before its files go ------------


def sweep_of(fakes: Fakes) -> BlobDebtSweep:
    return BlobDebtSweep(fakes.index, BlobJanitor(fakes.blobs, fakes.queue))


async def a_study_deleted_by_a_process_that_died(fakes: Fakes) -> list[str]:
    """A study's index step committed (with its debt), and nothing deleted its files."""
    study = generate_uid()
    for _ in range(3):
        key = InstanceKey(study, generate_uid(), generate_uid(), partition=1)
        await add_instance(fakes.index, key.study_uid, key.series_uid, key.sop_uid)
        record = await fakes.index.get_instance(key)
        assert record is not None
        fakes.blobs.objects[record.blob_key] = b"DICM"
    freed = await fakes.index.delete_instances(study, partition=1)  # no one to release to
    assert len(freed) == 3 and set(freed) <= set(fakes.blobs.objects)
    return freed


async def test_the_sweep_deletes_the_files_a_dead_delete_left_and_forgets_its_debt(
    fakes: Fakes,
) -> None:
    await a_study_deleted_by_a_process_that_died(fakes)
    later = datetime.now(UTC) + DEBT_GRACE + timedelta(seconds=1)
    assert await sweep_of(fakes).sweep(later) == 1
    assert fakes.blobs.objects == {} and fakes.index.debts == {}


async def test_the_sweep_leaves_a_debt_younger_than_the_grace_to_its_own_step(
    fakes: Fakes,
) -> None:
    freed = await a_study_deleted_by_a_process_that_died(fakes)
    assert await sweep_of(fakes).sweep(datetime.now(UTC)) == 0
    assert set(freed) <= set(fakes.blobs.objects) and len(fakes.index.debts) == 1


async def test_a_debt_the_janitor_cannot_take_stays_for_the_next_sweep(fakes: Fakes) -> None:
    await a_study_deleted_by_a_process_that_died(fakes)
    later = datetime.now(UTC) + DEBT_GRACE + timedelta(seconds=1)
    fakes.blobs.fail_deletes = fakes.queue.fail_sends = True
    assert await sweep_of(fakes).sweep(later) == 0
    assert len(fakes.index.debts) == 1 and len(fakes.blobs.objects) == 3
    fakes.blobs.fail_deletes = fakes.queue.fail_sends = False
    assert await sweep_of(fakes).sweep(later) == 1
    assert fakes.blobs.objects == {} and fakes.index.debts == {}
