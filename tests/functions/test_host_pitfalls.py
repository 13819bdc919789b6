"""The runtime pitfalls the host must survive, with in-memory fakes in place of the runtime.

When an invocation fails before the runtime has seen its HTTP request, the runtime raises a
KeyError inside the invocation and never answers that request: the host must answer 500
itself, promptly, instead of waiting for the runtime's HTTP server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from dicom_core.web.routing import Route, RouteTable, compile_template
from functions_host import protocol
from functions_host.http import HttpForwarder
from functions_host.worker import IndexedFunction


class SilentRuntime:
    """A worker whose invocations fail at once and whose HTTP server never answers."""

    def __init__(self, http_uri: str, outcome: str) -> None:
        self.protos = protocol.load()
        self.http_uri = http_uri
        self._outcome = outcome
        self.invocations: list[str] = []

    async def invoke(self, function: IndexedFunction, input_data: Any, **kwargs: Any) -> Any:
        self.invocations.append(str(kwargs.get("invocation_id")))
        if self._outcome == "raises":
            raise KeyError("No context reference found for invocation")
        status = self.protos.StatusResult
        return SimpleNamespace(
            result=SimpleNamespace(
                status=status.Failure, exception=SimpleNamespace(type="KeyError", message="x")
            )
        )

    def succeeded(self, response: Any) -> bool:
        return bool(response.result.status == self.protos.StatusResult.Success)

    def failure(self, response: Any) -> str:
        return "KeyError: x"


@pytest.fixture()
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and reads requests, never answers (the runtime's server when the
    invocation is lost)."""

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


@pytest.mark.parametrize("outcome", ["fails", "raises"])
async def test_a_lost_invocation_gets_a_500_from_the_host_not_a_hang(
    silent_server: str, outcome: str
) -> None:
    worker = SilentRuntime(silent_server, outcome)
    function = IndexedFunction(
        name="f", function_id="1", bindings=({"type": "httpTrigger", "name": "req"},)
    )
    table = RouteTable([Route("f", compile_template("things/{id}"), frozenset({"GET"}))])
    # functionTimeout far away: only the host's own grace can answer before the guard below.
    forwarder = HttpForwarder(worker, table, {"f": function}, timeout=600)  # type: ignore[arg-type]
    await forwarder.start()
    try:
        transport = httpx.ASGITransport(app=forwarder)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await asyncio.wait_for(client.get("/things/1"), timeout=60)  # hang guard
    finally:
        await forwarder.close()
    assert answer.status_code == 500
    assert worker.invocations and worker.invocations[0]
