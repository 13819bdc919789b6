"""Small DICOM instances made with pydicom, with fresh UIDs unless told otherwise."""

from __future__ import annotations

import io
import struct
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


def nested_sequence_bytes(depth: int, *, defined_length: bool) -> bytes:
    """ContentSequence (0040,A730) nested ``depth`` levels, one item a level, explicit VR LE.

    Built from the inside out without recursion (pydicom's writer recurses once a level), with
    either defined lengths or undefined lengths and delimiters; the innermost item holds a
    CodeMeaning (0008,0104) "leaf".
    """
    value = b"leaf"
    inner = struct.pack("<HH2sH", 0x0008, 0x0104, b"LO", len(value)) + value
    for _ in range(depth):
        if defined_length:
            item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
            inner = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, len(item)) + item
        else:
            item = (
                struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
                + inner
                + struct.pack("<HHI", 0xFFFE, 0xE00D, 0)
            )
            inner = (
                struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
                + item
                + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
            )
    return inner


def make_nested_instance(depth: int, *, defined_length: bool = False) -> tuple[Dataset, bytes]:
    """A small instance whose ContentSequence nests ``depth`` levels, and its Part 10 bytes.

    The sequence is appended after the dataset pydicom wrote: (0040,A730) sorts after every
    attribute make_dataset sets except the pixel data, which is therefore left out.
    """
    ds = make_dataset(PixelData=None)
    data = to_bytes(ds) + nested_sequence_bytes(depth, defined_length=defined_length)
    return ds, data


def nested_sequence_json(depth: int) -> dict[str, Any]:
    """DICOM JSON of the same ContentSequence nesting (built iteratively, like the bytes)."""
    item: dict[str, Any] = {"00080104": {"vr": "LO", "Value": ["leaf"]}}
    for _ in range(depth - 1):
        item = {"0040A730": {"vr": "SQ", "Value": [item]}}
    return {"0040A730": {"vr": "SQ", "Value": [item]}}
