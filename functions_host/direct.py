"""The direct engine: the runtime's own function objects, called in process, without the hop.

With HTTP streams the runtime serves each request through its own HTTP server, so the host
parses every request twice and copies every body twice on this machine (in Azure the .NET
host does the first half, outside Python). benchmarks/host_compare.py measured that hop at
about half the request rate of a direct call for small requests, and two thirds for STOW
and whole-study retrieves, which would put us behind Orthanc. So ``make run`` can call
the functions directly instead (``DICOM_HOST_ENGINE=direct``), keeping everything else:

- the same routing: ``RouteTable`` built from the runtime's function metadata;
- the same function objects: the ones in the runtime's registry after its own indexing
  and function load;
- the same request type: the HTTP-streams extension's FastAPI ``Request`` over the incoming
  ASGI request, with the route values as ``path_params`` (what the runtime's
  ``sync_route_params`` sets), and the function's Starlette response sent as it is.

What it skips is the runtime's invocation machinery (binding conversion, invocation context)
and its HTTP server. The end-to-end tests always run through the runtime
(``DICOM_HOST_ENGINE=runtime``), so nothing the direct engine skips goes untested.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Request
from starlette.responses import Response

log = logging.getLogger("functions_host.direct")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def call_directly(
    function: Callable[..., Awaitable[Any]],
    arg_name: str,
    name: str,
    params: dict[str, str],
    scope: Scope,
    receive: Receive,
    send: Send,
) -> None:
    """One HTTP invocation of an async HTTP-streams function; a failure is a bare 500, as
    the runtime's server answers when the function raises."""
    scope = {**scope, "path_params": dict(params)}
    try:
        response = await function(**{arg_name: Request(scope, receive)})
    except Exception:
        log.exception("function %s failed", name)
        response = Response("Internal Server Error", status_code=500, media_type="text/plain")
    if not isinstance(response, Response):
        log.error("function %s returned %r, not a response", name, type(response))
        response = Response("Internal Server Error", status_code=500, media_type="text/plain")
    await response(scope, receive, send)
