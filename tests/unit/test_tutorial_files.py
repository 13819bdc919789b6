"""Tests for tests/support/tutorial_files.py.

The end-to-end tests replay the curl tutorial's requests with these files, so a wrong UID
or a malformed file would show up there as a confusing 404 or 400. These tests pin the
files down on their own: the UIDs against the tutorial's table (copied here literally, not
imported, so that a typo in the fixture cannot hide), the Part 10 framing, and the pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset

from tests.support.tutorial_files import make_tutorial_files

STUDY = "1.2.826.0.1.3680043.8.498.13230779778012324449356534479549187420"
TABLE = {
    "green-square.dcm": (
        "1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652",
        "1.2.826.0.1.3680043.8.498.12714725698140337137334606354172323212",
    ),
    "red-triangle.dcm": (
        "1.2.826.0.1.3680043.8.498.45787841905473114233124723359129632652",
        "1.2.826.0.1.3680043.8.498.47359123102728459884412887463296905395",
    ),
    "blue-circle.dcm": (
        "1.2.826.0.1.3680043.8.498.77033797676425927098669402985243398207",
        "1.2.826.0.1.3680043.8.498.13273713909719068980354078852867170114",
    ),
}
COLOURS = {
    "green-square.dcm": (0, 255, 0),
    "red-triangle.dcm": (255, 0, 0),
    "blue-circle.dcm": (0, 0, 255),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_tutorial_files(tmp_path_factory.mktemp("tutorial"))


def read(path: Path) -> FileDataset:
    return pydicom.dcmread(path)


def test_make_tutorial_files_writes_the_three_named_files(files: dict[str, Path]) -> None:
    assert set(files) == set(TABLE)
    for name, path in files.items():
        assert path.name == name
        assert path.is_file()


@pytest.mark.parametrize("name", sorted(TABLE))
def test_tutorial_file_uids_match_the_tutorial_table(files: dict[str, Path], name: str) -> None:
    ds = read(files[name])
    series_uid, instance_uid = TABLE[name]
    assert ds.StudyInstanceUID == STUDY
    assert ds.SeriesInstanceUID == series_uid
    assert ds.SOPInstanceUID == instance_uid
    assert ds.file_meta.MediaStorageSOPInstanceUID == instance_uid


@pytest.mark.parametrize("name", sorted(TABLE))
def test_tutorial_file_is_part10_secondary_capture_rgb(files: dict[str, Path], name: str) -> None:
    raw = files[name].read_bytes()
    assert raw[128:132] == b"DICM"
    ds = read(files[name])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.7"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert (ds.Rows, ds.Columns) == (985, 979)
    assert ds.SamplesPerPixel == 3
    assert ds.PhotometricInterpretation == "RGB"
    assert ds.PlanarConfiguration == 0
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (8, 8, 7)
    assert ds.PatientID
    assert ds.PatientName
    assert ds.StudyDate


@pytest.mark.parametrize("name", sorted(TABLE))
def test_tutorial_file_pixels_show_its_colour_on_black(files: dict[str, Path], name: str) -> None:
    pixels = read(files[name]).pixel_array
    assert pixels.shape == (985, 979, 3)
    assert pixels.dtype == np.uint8
    assert tuple(pixels[985 // 2, 979 // 2]) == COLOURS[name]
    for corner in ((0, 0), (0, -1), (-1, 0), (-1, -1)):
        assert tuple(pixels[corner]) == (0, 0, 0)
    colours = {tuple(c) for c in pixels.reshape(-1, 3)[::97].tolist()}
    assert colours == {(0, 0, 0), COLOURS[name]}


def test_tutorial_file_shapes_differ_by_area(files: dict[str, Path]) -> None:
    # given the same half-size for all three shapes
    area = {name: int(read(path).pixel_array.any(axis=2).sum()) for name, path in files.items()}
    square = area["green-square.dcm"]
    # then the circle covers pi/4 of the square, the triangle half of it
    assert area["blue-circle.dcm"] / square == pytest.approx(np.pi / 4, rel=0.02)
    assert area["red-triangle.dcm"] / square == pytest.approx(0.5, rel=0.02)


def test_make_tutorial_files_is_deterministic(tmp_path: Path, files: dict[str, Path]) -> None:
    again = make_tutorial_files(tmp_path)
    for name, path in files.items():
        assert read(again[name]).PixelData == read(path).PixelData
