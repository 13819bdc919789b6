"""HTTP routing exactly as the Azure Functions host does it, for the local stand-in host.

The host (``WebScriptHostHttpRoutesManager`` in Azure/azure-functions-host) turns every
HTTP-triggered function into one ASP.NET Core ``Route`` and adds them, in the order
``FunctionMetadataManager`` sorted the functions (by name, ``StringComparer.OrdinalIgnoreCase``),
to one plain ``RouteCollection`` (``WebJobsRouteBuilder`` in Azure/azure-webjobs-sdk-extensions).
A request goes to the first route whose template and constraints match. Nothing ranks
routes by specificity, so a catch-all whose name sorts early hides every function after it.

Each rule below is reproduced from the source that implements it in ASP.NET Core
(dotnet/aspnetcore ``src/Http/Routing``), written again in Python:

- template syntax and its errors: ``RoutePatternParser``, ``RouteParameterParser``;
- matching: ``RoutePatternMatcher`` (behind ``TemplateMatcher``), including
  ``MatchComplexSegment`` for segments such as ``studies{study}`` or ``{a}.{b?}``;
- the request path as segments: ``PathTokenizer`` (one trailing slash is ignored, ``//``
  makes an empty segment, and an empty segment matches nothing but a catch-all's tail);
- literals compare with ``StringComparison.OrdinalIgnoreCase`` (``OrdinalCasing``: simple
  upper-casing, except that U+0131 and U+017F stay themselves);
- inline constraints: ``RouteOptions.ConstraintMap``, ``ParameterPolicyActivator`` (how
  ``name(arguments)`` becomes a constraint), the ``*RouteConstraint`` classes, and
  ``RouteBase.GetConstraints`` (constraints of an optional parameter apply only when it has
  a value; they are checked against defaults too);
- the method constraint: ``HttpMethodRouteConstraint`` (ordinal, case-insensitive).

What the matcher is given: the path as Kestrel hands it to ASP.NET Core, which is not the
ASGI ``scope["path"]``. Kestrel percent-decodes the path as UTF-8 but leaves ``%2F`` encoded
(a decoded ``/`` would become a separator), leaves invalid sequences as they were, and then
removes dot segments (``PathDecoder``, ``UrlDecoder``, ``PathNormalizer``). ``request_path``
does the same from the ASGI ``raw_path``; ``scope["path"]`` has ``%2F`` decoded to ``/``.

The route prefix (host.json ``extensions.http.routePrefix``, ``""`` in this app) is glued in
front of each template as ``prefix + "/" + route`` when it is not empty, before parsing
(``WebJobsRouteBuilder.BuildRouteTemplate``): see ``apply_route_prefix``.

Known gaps, each refused or documented rather than guessed silently:

- ``regex(...)``: .NET regular expressions are translated to Python's ``re`` for the common
  syntax (escapes, classes, groups, look-arounds, quantifiers, ``\\w \\d \\s \\b`` and
  ``\\p{..}`` with .NET's definitions, UTF-16 code units as .NET sees them). Constructs that
  cannot be translated faithfully (balancing groups, class subtraction, conditionals,
  ``\\G``, inline ``n``/``x`` options, mid-pattern ``(?i)``) raise ``ValueError``. Case-insensitive
  matching follows Python's case folding, which differs from .NET's invariant table only for
  a few characters (the Turkish dotted and dotless i, for instance).
- ``datetime``: .NET's ``DateTime.TryParse`` (invariant culture) accepts a great many forms;
  this accepts ``yyyy-M-d`` and the invariant ``M/d/yyyy`` (reachable only through a
  catch-all, since ``/`` splits segments), with an optional time, AM/PM and zone, or a time
  alone. A value outside that subset is refused here even where .NET might accept it.
- What ASP.NET does when it throws while matching (one complex-segment case) is raised as
  ``HostRoutingError``: the host answers 500 there instead of trying the next route.

Number parsing for ``int``, ``long``, ``decimal``, ``double``, ``float`` and ``min``/``max``/
``range`` follows dotnet/runtime ``Number.Parsing.cs`` (whitespace, signs, group separators,
trailing NULs, the infinity and NaN symbols); ``guid`` follows ``Guid.TryParse`` with its
compatibility quirks.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cache

__all__ = [
    "EVERY_METHOD",
    "HostRoutes",
    "HostRoutingError",
    "HttpTrigger",
    "Route",
    "RouteTable",
    "RouteTemplate",
    "apply_route_prefix",
    "compile_template",
    "host_routes",
    "registration_order",
    "request_path",
]

# --- Ordinal, case-insensitive comparison (System.Globalization.OrdinalCasing) -----------

# Code points that .NET's ordinal casing maps outside the BMP: the supplementary-plane
# scripts OrdinalCasing.ToUpperSurrogate knows (lower range start, end, distance to upper).
_SUPPLEMENTARY_UPPER = (
    (0x10428, 0x1044F, 0x28),  # Deseret
    (0x104D8, 0x104FB, 0x28),  # Osage
    (0x10CC0, 0x10CF2, 0x40),  # Old Hungarian
    (0x118C0, 0x118DF, 0x20),  # Warang Citi
    (0x16E60, 0x16E7F, 0x20),  # Medefaidrin
    (0x1E922, 0x1E943, 0x22),  # Adlam
)


@cache
def _ordinal_upper_char(char: str) -> str:
    """One code point upper-cased the way ``OrdinalIgnoreCase`` compares it.

    .NET fills its table from ICU's ``u_toupper`` (the one-to-one "simple" mapping, not the
    full one that turns ``ß`` into ``SS``) and keeps U+0131 and U+017F unmapped. Python's
    ``str.upper`` is the full mapping; where that is longer than one character the simple
    mapping is the title-case form when that is a single character, else the character
    itself (``ß`` stays ``ß``, ``ᾳ`` becomes ``ᾼ``).
    """
    point = ord(char)
    if point in (0x131, 0x17F) or 0xD800 <= point <= 0xDFFF:
        return char
    if point > 0xFFFF:
        for low, high, distance in _SUPPLEMENTARY_UPPER:
            if low <= point <= high:
                return chr(point - distance)
        return char
    upper = char.upper()
    if len(upper) == 1:
        return upper
    title = char.title()
    return title if len(title) == 1 else char


def _fold(text: str) -> str:
    """``text`` with every code point ordinal-upper-cased; equal folds mean the strings are
    equal under ``StringComparison.OrdinalIgnoreCase``, and positions are preserved."""
    return "".join(_ordinal_upper_char(char) for char in text)


def _utf16(text: str) -> str:
    """``text`` as the UTF-16 code units .NET strings hold (a supplementary character
    becomes two surrogates), so lengths and regular expressions see what .NET sees."""
    if text.isascii() or max(text) <= "\uffff":
        return text
    data = text.encode("utf-16-le", "surrogatepass")
    return "".join(chr(int.from_bytes(data[i : i + 2], "little")) for i in range(0, len(data), 2))


def _registration_key(name: str) -> tuple[int, ...]:
    """The sort key of ``StringComparer.OrdinalIgnoreCase``: the upper-cased UTF-16 code
    units, compared one by one, a prefix before the longer string."""
    return tuple(ord(unit) for unit in _utf16(_fold(name)))


def registration_order(names: Iterable[str]) -> list[str]:
    """Function names in the order the host registers their routes.

    ``FunctionMetadataManager`` sorts with ``OrderBy(f => f.Name,
    StringComparer.OrdinalIgnoreCase)``: both sides upper-cased, then compared by code unit.
    Upper-casing is what puts ``_`` (0x5F) after every letter (``A``-``Z`` are 0x41-0x5A) and
    digits and ``-`` before them. The sort is stable, as LINQ's is.
    """
    return sorted(names, key=_registration_key)


# --- .NET character classes ----------------------------------------------------------

# char.IsWhiteSpace, which Trim() uses: \t-\r, space, U+0085, U+00A0 and the separators.
_DOTNET_WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _dotnet_trim(text: str) -> str:
    """``string.Trim()``: strips ``char.IsWhiteSpace`` characters, which (unlike Python's
    ``str.isspace``) do not include U+001C to U+001F."""
    start, end = 0, len(text)
    while start < end and text[start] in _DOTNET_WHITESPACE:
        start += 1
    while end > start and text[end - 1] in _DOTNET_WHITESPACE:
        end -= 1
    return text[start:end]


# --- Inline constraints (RouteOptions.ConstraintMap) ----------------------------------

Check = Callable[[str | None], bool]
"""A resolved inline constraint: given the route value (``None`` when it is null), does it
pass? Every ASP.NET constraint but ``nonfile`` refuses a null value."""

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
_HEX = frozenset("0123456789abcdefABCDEF")


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


def _is_file_name(text: str) -> bool:
    """``FileNameRouteConstraint.IsFileName``: the part after the last ``/`` holds a dot
    followed by at least one character that is not a dot."""
    last = text[text.rfind("/") + 1 :]
    dot = last.find(".")
    return dot >= 0 and any(char != "." for char in last[dot + 1 :])


def _no_argument(name: str, check: Callable[[str], bool]) -> Callable[[str | None], Check]:
    """A constraint whose class has only a parameterless constructor: ``int`` resolves,
    ``int()`` does not (``ParameterPolicyActivator`` finds no one-argument constructor)."""

    def build(argument: str | None) -> Check:
        if argument is not None:
            raise ValueError(f"the {name!r} constraint takes no arguments")
        return lambda value: value is not None and check(value)

    return build


def _argument_number(name: str, text: str | None, bits: int) -> int:
    """One constructor argument converted as ``Convert.ChangeType(text, int/long,
    InvariantCulture)`` converts it; a missing argument fails as .NET's null does."""
    if text is None:
        raise ValueError(f"the {name!r} constraint needs an argument, as in {name}(3)")
    number = _parse_integer(text, bits)
    if number is None:
        raise ValueError(f"the {name!r} constraint's argument {text!r} is not an Int{bits}")
    return number


