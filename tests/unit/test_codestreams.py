"""A compressed frame whose own header disagrees with Rows, Columns or SamplesPerPixel never
reaches a decoder; the decoded size is bounded before decoding. Real codestreams from pydicom's
test files, one codec at a time."""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import replace

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames

from dicom_core.domain import pixels
from dicom_core.domain.codestreams import JPEG_SOF_MARKERS, read_jpeg_2000
from dicom_core.domain.pixels import (
    DecodedSizeError,
    PixelDataError,
    PixelFormat,
    check_codestream,
    check_decoded_size,
    decode_frame,
)
from dicom_core.domain.transcode import transcode_whole_file

SAMPLES = {
    "JPEG baseline": "SC_rgb_jpeg_dcmtk.dcm",
    "JPEG extended": "JPEG-lossy.dcm",
    "JPEG lossless": "JPGLosslessP14SV1_1s_1f_8b.dcm",
    "JPEG-LS lossless": "emri_small_jpeg_ls_lossless.dcm",
    "JPEG-LS near-lossless": "JPEGLSNearLossless_16.dcm",
    "JPEG 2000 lossless": "MR_small_jp2klossless.dcm",
    "JPEG 2000": "JPEG2000.dcm",
    "JPEG 2000 colour": "US1_J2KR.dcm",
    "RLE": "MR_small_RLE.dcm",
    "RLE colour": "SC_rgb_rle.dcm",
}


