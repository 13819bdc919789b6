"""Helpers shared by the WADO-RS end-to-end tests: storing real sample files, reading answers.

Sample files come from pydicom's test data (pydicom-data included). Several share UIDs, so
each is stored with fresh study, series and instance UIDs; the returned dataset is the
original with those UIDs, so tests compare what the server returns with what was sent.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import cache

import httpx
import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.support.factories import multipart_parts

STORE_HEADERS = {"Content-Type": "application/dicom", "Accept": "application/dicom+json"}
EXPLICIT_LE = "1.2.840.10008.1.2.1"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"


@dataclass(frozen=True)
class Stored:
    """A stored sample: the dataset sent (fresh UIDs) and its URL path (without version)."""

    ds: Dataset
    data: bytes

    @property
    def study(self) -> str:
        return f"/v2/studies/{self.ds.StudyInstanceUID}"

    @property
    def series(self) -> str:
        return f"{self.study}/series/{self.ds.SeriesInstanceUID}"

    @property
    def instance(self) -> str:
        return f"{self.series}/instances/{self.ds.SOPInstanceUID}"

    @property
    def transfer_syntax(self) -> str:
        return str(self.ds.file_meta.TransferSyntaxUID)

    def pixels(self) -> np.ndarray:
        """The original's pixels as pydicom decodes them by default (YBR -> RGB)."""
        return _pixels(self.data)


@cache
def _pixels(data: bytes) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(io.BytesIO(data)).pixel_array


def read(data: bytes) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dcmread(io.BytesIO(data))


def sample(name: str, *, transfer_syntax: str | None = None) -> Dataset:
    """A pydicom sample file with fresh UIDs (and, optionally, a relabelled syntax)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(get_testdata_file(name))
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "PatientID" not in ds:
        ds.PatientID = "SAMPLE"
    if transfer_syntax is not None:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    return ds


def encode(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def store(client: httpx.Client, ds: Dataset) -> Stored:
    """Store ``ds``; ``Stored.data`` is the file as the server keeps it (preamble zeroed)."""
    data = encode(ds)
    response = client.post("/v2/studies", content=data, headers=STORE_HEADERS)
    assert response.status_code in (200, 202), response.text
    assert "00081198" not in response.json(), response.text  # nothing failed
    return Stored(ds=ds, data=bytes(128) + data[128:])


def store_sample(client: httpx.Client, name: str, *, transfer_syntax: str | None = None) -> Stored:
    return store(client, sample(name, transfer_syntax=transfer_syntax))


def parts(response: httpx.Response) -> list[tuple[dict[str, str], bytes]]:
    content_type = response.headers["content-type"]
    assert content_type.startswith("multipart/related"), content_type
    return multipart_parts(response.content, content_type)


def part_syntax(headers: dict[str, str]) -> str:
    return headers["content-type"].split("transfer-syntax=")[1].split(";")[0].strip()


def native_frame(frame: bytes, ds: Dataset, photometric: str | None = None) -> np.ndarray:
    """Interpret Explicit VR Little Endian frame bytes with the original's pixel format."""
    bits = int(ds.BitsAllocated)
    kind = "i" if int(ds.get("PixelRepresentation", 0)) else "u"
    dtype = np.dtype(f"<{kind}{bits // 8}")
    samples = int(ds.get("SamplesPerPixel", 1))
    shape = (int(ds.Rows), int(ds.Columns)) + ((samples,) if samples > 1 else ())
    return np.frombuffer(frame, dtype=dtype).reshape(shape)


def original_frame(stored: Stored, number: int) -> np.ndarray:
    pixels = stored.pixels()
    frames = int(stored.ds.get("NumberOfFrames", 1) or 1)
    return pixels[number - 1] if frames > 1 else pixels
