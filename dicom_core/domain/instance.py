"""Reading a stored-to-be instance once: identity, validation, metadata, frames, index values.

``parse_instance`` is the single place where a STOW part is parsed. It reads the header up to
the pixel data (never the pixel data itself, so a 2 GB instance costs a few kilobytes of
memory), then computes everything that retrieval and search will need.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydicom import dcmread
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

from dicom_core.domain import index_attributes
from dicom_core.domain.deflate import (
    InflatedSizeError,
    Inflation,
    InflationDeferred,
    InflationGuard,
)
from dicom_core.domain.dicomjson import dataset_json
from dicom_core.domain.frames import FrameLayoutError, TruncatedPixelData, frame_index
from dicom_core.domain.identifiers import identifier_problem
from dicom_core.domain.model import FrameIndex, InstanceKey, StoredInstance
from dicom_core.domain.nesting import MAX_SEQUENCE_DEPTH, dataset_nesting_problem
from dicom_core.domain.validation import AttributeProblem, attribute_comment, dataset_problems
from dicom_core.domain.validation.messages import brief

# Failure and warning reason codes of the store response (conformance statement).
PROCESSING_FAILURE = 272
VALIDATION_FAILURE = 43264
STUDY_MISMATCH = 43265
INSTANCE_EXISTS = 45070
INSTANCE_BEING_CREATED = 45071
WARNING_SOP_CLASS_MISMATCH = 45063
WARNING_VALIDATION = 1

REQUIRED_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
REQUIRED_TAGS = {0x0020000D, 0x0020000E, 0x00080018, 0x00080016, 0x00100020}

# The attributes QIDO searches (conformance statement table); in API v1 they fail a store.
SEARCHABLE_TAGS = {
    0x0020000D,  # StudyInstanceUID
    0x00100010,  # PatientName
    0x00100020,  # PatientID
    0x00100030,  # PatientBirthDate
    0x00080050,  # AccessionNumber
    0x00080090,  # ReferringPhysicianName
    0x00080020,  # StudyDate
    0x00081030,  # StudyDescription
    0x0020000E,  # SeriesInstanceUID
    0x00080060,  # Modality
    0x00400244,  # PerformedProcedureStepStartDate
    0x00081090,  # ManufacturerModelName
    0x00080018,  # SOPInstanceUID
}


class InstanceRejected(Exception):
    """The part cannot be stored; ``failure_code`` goes into the FailedSOPSequence."""

    def __init__(
        self,
        failure_code: int,
        message: str,
        *,
        sop_class_uid: str | None = None,
        sop_uid: str | None = None,
        comments: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.failure_code = failure_code
        self.message = message
        self.sop_class_uid = sop_class_uid
        self.sop_uid = sop_uid
        self.comments = comments if comments is not None else [message]


@dataclass(frozen=True, slots=True)
class ParsedInstance(StoredInstance):
    """What the index keeps about the instance (``StoredInstance``), and the problems the
    parse found in attributes that are not required (warnings of the store's answer)."""

    problems: list[AttributeProblem] = field(default_factory=list)


@functools.cache
def _tag(keyword: str) -> int:
    """A keyword's tag (pydicom's keyword lookup is slow to repeat for every instance)."""
    return int(Tag(keyword))


def _text(ds: Dataset, keyword: str) -> str | None:
    """The first value of a UID attribute as text; None when absent, "" when empty."""
    values = _uid_values(ds, keyword)
    if values is None:
        return None
    return values[0] if values else ""


def _uid_values(ds: Dataset, keyword: str) -> list[str] | None:
    """Every value of a UID attribute as text; None when absent, [] when empty."""
    elem = ds.get_item(_tag(keyword))
    if elem is None:
        return None
    if isinstance(elem, RawDataElement) and elem.VR == "UI" and isinstance(elem.value, bytes):
        # Read straight from the bytes: converting the element costs more than the whole rule.
        text = elem.value.decode("latin-1").rstrip(" \x00")
        return text.split("\\") if text else []
    try:
        value = ds[_tag(keyword)].value
    except Exception:
        return []
    if value is None:
        return []
    if isinstance(value, str):
        value = value.rstrip(" \x00")
        return [value] if value else []
    return [str(item).rstrip(" \x00") for item in value]


def _shown(uid: str | None) -> str | None:
    """``uid`` if a failure item may name it: a malformed one would make a client that parses
    the answer as DICOM JSON with validation (fo-dicom's default) refuse all of it."""
    return uid if uid and identifier_problem(uid) is None else None


def _int(ds: Dataset, keyword: str, default: int) -> int:
    """The first value of an integer attribute (US or IS), or ``default`` if absent or bad."""
    elem = ds.get_item(_tag(keyword))
    if elem is None:
        return default
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        raw = elem.value
        if elem.VR == "US":
            if len(raw) < 2:
                return default
            return int.from_bytes(raw[:2], "little" if elem.is_little_endian else "big")
        if elem.VR == "IS":
            text = raw.split(b"\\", 1)[0].strip(b" \x00")
            if not text:
                return default
            if text.isdigit():
                return int(text)
            # Signs, "1.0" and the like: pydicom's own reading decides below.
    try:
        value = ds[_tag(keyword)].value
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError, KeyError):
        return default
    except Exception:
        return default


