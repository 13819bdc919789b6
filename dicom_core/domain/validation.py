"""Attribute validation for the store transaction (STOW-RS).

The conformance statement splits validation outcomes in two: a problem in a *required*
attribute (or, in API v1, a searchable one) rejects the instance, while any other problem only
produces a warning and the instance is still stored. This module therefore does not decide
anything about rejection; it only finds problems and describes them, one per top-level
attribute, so the store service can apply whichever policy the API version calls for.

Design choices worth knowing about:

* Values are checked from the *raw* bytes whenever pydicom has not converted them yet. Going
  through ``elem.value`` would make pydicom parse IS/DS/PN values, which can raise or warn for
  exactly the malformed values we are here to report; reading the bytes ourselves keeps the
  checks total and leaves the caller's dataset untouched.
* Trailing spaces and trailing NUL bytes are treated as padding everywhere, because the service
  promises that NUL-padded values are accepted without a warning.
* UIDs follow the service's lenient rule (letters, digits, '.', '-'; 1..64 characters) rather
  than DICOM's digits-and-dots rule, since that is what clients of the real service rely on.
* Nothing here may raise for a dataset pydicom managed to read: every per-attribute failure
  (undecodable bytes, sequences that do not parse, odd Python objects set by hand) becomes a
  problem instead, so one broken attribute cannot abort a whole store request.
* pydicom may emit warnings while converting values. The test suite treats warnings as errors,
  so the public functions silence them locally. ``warnings.catch_warnings`` mutates
  process-wide state, so concurrent callers in other threads may briefly see the filter too.
"""

from __future__ import annotations

import datetime
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import TypeGuard

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset

from dicom_core.domain.charsets import (
    DEFAULT_CHARSET,
    DEFAULT_REPERTOIRE,
    SPECIFIC_CHARACTER_SET,
    Charset,
    declared_charset,
    decode_text_strictly,
)

__all__ = [
    "UID_MAX_LENGTH",
    "AttributeProblem",
    "dataset_problems",
    "element_problem",
    "is_valid_uid",
    "uid_problem",
]

UID_MAX_LENGTH = 64

# Characters that only pad a value and carry no meaning (PS3.5 6.2; NULs per the service).
_PADDING = " \x00"

# How much of an offending value a message quotes, so one huge value cannot bloat a response.
_SHOWN_CHARS = 64
_SHOWN_BYTES = 32

_PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
# Groups that never belong to the data set proper: command elements and file meta information.
_SKIPPED_GROUPS = frozenset({0x0000, 0x0002})
# The first four bytes of a sequence's value: an item, or the delimiter of an empty sequence.
_ITEM_TAG_LE = b"\xfe\xff\x00\xe0"
_ITEM_TAG_BE = b"\xff\xfe\xe0\x00"
_SEQ_END_LE = b"\xfe\xff\xdd\xe0"
_SEQ_END_BE = b"\xff\xfe\xe0\xdd"
_UNDEFINED_LENGTH = 0xFFFFFFFF

