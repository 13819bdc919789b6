"""Value objects shared by the domain, the services and the storage ports.

They carry no behaviour beyond (de)serialisation: what an instance *is* for the index
(identifiers, the byte ranges of its frames, the attributes QIDO searches on), computed once
when the instance is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True, order=True)
class InstanceKey:
    """The identity of an instance: unique per (study, series, SOP instance) in a data
    partition (``domain.partitions``).

    The partition is part of the identity and has no default: the same three UIDs may name
    two different instances in two partitions, so a key built without saying which would be
    a leak waiting to happen. Where partitions are off, every key is in partition 1.
    """

    study_uid: str
    series_uid: str
    sop_uid: str
    partition: int = field(kw_only=True)


@dataclass(frozen=True, slots=True, order=True)
class StudyKey:
    """A study in a data partition: what a study-wide job (expiry, bulk update) names."""

    study_uid: str
    partition: int = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class FrameIndex:
    """Where each frame's bytes sit in the stored file, so a frame is a byte-range read.

    ``fragments[i]`` lists the (offset, length) pieces of frame i+1: one piece for native
    (uncompressed) pixel data, one or more encapsulated fragments for compressed data.
    ``encapsulated`` tells which; ``frame_length`` is the native frame size (0 if encapsulated).
    """

    encapsulated: bool
    fragments: tuple[tuple[tuple[int, int], ...], ...]
    frame_length: int = 0

    @property
    def count(self) -> int:
        return len(self.fragments)

    def to_json(self) -> bytes:
        return orjson.dumps({"e": self.encapsulated, "n": self.frame_length, "f": self.fragments})

    @classmethod
    def from_json(cls, raw: bytes | str) -> FrameIndex:
        data = orjson.loads(raw)
        return cls(
            encapsulated=bool(data["e"]),
            frame_length=int(data["n"]),
            fragments=tuple(tuple((int(o), int(n)) for o, n in frame) for frame in data["f"]),
        )


@dataclass(frozen=True, slots=True)
class IndexAttributes:
    """The searchable attribute values of one instance, as the index stores them.

    Keys are DICOM keywords (``PatientName``); values are already normalised for storage:
    the first value of a wrongly multi-valued element, trailing spaces and NULs removed.
    ``normalized`` holds the matching keys QIDO compares: case-folded, accent-stripped forms
    of PN values and case-folded forms of the other case-insensitive strings
    (``index_attributes.normalized_forms``).
    """

    study: dict[str, str | int | float | None] = field(default_factory=dict)
    series: dict[str, str | int | float | None] = field(default_factory=dict)
    instance: dict[str, str | int | float | None] = field(default_factory=dict)
    normalized: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """Everything the index keeps about an instance, computed once at store time."""

    key: InstanceKey
    sop_class_uid: str
    transfer_syntax_uid: str
    file_size: int
    metadata_json: bytes
    attributes: IndexAttributes
    frames: FrameIndex | None = None


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """An instance as the index returns it to readers (only fully stored instances)."""

    key: InstanceKey
    watermark: int
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    file_size: int
    frames: FrameIndex | None
    created_at: str


@dataclass(frozen=True, slots=True)
class Reservation:
    """A claim on an instance identity while its file is being written (status 'creating').

    Readers never see a reserved instance; ``commit`` makes it visible atomically.
    """

    key: InstanceKey
    watermark: int
    blob_key: str
    upsert: bool
    # Files of abandoned attempts (a crash between writing the file and committing) whose
    # reservations this one took over; the store deletes them.
    abandoned_blob_keys: tuple[str, ...] = ()


JsonDict = dict[str, Any]
