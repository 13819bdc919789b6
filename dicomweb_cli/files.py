"""Which files are DICOM: found by content (the Part 10 preamble and ``DICM``), not by name.

Exported folders are full of DICOM files without an extension (``IM000001``, DICOMDIR trees)
and of ``.dcm`` look-alikes, so the name says little; the 128-byte preamble followed by the
four bytes ``DICM`` is what every Part 10 file has (PS3.10 7.1).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

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


def sop_instance_uid(path: Path) -> str | None:
    """The file's SOP Instance UID (0008,0018), read from its header only, or None when the
    file cannot be parsed: the STOW answer names instances by this UID, and the client maps
    it back to the file it sent."""
    try:
        dataset = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=[0x00080018], force=False
        )
    except (InvalidDicomError, OSError):
        return None
    except Exception:  # a damaged header raises whatever its parser met; the UID is unknown
        return None
    value = dataset.get("SOPInstanceUID")
    return str(value) if value else None
