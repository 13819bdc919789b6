"""Synthetic DICOM corpora for the STOW-RS benchmarks.

Why generate instead of using files shipped with pydicom: a store benchmark needs hundreds
of *distinct* instances (storing an instance that already exists is a conflict, not a store,
so every run needs fresh UIDs), of a realistic size (a 512 x 512 16-bit CT slice is about
half a megabyte), and one instance far larger than a test should ever hold in memory. None of
that can be downloaded here, and all of it is cheap to make.

Two generators:

* :func:`ct_instances` yields single-frame CT Image Storage instances as Part 10 bytes,
  spread over a few series of one or several studies, the way a scanner would send them.
* :func:`large_instance_file` writes one multi-frame instance of a chosen size straight to
  disk, streaming the pixel data in chunks, so that generating a 2 GB instance costs a few
  megabytes of memory. That is what proves that the server streams STOW bodies too.
"""

from __future__ import annotations

import datetime
import io
import math
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = [
    "ct_instances",
    "large_instance_file",
    "write_corpus",
]

#: Stored value = Hounsfield units + 1024 (RescaleIntercept -1024), kept within 12 bits.
_HU_OFFSET = 1024
#: Noise amplitude in stored units; a few tens of HU, as on a real soft-tissue slice.
_NOISE_SPAN = 40
#: Extra noise samples beyond one image, so that each instance can read its noise at a
#: different offset of one shared buffer instead of drawing new random numbers.
_NOISE_SLACK = 8191

#: The pixel data element header that :func:`large_instance_file` appends by hand:
#: tag (7FE0,0010), VR "OW", two reserved bytes, 32-bit length (PS3.5 7.1.2).
_PIXEL_DATA_HEADER = struct.Struct("<HH2sHI")
#: Largest even value a 32-bit defined length can hold (0xFFFFFFFF means undefined length).
_MAX_DEFINED_LENGTH = 0xFFFFFFFE


def _phantom(rows: int, cols: int) -> np.ndarray:
    """Return a stored-value image of a crude axial body section.

    Why a shape rather than pure noise: a server that renders, transcodes or thumbnails the
    image should see something plausible, and a constant background keeps the data as
    compressible as a real CT (air outside the body), which matters for fair byte counts.
    """
    y, x = np.ogrid[:rows, :cols]
    cy, cx = (rows - 1) / 2.0, (cols - 1) / 2.0
    ry, rx = rows * 0.36, cols * 0.44
    body = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2
    image = np.full((rows, cols), -1000 + _HU_OFFSET, dtype=np.uint16)  # air
    image[body <= 1.0] = 40 + _HU_OFFSET  # soft tissue
    image[(body > 0.88) & (body <= 1.0)] = 700 + _HU_OFFSET  # a ring of "bone"
    spine = ((y - (cy + ry * 0.6)) / (ry * 0.12)) ** 2 + ((x - cx) / (rx * 0.09)) ** 2
    image[spine <= 1.0] = 900 + _HU_OFFSET
    for side in (-1.0, 1.0):  # two "lungs"
        lung = ((y - cy) / (ry * 0.6)) ** 2 + ((x - (cx + side * rx * 0.45)) / (rx * 0.3)) ** 2
        image[lung <= 1.0] = -850 + _HU_OFFSET
    return image


class _PixelSource:
    """Cheap, distinct 16-bit frames of one size.

    Why: drawing 262,144 random numbers per instance would dominate corpus generation, yet
    identical frames would let a deduplicating or compressing store look unrealistically
    good. So the noise is drawn once and each frame reads it at its own offset.
    """

    def __init__(self, rows: int, cols: int, seed: int) -> None:
        if rows <= 0 or cols <= 0:
            raise ValueError(f"rows and cols must be positive, got {rows} x {cols}")
        self.rows = rows
        self.cols = cols
        self._base = _phantom(rows, cols).ravel()
        rng = np.random.default_rng(seed)
        self._noise = rng.integers(0, _NOISE_SPAN, rows * cols + _NOISE_SLACK, dtype=np.uint16)

    def frame(self, index: int) -> bytes:
        """Return frame ``index`` as little-endian bytes (at most 1024 + 1900 + 40 < 4096)."""
        start = (index * 7919) % _NOISE_SLACK
        pixels = self._base + self._noise[start : start + self._base.size]
        return pixels.astype("<u2", copy=False).tobytes()


