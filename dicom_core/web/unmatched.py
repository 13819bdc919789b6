"""Answers for requests no DICOMweb function matched: 405 with Allow, or 404 naming the
versions.

In Azure these reach the app's catch-all function (``{*path}``, last by name), because the
host matches routes in function-name order and never answers 405 itself. So the catch-all
decides: a path that another function's template matches, with another method, gets 405 and
the methods that would work; anything else gets 404.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.web import responses
from dicom_core.web.context import ServiceContainer, guard
from dicom_core.web.routing import HttpTrigger, RouteTable, host_routes

_tables: dict[int, RouteTable] = {}


def app_functions(app: Any) -> list[Any]:
    """``app.get_functions()``, callable more than once.

    azure-functions 2.x records the names it has indexed in ``functions_bindings`` and
    refuses to index an app twice; the runtime has already indexed this one. The record is
    set aside for the call and put back, so the runtime's view does not change.
    """
    recorded = app.functions_bindings
    app.functions_bindings = {}
    try:
        return list(app.get_functions())
    finally:
        app.functions_bindings = recorded


def route_table(app: Any) -> RouteTable:
    """The app's HTTP routes (``azure.functions.FunctionApp``), as the host builds them
    (host.json's routePrefix is "" for this app), built once per app."""
    table = _tables.get(id(app))
    if table is None:
        triggers = []
        for function in app_functions(app):
            trigger: Any = function.get_trigger()
            if type(trigger).__name__ != "HttpTrigger":
                continue
            methods = trigger.methods
            triggers.append(
                HttpTrigger(
                    str(function.get_function_name()),
                    trigger.route,
                    None
                    if methods is None
                    else tuple(str(getattr(m, "value", m)) for m in methods),
                )
            )
        table = _tables[id(app)] = host_routes(triggers).table
    return table


def unmatched(app: Any, method: str, path: str) -> Response:
    allowed = route_table(app).allowed_methods(path) if app is not None else frozenset()
    # OPTIONS without a CORS preflight is not a method any route serves: it stays a 404.
    if allowed and method.upper() not in allowed and method.upper() != "OPTIONS":
        methods = ", ".join(sorted(allowed))
        return responses.error(
            405, f"Method {method.upper()} is not allowed here; use {methods}.", {"Allow": methods}
        )
    return responses.unknown_route(path)


async def unknown_route(request: Request, container: ServiceContainer, app: Any) -> Response:
    """The catch-all function's body: ``unmatched`` for the FunctionApp ``app``, behind the
    gate (CORS on these answers, the preflights of every route, which all land here, and the
    token)."""

    async def not_found() -> Response:
        return unmatched(app, request.method, request.url.path)

    return await guard(request, container, not_found)
