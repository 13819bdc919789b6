"""Checking elements and whole datasets: the walk, the sequences, and the entry points.

Each top-level attribute gets at most one problem, its first, even when that problem sits deep
inside a sequence, because the store response reports one comment per top-level attribute.
Nothing here may raise for a dataset pydicom managed to read: every per-attribute failure
becomes a problem instead, so one broken attribute cannot abort a whole store request.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeGuard

from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset

from dicom_core.domain.charsets import DEFAULT_CHARSET, Charset
from dicom_core.domain.validation.messages import show, tag_keyword, tag_label
from dicom_core.domain.validation.values import (
    OPAQUE_VRS,
    Unreadable,
    charset_of,
    effective_vr,
    resolve_vr,
    text_values,
)
from dicom_core.domain.validation.vr_rules import (
    NUMBER_SIZES,
    TEXT_MAX_CHARS,
    UNCHECKED_TEXT_VRS,
    first_value_problem,
    free_text_problem,
    numbers_problem,
)

_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
# Groups that never belong to the data set proper: command elements and file meta information.
_SKIPPED_GROUPS = frozenset({0x0000, 0x0002})
# The first four bytes of a sequence's value: an item, or the delimiter of an empty sequence.
_ITEM_TAG_LE = b"\xfe\xff\x00\xe0"
_ITEM_TAG_BE = b"\xff\xfe\xe0\x00"
_SEQ_END_LE = b"\xfe\xff\xdd\xe0"
_SEQ_END_BE = b"\xff\xfe\xe0\xdd"
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: The conformance statement's "Store Error Codes": 100, attributes that fail validation.
ATTRIBUTE_VALIDATION_ERROR = 100


@dataclass(frozen=True, slots=True)
class AttributeProblem:
    """One failing top-level attribute, shaped for a FailedAttributesSequence ErrorComment.

    ``tag`` is always a top-level tag, even when the problem sits deep inside a sequence,
    because the store response reports one comment per top-level attribute.
    """

    tag: int
    keyword: str
    message: str

    @property
    def error_comment(self) -> str:
        """The ErrorComment (0000,0902) for a response: the message behind Azure's error code
        for attribute validation, as the conformance statement's example writes it
        ("DICOM100: (0008,0020) ..."), so that a client reading the code finds it."""
        return attribute_comment(self.message)


def attribute_comment(message: str) -> str:
    """``message`` about an attribute that failed validation, as an ErrorComment."""
    return f"DICOM{ATTRIBUTE_VALIDATION_ERROR}: {message}"


def dataset_problems(ds: Dataset) -> list[AttributeProblem]:
    """List every failing top-level attribute of ``ds`` with its first problem, in tag order.

    File meta information, group lengths and pixel data are not examined. The dataset is not
    modified: raw elements are read without being converted in place. The walk recurses once
    per sequence level, so callers bound the nesting first with
    :func:`dicom_core.domain.nesting.dataset_nesting_problem`, as ``parse_instance`` does.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            findings = _dataset_findings(ds, DEFAULT_CHARSET)
        except Exception as exc:
            # Only reachable for objects that merely pretend to be datasets; say so rather
            # than pretend the instance is clean.
            findings = [(0, f"data set could not be read ({type(exc).__name__})")]
    return [
        AttributeProblem(tag, tag_keyword(tag) if tag else "", message) for tag, message in findings
    ]