def _arguments(name: str, text: str | None) -> list[str]:
    """Arguments of a constraint with several constructors: split at commas, each trimmed
    (``StringSplitOptions.TrimEntries``); no parentheses means no arguments."""
    if text is None:
        return []
    return [_dotnet_trim(piece) for piece in text.split(",")]


def _utf16_length(text: str) -> int:
    """``string.Length``: UTF-16 code units, so a supplementary character counts twice."""
    return len(_utf16(text))


def _min_length(argument: str | None) -> Check:
    least = _argument_number("minlength", argument, 32)
    if least < 0:
        raise ValueError("the 'minlength' constraint's argument must be 0 or more")
    return lambda value: value is not None and _utf16_length(value) >= least


def _max_length(argument: str | None) -> Check:
    most = _argument_number("maxlength", argument, 32)
    if most < 0:
        raise ValueError("the 'maxlength' constraint's argument must be 0 or more")
    return lambda value: value is not None and _utf16_length(value) <= most


def _length(argument: str | None) -> Check:
    pieces = _arguments("length", argument)
    if len(pieces) not in (1, 2):
        raise ValueError(
            "the 'length' constraint takes one or two arguments: length(n), length(a,b)"
        )
    bounds = [_argument_number("length", piece, 32) for piece in pieces]
    least, most = bounds[0], bounds[-1]
    if least < 0 or most < 0 or least > most:
        raise ValueError(f"the 'length' constraint's bounds {argument!r} are not 0 <= min <= max")
    return lambda value: value is not None and least <= _utf16_length(value) <= most


def _long_between(low: int | None, high: int | None) -> Check:
    def check(value: str | None) -> bool:
        number = None if value is None else _parse_integer(value, 64)
        if number is None:
            return False
        return (low is None or number >= low) and (high is None or number <= high)

    return check


def _min(argument: str | None) -> Check:
    return _long_between(_argument_number("min", argument, 64), None)


def _max(argument: str | None) -> Check:
    return _long_between(None, _argument_number("max", argument, 64))


def _range(argument: str | None) -> Check:
    pieces = _arguments("range", argument)
    if len(pieces) != 2:
        raise ValueError("the 'range' constraint takes two arguments: range(min,max)")
    low, high = (_argument_number("range", piece, 64) for piece in pieces)
    if low > high:
        raise ValueError(f"the 'range' constraint's minimum {low} is above its maximum {high}")
    return _long_between(low, high)


def _regex(argument: str | None) -> Check:
    """``RegexInlineRouteConstraint``: the pattern as given (not anchored), with
    ``RegexOptions.CultureInvariant | IgnoreCase``, passes when it is found anywhere."""
    if argument is None:
        raise ValueError("the 'regex' constraint needs a pattern, as in regex(^[0-9]+$)")
    compiled = _compile_dotnet_regex(argument)
    return lambda value: value is not None and compiled.search(_utf16(value)) is not None


_ALPHA = re.compile(r"^[A-Za-z]*$")

_CONSTRAINTS: dict[str, Callable[[str | None], Check]] = {
    "INT": _no_argument("int", lambda v: _parse_integer(v, 32) is not None),
    "LONG": _no_argument("long", lambda v: _parse_integer(v, 64) is not None),
    "BOOL": _no_argument("bool", _is_bool),
    "DATETIME": _no_argument("datetime", _is_datetime),
    "DECIMAL": _no_argument("decimal", _is_decimal),
    "DOUBLE": _no_argument("double", _is_float),
    "FLOAT": _no_argument("float", _is_float),
    "GUID": _no_argument("guid", _is_guid),
    "ALPHA": _no_argument("alpha", lambda v: _ALPHA.search(v) is not None),
    "REQUIRED": _no_argument("required", lambda v: v != ""),
    "FILE": _no_argument("file", _is_file_name),
    "MINLENGTH": _min_length,
    "MAXLENGTH": _max_length,
    "LENGTH": _length,
    "MIN": _min,
    "MAX": _max,
    "RANGE": _range,
    "REGEX": _regex,
}


