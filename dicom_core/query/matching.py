"""The meaning of every QIDO-RS condition, in plain Python: the reference the compilers follow.

An index adapter never evaluates conditions in Python; it compiles them (SQLite SQL, Cosmos
SQL). This module is what those compilations must agree with, and the property tests hold
them to it on random data and random queries. It is also where the rules of the conformance
statement that shape values live, in one place, for both the index side (the keys stored at
store time) and the query side (the keys a parser puts in conditions):

* PN matching ignores case and accents, other strings ignore case only ("Search matching"
  notes): ``index_key`` folds both sides the same way (``domain.index_attributes``).
* Values padded with NULs match with or without the padding: ``clean_value`` strips padding
  from query values exactly as the index strips it from stored ones. A NUL inside a value is
  no character of any string VR (PS3.5 Table 6.2-1): text keys leave it out on both sides.
* Dates and times compare as fixed-width canonical strings, so that range matching is string
  comparison in every backend (``date_key``, ``time_key``, ``datetime_key``).
* Wildcards: ``*`` matches any run of characters, ``?`` one character (PS3.4 C.2.2.2.4);
  the Azure service has none, OHIF's Azure configuration sends ``*value*`` anyway.
* Fuzzy matching (``fuzzymatching=true``, PN only): each query word is a prefix of some name
  component ("joh", "do", "jo do" match John^Doe; "ohn" does not).
"""

from __future__ import annotations

import calendar
import datetime
import re
from collections.abc import Sequence
from functools import lru_cache

from dicom_core.domain.index_attributes import clean_text, fold_text, normalize_person_name
from dicom_core.query.conditions import (
    Condition,
    ListMatch,
    QueryAttribute,
    RangeMatch,
    TextMatching,
    ValueMatch,
    WildcardMatch,
)

WILDCARDS = frozenset("*?")

__all__ = [
    "clean_value",
    "date_key",
    "datetime_key",
    "fuzzy_matches",
    "has_wildcard",
    "index_key",
    "matches",
    "text_key",
    "time_key",
    "wildcard_matches",
]


def clean_value(value: str) -> str:
    """A query value without the spaces and NULs that pad DICOM values (as stored ones)."""
    return clean_text(value)


def text_key(matching: TextMatching, value: str) -> str:
    """The comparison key of a string: folded for case-insensitive and person-name matching."""
    if matching is TextMatching.PERSON_NAME:
        return normalize_person_name(value)
    if matching is TextMatching.CASE_INSENSITIVE:
        return fold_text(value)
    return value


def index_key(attribute: QueryAttribute, value: str) -> str:
    """The key the index keeps for a stored value (ValueError if it cannot have one)."""
    if attribute.vr == "DA":
        return date_key(value)
    if attribute.vr == "TM":
        return time_key(value)
    if attribute.vr == "DT":
        return datetime_key(value)
    return text_key(attribute.matching, value)


# -- dates and times ---------------------------------------------------------------------------

_DA = re.compile(r"(\d{4})(\d{2})(\d{2})")
_TM = re.compile(r"(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?")
_DT = re.compile(
    r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.(\d{1,6}))?)?)?)?)?)?"
    r"([+-]\d{4})?"
)


def date_key(value: str) -> str:
    """``YYYYMMDD`` of a valid DA value; ValueError otherwise."""
    found = _DA.fullmatch(value)
    if found is None:
        raise ValueError(f"{value!r} is not a date of the form YYYYMMDD")
    year, month, day = (int(part) for part in found.groups())
    datetime.date(year, month, day)  # raises ValueError for 20240230 and the like
    return value


def time_key(value: str, *, upper: bool = False) -> str:
    """``HHMMSS.ffffff`` of a TM value, the parts it omits filled in.

    A partial time stands for the whole span it names ("10" is 10:00:00 to 10:59:59.999999):
    the lower end by default, the upper end with ``upper=True``.
    """
    found = _TM.fullmatch(value)
    if found is None:
        raise ValueError(f"{value!r} is not a time of the form HH[MM[SS[.FFFFFF]]]")
    hour, minute, second, fraction = found.groups()
    if int(hour) > 23 or int(minute or 0) > 59 or int(second or 0) > 60:
        raise ValueError(f"{value!r} is not a valid time")
    fill = "9" if upper else "0"
    minute = minute or ("59" if upper else "00")
    second = second or ("59" if upper else "00")
    fraction = (fraction or "").ljust(6, fill)
    return f"{hour}{minute}{second}.{fraction}"


def datetime_key(value: str, *, upper: bool = False) -> str:
    """``YYYYMMDDHHMMSS.ffffff`` of a DT value, omitted parts filled in as for ``time_key``.

    A UTC offset suffix is accepted and not applied: values compare in their local time.
    """
    found = _DT.fullmatch(value)
    if found is None:
        raise ValueError(f"{value!r} is not a date-time of the form YYYYMMDDHHMMSS.FFFFFF&ZZXX")
    year, month, day, hour, minute, second, fraction, _offset = found.groups()
    month = month or ("12" if upper else "01")
    if not 1 <= int(month) <= 12:
        raise ValueError(f"{value!r} is not a valid date-time")
    if day is None:
        day = f"{calendar.monthrange(int(year), int(month))[1]:02d}" if upper else "01"
    else:
        datetime.date(int(year), int(month), int(day))
    if hour is None:
        clock = "235959.999999" if upper else "000000.000000"
    else:
        text = hour + (minute or "") + (second or "") + (f".{fraction}" if fraction else "")
        clock = time_key(text, upper=upper)
    return f"{year}{month}{day}{clock}"


# -- wildcards and fuzzy name matching ---------------------------------------------------------


def has_wildcard(value: str) -> bool:
    return any(ch in WILDCARDS for ch in value)


@lru_cache(maxsize=1024)
def _pattern(pattern: str) -> re.Pattern[str]:
    parts = [".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern]
    return re.compile("".join(parts), re.DOTALL)


def wildcard_matches(pattern: str, key: str) -> bool:
    """Whether the whole of ``key`` matches ``pattern`` (``*`` any run, ``?`` one character)."""
    return _pattern(pattern).fullmatch(key) is not None


def fuzzy_matches(words: Sequence[str], key: str) -> bool:
    """Whether every word matches at the start of some component of the name key."""
    starts = [0, *(i + 1 for i, ch in enumerate(key) if ch == " ")]
    return all(any(wildcard_matches(word + "*", key[i:]) for i in starts) for word in words)


# -- conditions --------------------------------------------------------------------------------


def key_matches(condition: Condition, key: str) -> bool:
    """Whether one stored key satisfies the condition."""
    if isinstance(condition, ValueMatch):
        return key == condition.key
    if isinstance(condition, ListMatch):
        return key in condition.keys
    if isinstance(condition, RangeMatch):
        if not key:
            return False
        if condition.lower is not None and key < condition.lower:
            return False
        return condition.upper is None or key <= condition.upper
    if isinstance(condition, WildcardMatch):
        return wildcard_matches(condition.pattern, key)
    return fuzzy_matches(condition.words, key)


def matches(condition: Condition, stored: str | Sequence[str] | None) -> bool:
    """Whether a stored value (as the index keeps it, before keying) satisfies the condition.

    ``stored`` is a list for a ``multiple`` attribute (any element may match), None when the
    instance has no value (which never matches).
    """
    if stored is None:
        return False
    values = [stored] if isinstance(stored, str) else list(stored)
    for value in values:
        try:
            key = index_key(condition.attribute, value)
        except ValueError:
            continue
        if key_matches(condition, key):
            return True
    return False
