"""HTTP requests as the host handles them with HTTP streams: route, invoke, forward.

For each request the host picks the function the way Azure does (``RouteTable``: function-name
order, first template-and-method match), then does two things at once, as the .NET host does
for a worker that announced ``HttpUri``:
- sends the runtime an InvocationRequest whose HTTP binding carries the route parameters;
- forwards the request itself, body streaming, to the runtime's own HTTP server, with
  ``x-ms-invocation-id`` and X-Forwarded-Host/-Proto/-For, and streams the answer back.

Pitfalls of the runtime handled here:
- a request without ``x-ms-invocation-id`` gets a bare 500 from the runtime: the header is
  always set (and a client's own is replaced);
- an invocation that fails before the runtime has seen its HTTP request raises a KeyError
  inside the runtime, and that request then waits forever: when the invocation ends without
  an answer on the HTTP side, the host waits a moment, then answers 500 itself;
- nothing waits beyond host.json's ``functionTimeout``.

Differences from Azure, on purpose: the host answers a path no function matches with an
empty 404, as Azure does; request and response bodies are not size-checked here (Azure's
front end applies ``FUNCTIONS_REQUEST_BODY_SIZE_LIMIT``; the app applies its own limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp
from yarl import URL

from dicom_core.web.routing import HostRoutingError, RouteTable, request_path
from functions_host.direct import call_directly
from functions_host.worker import IndexedFunction, RuntimeWorker

log = logging.getLogger("functions_host.http")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# Headers that belong to one connection, not to the request or answer (RFC 9110 7.6.1), plus
# the two the serving front adds itself.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)
_FRONT_ADDS = frozenset({b"date", b"server"})
# How long a failed invocation's HTTP request may take to come back with the runtime's own
# error answer before the host gives up on it and answers 500 itself.
_FAILURE_GRACE = 2.0
_CHUNK = 256 * 1024


class ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


class HttpForwarder:
    """The HTTP side of the host for one runtime worker."""

    def __init__(
        self,
        worker: RuntimeWorker,
        table: RouteTable,
        functions: dict[str, IndexedFunction],
        *,
        timeout: float,
        direct: bool = False,
    ) -> None:
        """``direct``: call the runtime's function objects in process instead of invoking
        them through the runtime and its HTTP server (``functions_host.direct``)."""
        self._worker = worker
        self._direct = direct
        self._table = table
        self._functions = functions
        self._timeout = timeout
        self._upstream = URL(worker.http_uri)
        self._session: aiohttp.ClientSession | None = None
        # The direct engine's callables and their trigger argument, looked up once in the
        # runtime's registry rather than per request.
        self._handlers = (
            {
                name: (worker.function_object(function), str(function.trigger["name"]))
                for name, function in functions.items()
            }
            if direct
            else {}
        )

    async def start(self) -> None:
        if self._direct:
            return  # nothing is forwarded
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type", "Accept"),
            max_line_size=65536,
            max_field_size=65536,
        )

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope["method"]).upper()
        try:
            # The path as Kestrel hands it to routing (%2F stays encoded, unlike ASGI's).
            resolved = self._table.resolve(method, request_path(scope.get("raw_path") or b"/"))
        except ValueError:  # a NUL or a byte outside ASCII: Kestrel's 400
            await _plain(send, 400)
            return
        except HostRoutingError:  # ASP.NET throws while matching: the host's 500
            await _plain(send, 500)
            return
        if resolved is None:
            await _plain(send, 404)
            return
        route, params = resolved
        function = self._functions[route.function]
        if self._direct:
            handler, arg = self._handlers[route.function]
            await call_directly(handler, arg, function.name, params, scope, receive, send)
            return
        invocation_id = str(uuid.uuid4())
        protos = self._worker.protos
        binding = protos.ParameterBinding(
            name=str(function.trigger["name"]),
            data=protos.TypedData(
                http=protos.RpcHttp(method=method, url=_public_url(scope), params=params)
            ),
        )
        invocation = asyncio.create_task(
            self._worker.invoke(function, [binding], invocation_id=invocation_id)
        )
        forwarded = asyncio.create_task(self._forward(scope, receive, invocation_id))
        try:
            async with asyncio.timeout(self._timeout):
                await self._answer(send, invocation, forwarded, function.name)
        except TimeoutError:
            log.error("function %s did not answer within %.0f s", function.name, self._timeout)
            raise
        finally:
            for task in (forwarded, invocation):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _answer(
        self,
        send: Send,
        invocation: asyncio.Task[Any],
        forwarded: asyncio.Task[aiohttp.ClientResponse],
        name: str,
    ) -> None:
        await asyncio.wait({invocation, forwarded}, return_when=asyncio.FIRST_COMPLETED)
        if not forwarded.done():
            failed = invocation.exception() is not None or not self._worker.succeeded(
                invocation.result()
            )
            if failed:
                # The runtime may never answer this request (see the module docstring).
                await asyncio.wait({forwarded}, timeout=_FAILURE_GRACE)
                if not forwarded.done():
                    log.error("function %s failed: %s", name, self._describe(invocation))
                    await _plain(send, 500)
                    return
        try:
            upstream = await forwarded
        except ClientGone:
            return
        except aiohttp.ClientError as exc:
            if _caused_by_client_gone(exc):
                return  # aiohttp wraps the body's end in its own error: nobody to answer
            log.error("forwarding to the runtime failed for %s: %s", name, exc)
            await _plain(send, 502)
            return
        async with upstream:
            headers = [
                (key.lower(), value)
                for key, value in upstream.raw_headers
                if key.lower() not in _HOP_BY_HOP and key.lower() not in _FRONT_ADDS
            ]
            await send(
                {"type": "http.response.start", "status": upstream.status, "headers": headers}
            )
            # A failure from here on ends the connection mid-answer, which the client sees as a
            # truncated body (never as a complete, shorter one).
            async for chunk in upstream.content.iter_chunked(_CHUNK):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        outcome = await invocation
        if not self._worker.succeeded(outcome):
            log.error("function %s failed: %s", name, self._worker.failure(outcome))

    def _describe(self, invocation: asyncio.Task[Any]) -> str:
        error = invocation.exception()
        if error is not None:
            return f"{type(error).__name__}: {error}"
        return self._worker.failure(invocation.result())

    async def _forward(
        self, scope: Scope, receive: Receive, invocation_id: str
    ) -> aiohttp.ClientResponse:
        assert self._session is not None, "start() first"
        headers = _forwarded_headers(scope, invocation_id)
        has_body = any(
            key == "transfer-encoding" or (key == "content-length" and value != "0")
            for key, value in headers
        )
        target = self._upstream.with_path(
            scope.get("raw_path", b"").decode("latin-1") or scope["path"], encoded=True
        )
        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            target = target.with_query(None).join(URL(f"?{query}", encoded=True))
        return await self._session.request(
            scope["method"],
            target,
            headers=[(k, v) for k, v in headers if k != "transfer-encoding"],
            data=_body(receive) if has_body else None,
            allow_redirects=False,
            compress=None,
        )


def _caused_by_client_gone(exc: BaseException) -> bool:
    """Whether ``exc``, or an error it was raised from, is a ``ClientGone`` (the chain is
    walked once per error: an exception may name itself as its cause)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ClientGone):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _header_text(raw: bytes) -> str:
    """A header value as aiohttp will send it on (UTF-8): the client's bytes again when they
    are UTF-8 (a latin-1 reading would have them encoded twice); other bytes as latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _forwarded_headers(scope: Scope, invocation_id: str) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    seen: set[str] = set()
    host = ""
    for raw_key, raw_value in scope["headers"]:
        key = raw_key.decode("latin-1").lower()
        value = _header_text(raw_value)
        if key == "host" and not host:
            host = value.strip()  # the first, as the direct engine's request reads it
        if raw_key.lower() in _HOP_BY_HOP and key != "transfer-encoding":
            continue
        if key == "x-ms-invocation-id":
            continue
        if key == "x-forwarded-host" and not value.strip():
            continue  # empty: no proxy named an address, so the host names one below
        seen.add(key)
        headers.append((key, value))
    headers.append(("x-ms-invocation-id", invocation_id))
    # Behind another proxy the client's own X-Forwarded-Host/-Proto already name the public
    # address; otherwise the host names what the client used, or, when the client sent no
    # Host, the address it connected to (never the runtime's own, which is internal).
    if "x-forwarded-host" not in seen:
        headers.append(("x-forwarded-host", host or _server_address(scope)))
    if "x-forwarded-proto" not in seen:
        headers.append(("x-forwarded-proto", str(scope.get("scheme", "http"))))
    client = scope.get("client")
    if client:
        headers.append(("x-forwarded-for", str(client[0])))
    return headers


def _server_address(scope: Scope) -> str:
    """The address the client connected to, as a URL's host names it (and as Starlette's
    request URL does, which the direct engine reads): IPv6 in brackets, no default port."""
    server = scope.get("server")
    if not server:
        return "localhost"
    address, port = server
    host = f"[{address}]" if ":" in str(address) else str(address)
    default = {"http": 80, "https": 443}.get(str(scope.get("scheme", "http")))
    return host if port is None or port == default else f"{host}:{port}"


def _public_url(scope: Scope) -> str:
    host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "localhost")
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope.get("raw_path", b"").decode("latin-1") or scope["path"]
    return f"{scope.get('scheme', 'http')}://{host}{path}" + (f"?{query}" if query else "")


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _plain(send: Send, status: int) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b"", "more_body": False})