def _nonfile(argument: str | None) -> Check:
    """``nonfile`` lets a missing value through: it exists to keep file names out."""
    if argument is not None:
        raise ValueError("the 'nonfile' constraint takes no arguments")
    return lambda value: value is None or not _is_file_name(value)


_CONSTRAINTS["NONFILE"] = _nonfile


def _resolve_constraint(text: str) -> Check:
    """``DefaultInlineConstraintResolver``: ``key(arguments)`` when the text ends with ``)``,
    the key looked up ignoring case; an unknown key makes the route invalid."""
    opening = text.find("(")
    if opening >= 0 and text.endswith(")"):
        key, argument = text[:opening], text[opening + 1 : -1]
    else:
        key, argument = text, None
    build = _CONSTRAINTS.get(_fold(key))
    if build is None:
        raise ValueError(
            f"the inline constraint {text!r} could not be resolved: ASP.NET Core knows "
            + ", ".join(sorted(name.lower() for name in _CONSTRAINTS))
        )
    return build(argument)


# --- .NET regular expressions, translated -------------------------------------------

_REGEX_CATEGORIES = frozenset(
    {"L", "M", "N", "P", "S", "Z", "C"}
    | {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps"}
    | {"Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs"}
    | {"Co", "Cn"}
)
Ranges = tuple[tuple[int, int], ...]


@cache
def _category_ranges(categories: frozenset[str]) -> Ranges:
    """The UTF-16 code units (all a .NET regex ever sees) in the given general categories;
    a one-letter name stands for its whole group."""
    ranges: list[tuple[int, int]] = []
    for point in range(0x10000):
        category = unicodedata.category(chr(point))
        if category in categories or category[0] in categories:
            if ranges and ranges[-1][1] == point - 1:
                ranges[-1] = (ranges[-1][0], point)
            else:
                ranges.append((point, point))
    return tuple(ranges)


def _complement(ranges: Ranges) -> Ranges:
    gaps: list[tuple[int, int]] = []
    start = 0
    for low, high in ranges:
        if low > start:
            gaps.append((start, low - 1))
        start = high + 1
    if start <= 0xFFFF:
        gaps.append((start, 0xFFFF))
    return tuple(gaps)


def _word_ranges() -> Ranges:
    """.NET ``\\w``: letters, non-spacing marks, decimal digits, connector punctuation."""
    return _category_ranges(frozenset({"L", "Mn", "Nd", "Pc"}))


_SPACE_RANGES: Ranges = ((0x09, 0x0D), (0x20, 0x20), (0x85, 0x85), (0xA0, 0xA0))
_SPACE_RANGES += ((0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F))
_SPACE_RANGES += ((0x205F, 0x205F), (0x3000, 0x3000))


def _class_body(ranges: Ranges) -> str:
    return "".join(
        f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}" for low, high in ranges
    )


def _in_class(ranges: Ranges, negate: bool = False) -> str:
    if not ranges:
        return "[\\u0000-\\uffff]" if negate else "(?!)"
    return ("[^" if negate else "[") + _class_body(ranges) + "]"


_SIMPLE_ESCAPES = {"t": 0x09, "n": 0x0A, "v": 0x0B, "f": 0x0C, "r": 0x0D, "a": 0x07, "e": 0x1B}


