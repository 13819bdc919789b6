"""Values parsed as .NET parses them, for the inline constraints that test route values.

A constraint passes or refuses a value exactly where the .NET parser behind it succeeds or
fails, so these follow dotnet/runtime with the invariant culture: ``int``, ``long``,
``decimal``, ``double`` and ``float`` (and the arguments of ``min``/``max``/``range``) as
``Number.Parsing.cs`` does (whitespace, signs, group separators, trailing NULs, the infinity and
NaN symbols); ``bool`` as ``bool.TryParse``; ``guid`` as ``Guid.TryParse``, with its
compatibility quirks.

The known gap is ``datetime``: .NET's ``DateTime.TryParse`` (invariant culture) accepts a great
many forms; this accepts ``yyyy-M-d`` and the invariant ``M/d/yyyy`` (reachable only through a
catch-all, since ``/`` splits segments), with an optional time, AM/PM and zone, or a time
alone. A value outside that subset is refused here even where .NET might accept it.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import re

from dicom_core.web.routing.dotnet_text import _DOTNET_WHITESPACE, _HEX, _dotnet_trim, _fold

# .NET number parsing allows this whitespace only (Number.IsWhite), then trailing NULs.
_INTEGER = re.compile(r"[\t-\r ]*([+-]?[0-9]+)[\t-\r ]*\x00*")
_NUMBER = re.compile(
    r"[\t-\r ]*(?P<lead>[+-]?)(?P<mantissa>[0-9][0-9,]*(?:\.[0-9]*)?|\.[0-9]+)"
    r"[\t-\r ]*(?:(?P<trail>[+-])[\t-\r ]*)?\x00*"
)
_FLOAT = re.compile(
    r"[\t-\r ]*[+-]?(?:[0-9][0-9,]*(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[\t-\r ]*\x00*"
)
_FLOAT_SYMBOLS = frozenset({"INFINITY", "-INFINITY", "+INFINITY", "NAN", "+NAN", "-NAN"})
# decimal.MaxValue (2**96 - 1); fraction digits beyond it are rounded away, half up.
_DECIMAL_LIMIT = decimal.Decimal("79228162514264337593543950335.5")


def _parse_integer(text: str, bits: int) -> int | None:
    """``int.TryParse`` / ``long.TryParse`` with ``NumberStyles.Integer`` and the invariant
    culture: ASCII digits, one leading sign, surrounding ``[\\t-\\r ]``, trailing NULs."""
    found = _INTEGER.fullmatch(text)
    if found is None:
        return None
    value = int(found.group(1))
    limit = 1 << (bits - 1)
    return value if -limit <= value < limit else None


def _is_decimal(text: str) -> bool:
    """``decimal.TryParse`` with ``NumberStyles.Number``: one sign, leading or trailing, group
    separators after the first digit, a decimal point, no exponent, within ±(2**96 - 1)."""
    found = _NUMBER.fullmatch(text)
    if found is None or (found.group("lead") and found.group("trail")):
        return False
    mantissa = decimal.Decimal(found.group("mantissa").replace(",", ""))
    # .NET rounds extra fraction digits away before the range check.
    return mantissa.copy_abs() < _DECIMAL_LIMIT


def _is_float(text: str) -> bool:
    """``double.TryParse`` / ``float.TryParse`` with ``NumberStyles.Float | AllowThousands``.

    Since .NET Core 3.0 an out-of-range value parses as infinity, so only the syntax decides;
    failing that, the trimmed text may be the invariant culture's infinity or NaN symbol.
    """
    if _FLOAT.fullmatch(text):
        return True
    return _fold(_dotnet_trim(text)) in _FLOAT_SYMBOLS


def _is_bool(text: str) -> bool:
    """``bool.TryParse``: ``true``/``false`` in any ASCII case, whitespace and NULs trimmed."""
    start, end = 0, len(text)
    while start < end and (text[start] in _DOTNET_WHITESPACE or text[start] == "\x00"):
        start += 1
    while end > start and (text[end - 1] in _DOTNET_WHITESPACE or text[end - 1] == "\x00"):
        end -= 1
    core = text[start:end]
    return core.isascii() and core.lower() in ("true", "false")


def _guid_hex(text: str) -> bool:
    """Guid's lenient component parser: an optional ``+``, an optional ``0x``, hex digits."""
    if text.startswith("+"):
        text = text[1:]
    if len(text) > 1 and text[0] == "0" and text[1] in "xX":
        text = text[2:]
    return all(char in _HEX for char in text)