def element_problem(elem: DataElement | RawDataElement) -> str | None:
    """Check one element against its VR and describe the first problem, or return ``None``.

    Without the surrounding dataset the Specific Character Set is unknown, so raw text bytes are
    decoded with the default repertoire (items that declare their own character set still use
    it). Use :func:`dataset_problems` for whole instances.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _check(elem, None, DEFAULT_CHARSET)
        except Exception as exc:
            tag = int(getattr(elem, "tag", 0))
            return f"{tag_label(tag)}: value could not be read ({type(exc).__name__})"


def _dataset_findings(ds: Dataset, charset: Charset) -> list[tuple[int, str]]:
    """Every problem in ``ds`` as (top-level tag, message), in tag order."""
    charset = charset_of(ds, charset)
    findings: list[tuple[int, str]] = []
    # Iterating the dataset itself would convert every raw element in place; keys() does not.
    tags = sorted(map(int, ds.keys()))
    for key in tags:
        if _skipped(key):
            continue
        try:
            elem = ds.get_item(key)
        except Exception as exc:
            findings.append(
                (key, f"{tag_label(key)}: value could not be read ({type(exc).__name__})")
            )
            continue
        if elem is None:
            continue
        message = _check_raw(elem, charset) if _cacheable(elem) else _check(elem, ds, charset)
        if message is not None:
            findings.append((key, message))
    return findings


def _first_dataset_problem(ds: Dataset, inherited: Charset) -> str | None:
    """The first problem inside a sequence item, which is all the service reports for it."""
    findings = _dataset_findings(ds, inherited)
    return findings[0][1] if findings else None


def _skipped(tag: int) -> bool:
    """Group lengths, file meta and command groups are not part of what the store validates."""
    return (tag >> 16) in _SKIPPED_GROUPS or (tag & 0xFFFF) == 0 or tag in _PIXEL_DATA_TAGS


def _check(elem: DataElement | RawDataElement, ds: Dataset | None, charset: Charset) -> str | None:
    """Validate one element and return its full message ("(gggg,eeee) Keyword: ...") or None."""
    tag = int(elem.tag)
    try:
        vr = effective_vr(resolve_vr(elem, ds))
        if vr in OPAQUE_VRS or tag in _PIXEL_DATA_TAGS:
            return None
        truncated = _truncation_problem(elem)
        if truncated is not None:
            return f"{tag_label(tag)}: {truncated}"
        if vr == "SQ":
            reason = _sequence_problem(elem, ds, charset)
            return None if reason is None else f"{tag_label(tag)} > {reason}"
        if vr in NUMBER_SIZES or vr == "US or SS":
            reason = numbers_problem(elem.value, vr)
        else:
            values = text_values(elem.value, vr, charset)
            if vr in TEXT_MAX_CHARS and values:
                reason = free_text_problem(values[0], vr)
            elif vr in UNCHECKED_TEXT_VRS:
                reason = None
            else:
                reason = first_value_problem(values, vr)
    except Unreadable as exc:
        reason = str(exc)
    except Exception as exc:
        reason = f"value could not be read ({type(exc).__name__}: {show(str(exc))})"
    return None if reason is None else f"{tag_label(tag)}: {reason}"


def _truncation_problem(elem: DataElement | RawDataElement) -> str | None:
    """A raw value shorter than its declared length: pydicom keeps what it got, silently."""
    if not isinstance(elem, RawDataElement) or elem.length == _UNDEFINED_LENGTH:
        return None
    data = elem.value
    if isinstance(data, bytes | bytearray) and len(data) < elem.length:
        return f"value is truncated ({len(data)} of {elem.length} declared bytes present)"
    return None


def _sequence_problem(
    elem: DataElement | RawDataElement, ds: Dataset | None, charset: Charset
) -> str | None:
    """Depth-first search of the items; the first nested problem stands for the sequence."""
    if isinstance(elem, RawDataElement):
        elem = _parse_raw_sequence(elem, ds, charset)
    items = elem.value
    if items is None:
        return None
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise Unreadable("sequence value is not a list of items")
    for index, item in enumerate(items, start=1):
        if not isinstance(item, Dataset):
            return f"item {index} is not a data set"
        nested = _first_dataset_problem(item, charset)
        if nested is not None:
            return f"item {index} > {nested}"
    return None


def _parse_raw_sequence(raw: RawDataElement, ds: Dataset | None, charset: Charset) -> DataElement:
    """Parse a still-raw sequence without touching ``ds``, refusing what pydicom glosses over.

    pydicom's item reader is forgiving: it takes any 8 bytes as an item header. A sequence whose
    value does not open with an item tag is reported rather than validated as if it were sound.
    Truncated elements inside the items are caught by :func:`_truncation_problem` as they are
    checked.
    """
    data = raw.value
    if isinstance(data, bytes | bytearray) and data:
        header = bytes(data[:4])
        little = (_ITEM_TAG_LE, _SEQ_END_LE)
        big = (_ITEM_TAG_BE, _SEQ_END_BE)
        if header not in (little if raw.is_little_endian else big):
            raise Unreadable(f"sequence does not start with an item tag (found {header!r})")
    try:
        return convert_raw_data_element(raw, encoding=list(charset.codecs), ds=ds)
    except Exception as exc:
        raise Unreadable(f"sequence could not be parsed ({type(exc).__name__})") from exc


# The instances of a series repeat most of their header byte for byte (patient, study, series,
# equipment, geometry), so a check's outcome is remembered per (tag, VR, bytes, character set):
# it depends on nothing else for an explicit-VR, non-sequence element read whole. Small values
# only, and the table is emptied when full, so memory stays bounded (~2 MB).
_CACHED_VALUE_BYTES = 256
_CACHE_ENTRIES = 8192
_check_cache: dict[tuple[object, ...], str | None] = {}


def _cacheable(elem: DataElement | RawDataElement) -> TypeGuard[RawDataElement]:
    if not isinstance(elem, RawDataElement) or not elem.VR or elem.VR == "SQ":
        return False
    value = elem.value
    return isinstance(value, bytes) and len(value) == elem.length <= _CACHED_VALUE_BYTES


def _check_raw(elem: RawDataElement, charset: Charset) -> str | None:
    key = (int(elem.tag), elem.VR, elem.value, elem.is_little_endian, charset)
    try:
        return _check_cache[key]
    except KeyError:
        pass
    message = _check(elem, None, charset)
    if len(_check_cache) >= _CACHE_ENTRIES:
        _check_cache.clear()
    _check_cache[key] = message
    return message
