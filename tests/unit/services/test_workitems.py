"""``WorkitemService`` on the fake store: the UPS state machine as a client meets it (PS3.4
Table CC.1.1-2), the Transaction UID lock, cancellation requests, and writes that lose a race.

The rules themselves are tested in ``tests/unit/test_workitem_rules.py``; these tests check
that the service reads, applies them and writes back as the conformance statement says.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydicom.uid import generate_uid

from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY
from dicom_core.domain.workitems import WorkitemRecord
from dicom_core.errors import BadRequest, Conflict, NotFound
from dicom_core.query.workitems import parse_workitem_query
from dicom_core.services.workitems import AlreadyInState, WorkitemService
from tests.fakes import Fakes, FakeWorkitemStore
from tests.support.ups import (
    STATE,
    TRANSACTION_UID,
    element,
    final_state_attributes,
    workitem,
)

P = DEFAULT_PARTITION_KEY  # the partition of every test but the one about partitions
REASON = "00741238"
CANCELLATION_DATETIME = "00404052"
PROGRESS = "00741002"  # Procedure Step Progress Information Sequence
LABEL = "00741204"


def state_change(state: str, lock: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {STATE: element("CS", state)}
    if lock is not None:
        body[TRANSACTION_UID] = element("UI", lock)
    return body


async def created(service: WorkitemService) -> str:
    return await service.create(workitem(), generate_uid(), partition=P)


async def state_of(service: WorkitemService, uid: str) -> str:
    return str((await service.retrieve(uid, partition=P))[STATE]["Value"][0])


@pytest.fixture()
def service(fakes: Fakes) -> WorkitemService:
    return WorkitemService(fakes.workitems)


async def test_create_stores_a_scheduled_workitem_without_a_lock(
    fakes: Fakes, service: WorkitemService
) -> None:
    uid = generate_uid()
    assert await service.create(workitem(), uid, partition=P) == uid
    record = fakes.workitems.records[P, uid]
    assert record.state.value == "SCHEDULED" and record.lock is None
    assert record.dataset["00080018"] == element("UI", uid)
    with pytest.raises(Conflict, match="already exists"):
        await service.create(workitem(), uid, partition=P)


async def test_create_refuses_a_url_uid_that_differs_from_the_dataset(
    service: WorkitemService,
) -> None:
    with pytest.raises(BadRequest, match="differs"):
        await service.create(workitem(generate_uid()), generate_uid(), partition=P)


async def test_claim_sets_the_lock_which_retrieve_never_shows(
    fakes: Fakes, service: WorkitemService
) -> None:
    uid = await created(service)
    await service.change_state(uid, state_change("IN PROGRESS", "1.2.3"), partition=P)
    assert fakes.workitems.records[P, uid].lock == "1.2.3"
    retrieved = await service.retrieve(uid, partition=P)
    assert retrieved[STATE] == element("CS", "IN PROGRESS")
    assert TRANSACTION_UID not in retrieved


async def test_an_owned_workitem_is_updated_and_completed_only_with_its_lock(
    service: WorkitemService,
) -> None:
    uid = await created(service)
    await service.change_state(uid, state_change("IN PROGRESS", "1.2.3"), partition=P)
    label = {LABEL: element("LO", "changed")}
    with pytest.raises(BadRequest, match="must carry its Transaction UID"):
        await service.update(uid, label, None, partition=P)
    with pytest.raises(BadRequest, match="does not match"):
        await service.update(uid, label, "9.9.9", partition=P)
    await service.update(uid, label, "1.2.3", partition=P)
    assert (await service.retrieve(uid, partition=P))[LABEL] == element("LO", "changed")

    with pytest.raises(BadRequest, match="does not match"):
        await service.change_state(uid, state_change("COMPLETED", "9.9.9"), partition=P)
    with pytest.raises(BadRequest, match="final state requirements of COMPLETED"):
        await service.change_state(uid, state_change("COMPLETED", "1.2.3"), partition=P)
    await service.update(uid, final_state_attributes("COMPLETED"), "1.2.3", partition=P)
    await service.change_state(uid, state_change("COMPLETED", "1.2.3"), partition=P)
    assert await state_of(service, uid) == "COMPLETED"
    with pytest.raises(AlreadyInState) as already:
        await service.change_state(uid, state_change("COMPLETED", "1.2.3"), partition=P)
    assert already.value.status == 409
    with pytest.raises(BadRequest, match="can no longer be updated"):
        await service.update(uid, label, "1.2.3", partition=P)


async def test_a_scheduled_workitem_is_updated_without_a_lock_and_cannot_skip_a_claim(
    service: WorkitemService,
) -> None:
    uid = await created(service)
    with pytest.raises(BadRequest, match="without a Transaction UID"):
        await service.update(uid, {LABEL: element("LO", "x")}, "1.2.3", partition=P)
    await service.update(uid, {LABEL: element("LO", "x")}, None, partition=P)
    with pytest.raises(BadRequest, match="claim it first"):
        await service.change_state(uid, state_change("COMPLETED", "1.2.3"), partition=P)
    with pytest.raises(BadRequest, match="TransactionUID"):
        await service.change_state(uid, state_change("IN PROGRESS", None), partition=P)


async def test_the_owner_cancels_by_changing_the_state(service: WorkitemService) -> None:
    uid = await created(service)
    await service.change_state(uid, state_change("IN PROGRESS", "1.2.3"), partition=P)
    with pytest.raises(BadRequest, match="ProcedureStepDiscontinuationReasonCodeSequence"):
        await service.change_state(uid, state_change("CANCELED", "1.2.3"), partition=P)
    assert await state_of(service, uid) == "IN PROGRESS"
    await service.update(uid, final_state_attributes("CANCELED"), "1.2.3", partition=P)
    await service.change_state(uid, state_change("CANCELED", "1.2.3"), partition=P)
    dataset = await service.retrieve(uid, partition=P)
    assert dataset[STATE] == element("CS", "CANCELED")
    assert CANCELLATION_DATETIME in dataset
    assert CANCELLATION_DATETIME in dataset[PROGRESS]["Value"][0]


async def test_request_cancellation_cancels_a_scheduled_workitem_with_its_reason(
    service: WorkitemService,
) -> None:
    uid = await created(service)
    await service.request_cancellation(uid, {REASON: element("LT", "patient left")}, partition=P)
    dataset = await service.retrieve(uid, partition=P)
    assert dataset[STATE] == element("CS", "CANCELED")
    assert dataset[REASON] == element("LT", "patient left")
    assert CANCELLATION_DATETIME in dataset
    progress = dataset[PROGRESS]["Value"][0]
    assert progress[REASON] == element("LT", "patient left")
    assert CANCELLATION_DATETIME in progress
    with pytest.raises(AlreadyInState):
        await service.request_cancellation(uid, {}, partition=P)


async def test_request_cancellation_of_an_owned_workitem_is_a_conflict(
    service: WorkitemService,
) -> None:
    uid = await created(service)
    await service.change_state(uid, state_change("IN PROGRESS", "1.2.3"), partition=P)
    with pytest.raises(Conflict) as refused:
        await service.request_cancellation(uid, {}, partition=P)
    assert not isinstance(refused.value, AlreadyInState)
    assert await state_of(service, uid) == "IN PROGRESS"


async def test_every_transaction_on_an_unknown_workitem_is_404(service: WorkitemService) -> None:
    uid = generate_uid()
    with pytest.raises(NotFound):
        await service.retrieve(uid, partition=P)
    with pytest.raises(NotFound):
        await service.update(uid, {}, None, partition=P)
    with pytest.raises(NotFound):
        await service.change_state(uid, state_change("IN PROGRESS", "1.2.3"), partition=P)
    with pytest.raises(NotFound):
        await service.request_cancellation(uid, {}, partition=P)


class RivalClaimsFirst(FakeWorkitemStore):
    """Another client claims the workitem between this request's read and its write."""

    def __init__(self, rival_lock: str) -> None:
        super().__init__()
        self.rival_lock = rival_lock
        self.writes = 0

    async def replace_workitem(
        self, uid: str, dataset: dict[str, Any], *, partition: int, version: str
    ) -> None:
        self.writes += 1
        if self.writes == 1:
            current = self.records[partition, uid]
            claimed = current.dataset | state_change("IN PROGRESS", self.rival_lock)
            await super().replace_workitem(
                uid, claimed, partition=partition, version=current.version
            )
        await super().replace_workitem(uid, dataset, partition=partition, version=version)