def _file_meta(sop_class_uid: str, sop_instance_uid: str) -> FileMetaDataset:
    """Build the Part 10 file meta group; pydicom fills in the group length and versions."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return meta


def _set_patient_and_study(
    ds: Dataset, *, patient_number: int, study_uid: str, when: datetime.datetime
) -> None:
    """Fill the Patient and General Study modules, which QIDO-RS indexes and searches."""
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = f"Bench^Patient{patient_number:04d}"
    ds.PatientID = f"BENCH-{patient_number:04d}"
    ds.PatientBirthDate = f"{1940 + patient_number % 60:04d}0101"
    ds.PatientSex = "FM"[patient_number % 2]
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = when.strftime("%Y%m%d")
    ds.StudyTime = when.strftime("%H%M%S")
    ds.StudyID = f"{patient_number % 100000:d}"
    ds.AccessionNumber = f"ACC{patient_number:06d}"
    ds.ReferringPhysicianName = "Referrer^Bench"
    ds.StudyDescription = "Benchmark CT chest"


def _set_grayscale_pixel_module(ds: Dataset, rows: int, cols: int) -> None:
    """Describe 16-bit MONOCHROME2 pixels with 12 bits stored, as most CT scanners send."""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def _to_part10(ds: Dataset) -> bytes:
    """Encode a dataset as a Part 10 file (preamble, DICM, meta group) in memory."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def ct_instances(
    n: int,
    *,
    study_uid: str | None = None,
    rows: int = 512,
    cols: int = 512,
    series_per_study: int = 3,
    instances_per_study: int = 250,
    seed: int = 0,
) -> Iterator[bytes]:
    """Yield ``n`` CT Image Storage instances as Part 10 bytes (Explicit VR Little Endian).

    Instances come study by study and, within a study, series by series, each series a
    contiguous stack of slices, because that is the order in which a modality stores them
    and the order in which a server's index sees them.

    Args:
        n: number of instances to yield.
        study_uid: put every instance into this study; otherwise a new study (and patient)
            starts every ``instances_per_study`` instances.
        rows: image height; 512 rows by 512 columns give about 0.5 MB per instance.
        cols: image width.
        series_per_study: how many series each study is split into.
        instances_per_study: study size when ``study_uid`` is not given.
        seed: seed of the pixel noise, so that a corpus can be regenerated byte for byte
            except for its UIDs.
    """
    if n < 0:
        raise ValueError(f"n must not be negative, got {n}")
    if series_per_study < 1 or instances_per_study < 1:
        raise ValueError("series_per_study and instances_per_study must be at least 1")
    pixels = _PixelSource(rows, cols, seed)
    per_study = n if study_uid is not None else min(n, instances_per_study)
    when = datetime.datetime.now().replace(microsecond=0)
    produced = 0
    study_number = 0
    while produced < n:
        study_size = min(per_study, n - produced)
        current_study = study_uid or generate_uid()
        study_number += 1
        series_size = max(1, math.ceil(study_size / series_per_study))
        for series_start in range(0, study_size, series_size):
            series_count = min(series_size, study_size - series_start)
            template = _ct_series_template(
                study_uid=current_study,
                patient_number=study_number,
                series_number=series_start // series_size + 1,
                rows=rows,
                cols=cols,
                when=when,
            )
            for slice_index in range(series_count):
                yield _ct_instance(template, pixels, slice_index, produced)
                produced += 1
        when += datetime.timedelta(minutes=17)


def _ct_series_template(
    *,
    study_uid: str,
    patient_number: int,
    series_number: int,
    rows: int,
    cols: int,
    when: datetime.datetime,
) -> Dataset:
    """Build the attributes shared by every slice of one series.

    Why a template: building a 60-element dataset per slice would cost more than encoding
    it; per slice only the instance-level attributes and the pixels change.
    """
    ds = Dataset()
    _set_patient_and_study(ds, patient_number=patient_number, study_uid=study_uid, when=when)
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.SeriesDescription = f"Axial {series_number}"
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.Manufacturer = "DICOMweb benchmark"
    ds.ManufacturerModelName = "corpus.py"
    ds.InstitutionName = "Benchmark Hospital"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.AcquisitionNumber = 1
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = ds.StudyTime
    ds.PixelSpacing = [0.7, 0.7]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = 1.25
    ds.KVP = 120
    ds.RescaleIntercept = -_HU_OFFSET
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    _set_grayscale_pixel_module(ds, rows, cols)
    return ds