# Binary VRs: pydicom hands us opaque bytes and PS3.5 puts no constraint we could check.
_OPAQUE_VRS = frozenset({"OB", "OW", "OF", "OD", "OL", "OV", "UN"})
# Binary numbers: the only thing that can be wrong is a length that is not whole values.
_NUMBER_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "SV": 8, "UV": 8}
_INTEGER_RANGES = {
    "US": (0, 2**16 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "UL": (0, 2**32 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "SV": (-(2**63), 2**63 - 1),
    "UV": (0, 2**64 - 1),
    "AT": (0, 2**32 - 1),
}
# VRs that hold one value even if a backslash occurs in it (PS3.5 6.4).
_SINGLE_VALUE_VRS = frozenset({"LT", "ST", "UT", "UR"})
# Single-valued text whose only constraint worth enforcing is a maximum length in characters.
_TEXT_MAX_CHARS = {"ST": 1024, "LT": 10240}
# VRs that are only checked for being decodable text.
_UNCHECKED_TEXT_VRS = frozenset({"UT", "UC", "UR"})

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1

_UID_RE = re.compile(r"[0-9A-Za-z.\-]+")
_AS_RE = re.compile(r"[0-9]{3}[DWMY]")
_CS_RE = re.compile(r"[A-Z0-9 _]*")
_DA_RE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_DS_RE = re.compile(r" *[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)? *")
_IS_RE = re.compile(r" *[+-]?[0-9]+ *")
_DT_RE = re.compile(
    r"(?P<year>[0-9]{4})"
    r"(?:(?P<month>[0-9]{2})"
    r"(?:(?P<day>[0-9]{2})"
    r"(?:(?P<hour>[0-9]{2})"
    r"(?:(?P<minute>[0-9]{2})"
    r"(?:(?P<second>[0-9]{2})(?:\.[0-9]{1,6})?)?)?)?)?)?"
    r"(?:(?P<sign>[+-])(?P<zone_hours>[0-9]{2})(?P<zone_minutes>[0-9]{2}))?"
)
_TM_RE = re.compile(
    r"(?P<hour>[0-9]{2})(?:(?P<minute>[0-9]{2})(?:(?P<second>[0-9]{2})(?:\.[0-9]{1,6})?)?)?"
)
_DT_SHAPE = "YYYY[MM[DD[HH[MM[SS[.FFFFFF]]]]]][&ZZXX]"
_TM_SHAPE = "HH[MM[SS[.FFFFFF]]]"


@dataclass(frozen=True, slots=True)
class AttributeProblem:
    """One failing top-level attribute, shaped for a FailedAttributesSequence ErrorComment.

    ``tag`` is always a top-level tag, even when the problem sits deep inside a sequence,
    because the store response reports one comment per top-level attribute.
    """

    tag: int
    keyword: str
    message: str


class _Unreadable(Exception):
    """An element whose value cannot be turned into text or items; carries the explanation."""


# --------------------------------------------------------------------------------------------
# UIDs


def _uid_rule(value: str) -> str | None:
    """The reason a non-empty UID breaks the service's rule, phrased to follow a quoted value."""
    if _UID_RE.fullmatch(value) is None:
        return 'contains a character other than letters, digits, "." or "-"'
    if len(value) > UID_MAX_LENGTH:
        return f"is {len(value)} characters long; at most {UID_MAX_LENGTH} are allowed"
    return None


def is_valid_uid(value: str) -> bool:
    """Whether ``value`` satisfies the service's UID rule (1..64 of ``[0-9A-Za-z.-]``).

    No padding is stripped: callers validating a URL segment must not get a trailing space
    accepted silently. Values from a dataset go through :func:`dataset_problems`, which does
    strip DICOM padding first.
    """
    return uid_problem(value) is None


def uid_problem(value: str) -> str | None:
    """Explain why ``value`` is not an acceptable UID, or return ``None`` if it is.

    The message has no trailing period so callers can embed it in their own sentences.
    """
    if value == "":
        return "UID is empty"
    if _UID_RE.fullmatch(value) is None:
        return f'UID {_show(value)} contains a character other than letters, digits, "." or "-"'
    if len(value) > UID_MAX_LENGTH:
        return f"UID is {len(value)} characters long; at most {UID_MAX_LENGTH} are allowed"
    return None


# --------------------------------------------------------------------------------------------
# Message helpers


def _show(value: str) -> str:
    """Quote a value for a one-line message: escaped, double-quoted, truncated when long.

    Escaping keeps control characters, quotes and line breaks from splitting or confusing the
    ErrorComment text; truncation keeps a multi-kilobyte value from dominating the response.
    """
    head = value[:_SHOWN_CHARS]
    pieces: list[str] = []
    for char in head:
        if char in '"\\':
            pieces.append("\\" + char)
        elif char.isprintable():
            pieces.append(char)
        elif ord(char) < 0x100:
            pieces.append(f"\\x{ord(char):02x}")
        elif ord(char) < 0x10000:
            pieces.append(f"\\u{ord(char):04x}")
        else:
            pieces.append(f"\\U{ord(char):08x}")
    suffix = "..." if len(value) > _SHOWN_CHARS else ""
    return '"' + "".join(pieces) + '"' + suffix


def _show_bytes(value: bytes) -> str:
    """Render undecodable bytes; ``repr`` of bytes is ASCII-only and hence always one line."""
    suffix = "..." if len(value) > _SHOWN_BYTES else ""
    return repr(value[:_SHOWN_BYTES]) + suffix


def _keyword(tag: int) -> str:
    """The dictionary keyword, or "" for private tags whose meaning depends on their creator."""
    if (tag >> 16) % 2 == 1:
        return ""
    try:
        return keyword_for_tag(tag)
    except Exception:
        return ""


def _label(tag: int) -> str:
    """Render "(gggg,eeee) Keyword", the way every message names the attribute it is about."""
    text = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
    keyword = _keyword(tag)
    return f"{text} {keyword}" if keyword else text


# --------------------------------------------------------------------------------------------
# Per-value rules. Each receives one value with its padding removed and known to be non-empty,
# and returns a phrase that reads well after the quoted value, or None when the value is fine.


def _has_control(value: str, allowed: str = "") -> bool:
    """Whether a C0 control character or DEL occurs, apart from the ``allowed`` ones."""
    return any((ord(c) < 0x20 or ord(c) == 0x7F) and c not in allowed for c in value)


def _too_long(value: str, vr: str, limit: int) -> str | None:
    if len(value) > limit:
        return f"is {len(value)} characters long; at most {limit} are allowed for {vr}"
    return None


def _check_ae(value: str) -> str | None:
    if "\\" in value or any(not 0x20 <= ord(c) <= 0x7E for c in value):
        return (
            "contains a backslash, a control character or a non-ASCII character, "
            "which AE does not allow"
        )
    if value.strip(" ") == "":
        return "consists only of spaces, which AE does not allow"
    return _too_long(value, "AE", 16)


def _check_as(value: str) -> str | None:
    if _AS_RE.fullmatch(value) is None:
        return "is not a valid AS value (expected nnnD, nnnW, nnnM or nnnY)"
    return None


def _check_cs(value: str) -> str | None:
    if _CS_RE.fullmatch(value) is None:
        return (
            "contains a character other than uppercase letters, digits, space or underscore, "
            "which CS does not allow"
        )
    return _too_long(value, "CS", 16)


def _calendar_problem(year: int, month: int, day: int | None) -> str | None:
    """Range-check a date's parts; a missing day (DT precision) only checks year and month."""
    if year == 0:
        return "year 0000 does not exist"
    if not 1 <= month <= 12:
        return f"month {month:02d} is out of range"
    if day is not None:
        try:
            datetime.date(year, month, day)
        except ValueError:
            return f"day {day:02d} does not exist in {year:04d}-{month:02d}"
    return None


def _clock_problem(hour: str | None, minute: str | None, second: str | None) -> str | None:
    """Range-check time parts; second 60 is allowed for a leap second (PS3.5 Table 6.2-1)."""
    if hour is not None and int(hour) > 23:
        return f"hour {hour} is out of range"
    if minute is not None and int(minute) > 59:
        return f"minute {minute} is out of range"
    if second is not None and int(second) > 60:
        return f"second {second} is out of range"
    return None


def _check_da(value: str) -> str | None:
    match = _DA_RE.fullmatch(value)
    if match is None:
        return "is not a valid DA value (expected YYYYMMDD)"
    year, month, day = (int(part) for part in match.groups())
    reason = _calendar_problem(year, month, day)
    return None if reason is None else f"is not a valid DA value ({reason})"


def _check_dt(value: str) -> str | None:
    match = _DT_RE.fullmatch(value)
    if match is None:
        return f"is not a valid DT value (expected {_DT_SHAPE})"
    parts = match.groupdict()
    reason: str | None = None
    if parts["month"] is not None:
        day = int(parts["day"]) if parts["day"] is not None else None
        reason = _calendar_problem(int(parts["year"]), int(parts["month"]), day)
    elif int(parts["year"]) == 0:
        reason = "year 0000 does not exist"
    reason = reason or _clock_problem(parts["hour"], parts["minute"], parts["second"])
    if reason is None and parts["sign"] is not None:
        offset = int(parts["zone_hours"]) * 60 + int(parts["zone_minutes"])
        signed = -offset if parts["sign"] == "-" else offset
        if int(parts["zone_minutes"]) > 59 or not -12 * 60 <= signed <= 14 * 60:
            reason = "UTC offset is outside -1200 to +1400"
    return None if reason is None else f"is not a valid DT value ({reason})"


def _check_tm(value: str) -> str | None:
    match = _TM_RE.fullmatch(value)
    if match is None:
        return f"is not a valid TM value (expected {_TM_SHAPE})"
    reason = _clock_problem(match["hour"], match["minute"], match["second"])
    return None if reason is None else f"is not a valid TM value ({reason})"


def _check_ds(value: str) -> str | None:
    if _DS_RE.fullmatch(value) is None:
        return "is not a valid DS value (expected a decimal number such as -1.5 or 2.5E3)"
    return _too_long(value, "DS", 16)


def _check_is(value: str) -> str | None:
    if _IS_RE.fullmatch(value) is None:
        return "is not a valid IS value (expected an integer)"
    if not _INT32_MIN <= int(value) <= _INT32_MAX:
        return f"is not a valid IS value (outside {_INT32_MIN} to {_INT32_MAX})"
    return _too_long(value, "IS", 12)


def _text_checker(vr: str, limit: int) -> Callable[[str], str | None]:
    """Build the SH/LO rule: one value, no control characters but ESC, bounded length."""

    def check(value: str) -> str | None:
        if "\\" in value:
            return f"contains a backslash, which {vr} does not allow within a value"
        if _has_control(value, allowed="\x1b"):
            return f"contains a control character other than ESC, which {vr} does not allow"
        return _too_long(value, vr, limit)

    return check


def _check_pn(value: str) -> str | None:
    if _has_control(value, allowed="\x1b"):
        return "contains a control character other than ESC, which PN does not allow"
    groups = value.split("=")
    if len(groups) > 3:
        return f"has {len(groups)} component groups; PN allows at most 3"
    for group in groups:
        components = group.split("^")
        if len(components) > 5:
            return f"has a component group with {len(components)} components; PN allows at most 5"
        if len(group) > 64:
            return f"has a component group of {len(group)} characters; PN allows at most 64"
    return None


def _check_ui(value: str) -> str | None:
    reason = _uid_rule(value)
    return None if reason is None else f"{reason} for UI"


_VALUE_RULES: dict[str, Callable[[str], str | None]] = {
    "AE": _check_ae,
    "AS": _check_as,
    "CS": _check_cs,
    "DA": _check_da,
    "DT": _check_dt,
    "TM": _check_tm,
    "DS": _check_ds,
    "IS": _check_is,
    "LO": _text_checker("LO", 64),
    "SH": _text_checker("SH", 16),
    "PN": _check_pn,
    "UI": _check_ui,
}


# --------------------------------------------------------------------------------------------
# Getting at values


def _decode(data: bytes, vr: str, charset: Charset) -> str:
    """Decode element bytes the way pydicom would, but fail instead of substituting characters.

    A value that does not fit the declared character set is a problem the service reports.
    Default-repertoire VRs cannot fail here; whatever is not ASCII in them is caught by each
    VR's own character rule.
    """
    try:
        return decode_text_strictly(data, vr, charset.codecs)
    except Exception as exc:
        terms = "\\".join(charset.terms)
        raise _Unreadable(
            f"{_show_bytes(data)} cannot be decoded using character set {terms}"
        ) from exc


def _as_text(item: object) -> str:
    """Text of one already-converted value, preferring the exact string pydicom read."""
    if item is None:
        return ""
    original = getattr(item, "original_string", None)
    if isinstance(original, str):
        return original
    return str(item)


def _text_values(value: object, vr: str, charset: Charset) -> list[str]:
    """Split an element value (raw bytes or converted Python values) into its text values."""
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        text = _decode(bytes(value), vr, charset)
        return [text] if vr in _SINGLE_VALUE_VRS else text.split("\\")
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [_as_text(item) for item in value]
    return [_as_text(value)]


def _charset_of(ds: Dataset, inherited: Charset) -> Charset:
    """The character set in force for ``ds``: its own (0008,0005), else the enclosing one's."""
    try:
        elem = ds.get_item(SPECIFIC_CHARACTER_SET)
    except Exception:
        return inherited
    if elem is None:
        return inherited
    value = elem.value
    if isinstance(value, bytes | bytearray):
        terms = bytes(value).decode(DEFAULT_REPERTOIRE).split("\\")
    elif isinstance(value, str):
        terms = value.split("\\")
    elif isinstance(value, Sequence):
        terms = [_as_text(item) for item in value]
    else:
        return inherited
    return declared_charset(terms)


def _resolve_vr(elem: DataElement | RawDataElement, ds: Dataset | None) -> str:
    """The VR to validate against; implicit-VR raw elements carry none, so look it up."""
    if elem.VR:
        return str(elem.VR)
    try:
        return str(dictionary_VR(elem.tag))
    except Exception:
        pass
    if isinstance(elem, RawDataElement):
        try:
            return str(convert_raw_data_element(elem, ds=ds).VR)
        except Exception:
            return "UN"
    return "UN"


def _effective_vr(vr: str) -> str:
    """Collapse an ambiguous dictionary VR ("US or SS", "OB or OW") to one we can check."""
    if " or " not in vr:
        return vr
    options = vr.split(" or ")
    if any(option in _OPAQUE_VRS for option in options):
        return "OB"
    if set(options) <= {"US", "SS"}:
        return "US or SS"
    return "UN"


# --------------------------------------------------------------------------------------------
# Element checks


def _numbers_problem(value: object, vr: str) -> str | None:
    """Binary numbers: whole values only, and hand-set Python values must fit the VR."""
    size = 2 if vr == "US or SS" else _NUMBER_SIZES[vr]
    if isinstance(value, bytes | bytearray):
        if len(value) % size:
            return f"is {len(value)} bytes long, which is not a multiple of {size} as {vr} needs"
        return None
    if value is None:
        return None
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    low, high = _INTEGER_RANGES.get(vr, (-(2**15), 2**16 - 1))
    for index, item in enumerate(items, start=1):
        where = f"value {index} " if len(items) > 1 else ""
        if vr in ("FL", "FD"):
            if not isinstance(item, Real) or isinstance(item, bool):
                return f"{where}{_show(repr(item))} is not a number, which {vr} needs"
            continue
        if not isinstance(item, Integral) or isinstance(item, bool):
            return f"{where}{_show(repr(item))} is not an integer, which {vr} needs"
        if not low <= int(item) <= high:
            return f"{where}{int(item)} is outside the range {low} to {high} of {vr}"
    return None


def _first_value_problem(values: list[str], vr: str) -> str | None:
    """Apply the VR's rule to each value; report the first failure with its position."""
    rule = _VALUE_RULES.get(vr)
    for index, raw_value in enumerate(values, start=1):
        where = f"value {index} " if len(values) > 1 else ""
        value = raw_value.rstrip(_PADDING)
        if value == "":
            # An all-space AE is forbidden outright; any other empty value is simply absent.
            if vr == "AE" and raw_value.strip("\x00") != "":
                return f"{where}{_show(raw_value)} consists only of spaces, which AE does not allow"
            continue
        if rule is None:
            continue
        reason = rule(value)
        if reason is not None:
            return f"{where}{_show(value)} {reason}"
    return None


def _free_text_problem(value: str, vr: str) -> str | None:
    """ST/LT carry free text; only their maximum length in characters is enforced."""
    trimmed = value.rstrip(_PADDING)
    limit = _TEXT_MAX_CHARS[vr]
    if len(trimmed) > limit:
        return f"{_show(trimmed)} is {len(trimmed)} characters long; at most {limit} are allowed"
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
            raise _Unreadable(f"sequence does not start with an item tag (found {header!r})")
    try:
        return convert_raw_data_element(raw, encoding=list(charset.codecs), ds=ds)
    except Exception as exc:
        raise _Unreadable(f"sequence could not be parsed ({type(exc).__name__})") from exc


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
        raise _Unreadable("sequence value is not a list of items")
    for index, item in enumerate(items, start=1):
        if not isinstance(item, Dataset):
            return f"item {index} is not a data set"
        nested = _first_dataset_problem(item, charset)
        if nested is not None:
            return f"item {index} > {nested}"
    return None


def _check(elem: DataElement | RawDataElement, ds: Dataset | None, charset: Charset) -> str | None:
    """Validate one element and return its full message ("(gggg,eeee) Keyword: ...") or None."""
    tag = int(elem.tag)
    try:
        vr = _effective_vr(_resolve_vr(elem, ds))
        if vr in _OPAQUE_VRS or tag in _PIXEL_DATA_TAGS:
            return None
        truncated = _truncation_problem(elem)
        if truncated is not None:
            return f"{_label(tag)}: {truncated}"
        if vr == "SQ":
            reason = _sequence_problem(elem, ds, charset)
            return None if reason is None else f"{_label(tag)} > {reason}"
        if vr in _NUMBER_SIZES or vr == "US or SS":
            reason = _numbers_problem(elem.value, vr)
        else:
            values = _text_values(elem.value, vr, charset)
            if vr in _TEXT_MAX_CHARS and values:
                reason = _free_text_problem(values[0], vr)
            elif vr in _UNCHECKED_TEXT_VRS:
                reason = None
            else:
                reason = _first_value_problem(values, vr)
    except _Unreadable as exc:
        reason = str(exc)
    except Exception as exc:
        reason = f"value could not be read ({type(exc).__name__}: {_show(str(exc))})"
    return None if reason is None else f"{_label(tag)}: {reason}"


def _skipped(tag: int) -> bool:
    """Group lengths, file meta and command groups are not part of what the store validates."""
    return (tag >> 16) in _SKIPPED_GROUPS or (tag & 0xFFFF) == 0 or tag in _PIXEL_DATA_TAGS


def _dataset_findings(ds: Dataset, charset: Charset) -> list[tuple[int, str]]:
    """Every problem in ``ds`` as (top-level tag, message), in tag order."""
    charset = _charset_of(ds, charset)
    findings: list[tuple[int, str]] = []
    # Iterating the dataset itself would convert every raw element in place; keys() does not.
    tags = sorted(map(int, ds.keys()))
    for key in tags:
        if _skipped(key):
            continue
        try:
            elem = ds.get_item(key)
        except Exception as exc:
            findings.append((key, f"{_label(key)}: value could not be read ({type(exc).__name__})"))
            continue
        if elem is None:
            continue
        message = _check_raw(elem, charset) if _cacheable(elem) else _check(elem, ds, charset)
        if message is not None:
            findings.append((key, message))
    return findings


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


def _first_dataset_problem(ds: Dataset, inherited: Charset) -> str | None:
    """The first problem inside a sequence item, which is all the service reports for it."""
    findings = _dataset_findings(ds, inherited)
    return findings[0][1] if findings else None


# --------------------------------------------------------------------------------------------
# Public entry points


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
            return f"{_label(tag)}: value could not be read ({type(exc).__name__})"


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
        AttributeProblem(tag, _keyword(tag) if tag else "", message) for tag, message in findings
    ]
