"""``RouteTemplate``: a parsed template, matched against request paths as ASP.NET Core does.

Matching is ``RoutePatternMatcher`` (behind ``TemplateMatcher``). The path is split as
``PathTokenizer`` splits it: one trailing slash is ignored, ``//`` makes an empty segment, and
an empty segment matches nothing but a catch-all's tail. Literals compare with
``OrdinalIgnoreCase``; ``MatchComplexSegment`` handles segments such as ``studies{study}`` or
``{a}.{b?}``. Constraints apply as ``RouteBase.GetConstraints`` sets them up: those of an
optional parameter only when it has a value, and they are checked against defaults too.

Where ASP.NET throws while matching (one complex-segment case), ``HostRoutingError`` is raised:
the host answers 500 there instead of trying the next route.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from dicom_core.web.routing.constraints import Check, _resolve_constraint
from dicom_core.web.routing.dotnet_text import _fold
from dicom_core.web.routing.template_parser import (
    _Kind,
    _Literal,
    _Parameter,
    _parse_template,
    _Segment,
)


class HostRoutingError(RuntimeError):
    """Raised where ASP.NET Core's own matcher throws: a complex segment such as
    ``a{p}b`` against ``b`` makes it slice with a negative length. The host answers such a
    request with 500; routing does not go on to the next route."""


@functools.lru_cache(maxsize=64)
def _tokenize(path: str) -> tuple[tuple[int, str], ...]:
    """``PathTokenizer``: the segments after the leading ``/`` with their offsets; a single
    trailing ``/`` adds no segment, but ``//`` leaves an empty one.

    Cached: a request's path is tokenized once per route the table tries, so a few recent
    paths are kept (the result is immutable)."""
    if path and not path.startswith("/"):
        raise ValueError(f"request path {path!r} must start with '/'")
    if len(path) <= 1:
        return ()
    body = path[1:-1] if path.endswith("/") else path[1:]
    tokens: list[tuple[int, str]] = []
    offset = 1
    for text in body.split("/"):
        tokens.append((offset, text))
        offset += len(text) + 1
    return tuple(tokens)


def path_segment_count(path: str) -> int:
    """How many segments ``PathTokenizer`` makes of ``path``: what ``RouteTable`` compares
    with each template's bounds before trying to match it."""
    return len(_tokenize(path))


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
    _min_segments: int = field(init=False, repr=False, compare=False)
    _max_segments: int | None = field(init=False, repr=False, compare=False)

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
        # The path lengths _match_path can accept: its first pass refuses a path with more
        # segments than the template (unless it ends in a catch-all) or with fewer than the
        # template's last segment that is not a lone optional, defaulted or catch-all
        # parameter. Knowing them lets a route table skip most templates at once.
        least = len(segments)
        while least and self._omittable(segments[least - 1], defaults):
            least -= 1
        catch_all = any(
            (p := _simple_parameter(segment)) is not None and p.kind is _Kind.CATCH_ALL
            for segment in segments
        )
        object.__setattr__(self, "_min_segments", least)
        object.__setattr__(self, "_max_segments", None if catch_all else len(segments))

    @staticmethod
    def _omittable(segment: _Segment, defaults: Mapping[str, str]) -> bool:
        parameter = _simple_parameter(segment)
        return parameter is not None and (
            parameter.kind in (_Kind.OPTIONAL, _Kind.CATCH_ALL) or parameter.name in defaults
        )

    def fits(self, segment_count: int) -> bool:
        """Whether a path of ``segment_count`` segments (``path_segment_count``) can match
        at all; False means ``route_values`` would return None without trying."""
        if segment_count < self._min_segments:
            return False
        return self._max_segments is None or segment_count <= self._max_segments

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
