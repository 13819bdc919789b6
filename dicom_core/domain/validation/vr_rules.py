"""What each VR demands of its values (PS3.5 6.2, Table 6.2-1), as one-line reasons.

Binary numbers may only be wrong in length (or, set by hand, in type and range); string VRs
have a rule per value: character repertoire, length, and for dates and times the calendar
and the clock. Free text (ST, LT) is checked for its length only, and UT, UC and UR only for
being decodable. Trailing spaces and NULs are padding everywhere: the service promises that
NUL-padded values are accepted without a warning.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from numbers import Integral, Real

from dicom_core.domain.validation.messages import show
from dicom_core.domain.validation.uids import uid_rule

# Characters that only pad a value and carry no meaning (PS3.5 6.2; NULs per the service).
PADDING = " \x00"

# Binary numbers: the only thing that can be wrong is a length that is not whole values.
NUMBER_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4, "SV": 8, "UV": 8}
#: The values a binary integer VR can hold (PS3.5 Table 6.2-1).
INTEGER_RANGES = {
    "US": (0, 2**16 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "UL": (0, 2**32 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "SV": (-(2**63), 2**63 - 1),
    "UV": (0, 2**64 - 1),
    "AT": (0, 2**32 - 1),
}
# Single-valued text whose only constraint worth enforcing is a maximum length in characters.
TEXT_MAX_CHARS = {"ST": 1024, "LT": 10240}
# VRs that are only checked for being decodable text.
UNCHECKED_TEXT_VRS = frozenset({"UT", "UC", "UR"})

#: The values an IS (Integer String) can hold: a signed 32-bit integer (PS3.5 Table 6.2-1).
IS_RANGE = (-(2**31), 2**31 - 1)
_INT32_MIN, _INT32_MAX = IS_RANGE

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


def numbers_problem(value: object, vr: str) -> str | None:
    """Binary numbers: whole values only, and hand-set Python values must fit the VR."""
    size = 2 if vr == "US or SS" else NUMBER_SIZES[vr]
    if isinstance(value, bytes | bytearray):
        if len(value) % size:
            return f"is {len(value)} bytes long, which is not a multiple of {size} as {vr} needs"
        return None
    if value is None:
        return None
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    low, high = INTEGER_RANGES.get(vr, (-(2**15), 2**16 - 1))
    for index, item in enumerate(items, start=1):
        where = f"value {index} " if len(items) > 1 else ""
        if vr in ("FL", "FD"):
            if not isinstance(item, Real) or isinstance(item, bool):
                return f"{where}{show(repr(item))} is not a number, which {vr} needs"
            continue
        if not isinstance(item, Integral) or isinstance(item, bool):
            return f"{where}{show(repr(item))} is not an integer, which {vr} needs"
        if not low <= int(item) <= high:
            return f"{where}{int(item)} is outside the range {low} to {high} of {vr}"
    return None


def first_value_problem(values: list[str], vr: str) -> str | None:
    """Apply the VR's rule to each value; report the first failure with its position."""
    rule = _VALUE_RULES.get(vr)
    for index, raw_value in enumerate(values, start=1):
        where = f"value {index} " if len(values) > 1 else ""
        value = raw_value.rstrip(PADDING)
        if value == "":
            # An all-space AE is forbidden outright; any other empty value is simply absent.
            if vr == "AE" and raw_value.strip("\x00") != "":
                return f"{where}{show(raw_value)} consists only of spaces, which AE does not allow"
            continue
        if rule is None:
            continue
        reason = rule(value)
        if reason is not None:
            return f"{where}{show(value)} {reason}"
    return None


def free_text_problem(value: str, vr: str) -> str | None:
    """ST/LT carry free text; only their maximum length in characters is enforced."""
    trimmed = value.rstrip(PADDING)
    limit = TEXT_MAX_CHARS[vr]
    if len(trimmed) > limit:
        return f"{show(trimmed)} is {len(trimmed)} characters long; at most {limit} are allowed"
    return None


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
    reason = uid_rule(value)
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