def load(name: str) -> tuple[Dataset, PixelFormat, str, bytes]:
    """The dataset, its pixel format, transfer syntax and first frame's codestream."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(get_testdata_file(name))
    fmt = PixelFormat.from_dataset(ds)
    assert fmt is not None
    frame = next(generate_frames(ds.PixelData, number_of_frames=fmt.number_of_frames))
    return ds, fmt, str(ds.file_meta.TransferSyntaxUID), frame


def patch_jpeg_sof(codestream: bytes, rows: int, columns: int, markers: set[int]) -> bytes:
    position = 2
    while True:
        marker = codestream[position + 1]
        (length,) = struct.unpack_from(">H", codestream, position + 2)
        if marker in markers:
            start = position + 5
            return codestream[:start] + struct.pack(">HH", rows, columns) + codestream[start + 4 :]
        position += 2 + length


def patch_siz(codestream: bytes, rows: int, columns: int) -> bytes:
    """Xsiz and Ysiz (origin 0 in these files) at bytes 8 and 12 of the codestream."""
    return codestream[:8] + struct.pack(">II", columns, rows) + codestream[16:]


def jp2(codestream: bytes) -> bytes:
    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I4s", len(payload) + 8, kind) + payload

    return (
        box(b"jP  ", b"\r\n\x87\n")
        + box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
        + box(b"jp2h", box(b"ihdr", bytes(14)))
        + box(b"jp2c", codestream)
    )


@pytest.mark.parametrize("name", SAMPLES.values(), ids=SAMPLES.keys())
def test_real_codestreams_agree_with_their_attributes(name: str) -> None:
    _, fmt, syntax, frame = load(name)
    check_codestream(frame, syntax, fmt)


@pytest.mark.parametrize("name", SAMPLES.values(), ids=SAMPLES.keys())
def test_a_codestream_larger_than_rows_and_columns_is_refused(name: str) -> None:
    _, fmt, syntax, frame = load(name)
    if syntax == pixels.RLE_LOSSLESS:
        pytest.skip("RLE states no dimensions; its segment count is tested below")
    smaller = replace(fmt, rows=16, columns=16)
    with pytest.raises(PixelDataError, match=f"declares {fmt.rows}x{fmt.columns} pixels"):
        check_codestream(frame, syntax, smaller)


def test_a_jpeg_sof_claiming_30000x30000_is_refused_before_decoding() -> None:
    _, fmt, syntax, frame = load("JPGLosslessP14SV1_1s_1f_8b.dcm")
    bomb = patch_jpeg_sof(frame, 30000, 30000, set(JPEG_SOF_MARKERS))
    # Without the check, libjpeg allocates gigabytes for this frame before failing.
    with pytest.raises(PixelDataError, match="JPEG codestream declares 30000x30000 pixels"):
        decode_frame(bomb, syntax, replace(fmt, rows=16, columns=16))


def test_a_jpeg_sample_count_mismatch_is_refused() -> None:
    _, fmt, syntax, frame = load("SC_rgb_jpeg_dcmtk.dcm")
    with pytest.raises(PixelDataError, match="3 sample.*SamplesPerPixel say 100x100 with 1"):
        check_codestream(frame, syntax, replace(fmt, samples_per_pixel=1))


def test_a_jpeg_ls_sof55_claiming_more_is_refused() -> None:
    _, fmt, syntax, frame = load("emri_small_jpeg_ls_lossless.dcm")
    bomb = patch_jpeg_sof(frame, 30000, 30000, {0xF7})
    with pytest.raises(PixelDataError, match="JPEG-LS codestream declares 30000x30000"):
        decode_frame(bomb, syntax, fmt)


def test_a_jpeg_2000_siz_claiming_more_is_refused() -> None:
    _, fmt, syntax, frame = load("MR_small_jp2klossless.dcm")
    bomb = patch_siz(frame, 30000, 30000)
    with pytest.raises(PixelDataError, match="JPEG 2000 codestream declares 30000x30000"):
        decode_frame(bomb, syntax, fmt)


def test_a_jp2_file_is_read_through_its_codestream_box() -> None:
    _, fmt, syntax, frame = load("MR_small_jp2klossless.dcm")
    header = read_jpeg_2000(jp2(frame))
    assert (header.rows, header.columns, header.samples) == (fmt.rows, fmt.columns, 1)
    with pytest.raises(PixelDataError, match="declares 30000x30000"):
        check_codestream(jp2(patch_siz(frame, 30000, 30000)), syntax, fmt)


def test_an_rle_segment_count_that_does_not_match_the_samples_is_refused() -> None:
    _, fmt, syntax, frame = load("MR_small_RLE.dcm")  # 16-bit gray: 2 segments
    with pytest.raises(PixelDataError, match="declares 2 segments but SamplesPerPixel 3"):
        decode_frame(frame, syntax, replace(fmt, samples_per_pixel=3))
    one_segment = struct.pack("<I", 1) + frame[4:]
    with pytest.raises(PixelDataError, match="declares 1 segments"):
        decode_frame(one_segment, syntax, fmt)


def test_an_rle_offset_beyond_the_frame_is_refused() -> None:
    _, fmt, syntax, frame = load("MR_small_RLE.dcm")
    beyond = frame[:8] + struct.pack("<I", len(frame) + 10) + frame[12:]
    with pytest.raises(PixelDataError, match="beyond the frame"):
        decode_frame(beyond, syntax, fmt)


def test_a_truncated_or_garbage_codestream_is_a_pixel_data_error() -> None:
    _, fmt, syntax, frame = load("SC_rgb_jpeg_dcmtk.dcm")
    for data in (b"", frame[:10], b"\x00" * 64, b"\xff\xd8\xff\xda\x00\x02"):
        with pytest.raises(PixelDataError):
            decode_frame(data, syntax, fmt)


def test_decoded_size_is_bounded_by_rows_columns_samples_bytes_and_frames() -> None:
    fmt = PixelFormat(512, 512, 3, 16, 12, 0, "RGB")  # 1.5 MiB a frame
    check_decoded_size(fmt, 4, 4 * 512 * 512 * 3 * 2)
    with pytest.raises(DecodedSizeError, match="5 frames of 512x512 pixels"):
        check_decoded_size(fmt, 5, 4 * 512 * 512 * 3 * 2)
    one_bit = PixelFormat(8, 8, 1, 1, 1, 0, "MONOCHROME2")
    assert one_bit.decoded_frame_bytes == 64  # a byte per decoded sample, not packed bits


def test_whole_file_transcoding_checks_the_decoded_size_of_every_frame() -> None:
    with open(get_testdata_file("emri_small_jpeg_2k_lossless.dcm"), "rb") as handle:
        data = handle.read()  # 10 frames of 64x64, 16 bits: 81920 bytes decoded
    transcode_whole_file(data, pixels.EXPLICIT_VR_LITTLE_ENDIAN, max_decoded_bytes=81920)
    with pytest.raises(DecodedSizeError, match="10 frames"):
        transcode_whole_file(data, pixels.EXPLICIT_VR_LITTLE_ENDIAN, max_decoded_bytes=81919)


def test_whole_file_transcoding_reads_every_codestream_header_first() -> None:
    ds, fmt, syntax, _ = load("emri_small_jpeg_2k_lossless.dcm")
    frames = list(generate_frames(ds.PixelData, number_of_frames=fmt.number_of_frames))
    frames[7] = patch_siz(frames[7], 30000, 30000)
    ds.PixelData = encapsulate(frames)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(PixelDataError, match="declares 30000x30000"):
        transcode_whole_file(
            buffer.getvalue(), pixels.EXPLICIT_VR_LITTLE_ENDIAN, max_decoded_bytes=1 << 30
        )
    assert syntax == pixels.JPEG_2000_LOSSLESS
