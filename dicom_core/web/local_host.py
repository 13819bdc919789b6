"""A local stand-in for the Azure Functions host: ``make run`` and the end-to-end tests.

Core Tools cannot be installed everywhere, so this module serves the functions registered in
``function_app.app`` itself. It reads the app's registry (trigger, route template, methods),
serves the HTTP functions through an ASGI server (uvicorn), and drives the queue-triggered
functions from the local durable job queue. The function code and route table are the same
ones Azure runs; there is no second route table.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import build_job_queue
from dicom_core.settings import Settings
from dicom_core.storage.ports import JobQueue, QueueMessage
from dicom_core.web import responses
from dicom_core.web.routing import RouteTemplate, compile_template, sort_key

log = logging.getLogger("dicom_core.local_host")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class HttpFunction:
    name: str
    route: RouteTemplate
    methods: frozenset[str]
    handler: Callable[..., Awaitable[Any]]
    arg_name: str


@dataclass(frozen=True, slots=True)
class QueueFunction:
    name: str
    queue: str
    handler: Callable[..., Any]
    arg_name: str


class LocalQueueMessage(func.QueueMessage):
    """A ``func.QueueMessage`` carrying the dequeue count, as the Functions host provides it."""

    def __init__(self, message: QueueMessage) -> None:
        super().__init__(
            id=message.id, body=json.dumps(message.body).encode(), pop_receipt=message.receipt
        )
        self._count = message.dequeue_count

    @property
    def dequeue_count(self) -> int:
        return self._count


def read_registry(app: func.FunctionApp) -> tuple[list[HttpFunction], list[QueueFunction]]:
    """The app's own registry: every function, its trigger, route template and methods."""
    http: list[HttpFunction] = []
    queues: list[QueueFunction] = []
    for function in app.get_functions():
        trigger: Any = function.get_trigger()
        name = str(function.get_function_name())
        user_function = function.get_user_function()
        kind = type(trigger).__name__
        if kind == "HttpTrigger":
            methods = trigger.methods or list(func.HttpMethod)
            http.append(
                HttpFunction(
                    name=name,
                    route=compile_template(str(trigger.route or name)),
                    methods=frozenset(str(getattr(m, "value", m)).upper() for m in methods),
                    handler=user_function,
                    arg_name=str(trigger.name),
                )
            )
        elif kind == "QueueTrigger":
            queues.append(
                QueueFunction(
                    name=name,
                    queue=str(trigger.queue_name),
                    handler=user_function,
                    arg_name=str(trigger.name),
                )
            )
        else:
            log.warning("function %s has a %s trigger the local host does not run", function, kind)
    http.sort(key=lambda f: sort_key(f.route))
    return http, queues


def _max_dequeue_count(host_json: Path) -> int:
    try:
        config = json.loads(host_json.read_text())
        return int(config["extensions"]["queues"]["maxDequeueCount"])
    except (OSError, KeyError, ValueError, TypeError):
        return 5


class LocalFunctionsHost:
    """An ASGI app serving the HTTP functions, plus pollers for the queue functions."""

    def __init__(
        self,
        app: func.FunctionApp,
        *,
        queue_factory: Callable[[], JobQueue] | None = None,
        max_dequeue_count: int = 5,
        poll_interval: float = 0.5,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.http_functions, self.queue_functions = read_registry(app)
        self._queue_factory = queue_factory
        self._queue: JobQueue | None = None
        self._max_dequeue = max_dequeue_count
        self._poll_interval = poll_interval
        self._on_shutdown = on_shutdown
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        allowed: set[str] = set()
        for function in self.http_functions:
            params = function.route.match(path)
            if params is None:
                continue
            if scope["method"].upper() not in function.methods:
                allowed |= function.methods
                continue
            scope["path_params"] = params
            request = Request(scope, receive)
            try:
                response = await function.handler(**{function.arg_name: request})
            except Exception:
                log.exception("function %s failed", function.name)
                response = responses.error(500, "The server encountered an internal error.")
            if not isinstance(response, Response):
                response = responses.error(500, f"function {function.name} returned no response")
            await response(scope, receive, send)
            return
        if allowed:
            response = responses.error(
                405,
                f"Method {scope['method']} is not allowed here; use {', '.join(sorted(allowed))}.",
                {"Allow": ", ".join(sorted(allowed))},
            )
        else:
            response = responses.unknown_route(path)
        await response(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        if self.queue_functions and self._queue_factory is not None:
            self._queue = self._queue_factory()
            for function in self.queue_functions:
                self._tasks.append(asyncio.create_task(self._poll(function)))

    async def stop(self) -> None:
        self._stopping.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self._queue is not None:
            # Network-backed queues (Storage queues) hold connections until closed.
            queue, self._queue = self._queue, None
            await queue.close()
        if self._on_shutdown is not None:
            await self._on_shutdown()

    async def _poll(self, function: QueueFunction) -> None:
        assert self._queue is not None
        queue = self._queue
        idle = self._poll_interval
        while not self._stopping.is_set():
            try:
                messages = await queue.receive(function.queue, max_messages=4)
            except Exception:
                log.exception("receiving from queue %s failed", function.queue)
                messages = []
            for message in messages:
                await self._run(queue, function, message)
            if not messages:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=idle)

    async def _run(self, queue: JobQueue, function: QueueFunction, message: QueueMessage) -> None:
        try:
            outcome = function.handler(**{function.arg_name: LocalQueueMessage(message)})
            if asyncio.iscoroutine(outcome):
                await outcome
        except Exception as exc:
            log.exception("queue function %s failed on message %s", function.name, message.id)
            if message.dequeue_count >= self._max_dequeue:
                await queue.dead_letter(message, f"{type(exc).__name__}: {exc}")
            else:
                await queue.abandon(message)
            return
        await queue.complete(message)


def create_app() -> LocalFunctionsHost:
    """Factory for uvicorn: imports ``function_app`` from the working directory."""
    settings = Settings.from_environment()
    module = importlib.import_module(os.environ.get("DICOM_FUNCTION_APP_MODULE", "function_app"))
    services: Any = getattr(module, "services", None)  # the app's ServiceContainer, if any
    return LocalFunctionsHost(
        module.app,
        queue_factory=lambda: build_job_queue(settings),
        max_dequeue_count=_max_dequeue_count(Path("host.json")),
        on_shutdown=services.close if hasattr(services, "close") else None,
    )


def main() -> None:
    import sys

    import uvicorn

    sys.path.insert(0, os.getcwd())
    logging.basicConfig(level=os.environ.get("DICOM_LOG_LEVEL", "INFO"))
    port = int(os.environ.get("PORT", "7071"))
    host = os.environ.get("DICOM_HOST", "127.0.0.1")
    # One process per core (at most 4): pydicom parsing and HTTP handling hold the GIL, so a
    # single process uses one core. Worker processes share the SQLite index and job queue.
    default_workers = min(os.cpu_count() or 1, 4)
    workers = int(os.environ.get("DICOM_LOCAL_WORKERS") or default_workers)
    print(f"Serving the DICOMweb API on http://{host}:{port} (Ctrl-C stops it)", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    uvicorn.run(
        "dicom_core.web.local_host:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        log_level=os.environ.get("DICOM_LOG_LEVEL", "info").lower(),
        access_log=os.environ.get("DICOM_ACCESS_LOG", "false").lower() == "true",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
