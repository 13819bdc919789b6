"""The host's route table: which function's route serves a request.

The host (``WebScriptHostHttpRoutesManager``) checks each HTTP trigger as
``ScriptHost.ValidateFunction`` does, turns it into one route, and adds the routes in
function-name order (``StringComparer.OrdinalIgnoreCase``) to one plain ``RouteCollection``
(``WebJobsRouteBuilder``). A request goes to the first route whose template, constraints and
method (``HttpMethodRouteConstraint``, ordinal, case-insensitive) match; nothing ranks routes
by specificity. The route prefix (host.json ``extensions.http.routePrefix``, ``""`` in this
app) is glued in front of each template before parsing: see ``apply_route_prefix``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dicom_core.web.routing.dotnet_text import _dotnet_trim, _fold, _utf16
from dicom_core.web.routing.templates import RouteTemplate, compile_template, path_segment_count


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
        count = path_segment_count(path)
        for route in self.routes:
            if not route.template.fits(count):
                continue  # route_values would refuse it in its first pass anyway
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
