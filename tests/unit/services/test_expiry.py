"""Study expiry on the fakes: the ``msdicom-expiry-*`` header rules, what a store does to its
study's expiry, and the sweep that deletes expired studies through the delete service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_core.domain.change_feed import ChangeAction
from dicom_core.domain.model import InstanceKey, StudyKey
from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY
from dicom_core.domain.timestamps import utc_now
from dicom_core.errors import BadRequest
from dicom_core.services.blob_cleanup import BlobJanitor
from dicom_core.services.delete import DeleteService
from dicom_core.services.expiry import (
    ExpiryRequest,
    ExpirySweep,
    expiry_of_request,
    parse_expiry_headers,
)
from dicom_core.services.external_metadata import ExternalMetadataService
from dicom_core.services.store import StoreResult, StoreService
from tests.fakes import FakeIndexStore, Fakes
from tests.support.factories import make_dataset, to_bytes
from tests.support.index_rows import stored_instance

TIME = "msdicom-expiry-time-milliseconds"
OPTION = "msdicom-expiry-option"
LEVEL = "msdicom-expiry-level"
ALL_THREE = [(TIME, "2000"), (OPTION, "RelativeToNow"), (LEVEL, "Study")]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- the header rules ------------------------------------------------------------------------


def in_default(study_uid: str) -> StudyKey:
    return StudyKey(study_uid, partition=DEFAULT_PARTITION_KEY)


def test_parse_expiry_headers_with_all_three_gives_the_milliseconds() -> None:
    assert parse_expiry_headers(ALL_THREE) == ExpiryRequest(2000)
    assert ExpiryRequest(2000).deadline(T0) == T0 + timedelta(seconds=2)


def test_parse_expiry_headers_takes_the_time_alone_and_ignores_case() -> None:
    assert parse_expiry_headers([("MSDICOM-Expiry-Time-Milliseconds", " 5 ")]) == ExpiryRequest(5)
    headers = [(TIME, "7"), (OPTION, "relativetonow"), (LEVEL, "STUDY")]
    assert parse_expiry_headers(headers) == ExpiryRequest(7)


def test_parse_expiry_headers_without_any_means_no_expiry() -> None:
    assert parse_expiry_headers([("msdicom-meta-LO-00191100", "x")]) is None
    assert parse_expiry_headers([("msdicom-expiry-unknown", "x")]) is None


@pytest.mark.parametrize(
    ("headers", "problem"),
    [
        ([(TIME, "0")], f"{TIME} must be an integer greater than 0"),
        ([(TIME, "-5")], "got '-5'"),
        ([(TIME, "1.5")], f"{TIME} must be an integer greater than 0"),
        ([(TIME, "soon")], "got 'soon'"),
        ([(TIME, "")], f"{TIME} must be an integer greater than 0"),
        ([(TIME, "9" * 40)], f"{TIME} is too large"),
        ([(TIME, "1"), (OPTION, "Absolute")], f"{OPTION} must be RelativeToNow"),
        ([(TIME, "1"), (LEVEL, "Series")], f"{LEVEL} must be Study"),
        ([(OPTION, "RelativeToNow"), (LEVEL, "Study")], f"{TIME} is required"),
        ([(LEVEL, "Study")], f"{TIME} is required"),
        ([(TIME, "1"), (TIME, "2")], f"{TIME} is given more than once"),
    ],
)
def test_parse_expiry_headers_refuses_with_a_400_naming_the_header(
    headers: list[tuple[str, str]], problem: str
) -> None:
    with pytest.raises(BadRequest, match=problem):
        parse_expiry_headers(headers)


def test_expiry_of_a_v1_request_is_none_whatever_its_headers() -> None:
    assert expiry_of_request([(TIME, "soon")], api_version=1) is None
    assert expiry_of_request(ALL_THREE, api_version=2) == ExpiryRequest(2000)


# -- what a store does to the expiry ---------------------------------------------------------


class Store:
    """``StoreService`` over the fakes (the two-step store, as on the azure backend)."""

    def __init__(self, fakes: Fakes, tmp_path: Path) -> None:
        self.service = StoreService(
            fakes.index,
            fakes.blobs,
            BlobJanitor(fakes.blobs, fakes.queue),
            external_metadata=ExternalMetadataService(fakes.external_metadata),
        )
        self._folder = tmp_path / "parts"
        self._folder.mkdir()
        self.read = False

    async def __call__(
        self, *datasets: Dataset, headers: list[tuple[str, str]] | None = None, api_version: int = 2
    ) -> StoreResult:
        self.read = False

        async def receive() -> list[Path]:
            self.read = True
            paths = []
            for ds in datasets:
                path = self._folder / f"{ds.SOPInstanceUID}.part"
                path.write_bytes(to_bytes(ds))
                paths.append(path)
            return paths

        return await self.service.store_instances(
            receive,
            study_uid=None,
            upsert=False,
            api_version=api_version,
            base_url="http://dicom.test/v2",
            expiry_headers=headers or [],
            partition=1,
        )


@pytest.fixture()
def store(fakes: Fakes, tmp_path: Path) -> Store:
    return Store(fakes, tmp_path)


async def test_store_with_expiry_headers_sets_the_study_s_expiry(
    fakes: Fakes, store: Store
) -> None:
    ds = make_dataset()
    before = utc_now()
    assert (await store(ds, headers=ALL_THREE)).status == 200
    expiry = fakes.index.expiries[in_default(ds.StudyInstanceUID)]
    assert before + timedelta(seconds=2) <= expiry <= utc_now() + timedelta(seconds=2)


async def test_a_later_store_without_headers_clears_the_expiry_and_with_them_moves_it(
    fakes: Fakes, store: Store
) -> None:
    first = make_dataset()
    study = first.StudyInstanceUID
    await store(first, headers=[(TIME, "1000")])
    await store(make_dataset(study_uid=study))
    assert in_default(study) not in fakes.index.expiries
    await store(make_dataset(study_uid=study), headers=[(TIME, "3600000")])
    assert fakes.index.expiries[in_default(study)] > utc_now() + timedelta(minutes=59)


async def test_a_store_whose_instances_all_fail_leaves_the_expiry_alone(
    fakes: Fakes, store: Store
) -> None:
    ds = make_dataset()
    await store(ds, headers=[(TIME, "1000")])
    expiry = fakes.index.expiries[in_default(ds.StudyInstanceUID)]
    again = await store(ds, headers=[(TIME, "3600000")])  # 45070: already stored
    assert again.status == 409
    assert fakes.index.expiries[in_default(ds.StudyInstanceUID)] == expiry


async def test_a_bad_expiry_header_refuses_the_request_before_its_body_is_read(
    fakes: Fakes, store: Store
) -> None:
    with pytest.raises(BadRequest, match=TIME):
        await store(make_dataset(), headers=[(TIME, "0")])
    assert not store.read
    assert fakes.index.stored == {}


async def test_a_v1_store_neither_sets_nor_checks_an_expiry(fakes: Fakes, store: Store) -> None:
    ds = make_dataset()
    assert (await store(ds, headers=[(TIME, "soon")], api_version=1)).status == 200
    assert fakes.index.expiries == {}


# -- the sweep -------------------------------------------------------------------------------


async def stored(index: FakeIndexStore, study: str, expires_at: datetime | None) -> InstanceKey:
    key = InstanceKey(study, generate_uid(), generate_uid(), partition=1)
    reservation = await index.begin_instance(key, upsert=False)
    await index.commit_instance(reservation, stored_instance(key), expires_at=expires_at)
    return key


def sweep(fakes: Fakes, *, page_size: int = 50) -> ExpirySweep:
    delete = DeleteService(fakes.index, BlobJanitor(fakes.blobs, fakes.queue))
    return ExpirySweep(fakes.index, delete, page_size=page_size)


async def test_sweep_deletes_expired_studies_through_the_delete_path(fakes: Fakes) -> None:
    # given: an expired study of two instances, one expiring later, one that never expires
    expired, later, forever = generate_uid(), generate_uid(), generate_uid()
    gone = [await stored(fakes.index, expired, T0), await stored(fakes.index, expired, T0)]
    await stored(fakes.index, later, T0 + timedelta(hours=1))
    await stored(fakes.index, forever, None)
    # when
    result = await sweep(fakes).sweep(T0 + timedelta(seconds=1))
    # then: only the expired one went, each instance recorded as a delete in the change feed
    assert result.deleted == (expired,)
    assert {key.study_uid for key in fakes.index.stored} == {later, forever}
    deletes = [e for e in fakes.index.feed.entries if e.action is ChangeAction.DELETE]
    assert sorted(e.key for e in deletes) == sorted(gone)
    assert in_default(expired) not in fakes.index.expiries


async def test_sweep_takes_one_page_the_earliest_first(fakes: Fakes) -> None:
    studies = [generate_uid() for _ in range(3)]
    for minutes, study in enumerate(studies):
        await stored(fakes.index, study, T0 + timedelta(minutes=minutes))
    now = T0 + timedelta(hours=1)
    assert (await sweep(fakes, page_size=2).sweep(now)).deleted == tuple(studies[:2])
    assert (await sweep(fakes, page_size=2).sweep(now)).deleted == (studies[2],)
    assert fakes.index.stored == {}


class StoreAfterTheQuery(FakeIndexStore):
    """A store moves the study's expiry after the sweep read its page, before the delete."""

    async def expired_studies(self, now: datetime, limit: int) -> list[StudyKey]:
        page = await super().expired_studies(now, limit)
        for study in page:
            await stored(self, study.study_uid, now + timedelta(hours=1))
        return page