class _RegexTranslator:
    """Rewrites a .NET pattern as a Python pattern with the same meaning on UTF-16 code
    units, or raises ``ValueError`` for what it cannot rewrite faithfully."""

    def __init__(self, pattern: str) -> None:
        self.source = _utf16(pattern)
        self.at = 0
        self.out: list[str] = []
        self.named = False
        self.numbered_references = False

    def fail(self, why: str) -> ValueError:
        return ValueError(f"regex constraint {self.source!r}: {why}")

    def peek(self, offset: int = 0) -> str:
        index = self.at + offset
        return self.source[index] if index < len(self.source) else ""

    def translate(self) -> str:
        while self.at < len(self.source):
            self.token()
        if self.named and self.numbered_references:
            raise self.fail("numbered back-references with named groups are numbered differently")
        return "".join(self.out)

    def token(self) -> None:
        char = self.peek()
        if char == "\\":
            self.out.append(self.escape())
        elif char == "[":
            self.out.append(self.char_class())
        elif char == "(":
            self.group()
        elif char in "*+?":
            self.at += 1
            self.out.append(char)
            self.after_quantifier()
        elif char == "{":
            bound = re.match(r"\{[0-9]+(?:,[0-9]*)?\}", self.source[self.at :])
            if bound is None:
                self.at += 1
                self.out.append("\\{")
            else:
                self.at += len(bound.group(0))
                self.out.append(bound.group(0))
                self.after_quantifier()
        elif char in "^$.|)":
            self.at += 1
            self.out.append(char)
        else:
            self.at += 1
            self.out.append(_literal(ord(char)))

    def after_quantifier(self) -> None:
        """A lazy ``?`` may follow; any other quantifier is .NET's "nested quantifier"
        error (Python would read ``*+`` as possessive instead)."""
        if self.peek() == "?":
            self.at += 1
            self.out.append("?")
        following = self.peek()
        if following in ("*", "+", "?") or (
            following == "{" and re.match(r"\{[0-9]+(?:,[0-9]*)?\}", self.source[self.at :])
        ):
            raise self.fail("nested quantifier")

    def group(self) -> None:
        rest = self.source[self.at :]
        if not rest.startswith("(?"):
            self.at += 1
            self.out.append("(")
            return
        for opener in ("(?:", "(?=", "(?!", "(?>", "(?<=", "(?<!"):
            if rest.startswith(opener):
                self.at += len(opener)
                self.out.append(opener)
                return
        if rest.startswith("(?#"):
            end = rest.find(")")
            if end < 0:
                raise self.fail("unterminated (?#...) comment")
            self.at += end + 1
            return
        named = re.match(r"\(\?(?:<([^>]*)>|'([^']*)')", rest)
        if named is not None:
            name = named.group(1) if named.group(1) is not None else named.group(2)
            if "-" in name:
                raise self.fail("balancing groups have no Python equivalent")
            if not name.isidentifier():
                raise self.fail(f"group name {name!r} cannot be carried over")
            self.named = True
            self.at += len(named.group(0))
            self.out.append(f"(?P<{name}>")
            return
        options = re.match(r"\(\?([imnsx]*)(?:-([imnsx]*))?([:)])", rest)
        if options is None:
            raise self.fail(f"unsupported group construct at {rest[:6]!r}")
        on, off, closer = options.group(1), options.group(2) or "", options.group(3)
        if set(on + off) & set("nx"):
            raise self.fail("the n and x inline options have no faithful Python equivalent")
        if closer == ")" and (self.out or off):
            raise self.fail("inline options are only supported at the start, or as (?i:...)")
        self.at += len(options.group(0))
        self.out.append(f"(?{on}-{off}:" if off else f"(?{on}{closer}")

    def escape(self) -> str:
        """An escape outside a character class."""
        letter = self.peek(1)
        if letter in ("w", "W", "s", "S", "d", "D", "p", "P"):
            ranges, negate = self.class_escape()
            return _in_class(ranges, negate)
        if letter in ("b", "B"):
            self.at += 2
            word = _class_body(_word_ranges()) + "\\u200c\\u200d"
            inside, outside = f"(?<=[{word}])", f"(?<![{word}])"
            ahead, not_ahead = f"(?=[{word}])", f"(?![{word}])"
            if letter == "b":
                return f"(?:{inside}{not_ahead}|{outside}{ahead})"
            return f"(?:{inside}{ahead}|{outside}{not_ahead})"
        if letter == "A":
            self.at += 2
            return "\\A"
        if letter == "z":
            self.at += 2
            return "\\Z"
        if letter == "Z":
            self.at += 2
            return "(?=\\n?\\Z)"
        if letter == "k":
            reference = re.match(r"\\k(?:<([^>]*)>|'([^']*)')", self.source[self.at :])
            if reference is None:
                raise self.fail("malformed \\k reference")
            self.at += len(reference.group(0))
            name = reference.group(1) if reference.group(1) is not None else reference.group(2)
            if not name.isidentifier():
                raise self.fail(f"reference to group {name!r} cannot be carried over")
            return f"(?P={name})"
        if letter in "123456789" and letter:
            if self.peek(2).isdigit():
                raise self.fail("multi-digit back-references are ambiguous with octal")
            self.at += 2
            self.numbered_references = True
            return f"(?:\\{letter})"
        return _literal(self.char_escape())

    def class_escape(self) -> tuple[Ranges, bool]:
        """``\\w \\d \\s \\p{X}`` and their negations, as code-unit ranges."""
        letter = self.peek(1)
        self.at += 2
        negate = letter.isupper()
        kind = letter.lower()
        if kind == "w":
            return _word_ranges(), negate
        if kind == "d":
            return _category_ranges(frozenset({"Nd"})), negate
        if kind == "s":
            return _SPACE_RANGES, negate
        named = re.match(r"\{([A-Za-z]+)\}", self.source[self.at :])
        if named is None or named.group(1) not in _REGEX_CATEGORIES:
            raise self.fail("only general categories such as \\p{Lu} are supported")
        self.at += len(named.group(0))
        return _category_ranges(frozenset({named.group(1)})), negate

    def char_escape(self) -> int:
        """An escape standing for one code unit; anything else .NET would refuse."""
        letter = self.peek(1)
        if letter == "":
            raise self.fail("illegal \\ at end of pattern")
        if letter in _SIMPLE_ESCAPES:
            self.at += 2
            return _SIMPLE_ESCAPES[letter]
        if letter in ("x", "u"):
            width = 2 if letter == "x" else 4
            digits = self.source[self.at + 2 : self.at + 2 + width]
            if len(digits) != width or any(char not in _HEX for char in digits):
                raise self.fail(f"\\{letter} needs exactly {width} hex digits")
            self.at += 2 + width
            return int(digits, 16)
        if letter == "c":
            control = self.peek(2)
            if not (control.isascii() and control.isalpha()):
                raise self.fail("\\c needs a letter")
            self.at += 3
            return ord(control.upper()) - 0x40
        if letter == "0":
            octal = re.match(r"0[0-7]{0,2}", self.source[self.at + 1 :])
            assert octal is not None
            self.at += 1 + len(octal.group(0))
            return int(octal.group(0), 8)
        if _is_dotnet_word(letter):
            raise self.fail(f"unrecognized escape \\{letter}")
        self.at += 2
        return ord(letter)

    def char_class(self) -> str:
        """``[...]``: ranges and escapes, emitted as escaped code units so Python reads no
        set operation into them."""
        self.at += 1
        negate = self.peek() == "^"
        if negate:
            self.at += 1
        pieces: list[str] = []
        first = True
        while True:
            char = self.peek()
            if char == "":
                raise self.fail("unterminated [] set")
            if char == "]" and not first:
                self.at += 1
                break
            if char == "-" and self.peek(1) == "[":
                raise self.fail("character class subtraction has no Python equivalent")
            first = False
            atom = self.class_atom()
            if self.peek() == "-" and self.peek(1) not in ("]", ""):
                if self.peek(1) == "[":
                    raise self.fail("character class subtraction has no Python equivalent")
                if isinstance(atom, tuple):
                    raise self.fail("a class escape cannot start a range")
                self.at += 1
                high = self.class_atom()
                if isinstance(high, tuple):
                    raise self.fail("a class escape cannot end a range")
                if high < atom:
                    raise self.fail("range in reverse order")
                pieces.append(_class_body(((atom, high),)))
            elif isinstance(atom, tuple):
                ranges, negated = atom
                pieces.append(_class_body(_complement(ranges) if negated else ranges))
            else:
                pieces.append(_class_body(((atom, atom),)))
        body = "".join(pieces)
        if not body:
            return "[\\u0000-\\uffff]" if negate else "(?!)"
        return ("[^" if negate else "[") + body + "]"

    def class_atom(self) -> int | tuple[Ranges, bool]:
        char = self.peek()
        if char == "[" and self.peek(1) == ":":
            raise self.fail("[: inside a class has a .NET-specific meaning")
        if char != "\\":
            self.at += 1
            return ord(char)
        letter = self.peek(1)
        if letter in ("w", "W", "s", "S", "d", "D", "p", "P"):
            return self.class_escape()
        if letter == "b":
            self.at += 2
            return 0x08
        if letter in "123456789" and letter:
            raise self.fail("back-references inside a class are not supported")
        return self.char_escape()


def _is_dotnet_word(char: str) -> bool:
    """Whether .NET's regex parser reads ``\\char`` as an unknown escape (an error) rather
    than the character: the word characters of ``\\b`` (``\\w`` plus the two joiners)."""
    category = unicodedata.category(char)
    return category[0] == "L" or category in ("Mn", "Nd", "Pc") or char in "\u200c\u200d"


def _literal(point: int) -> str:
    """One code unit as a pattern that matches exactly it."""
    char = chr(point)
    if char.isascii() and (char.isalnum() or char == "_"):
        return char
    return f"\\u{point:04x}"


@cache
def _compile_dotnet_regex(pattern: str) -> re.Pattern[str]:
    """A .NET pattern as an equivalent compiled Python pattern (case-insensitive, as
    ``RegexRouteConstraint`` always is), or ``ValueError`` naming what .NET syntax failed."""
    translated = _RegexTranslator(pattern).translate()
    try:
        return re.compile(translated, re.IGNORECASE)
    except re.error as error:
        raise ValueError(f"regex constraint {pattern!r} is not valid: {error}") from error


# --- Templates (RoutePatternParser, RouteParameterParser) -----------------------------


class _Kind(Enum):
    STANDARD = "standard"
    OPTIONAL = "optional"
    CATCH_ALL = "catch-all"


@dataclass(frozen=True, slots=True)
class _Literal:
    """Literal text of a segment; ``separator`` marks the ``.`` before a last optional
    parameter, which may be left out together with it (``{name}.{ext?}``)."""

    text: str
    folded: str
    separator: bool = False


