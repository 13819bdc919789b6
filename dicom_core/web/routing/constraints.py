"""Inline route constraints (``{id:int}``, ``{name:length(1,64)}``), resolved as ASP.NET Core
resolves them.

``RouteOptions.ConstraintMap`` names them. ``DefaultInlineConstraintResolver`` and
``ParameterPolicyActivator`` decide how ``name(arguments)`` becomes one (which is why ``int()``
is an error and ``length(1,64)`` takes the two-argument constructor), and the
``*RouteConstraint`` classes decide what passes. An unknown or ill-formed constraint raises
``ValueError``, since the host refuses such a route. The .NET parsing the checks rely on is in
``dotnet_values``, the regex translation in ``dotnet_regex``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from dicom_core.web.routing.dotnet_regex import _compile_dotnet_regex
from dicom_core.web.routing.dotnet_text import _dotnet_trim, _fold, _utf16
from dicom_core.web.routing.dotnet_values import (
    _is_bool,
    _is_datetime,
    _is_decimal,
    _is_float,
    _is_guid,
    _parse_integer,
)

Check = Callable[[str | None], bool]
"""A resolved inline constraint: given the route value (``None`` when it is null), does it
pass? Every ASP.NET constraint but ``nonfile`` refuses a null value."""


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