async def test_sweep_keeps_a_study_whose_expiry_a_store_moved_meanwhile() -> None:
    fakes = Fakes(index=StoreAfterTheQuery())
    study = generate_uid()
    await stored(fakes.index, study, T0)
    result = await sweep(fakes).sweep(T0 + timedelta(seconds=1))
    assert (result.deleted, result.kept) == ((), (study,))
    assert len([k for k in fakes.index.stored if k.study_uid == study]) == 2


class FailsFor(FakeIndexStore):
    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    async def delete_instances(self, study_uid: str, *args: object, **kwargs: object) -> list[str]:
        if study_uid == self.failing:
            raise RuntimeError("the index stopped answering")
        return await super().delete_instances(study_uid, *args, **kwargs)  # type: ignore[arg-type]


async def test_sweep_goes_on_after_a_study_that_fails_and_leaves_it_for_the_next() -> None:
    failing, other = generate_uid(), generate_uid()
    fakes = Fakes(index=FailsFor(failing))
    await stored(fakes.index, failing, T0)
    await stored(fakes.index, other, T0 + timedelta(seconds=1))
    result = await sweep(fakes).sweep(T0 + timedelta(minutes=1))
    assert (result.deleted, result.failed) == ((other,), (failing,))
    assert await fakes.index.expired_studies(T0 + timedelta(minutes=1), 10) == [in_default(failing)]