@dataclass(frozen=True, slots=True)
class _Parameter:
    name: str
    kind: _Kind
    default: str | None
    constraints: tuple[str, ...]


_Part = _Literal | _Parameter
_Segment = tuple[_Part, ...]
_INVALID_NAME_CHARS = frozenset("/{}?*")


def _parse_constraints(text: str, at: int, end: int) -> tuple[int, list[str]]:
    """The inline constraints after a parameter name, ``:name``, ``:name(arguments)``...

    A ``)`` closes the arguments only when it is last or followed by ``:`` or ``=``; a ``:``
    or ``=`` inside parentheses belongs to the arguments when a ``)`` follows later. Returns
    where parsing stopped (at the ``=`` of a default, or past the end) and the texts found.
    """
    constraints: list[str] = []
    state = "start"
    start = at
    while state != "end":
        char = text[at] if at <= end else None
        if state == "start":
            if char is None:
                state = "end"
            elif char == ":":
                state, start = "name", at + 1
            elif char == "(":
                state = "arguments"
            elif char == "=":
                state, at = "end", at - 1
        elif state == "arguments":
            if char is None:
                state = "end"
                constraints.append(text[start:at])
            elif char == ")":
                following = text[at + 1] if at + 1 <= end else None
                if following is None or following == "=":
                    state = "end"
                    constraints.append(text[start : at + 1])
                elif following == ":":
                    state = "start"
                    constraints.append(text[start : at + 1])
                    start = at + 1
            elif char in ":=":
                closing = text.find(")", at + 1)
                if closing >= 0:
                    at = closing
                else:
                    constraints.append(text[start:at])
                    if char == ":":
                        state, start = "name", at + 1
                    else:
                        state, at = "end", at - 1
        elif char is None or char in ":=":
            if text[start:at]:
                constraints.append(text[start:at])
            if char is None:
                state = "end"
            elif char == ":":
                start = at + 1
            else:
                state, at = "end", at - 1
        elif char == "(":
            state = "arguments"
        at += 1
    return at, constraints


def _parse_parameter(inside: str) -> _Parameter:
    """The text between the braces: ``*``/``**`` for a catch-all, the name, constraints,
    ``=default``, a final ``?`` for optional. ``:`` or ``=`` may start a name."""
    if not inside:
        return _Parameter("", _Kind.STANDARD, None, ())
    start, end = 0, len(inside) - 1
    kind = _Kind.STANDARD
    if inside.startswith("**"):
        kind, start = _Kind.CATCH_ALL, 2
    elif inside.startswith("*"):
        kind, start = _Kind.CATCH_ALL, 1
    if inside[end] == "?":
        kind, end = _Kind.OPTIONAL, end - 1
    at, name = start, ""
    while at <= end:
        if inside[at] in ":=" and at != start:
            name = inside[start:at]
            at -= 1
            break
        if at == end:
            name = inside[start : at + 1]
        at += 1
    at, constraints = _parse_constraints(inside, at, end)
    default = inside[at + 1 : end + 1] if at <= end and inside[at] == "=" else None
    return _Parameter(name, kind, default, tuple(constraints))


def _scan_parameter(template: str, at: int) -> tuple[str, int]:
    """From the ``{`` at ``at``: the parameter's raw text and where it ends. Braces inside
    it must be doubled, as in ``{id:regex(^[0-9]{{3}}$)}``."""
    start = at
    at += 1
    while True:
        char = template[at]
        if char == "{":
            if at + 1 >= len(template):
                raise ValueError(f"route template {template!r} has an unclosed '{{'")
            if template[at + 1] != "{":
                raise ValueError(
                    f"route template {template!r} has an unescaped '{{' inside a parameter "
                    "(write '{{')"
                )
            at += 1
        elif char == "}":
            if at + 1 >= len(template) or template[at + 1] != "}":
                return template[start : at + 1], at + 1
            at += 1
        at += 1
        if at >= len(template):
            raise ValueError(f"route template {template!r} has an unclosed '{{'")


def _scan_literal(template: str, at: int) -> tuple[str, int]:
    """From ``at``: literal text up to a ``/`` or an unescaped ``{``, with ``{{`` and ``}}``
    standing for single braces."""
    start = at
    while True:
        char = template[at]
        if char == "/":
            break
        if char == "{":
            if at + 1 >= len(template):
                raise ValueError(f"route template {template!r} has an unclosed '{{'")
            if template[at + 1] != "{":
                break
            at += 1
        elif char == "}":
            if at + 1 >= len(template) or template[at + 1] != "}":
                raise ValueError(f"route template {template!r} has an unmatched '}}'")
            at += 1
        at += 1
        if at >= len(template):
            break
    literal = template[start:at].replace("}}", "}").replace("{{", "{")
    if "?" in literal:
        raise ValueError(
            f"route template {template!r}: the literal {literal!r} contains '?', "
            "which only marks optional parameters"
        )
    return literal, at


def _check_segment(template: str, parts: list[_Part]) -> _Segment:
    """The per-segment rules: a catch-all stands alone; an optional parameter in a
    multi-part segment must be last and follow a literal ``.``; no two parameters touch."""
    if len(parts) > 1 and any(
        isinstance(p, _Parameter) and p.kind is _Kind.CATCH_ALL for p in parts
    ):
        raise ValueError(f"route template {template!r}: a catch-all must be a whole segment")
    for index, part in enumerate(parts):
        if not (isinstance(part, _Parameter) and part.kind is _Kind.OPTIONAL and len(parts) > 1):
            continue
        if index != len(parts) - 1:
            raise ValueError(
                f"route template {template!r}: optional parameter {part.name!r} must be "
                "at the end of its segment"
            )
        previous = parts[index - 1]
        if not isinstance(previous, _Literal) or previous.text != ".":
            raise ValueError(
                f"route template {template!r}: optional parameter {part.name!r} can only "
                "be preceded by a period (.) in its segment"
            )
        parts[index - 1] = _Literal(previous.text, previous.folded, separator=True)
    for left, right in zip(parts, parts[1:], strict=False):
        if isinstance(left, _Parameter) and isinstance(right, _Parameter):
            raise ValueError(
                f"route template {template!r}: parameters {left.name!r} and {right.name!r} "
                "must be separated by a literal"
            )
    return tuple(parts)