DEFAULT_MAX_INFLATED = 512 << 20
"""``Settings.max_decoded_bytes``' default: the most a deflated dataset may inflate to."""


def parse_instance(
    path: Path,
    size: int | None = None,
    *,
    partition: int,
    max_inflated: int = DEFAULT_MAX_INFLATED,
    defer_inflation: bool = False,
) -> ParsedInstance:
    """Parse the staged part at ``path`` (preamble already zeroed) or raise InstanceRejected.

    ``size`` is the file's size when the caller already has it; ``partition`` the data
    partition the instance is stored in, part of its key. A Deflated Explicit VR Little
    Endian part is refused when its dataset inflates past ``max_inflated`` bytes, before
    pydicom inflates it whole (``domain.deflate``); with ``defer_inflation`` (a caller on the
    event loop) it raises ``InflationDeferred`` instead, for the caller to parse it in a
    thread. A part whose last element read ends past the end of the file (cut short in
    transit) is refused too.
    """
    if size is None:
        size = path.stat().st_size
    with open(path, "rb") as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        head = handle.read(132)
        if len(head) < 132 or head[128:132] != b"DICM":
            raise InstanceRejected(
                VALIDATION_FAILURE, "The part is not a DICOM Part 10 file (no 'DICM' prefix)."
            )
        handle.seek(0)
        mode = Inflation.DEFER if defer_inflation else Inflation.INFLATE
        guarded = InflationGuard(handle, max_inflated, mode)
        try:
            ds = dcmread(guarded, stop_before_pixels=True, defer_size="1 MB")
        except InflationDeferred:
            raise
        except InflatedSizeError as exc:
            raise InstanceRejected(
                VALIDATION_FAILURE, f"The part cannot be stored: {exc}."
            ) from None
        except RecursionError:
            raise _too_deep() from None
        except (InvalidDicomError, EOFError, ValueError, KeyError, OSError) as exc:
            if _from_recursion(exc):
                raise _too_deep() from None
            raise InstanceRejected(
                VALIDATION_FAILURE, f"The part could not be read as DICOM: {brief(exc)}"
            ) from exc
        except Exception as exc:
            raise InstanceRejected(
                VALIDATION_FAILURE, f"The part could not be read as DICOM: {brief(exc)}"
            ) from exc

        # Before anything reads an element (and converts it); a deflated file's elements are
        # read from the inflated data, whose offsets are not the file's.
        syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "").rstrip(" \x00")
        cut = None if syntax == DeflatedExplicitVRLittleEndian else _cut_element(ds, size)
        sop_class = _text(ds, "SOPClassUID")
        sop_uid = _text(ds, "SOPInstanceUID")
        if cut is not None:
            raise InstanceRejected(
                VALIDATION_FAILURE,
                cut,
                sop_class_uid=_shown(sop_class),
                sop_uid=_shown(sop_uid),
                comments=[attribute_comment(cut)],
            )
        # Before any recursive walk (validation, DICOM JSON, orjson): they are safe only up to
        # MAX_SEQUENCE_DEPTH levels.
        too_deep = dataset_nesting_problem(ds)
        if too_deep is not None:
            raise InstanceRejected(
                VALIDATION_FAILURE,
                f"{too_deep}.",
                sop_class_uid=_shown(sop_class),
                sop_uid=_shown(sop_uid),
            )
        ts = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "").rstrip(" \x00")
        little_endian = _check_transfer_syntax(ts, sop_class, sop_uid)
        found = dataset_problems(ds)
        key = _check_required(ds, sop_class, sop_uid, found, partition)

        problems = [p for p in found if p.tag not in REQUIRED_TAGS]
        frames: FrameIndex | None = None
        try:
            frames = frame_index(
                handle,
                little_endian=little_endian,
                number_of_frames=_int(ds, "NumberOfFrames", 1),
                rows=_int(ds, "Rows", 0),
                columns=_int(ds, "Columns", 0),
                samples_per_pixel=_int(ds, "SamplesPerPixel", 1),
                bits_allocated=_int(ds, "BitsAllocated", 0),
                extended_offsets=None,
                file_size=size,
            )
        except TruncatedPixelData as exc:
            # Stored, it could never be served: every frame would be a damaged file's.
            message = f"(7FE0,0010) PixelData: {exc}; the file is incomplete."
            raise InstanceRejected(
                VALIDATION_FAILURE,
                message,
                sop_class_uid=_shown(sop_class),
                sop_uid=key.sop_uid,
                comments=[attribute_comment(message)],
            ) from None
        except FrameLayoutError as exc:
            problems.append(
                AttributeProblem(0x7FE00010, "PixelData", f"(7FE0,0010) PixelData: {exc}")
            )

        document = dataset_json(ds)
        attributes = index_attributes.extract(
            ds, skip_tags=[p.tag for p in problems], document=document
        )
        metadata = orjson.dumps(document)
    return ParsedInstance(
        key=key,
        sop_class_uid=sop_class or "",
        transfer_syntax_uid=ts,
        file_size=size,
        metadata_json=metadata,
        attributes=attributes,
        frames=frames,
        problems=problems,
    )


