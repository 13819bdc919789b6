"""Unit tests for dicom_core.domain.render: the grayscale pipeline, colour, image encoding."""

from __future__ import annotations

import io
import warnings
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, pixel_array

from dicom_core.domain.media_types import PNG
from dicom_core.domain.pixels import DecodedFrame, PixelFormat
from dicom_core.domain.render import encode_image, render_frame, to_display


def gray_frame(array: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 16) -> DecodedFrame:
    fmt = PixelFormat(
        rows=array.shape[0],
        columns=array.shape[1],
        samples_per_pixel=1,
        bits_allocated=bits,
        bits_stored=bits,
        pixel_representation=int(array.dtype.kind == "i"),
        photometric_interpretation=photometric,
    )
    return DecodedFrame(array=array, format=fmt)


def header(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def linear(x: float, center: float, width: float) -> float:
    """PS3.3 C.11.2.1.2.1, to 0..255."""
    if x <= center - 0.5 - (width - 1) / 2:
        return 0.0
    if x > center - 0.5 + (width - 1) / 2:
        return 255.0
    return ((x - (center - 0.5)) / (width - 1) + 0.5) * 255.0


def test_window_follows_the_standard_linear_function() -> None:
    values = np.arange(-300, 300, dtype=np.int16).reshape(20, 30)
    ds = header(WindowCenter=40, WindowWidth=400, RescaleSlope=1, RescaleIntercept=0)
    out = to_display(ds, gray_frame(values))
    want = np.round([linear(v, 40, 400) for v in values.ravel()]).reshape(values.shape)
    np.testing.assert_array_equal(out, want)


def test_rescale_applies_before_the_window() -> None:
    values = np.array([[0, 1024, 2048]], dtype=np.uint16)
    ds = header(RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=2)
    assert to_display(ds, gray_frame(values)).tolist() == [[0, 255, 255]]


@pytest.mark.parametrize(("function", "middle"), [("LINEAR_EXACT", 128), ("SIGMOID", 128)])
def test_other_voi_functions(function: str, middle: int) -> None:
    values = np.array([[0, 100, 200]], dtype=np.uint16)
    ds = header(WindowCenter=100, WindowWidth=100, VOILUTFunction=function)
    out = to_display(ds, gray_frame(values))
    assert abs(int(out[0, 1]) - middle) <= 1
    assert out[0, 0] < 30 and out[0, 2] > 225


def test_without_window_the_frame_range_is_used_and_monochrome1_inverts() -> None:
    values = np.array([[100, 150, 200]], dtype=np.uint16)
    assert to_display(header(), gray_frame(values)).tolist() == [[0, 128, 255]]
    inverted = to_display(header(), gray_frame(values, "MONOCHROME1"))
    assert inverted.tolist() == [[255, 127, 0]]


def test_invalid_window_width_falls_back_to_the_range() -> None:
    values = np.array([[0, 10]], dtype=np.uint16)
    assert to_display(header(WindowCenter=5, WindowWidth=0), gray_frame(values)).tolist() == [
        [0, 255]
    ]


def test_multi_valued_window_uses_the_first() -> None:
    values = np.array([[0, 50, 100]], dtype=np.uint16)
    ds = header(WindowCenter=[50, 1000], WindowWidth=[2, 10])
    assert to_display(ds, gray_frame(values)).tolist() == [[0, 255, 255]]


def test_per_frame_functional_groups_give_each_frame_its_window() -> None:
    def group(center: int) -> Dataset:
        voi = Dataset()
        voi.WindowCenter, voi.WindowWidth = center, 2
        item = Dataset()
        item.FrameVOILUTSequence = [voi]
        return item

    ds = header(PerFrameFunctionalGroupsSequence=[group(10), group(90)])
    values = np.array([[0, 50, 100]], dtype=np.uint16)
    assert to_display(ds, gray_frame(values), frame_index=0).tolist() == [[0, 255, 255]]
    assert to_display(ds, gray_frame(values), frame_index=1).tolist() == [[0, 0, 255]]


@pytest.mark.parametrize("dtype", [np.uint16, np.int16, np.int32, np.float32])
def test_lookup_table_path_equals_direct_computation(dtype: type) -> None:
    rng = np.random.default_rng(7)
    values = rng.integers(-2000, 3000, size=(40, 50)).astype(dtype)
    if np.dtype(dtype).kind == "u":
        values = np.abs(values).astype(dtype)
    ds = header(RescaleSlope=0.5, RescaleIntercept=-100, WindowCenter=200, WindowWidth=700)
    direct = to_display(ds, gray_frame(values.astype(np.float64)))
    np.testing.assert_array_equal(to_display(ds, gray_frame(values)), direct)


def _sample(name: str) -> tuple[Dataset, DecodedFrame]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(get_testdata_file(name))
        array = pixel_array(ds, index=0)
    fmt = PixelFormat.from_dataset(ds)
    assert fmt is not None
    if array.ndim == 3 and ds.PhotometricInterpretation.startswith("YBR"):
        fmt = replace(fmt, photometric_interpretation="RGB")
    return ds, DecodedFrame(array=array, format=fmt)


def test_palette_colour_goes_through_the_lookup_tables() -> None:
    ds, frame = _sample("OBXXXX1A.dcm")
    out = to_display(ds, frame)
    rgb = apply_color_lut(frame.array, ds)  # 16-bit table entries
    np.testing.assert_array_equal(out, (rgb >> 8).astype(np.uint8))


def test_sixteen_bit_segmented_palette_becomes_8_bit() -> None:
    ds, frame = _sample("gdcm-US-ALOKA-16.dcm")
    out = to_display(ds, frame)
    assert out.dtype == np.uint8 and out.shape == (480, 640, 3)
    np.testing.assert_array_equal(out, (apply_color_lut(frame.array, ds) >> 8).astype(np.uint8))


def test_modality_and_voi_lut_sequences_are_applied() -> None:
    for name in ("mlut_18.dcm", "vlut_04.dcm"):
        ds, frame = _sample(name)
        out = to_display(ds, frame)
        assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255


def test_rgb_frames_pass_through() -> None:
    ds, frame = _sample("SC_rgb.dcm")
    np.testing.assert_array_equal(to_display(ds, frame), frame.array)


def test_render_frame_encodes_jpeg_and_png() -> None:
    ds, frame = _sample("CT_small.dcm")
    jpeg = render_frame(ds, frame, quality=75)
    png = render_frame(ds, frame, media_type=PNG)
    assert jpeg[:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(png)).size == (128, 128)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), to_display(ds, frame))