def _ct_instance(template: Dataset, pixels: _PixelSource, slice_index: int, serial: int) -> bytes:
    """Stamp one slice's identity, position and pixels onto the template and encode it."""
    sop_uid = generate_uid()
    template.file_meta = _file_meta(CTImageStorage, sop_uid)
    template.SOPInstanceUID = sop_uid
    template.InstanceNumber = slice_index + 1
    z = round(-slice_index * 1.25, 2)
    template.ImagePositionPatient = [-179.2, -179.2, z]
    template.SliceLocation = z
    template.PixelData = pixels.frame(serial)
    return _to_part10(template)


def write_corpus(directory: Path, instances: Iterable[bytes], prefix: str = "ct") -> list[Path]:
    """Write instances as ``<prefix>-00000.dcm``... into ``directory`` and list the paths.

    Why files: benchmarks generate once before timing, and other tools (curl, storescu,
    a second benchmark run) can reuse the same corpus.
    """
    directory.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for index, data in enumerate(instances):
        path = directory / f"{prefix}-{index:05d}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


def large_instance_file(
    path: Path | str,
    size_bytes: int,
    *,
    study_uid: str | None = None,
    rows: int = 512,
    cols: int = 512,
    chunk_frames: int = 16,
) -> None:
    """Write one multi-frame 16-bit instance of about ``size_bytes`` bytes to ``path``.

    Why by hand: pydicom encodes a whole dataset in memory, which is exactly what a
    500 MB or 2 GB test instance must avoid. So pydicom writes everything *before* the
    pixel data (file meta, preamble, attributes up to NumberOfFrames), then this function
    appends the (7FE0,0010) OW element header with its 32-bit length and streams the frames
    in chunks of ``chunk_frames`` frames. Pixel Data is the last element of the dataset, so
    the result is a valid Part 10 file that pydicom reads back.

    The SOP class is Multi-frame Grayscale Word Secondary Capture, the standard home for a
    plain stack of 16-bit MONOCHROME2 frames without the functional groups of Enhanced CT.
    The pixel data length is NumberOfFrames x Rows x Columns x 2, rounded to whole frames,
    and must fit a 32-bit length (just under 4 GiB).
    """
    if size_bytes <= 0:
        raise ValueError(f"size_bytes must be positive, got {size_bytes}")
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be at least 1, got {chunk_frames}")
    pixels = _PixelSource(rows, cols, seed=1)
    frame_bytes = rows * cols * 2
    frames = max(1, round(size_bytes / frame_bytes))
    pixel_bytes = frames * frame_bytes
    if pixel_bytes > _MAX_DEFINED_LENGTH:
        raise ValueError(
            f"{pixel_bytes} bytes of pixel data do not fit a 32-bit element length; "
            "encapsulated (undefined-length) pixel data would be needed"
        )
    header = _large_instance_header(
        study_uid=study_uid or generate_uid(), rows=rows, cols=cols, frames=frames
    )
    # A chunk of distinct frames, written again and again: cheap, yet not one repeated frame.
    chunk = b"".join(pixels.frame(i) for i in range(min(chunk_frames, frames)))
    with open(path, "wb") as fp:
        header.save_as(fp, enforce_file_format=True)
        fp.write(_PIXEL_DATA_HEADER.pack(0x7FE0, 0x0010, b"OW", 0, pixel_bytes))
        _write_repeated(fp, chunk, pixel_bytes)


def _large_instance_header(*, study_uid: str, rows: int, cols: int, frames: int) -> Dataset:
    """Build every attribute of the large instance except Pixel Data."""
    sop_uid = generate_uid()
    ds = Dataset()
    ds.file_meta = _file_meta(MultiFrameGrayscaleWordSecondaryCaptureImageStorage, sop_uid)
    _set_patient_and_study(
        ds, patient_number=9999, study_uid=study_uid, when=datetime.datetime.now()
    )
    ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 1
    ds.SeriesDescription = f"Large instance, {frames} frames"
    ds.InstanceNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.BurnedInAnnotation = "NO"
    ds.Manufacturer = "DICOMweb benchmark"
    ds.NumberOfFrames = frames
    # Required when there is more than one frame (PS3.3 C.7.6.6); Frame Time is the
    # simplest permitted target and keeps the header size independent of the frame count.
    ds.FrameIncrementPointer = 0x00181063
    ds.FrameTime = 40
    ds.RescaleIntercept = -_HU_OFFSET
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    _set_grayscale_pixel_module(ds, rows, cols)
    return ds


def _write_repeated(fp: BinaryIO, chunk: bytes, total: int) -> None:
    """Write ``total`` bytes made of ``chunk`` repeated, the last copy truncated."""
    remaining = total
    view = memoryview(chunk)
    while remaining > 0:
        part = view[: min(len(chunk), remaining)]
        fp.write(part)
        remaining -= len(part)