def _parse_template(template: str) -> tuple[_Segment, ...]:
    """Segments of a route template, or ``ValueError`` wherever ASP.NET Core's parser
    refuses it (``RouteCreationException`` in the host)."""
    text = template
    if text.startswith("~/"):
        text = text[2:]
    elif text.startswith("/"):
        text = text[1:]
    elif text.startswith("~"):
        raise ValueError(f"route template {template!r} may start with '~/' but not with '~'")
    names: set[str] = set()
    segments: list[_Segment] = []
    at = 0
    while at < len(text):
        if text[at] == "/":
            raise ValueError(f"route template {template!r} has an empty segment ('//')")
        parts: list[_Part] = []
        while at < len(text) and text[at] != "/":
            if text[at] == "{" and (at + 1 >= len(text) or text[at + 1] != "{"):
                if at + 1 >= len(text):
                    raise ValueError(f"route template {template!r} has an unclosed '{{'")
                raw, at = _scan_parameter(text, at)
                parts.append(_checked_parameter(template, raw, names))
            else:
                literal, at = _scan_literal(text, at)
                parts.append(_Literal(literal, _fold(literal)))
        segments.append(_check_segment(template, parts))
        at += 1
    for index, segment in enumerate(segments):
        for position, part in enumerate(segment):
            if (
                isinstance(part, _Parameter)
                and part.kind is _Kind.CATCH_ALL
                and (index != len(segments) - 1 or position != len(segment) - 1)
            ):
                raise ValueError(
                    f"route template {template!r}: the catch-all {part.name!r} must be last"
                )
    return tuple(segments)


def _checked_parameter(template: str, raw: str, names: set[str]) -> _Parameter:
    if raw == "{}":
        raise ValueError(f"route template {template!r} has a parameter with no name ('{{}}')")
    inside = raw[1:-1].replace("}}", "}").replace("{{", "{")
    parameter = _parse_parameter(inside)
    if inside.startswith("*") and inside.endswith("?"):
        raise ValueError(f"route template {template!r}: a catch-all cannot be optional")
    if parameter.kind is _Kind.OPTIONAL and parameter.default is not None:
        raise ValueError(
            f"route template {template!r}: optional parameter {parameter.name!r} cannot "
            "have a default value"
        )
    if not parameter.name or _INVALID_NAME_CHARS & set(parameter.name):
        raise ValueError(
            f"route template {template!r}: {parameter.name!r} is not a valid parameter name "
            "(it must not be empty or contain / { } ? *)"
        )
    folded = _fold(parameter.name)
    if folded in names:
        raise ValueError(
            f"route template {template!r} uses the parameter {parameter.name!r} twice "
            "(names ignore case)"
        )
    names.add(folded)
    return parameter


# --- Matching (RoutePatternMatcher) ---------------------------------------------------


class HostRoutingError(RuntimeError):
    """Raised where ASP.NET Core's own matcher throws: a complex segment such as
    ``a{p}b`` against ``b`` makes it slice with a negative length. The host answers such a
    request with 500; routing does not go on to the next route."""


def _tokenize(path: str) -> list[tuple[int, str]]:
    """``PathTokenizer``: the segments after the leading ``/`` with their offsets; a single
    trailing ``/`` adds no segment, but ``//`` leaves an empty one."""
    if path and not path.startswith("/"):
        raise ValueError(f"request path {path!r} must start with '/'")
    if len(path) <= 1:
        return []
    body = path[1:-1] if path.endswith("/") else path[1:]
    tokens: list[tuple[int, str]] = []
    offset = 1
    for text in body.split("/"):
        tokens.append((offset, text))
        offset += len(text) + 1
    return tokens


def _match_complex(parts: _Segment, request: str, values: dict[str, str | None]) -> bool:
    """``MatchComplexSegment``: a segment of literals and parameters, matched from the right.

    When the segment ends in ``.{x?}`` and the full match fails, the match is tried again
    without the separator and the optional parameter, unless the request ends with the
    separator (``{a}.{b?}`` matches ``one`` but not ``one.``).
    """
    last = len(parts) - 1
    tail = parts[last]
    separator = parts[last - 1]
    if (
        isinstance(tail, _Parameter)
        and tail.kind is _Kind.OPTIONAL
        and isinstance(separator, _Literal)
        and separator.separator
    ):
        if _match_complex_from(parts, request, values, last):
            return True
        if _fold(request).endswith(separator.folded):
            return False
        return _match_complex_from(parts, request, values, last - 2)
    return _match_complex_from(parts, request, values, last)


def _match_complex_from(
    parts: _Segment, request: str, values: dict[str, str | None], index: int
) -> bool:
    """Right to left from ``parts[index]``: each literal is searched for (last occurrence,
    ignoring case) left of where the previous one started, keeping at least one character
    for a pending parameter, which takes the text between. The leftmost literal must reach
    the start and the rightmost the end, and no parameter may be empty."""
    folded = _fold(request)
    end = len(request)
    pending: _Parameter | None = None
    last_literal: _Literal | None = None
    found: dict[str, str] = {}
    while index >= 0:
        new_end = end
        part = parts[index]
        if isinstance(part, _Parameter):
            pending = part
        else:
            last_literal = part
            limit = end - 1 if pending is not None else end
            if limit == 0:
                return False
            if limit < 0:
                # ASP.NET slices with a negative length here and throws: the host fails
                # the request (500) instead of trying the next route.
                raise HostRoutingError(
                    f"ASP.NET Core throws matching {request!r} against a complex segment"
                )
            position = folded.rfind(part.folded, 0, limit)
            if position < 0:
                return False
            if index == len(parts) - 1 and position + len(part.folded) != len(request):
                return False
            new_end = position
        if pending is not None and (
            (last_literal is not None and isinstance(part, _Literal)) or index == 0
        ):
            if last_literal is None or (index == 0 and isinstance(part, _Parameter)):
                start, length = 0, end
            else:
                start = new_end + len(last_literal.folded)
                length = end - start
            if length <= 0:
                return False
            found[pending.name] = request[start : start + length]
            pending, last_literal = None, None
        end = new_end
        index -= 1
    if end == 0 or isinstance(parts[0], _Parameter):
        values.update(found)
        return True
    return False


def _simple_parameter(segment: _Segment) -> _Parameter | None:
    part = segment[0]
    return part if len(segment) == 1 and isinstance(part, _Parameter) else None


