"""Two guards of ``parse_instance`` that pydicom does not give: a deflated dataset is measured
inflated before pydicom inflates it whole (a probe's 1 MB upload took 2 GB of a worker), and a
file cut inside its last element is refused rather than stored as if whole."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from dicom_core.domain.deflate import (
    InflatedSizeError,
    check_inflated_size,
    deflated_dataset_offset,
)
from dicom_core.domain.instance import VALIDATION_FAILURE, InstanceRejected, parse_instance
from tests.support.factories import make_dataset, to_bytes

MIB = 1 << 20


def deflated_file(padding: int) -> bytes:
    """A small instance, deflated, carrying ``padding`` zero bytes in a private element."""
    ds = make_dataset()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.add_new(0x00291010, "OB", bytes(padding))
    return to_bytes(ds)


def test_the_inflated_size_is_counted_exactly() -> None:
    data = deflated_file(3 * MIB)
    handle = io.BytesIO(data)
    offset = deflated_dataset_offset(handle)
    assert offset is not None
    inflated = zlib.decompress(data[offset:], -zlib.MAX_WBITS)
    assert check_inflated_size(handle, offset, 10 * MIB) == len(inflated) > 3 * MIB


def test_a_file_of_another_syntax_has_no_deflated_dataset() -> None:
    ds = make_dataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    assert deflated_dataset_offset(io.BytesIO(to_bytes(ds))) is None
    assert deflated_dataset_offset(io.BytesIO(b"\0" * 128 + b"DICM")) is None


def test_a_bomb_is_refused_as_soon_as_it_passes_the_limit() -> None:
    data = deflated_file(64 * MIB)  # about 64 KB deflated
    assert len(data) < MIB
    handle = io.BytesIO(data)
    offset = deflated_dataset_offset(handle)
    assert offset is not None
    with pytest.raises(InflatedSizeError, match=f"more than {MIB} bytes"):
        check_inflated_size(handle, offset, MIB)


def test_store_refuses_a_deflated_part_that_inflates_past_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.dcm"
    path.write_bytes(deflated_file(8 * MIB))
    with pytest.raises(InstanceRejected, match="inflates to more than") as refused:
        parse_instance(path, partition=1, max_inflated=MIB)
    assert refused.value.failure_code == VALIDATION_FAILURE
    parsed = parse_instance(path, partition=1, max_inflated=16 * MIB)  # within: stored
    assert parsed.transfer_syntax_uid == DeflatedExplicitVRLittleEndian


def without_pixels() -> bytes:
    ds = make_dataset()
    del ds.PixelData
    ds.add_new(0x00291010, "OB", b"\x01" * 20_000)
    ds.add_new(0x00291011, "OB", b"\x02" * 3_000_000)  # read deferred: pydicom seeks past it
    return to_bytes(ds)


@pytest.mark.parametrize("lost", [1, 1_000, 2_000_000, 3_019_000])
def test_a_file_cut_inside_its_last_element_is_refused(tmp_path: Path, lost: int) -> None:
    whole = without_pixels()
    path = tmp_path / "cut.dcm"
    path.write_bytes(whole[:-lost])
    with pytest.raises(InstanceRejected, match="the file is incomplete") as refused:
        parse_instance(path, partition=1)
    assert refused.value.failure_code == VALIDATION_FAILURE
    assert refused.value.sop_uid == dcmread(io.BytesIO(whole)).SOPInstanceUID


def test_a_whole_file_without_pixel_data_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "whole.dcm"
    path.write_bytes(without_pixels())
    assert parse_instance(path, partition=1).frames is None


async def test_reading_a_deflated_file_stored_before_the_guard_is_406() -> None:
    """A bomb stored before stores measured inflation: frames, rendering and transcoding check
    it the same way (``stored_pixels.check_inflated``) before pydicom inflates it."""
    from dicom_core.domain.model import InstanceKey, InstanceRecord
    from dicom_core.errors import NotAcceptable
    from dicom_core.services.stored_pixels import check_inflated

    data = deflated_file(8 * MIB)
    record = InstanceRecord(
        key=InstanceKey("1.2.3", "1.2.3.4", "1.2.3.4.5", partition=1),
        watermark=1,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid=DeflatedExplicitVRLittleEndian,
        blob_key="b",
        file_size=len(data),
        frames=None,
        created_at="2026-12-08T00:00:00Z",
    )
    with pytest.raises(NotAcceptable, match=r"1\.2\.3\.4\.5 cannot be rendered: its deflated"):
        await check_inflated(record, data, MIB, "rendered")
    await check_inflated(record, data, 16 * MIB, "rendered")  # within the limit: no error
