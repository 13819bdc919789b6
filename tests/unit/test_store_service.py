"""``StoreService.store_instances``: the whole store transaction, without HTTP.

The services are the local backend's (``tests.support.services``); the body is a list of
part files handed over when the service asks for them, as the web layer hands over the parts
it spooled.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from dicom_core.bootstrap import Services
from dicom_core.domain.model import InstanceKey
from dicom_core.errors import BadRequest, Conflict
from dicom_core.storage.ports import StorageUnavailable
from tests.support.factories import make_dataset, to_bytes
from tests.support.services import Body, local_services, store, store_datasets

PRIVATE_TAG = "00191100"


@pytest.fixture()
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    async with local_services(tmp_path / "data") as built:
        yield built


async def external_elements(services: Services, *studies: str) -> dict[str, object]:
    assert services.external_metadata is not None
    return dict(await services.external_metadata.elements(list(studies), partition=1))


async def test_store_instances_with_a_conflicting_vr_refuses_before_reading_the_body(
    services: Services, tmp_path: Path
) -> None:
    # given: the tag was first stored as LO
    first = make_dataset()
    header = (f"msdicom-meta-LO-{PRIVATE_TAG}", "first")
    stored = await store(services, Body(tmp_path / "a", [to_bytes(first)]), headers=[header])
    assert stored.status == 200
    # when: another request sends it as SH
    body = Body(tmp_path / "b", [to_bytes(make_dataset())])
    with pytest.raises(Conflict, match=f"{PRIVATE_TAG} exists with VR LO"):
        await store(services, body, headers=[(f"msdicom-meta-SH-{PRIVATE_TAG}", "second")])
    # then: the body was never read, so nothing of it was stored, and the tag keeps its VR
    assert not body.received
    assert services.external_metadata is not None
    [known] = await services.external_metadata.attributes()
    assert (known.tag, known.vr) == (PRIVATE_TAG, "LO")


async def test_store_instances_with_a_malformed_header_refuses_before_reading_the_body(
    services: Services, tmp_path: Path
) -> None:
    body = Body(tmp_path / "a", [to_bytes(make_dataset())])
    with pytest.raises(BadRequest, match="not a private tag"):
        await store(services, body, headers=[("msdicom-meta-LO-00100010", "public")])
    assert not body.received


async def test_store_instances_saves_external_metadata_for_the_stored_studies_only(
    services: Services, tmp_path: Path
) -> None:
    # given: one valid instance and one part that is not DICOM at all
    kept = make_dataset()
    body = Body(tmp_path / "a", [to_bytes(kept), b"not a DICOM file"])
    # when
    result = await store(services, body, headers=[(f"msdicom-meta-LO-{PRIVATE_TAG}", "kept")])
    # then
    assert (len(result.stored), len(result.failed), result.status) == (1, 1, 202)
    elements = await external_elements(services, kept.StudyInstanceUID)
    assert elements[kept.StudyInstanceUID] == {
        "00190011": {"vr": "LO", "Value": ["Microsoft"]},
        PRIVATE_TAG: {"vr": "LO", "Value": ["kept"]},
    }


async def test_store_instances_with_nothing_stored_saves_no_external_metadata(
    services: Services, tmp_path: Path
) -> None:
    body = Body(tmp_path / "a", [b"not a DICOM file"])
    result = await store(services, body, headers=[(f"msdicom-meta-LO-{PRIVATE_TAG}", "lost")])
    assert result.status == 409
    assert services.external_metadata is not None
    assert await services.external_metadata.attributes() == []


async def test_store_instances_on_v1_ignores_external_metadata(
    services: Services, tmp_path: Path
) -> None:
    dataset = make_dataset()
    body = Body(tmp_path / "a", [to_bytes(dataset)])
    # A header v2 would refuse (a public tag) is not even looked at.
    result = await store(
        services, body, headers=[("msdicom-meta-LO-00100010", "public")], api_version=1
    )
    assert result.status == 200
    assert await external_elements(services, dataset.StudyInstanceUID) == {}


async def test_store_instances_removes_the_parts_it_received(
    services: Services, tmp_path: Path
) -> None:
    body = Body(tmp_path / "a", [to_bytes(make_dataset()), b"not a DICOM file"])
    await store(services, body)
    assert body.received
    assert list((tmp_path / "a").iterdir()) == []


def key_of(ds: Dataset) -> InstanceKey:
    return InstanceKey(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, partition=1)


def block_study_directory(data_dir: Path, study_uid: str) -> None:
    """Make placing any file of ``study_uid`` fail with a system error, as a full or broken
    disk would: a plain file stands where the study's directory must go."""
    (data_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (data_dir / "blobs" / study_uid).write_bytes(b"in the way")


async def test_an_outage_before_anything_is_stored_fails_the_whole_request(
    services: Services, tmp_path: Path
) -> None:
    first, second = make_dataset(), make_dataset()
    block_study_directory(tmp_path / "data", first.StudyInstanceUID)
    body = Body(tmp_path / "a", [to_bytes(first), to_bytes(second)])
    with pytest.raises(StorageUnavailable, match="Not a directory"):
        await store(services, body)
    # Nothing was stored, so the client can retry the whole request.
    assert await services.backend.index.get_instance(key_of(second)) is None
    assert list((tmp_path / "a").iterdir()) == []


async def test_an_outage_after_a_part_is_stored_fails_the_rest_without_trying_them(
    services: Services, tmp_path: Path
) -> None:
    first, second, third = make_dataset(), make_dataset(), make_dataset()
    block_study_directory(tmp_path / "data", second.StudyInstanceUID)
    body = Body(tmp_path / "a", [to_bytes(first), to_bytes(second), to_bytes(third)])
    result = await store(services, body)
    # The answer lists what was stored, so a client never misses a committed instance; the
    # parts after the outage are not tried (each could wait out the same outage: a locked
    # index waits 30 s a part), and fail with its reason.
    assert result.status == 202
    assert [entry.key.sop_uid for entry in result.stored] == [first.SOPInstanceUID]
    assert [(f.failure_reason, f.sop_uid) for f in result.failed] == [
        (272, second.SOPInstanceUID),
        (272, third.SOPInstanceUID),
    ]
    for failed in result.failed:
        assert "could not be stored" in failed.comments[0]
        assert "Not a directory" in failed.comments[0]
    assert await services.backend.index.get_instance(key_of(second)) is None
    assert await services.backend.index.get_instance(key_of(third)) is None
    assert list((tmp_path / "a").iterdir()) == []


async def test_a_committed_replacement_is_stored_even_if_its_old_file_cannot_go(
    services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review find: the replaced file's clean-up ran inside the outage handling, so a PUT that
    had committed was answered 'could not be stored' when the clean-up failed too."""
    first = make_dataset(PatientID="BEFORE")
    await store_datasets(services, tmp_path / "a", first)
    first.PatientID = "AFTER"

    async def cannot_delete(blob_key: str, *, unseen: bool = False) -> None:
        raise StorageUnavailable("the cleanup queue is unavailable")

    monkeypatch.setattr(services.janitor, "delete", cannot_delete)
    result = await services.store.store_instances(
        Body(tmp_path / "b", [to_bytes(first)]),
        study_uid=None,
        upsert=True,
        api_version=2,
        base_url="http://dicom.test/v2",
        external_metadata=(),
        partition=1,
    )
    assert (len(result.stored), result.failed) == (1, [])
    [metadata] = await services.backend.index.get_metadata(
        first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID, partition=1
    )
    assert b"AFTER" in metadata
