"""Frame byte ranges computed at store time equal the frames pydicom extracts itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.uid import JPEGBaseline8Bit

from dicom_core.domain.instance import VALIDATION_FAILURE, InstanceRejected, parse_instance
from tests.support.factories import make_dataset, make_instance, to_bytes

FILES = [
    "CT_small.dcm",  # native, one frame
    "emri_small.dcm",  # native, 10 frames
    "MR_small_bigendian.dcm",  # native, big endian
    "JPEG2000.dcm",  # encapsulated, one frame
    "SC_rgb_rle_2frame.dcm",  # RLE, one fragment per frame
    "emri_small_jpeg_2k_lossless.dcm",  # J2K, 10 frames
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline
]


def _frames_read_back(path: Path) -> list[bytes]:
    parsed = parse_instance(path, partition=1)
    assert parsed.frames is not None
    data = path.read_bytes()
    return [
        b"".join(data[offset : offset + length] for offset, length in fragments)
        for fragments in parsed.frames.fragments
    ]


@pytest.mark.parametrize("name", FILES)
def test_frame_index_matches_pydicom_frames(name: str, tmp_path: Path) -> None:
    source = get_testdata_file(name)
    assert source is not None
    path = tmp_path / name
    shutil.copy(source, path)
    ds = dcmread(path)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    if ds.file_meta.TransferSyntaxUID.is_encapsulated:
        expected = list(generate_frames(ds.PixelData, number_of_frames=count))
        got = [frame.rstrip(b"\x00") for frame in _frames_read_back(path)]
        assert got == [frame.rstrip(b"\x00") for frame in expected]
    else:
        size = len(ds.PixelData) // count
        expected = [ds.PixelData[i * size : (i + 1) * size] for i in range(count)]
        assert _frames_read_back(path) == expected


def test_instance_without_pixel_data_has_no_frames(tmp_path: Path) -> None:
    path = tmp_path / "no-pixels.dcm"
    path.write_bytes(make_instance(PixelData=None))
    assert parse_instance(path, partition=1).frames is None


def test_multiframe_instance_has_one_range_per_frame(tmp_path: Path) -> None:
    path = tmp_path / "multi.dcm"
    path.write_bytes(make_instance(rows=4, columns=3, frames=5))
    frames = parse_instance(path, partition=1).frames
    assert frames is not None and frames.count == 5 and frames.frame_length == 4 * 3 * 2


@pytest.mark.parametrize("bits", [7, 12])
def test_native_bits_allocated_other_than_1_or_a_multiple_of_8_maps_no_frames(
    tmp_path: Path, bits: int
) -> None:
    """A probe's BitsAllocated 7 was stored with no warning, and its frame served as 56 of
    the 128 bytes stored: byte ranges computed from it are wrong. The instance is kept with
    a warning naming Pixel Data, and no ranges."""
    path = tmp_path / "odd-bits.dcm"
    path.write_bytes(make_instance(rows=8, columns=8, BitsAllocated=bits))
    parsed = parse_instance(path, partition=1)
    assert parsed.frames is None
    [problem] = [p for p in parsed.problems if p.tag == 0x7FE00010]
    assert f"BitsAllocated is {bits}" in problem.message


@pytest.mark.parametrize("name", ["CT_small.dcm", "emri_small_jpeg_2k_lossless.dcm"])
@pytest.mark.parametrize("cut", [200, 1000])  # CT_small.dcm has 138 bytes of padding after
def test_a_file_that_ends_before_its_pixel_data_does_is_refused(
    tmp_path: Path, name: str, cut: int
) -> None:
    """A probe stored a file cut short by 1,000 bytes with 200: its frames then answered 424
    (a damaged stored file) for good. Native and encapsulated pixel data alike, it is a
    validation failure naming Pixel Data."""
    source = get_testdata_file(name)
    assert source is not None
    path = tmp_path / name
    path.write_bytes(Path(source).read_bytes()[:-cut])
    with pytest.raises(InstanceRejected) as caught:
        parse_instance(path, partition=1)
    assert caught.value.failure_code == VALIDATION_FAILURE
    [comment] = caught.value.comments
    assert comment.startswith("DICOM100: (7FE0,0010) PixelData:") and "incomplete" in comment
    assert caught.value.sop_uid == str(dcmread(source, stop_before_pixels=True).SOPInstanceUID)


@pytest.mark.parametrize(
    "name",
    [
        # Its Pixel Data header is implicit VR inside an explicit VR file: the "length" read
        # there says nothing of where the file ends (a review found it refused as cut short).
        "SC_rgb_jpeg.dcm",
    ],
)
def test_a_file_whose_pixel_data_header_misleads_is_not_taken_for_cut_short(
    tmp_path: Path, name: str
) -> None:
    source = get_testdata_file(name)
    assert source is not None
    path = tmp_path / name
    shutil.copy(source, path)
    parse_instance(path, partition=1)  # stored, whatever its warnings


def _cut_cases() -> list[tuple[str, bytes]]:
    """Files cut where a second review found them stored (with frames missing, or none)."""
    jpeg = make_dataset(rows=8, columns=8, frames=3, transfer_syntax=JPEGBaseline8Bit)
    fragments = [b"\xff\xd8" + bytes([i]) * 98 + b"\xff\xd9" for i in range(3)]
    jpeg.PixelData = encapsulate(fragments, has_bot=True)
    jpeg["PixelData"].VR = "OB"
    whole = to_bytes(jpeg)
    header_end = whole.rfind(b"\xe0\x7f\x10\x00") + 12  # tag, VR, reserved, length
    items_start = header_end + 8 + 12  # the offset table's item: 3 offsets
    one_bit = make_dataset(rows=5, columns=5)
    one_bit.BitsAllocated, one_bit.BitsStored, one_bit.HighBit = 1, 1, 0
    one_bit.PixelData = b"\xff" * 4  # 25 bits, padded to even
    excess = make_dataset(rows=4, columns=4)
    excess.PixelData = bytes(96)  # one frame of 32 bytes, and 64 more
    return [
        ("after the Pixel Data header", whole[:header_end]),
        ("inside the offset table's item header", whole[: header_end + 3]),
        ("between fragments, one frame of three left", whole[: items_start + 110]),
        ("only the sequence delimiter lost", whole[:-8]),
        ("bit-packed frames", to_bytes(one_bit)[:-3]),
        ("the last byte of bit-packed frames", to_bytes(one_bit)[:-1]),
        ("in data beyond the frames", to_bytes(excess)[:-40]),
    ]


@pytest.mark.parametrize(
    ("where", "data"), _cut_cases(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_a_file_cut_anywhere_in_its_pixel_data_is_refused(
    tmp_path: Path, where: str, data: bytes
) -> None:
    path = tmp_path / "cut.dcm"
    path.write_bytes(data)
    with pytest.raises(InstanceRejected, match="incomplete"):
        parse_instance(path, partition=1)


def test_native_pixel_data_missing_only_its_padding_byte_keeps_every_frame(
    tmp_path: Path,
) -> None:
    ds = make_dataset(rows=3, columns=3)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = bytes(range(9)) + b"\x00"  # 9 bytes, padded to even
    path = tmp_path / "odd.dcm"
    path.write_bytes(to_bytes(ds)[:-1])  # the padding byte lost in transit
    frames = parse_instance(path, partition=1).frames
    assert frames is not None and frames.count == 1 and frames.frame_length == 9
