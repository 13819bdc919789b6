"""Route template syntax, parsed and refused as ASP.NET Core's parser does it.

This reproduces ``RoutePatternParser`` and ``RouteParameterParser`` (dotnet/aspnetcore
``src/Http/Routing``): segments of literals and ``{parameters}``, with ``*``/``**``
catch-alls, ``?`` for optional, ``=default``, inline constraint texts, and doubled braces for
literal ones. A template the host would refuse (``RouteCreationException``) raises
``ValueError`` naming the rule. The result is the parsed form that ``templates`` matches;
constraint texts are resolved there, not here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from dicom_core.web.routing.dotnet_text import _fold


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