# --- Public API ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteTemplate:
    """One parsed ASP.NET Core route template (``v{version}/studies/{study}``).

    ``RouteTemplate(text)`` parses at once and raises ``ValueError`` for a template the host
    would refuse; inline constraints are resolved at the same time, as ``RouteBase`` does.
    """

    template: str
    _segments: tuple[_Segment, ...] = field(init=False, repr=False, compare=False)
    _defaults: Mapping[str, str] = field(init=False, repr=False, compare=False)
    _checks: tuple[tuple[str, bool, tuple[Check, ...]], ...] = field(
        init=False, repr=False, compare=False
    )
    _optional: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        segments = _parse_template(self.template)
        parameters = [
            part for segment in segments for part in segment if isinstance(part, _Parameter)
        ]
        defaults = {p.name: p.default for p in parameters if p.default is not None}
        try:
            checks = tuple(
                (
                    p.name,
                    p.kind is _Kind.OPTIONAL,
                    tuple(_resolve_constraint(text) for text in p.constraints),
                )
                for p in parameters
                if p.constraints
            )
        except ValueError as error:
            raise ValueError(f"route template {self.template!r}: {error}") from error
        object.__setattr__(self, "_segments", segments)
        object.__setattr__(self, "_defaults", defaults)
        object.__setattr__(self, "_checks", checks)
        optional = frozenset(_fold(p.name) for p in parameters if p.kind is _Kind.OPTIONAL)
        object.__setattr__(self, "_optional", optional)

    @property
    def is_catch_all(self) -> bool:
        """True for a template that is one catch-all segment (``{*path}``): it matches
        every path, so it says nothing about which methods a path allows."""
        return len(self._segments) == 1 and (
            (parameter := _simple_parameter(self._segments[0])) is not None
            and parameter.kind is _Kind.CATCH_ALL
        )

    @property
    def parameters(self) -> tuple[str, ...]:
        """The parameter names, in template order."""
        return tuple(
            part.name
            for segment in self._segments
            for part in segment
            if isinstance(part, _Parameter)
        )

    def checks_method(self, values: Mapping[str, str | None]) -> bool:
        """Whether the route's method constraint applies to a match with these values.

        ``RouteConstraintBuilder`` keys constraints by name ignoring case and wraps every
        constraint of an optional parameter; the method constraint's key is ``httpMethod``.
        So a template with an optional ``{httpMethod?}`` checks the method only when that
        parameter has a value. The quirk is reproduced; no sane template meets it.
        """
        if "HTTPMETHOD" not in self._optional:
            return True
        return any(_fold(name) == "HTTPMETHOD" for name in values)

    def match(self, path: str) -> dict[str, str] | None:
        """The route values when ``path`` matches the template and its inline constraints.

        ``path`` is the request path as Kestrel gives it to ASP.NET Core (``request_path``),
        starting with ``/``. Optional parameters without a value are left out; parameters
        with an inline default get it; a catch-all that captured nothing is left out.
        """
        values = self.route_values(path)
        if values is None:
            return None
        return {name: value for name, value in values.items() if value is not None}

    def route_values(self, path: str) -> dict[str, str | None] | None:
        """Like ``match`` but keeps the nulls ASP.NET stores (an empty catch-all), which
        decide whether an optional parameter's constraints, and the method, apply."""
        values = self._match_path(path)
        if values is None:
            return None
        for name, optional, checks in self._checks:
            if optional and name not in values:
                continue
            value = values.get(name)
            if not all(check(value) for check in checks):
                return None
        return values

    def _match_path(self, path: str) -> dict[str, str | None] | None:
        """``RoutePatternMatcher.TryMatch``: a first pass that rejects, a second that
        captures, then defaults for the template segments the path did not reach."""
        segments = self._segments
        tokens = _tokenize(path)
        index = 0
        for _, text in tokens:
            if not text or index >= len(segments):
                return None
            segment = segments[index]
            parameter = _simple_parameter(segment)
            if parameter is not None and parameter.kind is _Kind.CATCH_ALL:
                break
            if (
                len(segment) == 1
                and isinstance(segment[0], _Literal)
                and _fold(text) != segment[0].folded
            ):
                return None
            index += 1
        for segment in segments[index:]:
            parameter = _simple_parameter(segment)
            if parameter is None:
                return None
            if parameter.kind is _Kind.CATCH_ALL:
                break
            if parameter.kind is not _Kind.OPTIONAL and parameter.name not in self._defaults:
                return None

        values: dict[str, str | None] = {}
        index = 0
        for offset, text in tokens:
            segment = segments[index]
            index += 1
            parameter = _simple_parameter(segment)
            if parameter is not None and parameter.kind is _Kind.CATCH_ALL:
                values[parameter.name] = path[offset:] or parameter.default
                break
            if parameter is not None:
                values[parameter.name] = text
            elif len(segment) > 1 and not _match_complex(segment, text, values):
                return None
        for segment in segments[index:]:
            parameter = _simple_parameter(segment)
            if parameter is None:
                continue
            # A catch-all or a parameter with a default gets the default (a catch-all's may
            # be null), but a null never replaces a value already there.
            keeps = parameter.default is None and parameter.name in values
            if (parameter.kind is _Kind.CATCH_ALL or parameter.default is not None) and not keeps:
                values[parameter.name] = parameter.default
        for name, default in self._defaults.items():
            values.setdefault(name, default)
        return values


def compile_template(template: str) -> RouteTemplate:
    """Parse an ASP.NET Core route template; ``ValueError`` names what the host would
    refuse (an unclosed brace, ``//``, a catch-all not last, an unknown constraint...)."""
    return RouteTemplate(template)


def apply_route_prefix(route_prefix: str, route: str) -> str:
    """The template the host registers: ``prefix/route`` when the prefix is not empty.

    Nothing is trimmed (``WebJobsRouteBuilder.BuildRouteTemplate``), so prefix ``api`` and
    route ``/x`` make ``api//x``, which the parser then refuses.
    """
    return f"{route_prefix}/{route}" if route_prefix else route


