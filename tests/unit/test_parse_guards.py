"""Two guards of ``parse_instance`` that pydicom does not give: a deflated dataset is measured
inflated before pydicom inflates it whole (a probe's 1 MB upload took 2 GB of a worker), and a
file cut inside its last element is refused rather than stored as if whole."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from dicom_core.domain.deflate import (
    InflatedSizeError,
    InflationDeferred,
    check_inflated_size,
    measure_inflation,
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


def element(group: int, number: int, vr: bytes, value: bytes) -> bytes:
    """An Explicit VR Little Endian element."""
    if vr in (b"OB", b"SQ", b"UN", b"UT"):
        return struct.pack("<HH2sHI", group, number, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, number, vr, len(value)) + value


def padded(uid: str) -> bytes:
    return uid.encode() + b"\0" * (len(uid) % 2)


def bomb(inflated: int, *, meta_extra: bytes = b"", after_meta: bytes = b"") -> bytes:
    """A deflated instance inflating to more than ``inflated`` bytes, built a megabyte at a
    time; ``meta_extra`` goes into its file meta group, ``after_meta`` between that group and
    the deflated dataset (where pydicom reads a command set from the raw file)."""
    ds = make_dataset()
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    plain = to_bytes(ds)
    (group_length,) = struct.unpack("<I", plain[140:144])
    dataset = plain[144 + group_length :]
    sop = padded(ds.SOPInstanceUID)
    cls = padded(ds.SOPClassUID)
    meta = (
        element(2, 1, b"OB", b"\0\1")
        + element(2, 2, b"UI", cls)
        + element(2, 3, b"UI", sop)
        + meta_extra
        + element(2, 0x10, b"UI", DeflatedExplicitVRLittleEndian.encode() + b"\0")
    )
    head = bytes(128) + b"DICM" + element(2, 0, b"UL", struct.pack("<I", len(meta))) + meta
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    private = struct.pack("<HH2sHI", 0x0029, 0x1010, b"OB", 0, inflated)
    out = [head, after_meta, deflater.compress(dataset + private)]
    zeros = bytes(MIB)
    out += [deflater.compress(zeros) for _ in range(inflated // MIB)]
    out.append(deflater.flush())
    return b"".join(out)


def test_the_inflated_size_is_counted_exactly() -> None:
    data = deflated_file(3 * MIB)
    handle = io.BytesIO(data)
    read_preamble(handle, False)
    _read_file_meta_info(handle)
    offset = handle.tell()
    inflated = zlib.decompress(data[offset:], -zlib.MAX_WBITS)
    assert check_inflated_size(handle, offset, 10 * MIB) == len(inflated) > 3 * MIB


def test_a_file_within_the_limit_or_not_deflated_passes_the_measure() -> None:
    measure_inflation(io.BytesIO(deflated_file(3 * MIB)), 10 * MIB)
    ds = make_dataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    measure_inflation(io.BytesIO(to_bytes(ds)), 1)
    measure_inflation(io.BytesIO(b"\0" * 128 + b"DICM"), 1)  # not readable: the parse says so


@pytest.mark.parametrize(
    "variant",
    [
        {},
        # A review's bypasses of a file meta walk of our own: pydicom reads a command set
        # from the raw file before inflating, and reads a meta element whose VR is not two
        # capital letters as implicit. The guard measures what pydicom inflates, whatever.
        {"after_meta": struct.pack("<HHI", 0, 0, 4) + b"\0\0\0\0"},
        {"meta_extra": struct.pack("<HHI", 2, 0x0100, 2) + b"AB"},
        {"meta_extra": element(2, 0x0102, b"OB", bytes(1_100_000))},
    ],
)
def test_a_bomb_is_refused_before_pydicom_inflates_it(
    tmp_path: Path, variant: dict[str, bytes]
) -> None:
    data = bomb(64 * MIB, **variant)
    assert len(data) < 2 * MIB
    with pytest.raises(InflatedSizeError, match=f"more than {MIB} bytes"):
        measure_inflation(io.BytesIO(data), MIB)
    path = tmp_path / "bomb.dcm"
    path.write_bytes(data)
    with pytest.raises(InstanceRejected, match="inflates to more than"):
        parse_instance(path, partition=1, max_inflated=MIB)
    with pytest.raises(InflationDeferred):  # on the event loop: handed to a thread at once
        parse_instance(path, partition=1, max_inflated=MIB, defer_inflation=True)


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