async def test_of_two_racing_claims_the_loser_is_told_the_workitem_is_taken() -> None:
    store = RivalClaimsFirst(rival_lock="7.7.7")
    service = WorkitemService(store)
    uid = await created(service)
    with pytest.raises(BadRequest, match="does not match"):
        await service.change_state(uid, state_change("IN PROGRESS", "1.2.3"), partition=P)
    assert store.records[P, uid].lock == "7.7.7"  # the rival's claim stands
    # The lost write was not retried blindly: re-read, re-judged against the rival's claim,
    # and refused without a second write.
    assert store.writes == 1


class LosesRaces(FakeWorkitemStore):
    """The first ``losses`` writes (all of them by default) each lose a race to a rival."""

    def __init__(self, losses: int | None = None) -> None:
        super().__init__()
        self.losses = losses
        self.writes = 0

    async def replace_workitem(
        self, uid: str, dataset: dict[str, Any], *, partition: int, version: str
    ) -> None:
        self.writes += 1
        if self.losses is None or self.writes <= self.losses:
            record = self.records[partition, uid]
            changed = WorkitemRecord(uid, record.dataset, version + "'", record.sequence)
            self.records[partition, uid] = changed
        await super().replace_workitem(uid, dataset, partition=partition, version=version)


async def test_a_write_that_keeps_losing_races_gives_up_with_a_conflict() -> None:
    service = WorkitemService(LosesRaces(), write_retry_seconds=0.2)
    uid = await created(service)
    with pytest.raises(Conflict, match="being changed by other requests"):
        await service.update(uid, {LABEL: element("LO", "x")}, None, partition=P)


