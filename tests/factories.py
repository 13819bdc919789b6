"""Small DICOM instances made with pydicom, with fresh UIDs unless told otherwise."""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def make_dataset(**kwargs: Any) -> Dataset:
    """A small CT instance; keyword arguments set (or, with None, delete) attributes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tests deliberately build invalid instances
        return _build_dataset(**kwargs)


def _build_dataset(
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    rows: int = 16,
    columns: int = 16,
    frames: int = 1,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **attributes: Any,
) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.SOPInstanceUID = sop_uid or generate_uid()
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = transfer_syntax
    ds.PatientID = "PID-1"
    ds.PatientName = "Doe^John"
    ds.StudyDate = "20240102"
    ds.StudyTime = "101010"
    ds.Modality = "CT"
    ds.AccessionNumber = "ACC-1"
    ds.StudyDescription = "Chest"
    ds.InstanceNumber = 1
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    pixels = (np.arange(rows * columns * frames, dtype=np.uint16) % 4096).reshape(
        (frames, rows, columns) if frames > 1 else (rows, columns)
    )
    ds.PixelData = pixels.tobytes()
    for keyword, value in attributes.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    return ds


def to_bytes(ds: Dataset, *, preamble: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    implicit = ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.save_as(buffer, enforce_file_format=True, implicit_vr=implicit, little_endian=True)
    data = buffer.getvalue()
    if preamble is not None:
        data = preamble.ljust(128, b"\0")[:128] + data[128:]
    return data


def make_instance(**kwargs: Any) -> bytes:
    return to_bytes(make_dataset(**kwargs))


def multipart(
    parts: list[bytes],
    boundary: str = "DICOMwebBoundary",
    part_type: str | None = "application/dicom",
) -> bytes:
    """A multipart/related body with one application/dicom part per instance."""
    out = bytearray()
    for part in parts:
        out += f"--{boundary}\r\n".encode()
        if part_type:
            out += f"Content-Type: {part_type}\r\n".encode()
        out += b"\r\n" + part + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def multipart_parts(body: bytes, content_type: str) -> list[tuple[dict[str, str], bytes]]:
    """Split a multipart response (for assertions), with its part headers."""
    boundary = content_type.split("boundary=")[1].split(";")[0].strip('"')
    delimiter = b"--" + boundary.encode()
    pieces = body.split(b"\r\n" + delimiter)
    first = pieces[0]
    assert first.startswith(delimiter)
    pieces[0] = first[len(delimiter) :]
    parts = []
    for piece in pieces:
        if piece.startswith(b"--"):
            break
        head, _, payload = piece[2:].partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, payload))
    return parts
