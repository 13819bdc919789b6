"""Study expiry on the fakes: the ``msdicom-expiry-*`` header rules, and what a store does to
its study's expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicom_core.domain.timestamps import utc_now
from dicom_core.errors import BadRequest
from dicom_core.services.blob_cleanup import BlobJanitor
from dicom_core.services.expiry import (
    ExpiryRequest,
    expiry_of_request,
    parse_expiry_headers,
)
from dicom_core.services.external_metadata import ExternalMetadataService
from dicom_core.services.store import StoreResult, StoreService
from tests.fakes import Fakes
from tests.support.factories import make_dataset, to_bytes

TIME = "msdicom-expiry-time-milliseconds"
OPTION = "msdicom-expiry-option"
LEVEL = "msdicom-expiry-level"
ALL_THREE = [(TIME, "2000"), (OPTION, "RelativeToNow"), (LEVEL, "Study")]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


# -- the header rules ------------------------------------------------------------------------


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
    expiry = fakes.index.expiries[ds.StudyInstanceUID]
    assert before + timedelta(seconds=2) <= expiry <= utc_now() + timedelta(seconds=2)


async def test_a_later_store_without_headers_clears_the_expiry_and_with_them_moves_it(
    fakes: Fakes, store: Store
) -> None:
    first = make_dataset()
    study = first.StudyInstanceUID
    await store(first, headers=[(TIME, "1000")])
    await store(make_dataset(study_uid=study))
    assert study not in fakes.index.expiries
    await store(make_dataset(study_uid=study), headers=[(TIME, "3600000")])
    assert fakes.index.expiries[study] > utc_now() + timedelta(minutes=59)


async def test_a_store_whose_instances_all_fail_leaves_the_expiry_alone(
    fakes: Fakes, store: Store
) -> None:
    ds = make_dataset()
    await store(ds, headers=[(TIME, "1000")])
    expiry = fakes.index.expiries[ds.StudyInstanceUID]
    again = await store(ds, headers=[(TIME, "3600000")])  # 45070: already stored
    assert again.status == 409
    assert fakes.index.expiries[ds.StudyInstanceUID] == expiry


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
