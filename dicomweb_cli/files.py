"""Which files are DICOM: found by content (the Part 10 preamble and ``DICM``), not by name.

Exported folders are full of DICOM files without an extension (``IM000001``, DICOMDIR trees)
and of ``.dcm`` look-alikes, so the name says little; the 128-byte preamble followed by the
four bytes ``DICM`` is what every Part 10 file has (PS3.10 7.1).
"""

from __future__ import annotations

import os
import struct
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PREAMBLE_BYTES = 128
MAGIC = b"DICM"


@dataclass(frozen=True)
class DicomFile:
    """A file to upload: where it is, its size, and when it was last changed (the journal
    recognises a file it has seen by all three, so an edited file is sent again)."""

    path: Path
    size: int
    mtime_ns: int

    @property
    def key(self) -> str:
        return f"{self.path}\0{self.size}\0{self.mtime_ns}"


def is_dicom(path: Path) -> bool:
    """Whether ``path`` starts with a Part 10 preamble and ``DICM``; unreadable files are not."""
    try:
        with path.open("rb") as stream:
            head = stream.read(PREAMBLE_BYTES + len(MAGIC))
    except OSError:
        return False
    return len(head) == PREAMBLE_BYTES + len(MAGIC) and head[PREAMBLE_BYTES:] == MAGIC


def find_dicom_files(paths: Iterable[Path]) -> Iterator[DicomFile]:
    """The DICOM files among ``paths`` and, for folders, their trees, each once, in a stable
    order (sorted per folder) so that batches and the progress of a resumed run repeat."""
    seen: set[Path] = set()
    for root in paths:
        candidates: Iterable[Path] = _walk(root) if root.is_dir() else [root]
        for candidate in candidates:
            resolved = candidate.resolve()
            if resolved in seen or not resolved.is_file() or not is_dicom(resolved):
                continue
            seen.add(resolved)
            stat = resolved.stat()
            yield DicomFile(resolved, stat.st_size, stat.st_mtime_ns)


def _walk(root: Path) -> Iterator[Path]:
    for folder, subfolders, names in os.walk(root):
        subfolders.sort()
        for name in sorted(names):
            yield Path(folder) / name


#: Bytes read for the file meta group: a few hundred in practice, never near this.
META_BYTES = 4096
#: Explicit VRs whose value length is 4 bytes, after 2 reserved ones (PS3.5 7.1.2).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
MEDIA_STORAGE_SOP_INSTANCE_UID = (0x0002, 0x0003)


def meta_sop_instance_uid(head: bytes) -> str | None:
    """Media Storage SOP Instance UID (0002,0003) from the start of a Part 10 file, or None.

    The file meta group follows the preamble and ``DICM``, always in explicit VR little
    endian (PS3.10 7.1), and PS3.10 makes this element equal to the dataset's SOP Instance
    UID. Reading it takes a dozen lines instead of pydicom, whose import and parse cost
    about a third of the client's CPU on a 400-file upload (benchmarks/cli_upload.py), CPU
    a server on the same machine needs: anything unusual returns None and pydicom decides.
    """
    position = PREAMBLE_BYTES + len(MAGIC)
    if head[PREAMBLE_BYTES:position] != MAGIC:
        return None
    while position + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, position)
        if group != 0x0002:
            return None
        vr = head[position + 4 : position + 6]
        if vr in LONG_VRS:
            if position + 12 > len(head):
                return None
            (length,) = struct.unpack_from("<I", head, position + 8)
            start = position + 12
        else:
            (length,) = struct.unpack_from("<H", head, position + 6)
            start = position + 8
        if (group, element) == MEDIA_STORAGE_SOP_INSTANCE_UID:
            if vr != b"UI" or start + length > len(head):
                return None
            value = head[start : start + length].rstrip(b"\0 ")
            try:
                return value.decode("ascii") or None
            except UnicodeDecodeError:
                return None
        position = start + length
    return None


def sop_instance_uid(path: Path) -> str | None:
    """The file's SOP Instance UID, or None when the file cannot be parsed: the STOW answer
    names instances by this UID, and the client maps it back to the file it sent. It comes
    from the file meta group when that has it, else from the dataset."""
    try:
        with path.open("rb") as stream:
            head = stream.read(META_BYTES)
    except OSError:
        return None
    return meta_sop_instance_uid(head) or dataset_sop_instance_uid(path)


def dataset_sop_instance_uid(path: Path) -> str | None:
    """The dataset's SOP Instance UID (0008,0018), read by pydicom from the header only (the
    server's answer names this one, should the meta group disagree), or None."""
    import pydicom  # here: most files never need it (meta_sop_instance_uid)
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(
                path, stop_before_pixels=True, specific_tags=[0x00080018], force=False
            )
            value = dataset.get("SOPInstanceUID")
    except (InvalidDicomError, OSError):
        return None
    except Exception:  # a damaged header raises whatever its parser met; the UID is unknown
        return None
    return str(value) if value else None
