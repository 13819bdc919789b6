"""``StudyUpdater`` on fakes: one study's step of a bulk update, instance by instance."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import orjson
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicom_core.domain.bulk_update import (
    BulkUpdateRequest,
    apply_changes,
    parse_bulk_update_request,
)
from dicom_core.domain.instance import parse_instance
from dicom_core.domain.model import InstanceKey
from dicom_core.services.blob_cleanup import BlobJanitor
from dicom_core.services.bulk_update import StudyUpdater, _rewrite, already_applied
from dicom_core.services.staging import StagingArea
from dicom_core.storage.ports import BlobRelease, NewVersion, StorageFull, VersionsCommitted
from tests.fakes import Fakes
from tests.support.factories import make_dataset, to_bytes


def request(study: str, change: dict[str, object]) -> BulkUpdateRequest:
    body = {"studyInstanceUids": [study], "changeDataset": change}
    return parse_bulk_update_request(orjson.dumps(body))


NEW_NAME = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "New^Name"}]}}


async def put(fakes: Fakes, tmp_path: Path, ds: Dataset, *, upsert: bool = False) -> int:
    """Store ``ds`` in the fakes as the two-step store does; its watermark."""
    path = tmp_path / f"{generate_uid()}.dcm"
    path.write_bytes(to_bytes(ds))
    parsed = parse_instance(path, partition=1)
    reservation = await fakes.index.begin_instance(parsed.key, upsert=upsert)
    fakes.blobs.objects[reservation.blob_key] = path.read_bytes()
    await fakes.index.commit_instance(reservation, parsed)
    return reservation.watermark


def updater(fakes: Fakes, tmp_path: Path, indexed: list[tuple[InstanceKey, int]]) -> StudyUpdater:
    async def index_tags(key: InstanceKey, watermark: int, metadata: bytes) -> None:
        indexed.append((key, watermark))

    return StudyUpdater(
        fakes.index,
        fakes.blobs,
        BlobJanitor(fakes.blobs, fakes.queue),
        StagingArea(tmp_path / "staging"),
        after_commit=index_tags,
    )


async def current_dataset(fakes: Fakes, key: InstanceKey) -> Dataset:
    record = await fakes.index.get_instance(key)
    assert record is not None
    return dcmread(io.BytesIO(fakes.blobs.objects[record.blob_key]))


async def test_every_instance_gets_a_new_version_and_its_tags_indexed(tmp_path: Path) -> None:
    fakes = Fakes()
    study = generate_uid()
    datasets = [make_dataset(study_uid=study, PatientName="Old^Name") for _ in range(2)]
    for ds in datasets:
        await put(fakes, tmp_path, ds)
    indexed: list[tuple[InstanceKey, int]] = []
    outcome = await updater(fakes, tmp_path, indexed).update_study(
        study, request(study, NEW_NAME), operation_id="op1", partition=1
    )
    assert (outcome.found, outcome.instances_updated, outcome.errors) == (True, 2, [])
    keys = [
        InstanceKey(study, ds.SeriesInstanceUID, ds.SOPInstanceUID, partition=1) for ds in datasets
    ]
    for key, ds in zip(keys, datasets, strict=True):
        latest = await current_dataset(fakes, key)
        assert str(latest.PatientName) == "New^Name"
        assert latest.PixelData == ds.PixelData
        assert latest.preamble == b"\x00" * 128
        record = await fakes.index.get_instance(key)
        original = await fakes.index.get_instance(key, original=True)
        assert record is not None and original is not None
        # The key names the operation and the version rewritten, and a token of its own.
        assert f"_op1-{original.watermark}-" in record.blob_key
    assert sorted(key for key, _ in indexed) == sorted(keys)
    assert not list((tmp_path / "staging").iterdir())  # nothing left behind


async def test_a_repeated_step_writes_nothing_and_counts_the_same(tmp_path: Path) -> None:
    fakes = Fakes()
    ds = make_dataset(PatientName="Old^Name")
    await put(fakes, tmp_path, ds)
    study = ds.StudyInstanceUID
    run = updater(fakes, tmp_path, [])
    await run.update_study(study, request(study, NEW_NAME), operation_id="op1", partition=1)
    files = dict(fakes.blobs.objects)
    again = await run.update_study(study, request(study, NEW_NAME), operation_id="op1", partition=1)
    assert (again.instances_updated, again.errors) == (1, [])
    assert fakes.blobs.objects == files


async def test_an_instance_replaced_during_the_step_is_updated_from_its_new_content(
    tmp_path: Path,
) -> None:
    fakes = Fakes()
    ds = make_dataset(PatientName="Old^Name", PatientID="FIRST")
    await put(fakes, tmp_path, ds)
    study, commit = ds.StudyInstanceUID, fakes.index.commit_versions
    replaced = make_dataset(
        study_uid=study,
        series_uid=ds.SeriesInstanceUID,
        sop_uid=ds.SOPInstanceUID,
        PatientName="Old^Name",
        PatientID="PUT",
    )

    async def put_first(
        versions: list[NewVersion], *, release: BlobRelease | None = None
    ) -> VersionsCommitted:
        fakes.index.commit_versions = commit  # type: ignore[method-assign]
        await put(fakes, tmp_path, replaced, upsert=True)  # a PUT wins the race
        return await commit(versions, release=release)

    fakes.index.commit_versions = put_first  # type: ignore[method-assign]
    outcome = await updater(fakes, tmp_path, []).update_study(
        study, request(study, NEW_NAME), operation_id="op1", partition=1
    )
    assert (outcome.instances_updated, outcome.errors) == (1, [])
    latest = await current_dataset(
        fakes, InstanceKey(study, ds.SeriesInstanceUID, ds.SOPInstanceUID, partition=1)
    )
    assert (str(latest.PatientName), latest.PatientID) == ("New^Name", "PUT")


async def test_an_instance_that_cannot_take_the_text_fails_its_whole_study(
    tmp_path: Path,
) -> None:
    """As Azure's update: a study with a failed instance is not committed at all, so no
    reader ever sees it half updated, and none of its instances counts as updated."""
    fakes = Fakes()
    study = generate_uid()
    ascii_only = make_dataset(study_uid=study, PatientName="Old^Name")
    latin = make_dataset(study_uid=study, SpecificCharacterSet="ISO_IR 100", PatientComments="café")
    for ds in (ascii_only, latin):
        await put(fakes, tmp_path, ds)
    stored = set(fakes.blobs.objects)
    indexed: list[tuple[InstanceKey, int]] = []
    change = {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "山田^太郎"}]}}
    outcome = await updater(fakes, tmp_path, indexed).update_study(
        study, request(study, change), operation_id="op1", partition=1
    )
    assert outcome.instances_updated == 0
    [error] = outcome.errors
    assert latin.SOPInstanceUID in error and "ISO_IR 100" in error
    key = InstanceKey(study, ascii_only.SeriesInstanceUID, ascii_only.SOPInstanceUID, partition=1)
    latest = await current_dataset(fakes, key)
    assert (str(latest.PatientName), latest.get("SpecificCharacterSet")) == ("Old^Name", None)
    assert set(fakes.blobs.objects) == stored  # the new version it wrote went with the step
    assert indexed == []


async def test_a_study_without_instances_is_found_empty_and_no_failure(tmp_path: Path) -> None:
    study = generate_uid()
    outcome = await updater(Fakes(), tmp_path, []).update_study(
        study, request(study, NEW_NAME), operation_id="op1", partition=1
    )
    assert (outcome.found, outcome.instances_updated, outcome.errors) == (False, 0, [])


@pytest.mark.parametrize("value", ["Old^Name", "Old^Name "])
def test_already_applied_compares_values_without_padding(value: str) -> None:
    ds = make_dataset(PatientName=value)
    assert already_applied(
        ds, request("1.2.3", {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Old^Name"}]}})
    )
    assert not already_applied(ds, request("1.2.3", NEW_NAME))


def test_an_already_applied_multi_valued_attribute_is_recognised() -> None:
    ds = make_dataset()
    change = {"00101000": {"vr": "LO", "Value": ["A", "B"]}}
    apply_changes(ds, request("1.2.3", change))
    assert already_applied(ds, request("1.2.3", change))
    assert not already_applied(ds, request("1.2.3", {"00101000": {"vr": "LO", "Value": ["A"]}}))


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "emri_small.dcm", "image_dfl.dcm"],
)
def test_the_rewrite_copies_pixel_data_as_bytes_and_equals_a_full_rewrite(
    tmp_path: Path, name: str
) -> None:
    """Only the header goes through pydicom; the result is the bytes a full read, change
    and write of the whole instance would give."""
    source = Path(get_testdata_file(name))  # type: ignore[arg-type]
    change = request("1.2.3", {**NEW_NAME, "00080050": {"vr": "SH", "Value": ["ACC-9"]}})
    assert _rewrite(source, tmp_path / "new.dcm", change)
    full = dcmread(source)
    apply_changes(full, change)
    full.preamble = b"\x00" * 128
    expected = io.BytesIO()
    full.save_as(expected, enforce_file_format=True)
    assert (tmp_path / "new.dcm").read_bytes() == expected.getvalue()
    assert not _rewrite(tmp_path / "new.dcm", tmp_path / "again.dcm", change)


async def test_two_overlapping_runs_of_one_step_leave_the_current_file_in_place(
    tmp_path: Path,
) -> None:
    """A redelivered message can run a step twice at once: their files are their own, so
    the one that loses never deletes the one that won."""
    fakes = Fakes()
    study = generate_uid()
    datasets = [make_dataset(study_uid=study, PatientName="Old^Name") for _ in range(3)]
    for ds in datasets:
        await put(fakes, tmp_path, ds)
    run = updater(fakes, tmp_path, [])
    first, second = await asyncio.gather(
        run.update_study(study, request(study, NEW_NAME), operation_id="op1", partition=1),
        run.update_study(study, request(study, NEW_NAME), operation_id="op1", partition=1),
    )
    assert (first.errors, second.errors) == ([], [])
    for ds in datasets:
        key = InstanceKey(study, ds.SeriesInstanceUID, ds.SOPInstanceUID, partition=1)
        latest = await current_dataset(fakes, key)  # raises if the file were gone
        assert str(latest.PatientName) == "New^Name"


async def test_a_step_that_fails_before_its_commit_leaves_no_new_files(tmp_path: Path) -> None:
    """The disk-fault probe found a bulk update that failed for good on a full disk leaving
    the new versions it had already written, named by nothing."""
    fakes = Fakes()
    study = generate_uid()
    for _ in range(3):
        await put(fakes, tmp_path, make_dataset(study_uid=study, PatientName="Old^Name"))
    stored = set(fakes.blobs.objects)
    real_put = fakes.blobs.put_file
    placed = 0

    async def put_until_full(key: str, source: Path, *, overwrite: bool = False) -> None:
        nonlocal placed
        if placed == 2:
            raise StorageFull("the disk is full (writing the stored file)")
        placed += 1
        await real_put(key, source, overwrite=overwrite)

    fakes.blobs.put_file = put_until_full  # type: ignore[method-assign]
    with pytest.raises(StorageFull):
        await updater(fakes, tmp_path, []).update_study(
            study, request(study, NEW_NAME), operation_id="op1", partition=1
        )
    assert placed == 2
    assert set(fakes.blobs.objects) == stored  # the two new versions went with the step
    assert list((tmp_path / "staging").iterdir()) == []
