"""HTTP routing exactly as the Azure Functions host does it, for the local stand-in host.

The host (``WebScriptHostHttpRoutesManager`` in Azure/azure-functions-host) turns every
HTTP-triggered function into one ASP.NET Core ``Route`` and adds them, in the order
``FunctionMetadataManager`` sorted the functions (by name, ``StringComparer.OrdinalIgnoreCase``),
to one plain ``RouteCollection`` (``WebJobsRouteBuilder`` in Azure/azure-webjobs-sdk-extensions).
A request goes to the first route whose template and constraints match. Nothing ranks
routes by specificity, so a catch-all whose name sorts early hides every function after it.

Each rule is reproduced from the source that implements it (dotnet/aspnetcore
``src/Http/Routing``, dotnet/runtime, Kestrel), written again in Python. Where each lives,
lowest layer first; a module imports only modules listed before it:

- ``dotnet_text``: ``StringComparison.OrdinalIgnoreCase`` (``OrdinalCasing``: simple
  upper-casing, except that U+0131 and U+017F stay themselves), strings as UTF-16 code units,
  ``string.Trim()``;
- ``dotnet_values``: number parsing for ``int``, ``long``, ``decimal``, ``double``, ``float``
  and ``min``/``max``/``range`` (``Number.Parsing.cs``), ``bool.TryParse``, ``Guid.TryParse``
  with its compatibility quirks, a subset of ``DateTime.TryParse``;
- ``dotnet_regex``: .NET regular expressions translated to Python's ``re``, for ``regex(...)``;
- ``constraints``: inline constraints: ``RouteOptions.ConstraintMap``,
  ``ParameterPolicyActivator`` (how ``name(arguments)`` becomes a constraint) and the
  ``*RouteConstraint`` classes;
- ``template_parser``: template syntax and its errors: ``RoutePatternParser``,
  ``RouteParameterParser``;
- ``templates``: ``RouteTemplate`` and matching: ``RoutePatternMatcher`` (behind
  ``TemplateMatcher``) with ``MatchComplexSegment``, the path as segments (``PathTokenizer``),
  and ``RouteBase.GetConstraints`` (constraints of an optional parameter apply only when it
  has a value; they are checked against defaults too);
- ``table``: ``RouteTable`` in registration order, first match; the method constraint
  (``HttpMethodRouteConstraint``); ``host_routes``, the host's checks of each trigger; the
  route prefix (``apply_route_prefix``);
- ``kestrel_path``: ``request_path``, the path as Kestrel hands it to ASP.NET Core
  (``PathDecoder``, ``UrlDecoder``, ``PathNormalizer``), which is not the ASGI
  ``scope["path"]``; it depends on no other module here.

Known gaps, each refused or documented rather than guessed silently, and described where it
lives:

- ``regex(...)`` translates the common .NET syntax and raises ``ValueError`` for constructs it
  cannot translate faithfully (``dotnet_regex``);
- ``datetime`` accepts a documented subset of what ``DateTime.TryParse`` accepts
  (``dotnet_values``);
- what ASP.NET does when it throws while matching (one complex-segment case) is raised as
  ``HostRoutingError``: the host answers 500 there instead of trying the next route
  (``templates``).
"""

from __future__ import annotations

from dicom_core.web.routing.kestrel_path import request_path
from dicom_core.web.routing.table import (
    EVERY_METHOD,
    HostRoutes,
    HttpTrigger,
    Route,
    RouteTable,
    apply_route_prefix,
    host_routes,
    registration_order,
)
from dicom_core.web.routing.templates import HostRoutingError, RouteTemplate, compile_template

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
