"""The local host serves function_app.app's own registry: routes, methods, queue triggers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import azure.functions as func
import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from dicom_core.storage.local.sqlite_db import SqliteDatabase
from dicom_core.storage.local.sqlite_queue import SqliteJobQueue
from dicom_core.web.local_host import LocalFunctionsHost, read_registry


def _app(received: list[dict[str, object]]) -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="v{version}/things/{thing}", methods=["GET"])
    async def get_thing(req: Request) -> Response:
        return PlainTextResponse(f"{req.path_params['version']}:{req.path_params['thing']}")

    @app.route(route="v{version}/things/special", methods=["GET"])
    async def get_special(req: Request) -> Response:
        return PlainTextResponse("special")

    @app.route(route="{*path}", methods=["GET", "POST"])
    async def fallback(req: Request) -> Response:
        return PlainTextResponse("fallback", status_code=404)

    @app.queue_trigger(arg_name="msg", queue_name="work", connection="AzureWebJobsStorage")
    async def worker(msg: func.QueueMessage) -> None:
        body = msg.get_json()
        received.append({**body, "count": msg.dequeue_count})
        if body.get("fail"):
            raise RuntimeError("handler failed")

    return app


def test_read_registry_lists_http_and_queue_functions() -> None:
    http, queues = read_registry(_app([]))
    assert [f.name for f in http] == ["get_special", "get_thing", "fallback"]
    assert [(q.name, q.queue) for q in queues] == [("worker", "work")]


async def test_local_host_routes_by_precedence_and_method() -> None:
    host = LocalFunctionsHost(_app([]))
    transport = httpx.ASGITransport(app=host)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/v2/things/special")).text == "special"
        assert (await client.get("/v2/things/abc")).text == "2:abc"
        assert (await client.get("/elsewhere")).status_code == 404
        not_allowed = await client.delete("/v2/things/abc")
        assert not_allowed.status_code == 405
        assert "GET" in not_allowed.headers["allow"]


async def test_local_host_runs_queue_functions_and_retries_failures(tmp_path: Path) -> None:
    received: list[dict[str, object]] = []
    queue = SqliteJobQueue(SqliteDatabase(tmp_path / "q.sqlite"))
    host = LocalFunctionsHost(
        _app(received), queue_factory=lambda: queue, max_dequeue_count=2, poll_interval=0.05
    )
    await queue.send("work", {"n": 1})
    await queue.send("work", {"n": 2, "fail": True})
    await host.start()
    try:
        for _ in range(200):
            if len(received) >= 3:
                break
            await asyncio.sleep(0.05)
    finally:
        await host.stop()
    assert {"n": 1, "count": 1} in received
    # the failing message is delivered again, then parked on the poison path
    assert [r["count"] for r in received if r["n"] == 2] == [1, 2]
    assert await queue.receive("work") == []