def _guid_d(text: str) -> bool:
    """The ``D`` form ``8-4-4-4-12``, with .NET's compatibility for ``0x`` and ``+`` prefixes
    inside the fixed-width components (never in the last eight digits)."""
    if len(text) != 36 or any(text[i] != "-" for i in (8, 13, 18, 23)):
        return False
    if all(char in _HEX for i, char in enumerate(text) if i not in (8, 13, 18, 23)):
        return True
    if not any(char in "xX+" for char in text):
        return False
    pieces = (text[0:8], text[9:13], text[14:18], text[19:23], text[24:28])
    return all(_guid_hex(piece) for piece in pieces) and all(c in _HEX for c in text[28:36])


def _guid_x_number(text: str, start: int, end_char: str) -> tuple[int, int] | None:
    """One ``0x..`` number of the ``X`` form: its value and length, or None."""
    length = text.find(end_char, start) - start
    if length <= 0:
        return None
    piece = text[start : start + length]
    if piece.startswith("+"):
        piece = piece[1:]
    if len(piece) > 1 and piece[0] == "0" and piece[1] in "xX":
        piece = piece[2:]
    digits = piece.lstrip("0")
    if len(digits) > 8 or any(char not in _HEX for char in digits):
        return None
    return (int(digits, 16) if digits else 0), length


def _guid_x(text: str) -> bool:
    """The ``X`` form ``{0xa,0xb,0xc,{0xd,...8 bytes}}``, whitespace anywhere ignored."""
    text = "".join(char for char in text if char not in _DOTNET_WHITESPACE)

    def hex_prefix(at: int) -> bool:
        return at + 1 < len(text) and text[at] == "0" and text[at + 1] in "xX"

    if not text.startswith("{") or not hex_prefix(1):
        return False
    start = 3
    number = _guid_x_number(text, start, ",")
    for _ in range(2):
        if number is None or not hex_prefix(start + number[1] + 1):
            return False
        start += number[1] + 3
        number = _guid_x_number(text, start, ",")
    if number is None:
        return False
    length = number[1]
    if start + length + 1 >= len(text) or text[start + length + 1] != "{":
        return False
    length += 1
    for index in range(8):
        if not hex_prefix(start + length + 1):
            return False
        start += length + 3
        byte = _guid_x_number(text, start, "," if index < 7 else "}")
        if byte is None or byte[0] > 0xFF:
            return False
        length = byte[1]
    end = start + length + 1
    return end < len(text) and text[end] == "}" and end == len(text) - 1


def _is_guid(text: str) -> bool:
    """``Guid.TryParse``: trimmed, then the form is chosen by its first characters."""
    text = _dotnet_trim(text)
    if len(text) < 32:
        return False
    if text[0] == "(":
        return len(text) == 38 and text[37] == ")" and _guid_d(text[1:37])
    if text[0] == "{":
        if text[9] == "-":
            return len(text) == 38 and text[37] == "}" and _guid_d(text[1:37])
        return _guid_x(text)
    if text[8] == "-":
        return _guid_d(text)
    return len(text) == 32 and all(char in _HEX for char in text)


_DATE_TIME = re.compile(
    r"\s*(?:(?:(?P<y>[0-9]{4})-(?P<mo>[0-9]{1,2})-(?P<d>[0-9]{1,2})"
    r"|(?P<mo2>[0-9]{1,2})/(?P<d2>[0-9]{1,2})/(?P<y2>[0-9]{4}))"
    r"(?:(?:T|\s+)(?P<time>.*))?|(?P<only>[0-9].*))\s*",
    re.ASCII,
)
_TIME = re.compile(
    r"(?P<h>[0-9]{1,2}):(?P<mi>[0-9]{2})(?::(?P<s>[0-9]{2})(?:\.[0-9]{1,7})?)?"
    r"\s*(?P<ampm>[AaPp][Mm])?\s*(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?",
    re.ASCII,
)


def _is_datetime(text: str) -> bool:
    """A documented subset of ``DateTime.TryParse`` with the invariant culture: ``yyyy-M-d``
    or ``M/d/yyyy``, optionally followed (after ``T`` or spaces) by ``H:mm[:ss[.fffffff]]``,
    AM/PM and a zone; or a time alone."""
    found = _DATE_TIME.fullmatch(text)
    if found is None:
        return False
    time = found.group("time") if found.group("only") is None else found.group("only")
    if found.group("only") is None:
        year = int(found.group("y") or found.group("y2"))
        month = int(found.group("mo") or found.group("mo2"))
        day = int(found.group("d") or found.group("d2"))
        try:
            _dt.date(year, month, day)
        except ValueError:
            return False
    if time is None:
        return True
    clock = _TIME.fullmatch(time)
    if clock is None:
        return False
    hour, minute = int(clock.group("h")), int(clock.group("mi"))
    second = int(clock.group("s") or 0)
    top = 12 if clock.group("ampm") else 23
    return hour <= top and minute <= 59 and second <= 59