async def test_a_write_behind_many_others_goes_through() -> None:
    """A probe's 8 to 16 clients updating one workitem at once: each round of the race has
    one winner, so the last must be let through after as many losses, not refused after 5."""
    store = LosesRaces(losses=12)
    service = WorkitemService(store)
    uid = await created(service)
    await service.update(uid, {LABEL: element("LO", "x")}, None, partition=P)
    assert store.writes == 13
    assert store.records[P, uid].dataset[LABEL] == element("LO", "x")


async def test_search_returns_newest_first_without_locks_cut_to_the_returned_tags(
    service: WorkitemService,
) -> None:
    patient = generate_uid()[-16:]
    first = await service.create(workitem(patient_id=patient), generate_uid(), partition=P)
    second = await service.create(workitem(patient_id=patient), generate_uid(), partition=P)
    await service.change_state(second, state_change("IN PROGRESS", "1.2.3"), partition=P)

    found = await service.search(parse_workitem_query([("PatientID", patient)], partition=P))

    assert [r["00080018"]["Value"][0] for r in found] == [second, first]
    assert all(TRANSACTION_UID not in r for r in found)
    assert all("0040A370" in r and "00380010" in r and "00400400" not in r for r in found)
    everything = await service.search(
        parse_workitem_query([("PatientID", patient), ("includefield", "all")], partition=P)
    )
    assert "00400400" in everything[0] and TRANSACTION_UID not in everything[0]


async def test_one_uid_names_an_independent_workitem_in_each_partition(
    service: WorkitemService,
) -> None:
    """Azure keys workitems by (partition, UID): the same UID may be created in two
    partitions, and nothing done to one reaches the other."""
    uid, patient, other = generate_uid(), generate_uid()[-16:], 7
    await service.create(workitem(patient_id=patient), uid, partition=P)
    await service.create(workitem(patient_id=patient), uid, partition=other)
    with pytest.raises(Conflict, match="already exists"):
        await service.create(workitem(), uid, partition=other)
    with pytest.raises(NotFound):
        await service.retrieve(uid, partition=9)

    await service.change_state(uid, state_change("IN PROGRESS", "1.2.3"), partition=other)
    await service.request_cancellation(uid, {REASON: element("LT", "gone")}, partition=P)
    assert await state_of(service, uid) == "CANCELED"
    assert (await service.retrieve(uid, partition=other))[STATE] == element("CS", "IN PROGRESS")
    await service.update(uid, {LABEL: element("LO", "x")}, "1.2.3", partition=other)
    assert (await service.retrieve(uid, partition=P))[LABEL] == element("LO", "label")

    for partition, state in ((P, "CANCELED"), (other, "IN PROGRESS")):
        query = parse_workitem_query([("PatientID", patient)], partition=partition)
        found = await service.search(query)
        assert [r[STATE] for r in found] == [element("CS", state)]
    nowhere = parse_workitem_query([("PatientID", patient)], partition=9)
    assert await service.search(nowhere) == []


async def test_a_workitem_claimed_with_a_lock_older_versions_took_can_still_be_finished(
    fakes: Fakes, service: WorkitemService
) -> None:
    """Review find: versions before the UID rule kept any Transaction UID as the lock. With
    the rule on every transaction, such a workitem could never be updated, completed or
    canceled; the rule applies where a lock is set, at the claim."""
    uid = await created(service)
    with pytest.raises(BadRequest, match="Transaction UID is not valid"):
        await service.change_state(uid, state_change("IN PROGRESS", "not a uid"), partition=P)
    # As an older version claimed it:
    record = fakes.workitems.records[P, uid]
    claimed = {**record.dataset, STATE: element("CS", "IN PROGRESS")}
    claimed[TRANSACTION_UID] = element("UI", "not a uid")
    await fakes.workitems.replace_workitem(uid, claimed, partition=P, version=record.version)

    await service.update(uid, final_state_attributes("CANCELED"), "not a uid", partition=P)
    await service.change_state(uid, state_change("CANCELED", "not a uid"), partition=P)
    assert await state_of(service, uid) == "CANCELED"