def test_jpeg_quality_trades_size() -> None:
    pixels = np.random.default_rng(3).integers(0, 255, size=(64, 64, 3)).astype(np.uint8)
    small = encode_image(pixels, media_type="image/jpeg", quality=5)
    large = encode_image(pixels, media_type="image/jpeg", quality=100)
    assert len(small) < len(large)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16])
def test_rendering_a_large_frame_needs_little_beyond_its_output(dtype: type) -> None:
    """A probe's 16,000 x 16,000 render peaked at 5 to 11 times the frame's decoded size:
    the value lookup turned every pixel's index into an 8-byte integer at once. The memory
    it may take beside the frame is now the 1-byte output and a few blocks."""
    import tracemalloc

    rows = columns = 3000
    array = (np.arange(rows * columns, dtype=np.int64) % 3000 - 1000).astype(dtype)
    frame = gray_frame(array.reshape(rows, columns), bits=8 * np.dtype(dtype).itemsize)
    header = Dataset()
    header.WindowCenter, header.WindowWidth = 40, 400
    expected = to_display(header, gray_frame(array[: columns * 4].reshape(4, columns)))
    tracemalloc.start()
    try:
        shown = to_display(header, frame)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert shown.dtype == np.uint8 and shown.shape == (rows, columns)
    assert np.array_equal(shown[:4], expected)  # the same values as a small render
    assert peak < rows * columns + 24 * 2**20, f"{peak / 2**20:.0f} MiB beside the frame"