# HTTP methods as the host lists them (ScriptConstants.HttpMethods): what a route without
# a method list serves, for the purpose of an Allow header.
EVERY_METHOD = frozenset({"GET", "POST", "DELETE", "HEAD", "PATCH", "PUT", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Route:
    """One function's route: its name, template and the methods it accepts (upper-cased on
    construction, as the host compares them ignoring case); empty means every method, as
    for a trigger without ``methods``."""

    function: str
    template: RouteTemplate
    methods: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", frozenset(_fold(m) for m in self.methods))

    def accepts(self, method: str, values: Mapping[str, str | None]) -> bool:
        """``HttpMethodRouteConstraint``: the request method, ignoring case, is one of the
        route's (see ``RouteTemplate.checks_method`` for when it is not asked)."""
        if not self.methods or _fold(method) in self.methods:
            return True
        return not self.template.checks_method(values)


class RouteTable:
    """The host's ``RouteCollection`` of function routes: registration order, first match.

    Routes are kept in ``registration_order`` of their function names whatever order they
    are given in; ``resolve`` walks them and returns the first whose template, inline
    constraints and method all match, as ``RouteCollection.RouteAsync`` does.
    """

    __slots__ = ("routes",)

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(
            sorted(routes, key=lambda route: _registration_key(route.function))
        )

    def resolve(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route that serves ``method path`` and its route values, or None (the host
        then answers 404: it never answers 405 itself)."""
        for route in self.routes:
            values = route.template.route_values(path)
            if values is not None and route.accepts(method, values):
                return route, {name: value for name, value in values.items() if value is not None}
        return None

    def allowed_methods(self, path: str) -> frozenset[str]:
        """Methods of the routes whose template matches ``path``, catch-alls aside, for a
        catch-all function that wants to answer 405 with an Allow header. A route without a
        method list contributes ``EVERY_METHOD``."""
        allowed: set[str] = set()
        for route in self.routes:
            if route.template.is_catch_all or route.template.route_values(path) is None:
                continue
            allowed |= route.methods or EVERY_METHOD
        return frozenset(allowed)


# --- Building the table from function metadata (the host's own checks) ---------------


@dataclass(frozen=True, slots=True)
class HttpTrigger:
    """What the host reads from a function's ``httpTrigger`` binding.

    ``methods`` is None when the binding has no ``methods`` (every method) and an empty tuple
    when it has ``[]``: the host then adds an ``HttpMethodRouteConstraint`` with no methods,
    and the route matches nothing.
    """

    function: str
    route: str | None = None
    methods: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class HostRoutes:
    """The route table and the functions the host refuses, with the host's reason; a
    refused function gets no route (the host records a function error and goes on)."""

    table: RouteTable
    refused: Mapping[str, str]


def _routes_conflict(route: str, methods: tuple[str, ...] | None, other: HttpTrigger) -> bool:
    """``ScriptHost.HttpRoutesConflict``: same route once ``/`` is trimmed (ignoring case)
    and overlapping methods, where no methods overlaps with any (a case-sensitive set
    intersection otherwise)."""
    assert other.route is not None
    if _fold(route.strip("/")) != _fold(other.route.strip("/")):
        return False
    if not methods or not other.methods:
        return True
    return bool(set(methods) & set(other.methods))


def _invariant_lower(text: str) -> str:
    """``ToLowerInvariant``: the simple lower-case mapping, one character for one."""
    return "".join(
        "i" if char == "\u0130" else (low if len(low := char.lower()) == 1 else char)
        for char in text
    )


def host_routes(triggers: Iterable[HttpTrigger], route_prefix: str = "") -> HostRoutes:
    """The route table the host builds from the app's HTTP triggers.

    In registration order, as ``ScriptHost.ValidateFunction`` and
    ``WebScriptHostHttpRoutesManager`` do: a blank route becomes the function name; a route
    starting with ``admin`` or ``runtime`` is refused; a route equal to an accepted one with
    overlapping methods is refused (the later name loses); a duplicate name is refused. The
    prefix is applied, and an invalid template raises ``ValueError`` (the host fails to
    start its routes). A trigger with ``methods=()`` keeps its place for the conflict check
    but gets no route, since it could never match.
    """
    accepted: dict[str, HttpTrigger] = {}
    refused: dict[str, str] = {}
    routes: list[Route] = []
    for trigger in sorted(triggers, key=lambda t: _registration_key(t.function)):
        route = trigger.route
        if route is None or not _dotnet_trim(route):
            route = trigger.function
        if _invariant_lower(route.strip("/")).startswith(("admin", "runtime")):
            refused[trigger.function] = (
                "The specified route conflicts with one or more built in routes."
            )
            continue
        clash = next(
            (
                name
                for name, other in accepted.items()
                if _routes_conflict(route, trigger.methods, other)
            ),
            None,
        )
        if clash is not None:
            refused[trigger.function] = (
                f"The route specified conflicts with the route defined by function '{clash}'."
            )
            continue
        if trigger.function in accepted:
            refused[trigger.function] = (
                f"The function or proxy name '{trigger.function}' must be unique within the "
                "function app."
            )
            continue
        accepted[trigger.function] = HttpTrigger(trigger.function, route, trigger.methods)
        if trigger.methods is not None and not trigger.methods:
            continue
        template = compile_template(apply_route_prefix(route_prefix, route))
        routes.append(Route(trigger.function, template, frozenset(trigger.methods or ())))
    return HostRoutes(RouteTable(routes), refused)


# --- The request path as Kestrel gives it (PathDecoder, UrlDecoder, PathNormalizer) ------


def _unescape(data: bytes, at: int) -> tuple[int, int]:
    """One ``%XX`` at ``at``: its byte and the index after it, or -1 and the index after
    the ``%`` when it is not two hex digits, or is ``%2F`` (kept encoded)."""
    pair = data[at + 1 : at + 3]
    if len(pair) != 2 or any(byte not in b"0123456789abcdefABCDEF" for byte in pair):
        return -1, at + 1
    value = int(pair, 16)
    if value == 0x2F:
        return -1, at + 1
    return value, at + 3


def _decode_escape(data: bytes, at: int) -> tuple[bytes | None, int]:
    """A run of escapes forming one UTF-8 character: its bytes and the index after, or None
    and how far Kestrel scanned (those bytes are then copied as they were)."""
    first, at = _unescape(data, at)
    if first < 0:
        return None, at
    if first == 0:
        raise ValueError("The path contains null characters.")
    if first <= 0x7F:
        return bytes([first]), at
    if first & 0xE0 == 0xC0:
        bits, count, least = first & 0x1F, 2, 0x80
    elif first & 0xF0 == 0xE0:
        bits, count, least = first & 0x0F, 3, 0x800
    elif first & 0xF8 == 0xF0:
        bits, count, least = first & 0x07, 4, 0x10000
    else:
        return None, at
    collected = [first]
    remaining = count - 1
    while remaining:
        if at >= len(data) or data[at] != 0x25:
            return None, at
        following, after = _unescape(data, at)
        if following < 0 or following & 0xC0 != 0x80:
            return None, at
        bits = (bits << 6) | (following & 0x3F)
        remaining -= 1
        if remaining == 1 and 0x360 <= bits <= 0x37F:
            return None, at
        if remaining == 2 and bits >= 0x110:
            return None, at
        collected.append(following)
        at = after
    if bits < least:
        return None, at
    return bytes(collected), at


def _remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 section 5.2.4 for a path starting with ``/``, as Kestrel applies it."""
    output = b""
    rest = path
    while rest:
        if rest.startswith(b"/./"):
            rest = rest[2:]
        elif rest == b"/.":
            rest = b"/"
        elif rest.startswith(b"/../") or rest == b"/..":
            rest = b"/" + rest[4:] if rest.startswith(b"/../") else b"/"
            output = output[: max(output.rfind(b"/"), 0)]
        else:
            cut = rest.find(b"/", 1)
            segment = rest if cut < 0 else rest[:cut]
            output += segment
            rest = rest[len(segment) :]
    return output or b"/"


def request_path(raw_path: bytes | str) -> str:
    """The path ASP.NET Core routes on, from the raw request path (ASGI ``raw_path``).

    Percent-escapes that form valid UTF-8 are decoded, except ``%2F``, which stays as the
    three characters ``%2F`` so it cannot split a segment; invalid escapes stay as written;
    then dot segments are removed (after decoding, so ``%2E%2E`` counts). A NUL, raw or
    escaped, raises ``ValueError`` (Kestrel answers 400), as does a byte outside ASCII.
    """
    data = raw_path.encode() if isinstance(raw_path, str) else bytes(raw_path)
    if not data.startswith(b"/"):
        raise ValueError(f"request path {data!r} must start with '/'")
    if b"\x00" in data or not data.isascii():
        raise ValueError(f"request path {data!r} holds a NUL or a byte outside ASCII")
    if b"%" not in data:
        return _remove_dot_segments(data).decode("ascii")
    decoded = bytearray()
    at = 0
    while at < len(data):
        if data[at] != 0x25:
            decoded.append(data[at])
            at += 1
            continue
        character, after = _decode_escape(data, at)
        decoded += data[at:after] if character is None else character
        at = after
    return _remove_dot_segments(bytes(decoded)).decode("utf-8")