def _too_deep() -> InstanceRejected:
    """pydicom parses sequences of undefined length recursively while reading; a few hundred
    levels exhaust Python's stack before the nesting check after the parse can run."""
    return InstanceRejected(
        VALIDATION_FAILURE,
        f"The part's sequences nest too deep to be read; at most {MAX_SEQUENCE_DEPTH}"
        " levels are accepted.",
    )


def _from_recursion(exc: BaseException) -> bool:
    """Whether ``exc`` stands for a RecursionError: pydicom turns any exception raised while
    it reads an item's tag into "No tag to read" (an OSError whose context is the original),
    so where the stack ran out decides which one reaches us."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, RecursionError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _cut_element(ds: Dataset, size: int) -> str | None:
    """Why the file looks cut short: its last top-level element read (the one before Pixel
    Data, or the last of a file without it) declares more bytes than the file has left.

    pydicom reads what there is of such a value (or seeks past a deferred one) without a
    word, so a file cut in transit would otherwise be stored as if whole. Elements before the
    last are complete by construction: the cut is at the end. A cut inside an element's
    8-byte header, or exactly between two elements, leaves nothing to see."""
    raw_elements = getattr(ds, "_dict", {})
    if not raw_elements:
        return None
    tag = max(raw_elements)
    element = raw_elements[tag]
    if not isinstance(element, RawDataElement) or element.length == 0xFFFFFFFF:
        return None
    end = int(element.value_tell) + int(element.length)
    if end <= size:
        return None
    name = keyword_for_tag(tag) or "a private attribute"
    return (
        f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {name}: the file ends {end - size} bytes before"
        f" the end of this value of {element.length} bytes; the file is incomplete."
    )


def _check_transfer_syntax(ts: str, sop_class: str | None, sop_uid: str | None) -> bool:
    if not ts:
        raise InstanceRejected(
            VALIDATION_FAILURE,
            "The file meta information has no TransferSyntaxUID (0002,0010).",
            sop_class_uid=_shown(sop_class),
            sop_uid=_shown(sop_uid),
        )
    uid = UID(ts)
    if not uid.is_transfer_syntax:
        raise InstanceRejected(
            VALIDATION_FAILURE,
            f"Transfer syntax {ts} is not a transfer syntax this service knows.",
            sop_class_uid=_shown(sop_class),
            sop_uid=_shown(sop_uid),
        )
    if uid.is_implicit_VR:
        raise InstanceRejected(
            VALIDATION_FAILURE,
            f"Transfer syntax {ts} uses implicit VR; only explicit VR transfer syntaxes are"
            " accepted.",
            sop_class_uid=_shown(sop_class),
            sop_uid=_shown(sop_uid),
        )
    return bool(uid.is_little_endian)


def _check_required(
    ds: Dataset,
    sop_class: str | None,
    sop_uid: str | None,
    found: list[AttributeProblem],
    partition: int,
) -> InstanceKey:
    comments: list[str] = []
    values: dict[str, str] = {}
    for keyword in REQUIRED_UIDS:
        uids = _uid_values(ds, keyword)
        tag = _tag(keyword)
        label = f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword}"
        if uids is None:
            comments.append(f"{label} is required but missing.")
            continue
        if len(uids) > 1:
            # Filing the instance under the first would hide the others for good.
            comments.append(f"{label} has {len(uids)} values; it takes exactly one.")
            continue
        value = uids[0] if uids else ""
        problem = identifier_problem(value)
        if problem is not None:
            comments.append(f"{label}: {problem}.")
            continue
        values[keyword] = value
    if 0x00100020 not in ds:
        comments.append("(0010,0020) PatientID is required but missing (it may be empty).")
    else:
        comments.extend(p.message for p in found if p.tag == 0x00100020)
    if comments:
        raise InstanceRejected(
            VALIDATION_FAILURE,
            " ".join(comments),
            # Only valid UIDs: a client parsing the answer as DICOM JSON with validation
            # (fo-dicom's default) would fail on a malformed one; the comment quotes it.
            sop_class_uid=values.get("SOPClassUID") or None,
            sop_uid=values.get("SOPInstanceUID") or None,
            comments=[attribute_comment(comment) for comment in comments],
        )
    return InstanceKey(
        values["StudyInstanceUID"],
        values["SeriesInstanceUID"],
        values["SOPInstanceUID"],
        partition=partition,
    )
