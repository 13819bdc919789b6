"""Drives the app through ``azure-functions-runtime``, the way Azure's proxy worker does.

The .NET host speaks gRPC to the proxy worker, which hands each message to the runtime's
module-level coroutines with two properties: ``protos`` (the message classes) and ``host``
(the address the runtime's HTTP server binds). This module makes the same calls in process:
worker init (which indexes ``function_app.py`` and starts the HTTP-streams server), function
metadata, function load, invocations. It never sends ``function_environment_reload_request``:
that call is for placeholder specialization in Azure, and it clears ``os.environ``.

Pitfalls of the runtime, each handled here:
- the HTTP server's URI is announced before the server listens: ``start`` waits until it
  accepts connections;
- its uvicorn server installs its own SIGINT/SIGTERM handlers: ``start`` puts the serving
  process's handlers back, and ``stop`` ends the server task (it has no clean shutdown);
- an invocation has no time limit of its own: ``invoke`` applies host.json's
  ``functionTimeout``, as the host does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from functions_host import protocol

log = logging.getLogger("functions_host.worker")

HOST_VERSION = "4.1044.0"  # reported to the runtime; it only logs it
_LISTEN_TIMEOUT = 30.0


class WorkerError(RuntimeError):
    """The runtime refused a protocol call; the message carries its exception."""


@dataclass(frozen=True, slots=True)
class RuntimeRequest:
    """What the proxy worker hands the runtime: the message and its properties."""

    request: Any
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IndexedFunction:
    """A function as the runtime's metadata describes it (function.json's bindings)."""

    name: str
    function_id: str
    bindings: tuple[Mapping[str, Any], ...]

    @property
    def trigger(self) -> Mapping[str, Any]:
        for binding in self.bindings:
            if str(binding.get("type", "")).lower().endswith("trigger"):
                return binding
        raise ValueError(f"function {self.name} has no trigger binding")


def _failure(result: Any) -> str:
    exception = result.exception
    return f"{exception.type or 'error'}: {exception.message}".strip()


class RuntimeWorker:
    """One runtime in this process: the app's functions and its HTTP-streams server."""

    def __init__(self, app_dir: Path, *, function_timeout: float, host: str = "127.0.0.1") -> None:
        self._app_dir = app_dir
        self._host = host
        self._timeout = function_timeout
        self._runtime: ModuleType | None = None
        self._protos: ModuleType | None = None
        self._server_tasks: set[asyncio.Task[Any]] = set()
        self.http_uri = ""
        self.functions: tuple[IndexedFunction, ...] = ()

    @property
    def protos(self) -> ModuleType:
        assert self._protos is not None, "start() first"
        return self._protos

    def _request(self, **content: Any) -> RuntimeRequest:
        message = self.protos.StreamingMessage(request_id=uuid.uuid4().hex, **content)
        return RuntimeRequest(message, {"protos": self.protos, "host": self._host})

    async def start(self) -> None:
        import azure_functions_runtime as runtime

        self._runtime = runtime
        self._protos = protocol.load()
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        before = asyncio.all_tasks()
        init = await runtime.worker_init_request(
            self._request(
                worker_init_request=self.protos.WorkerInitRequest(
                    host_version=HOST_VERSION,
                    function_app_directory=str(self._app_dir),
                    worker_directory=str(Path(runtime.__file__).parent),
                )
            )
        )
        if init.result.status != self.protos.StatusResult.Success:
            raise WorkerError(f"worker init failed: {_failure(init.result)}")
        self._server_tasks = asyncio.all_tasks() - before
        self.http_uri = init.capabilities.get("HttpUri", "")
        if self.http_uri:
            await self._wait_listening(self.http_uri)
            for sig, handler in handlers.items():
                if handler is not None:
                    signal.signal(sig, handler)
        metadata = await runtime.functions_metadata_request(
            self._request(
                functions_metadata_request=self.protos.FunctionsMetadataRequest(
                    function_app_directory=str(self._app_dir)
                )
            )
        )
        if metadata.result.status != self.protos.StatusResult.Success:
            raise WorkerError(f"function metadata failed: {_failure(metadata.result)}")
        functions = []
        for meta in metadata.function_metadata_results:
            loaded = await runtime.function_load_request(
                self._request(
                    function_load_request=self.protos.FunctionLoadRequest(
                        function_id=meta.function_id, metadata=meta
                    )
                )
            )
            if loaded.result.status != self.protos.StatusResult.Success:
                raise WorkerError(f"loading {meta.name} failed: {_failure(loaded.result)}")
            functions.append(
                IndexedFunction(
                    name=meta.name,
                    function_id=meta.function_id,
                    bindings=tuple(json.loads(raw) for raw in meta.raw_bindings),
                )
            )
        self.functions = tuple(functions)

    async def _wait_listening(self, uri: str) -> None:
        """The runtime announces its server's URI before uvicorn binds the port."""
        parts = urlsplit(uri)
        deadline = asyncio.get_running_loop().time() + _LISTEN_TIMEOUT
        while True:
            try:
                _, writer = await asyncio.open_connection(parts.hostname, parts.port)
            except OSError as exc:
                if asyncio.get_running_loop().time() > deadline:
                    raise WorkerError(f"the runtime's HTTP server never listened on {uri}") from exc
                await asyncio.sleep(0.02)
                continue
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            return

    async def invoke(
        self,
        function: IndexedFunction,
        input_data: Sequence[Any],
        *,
        invocation_id: str | None = None,
        trigger_metadata: Mapping[str, Any] | None = None,
        retry: tuple[int, int] | None = None,
    ) -> Any:
        """One InvocationRequest; the runtime's InvocationResponse, within functionTimeout."""
        assert self._runtime is not None, "start() first"
        message = self.protos.InvocationRequest(
            invocation_id=invocation_id or str(uuid.uuid4()),
            function_id=function.function_id,
            input_data=list(input_data),
            trigger_metadata=dict(trigger_metadata or {}),
        )
        if retry is not None:
            message.retry_context.retry_count, message.retry_context.max_retry_count = retry
        async with asyncio.timeout(self._timeout):
            return await self._runtime.invocation_request(self._request(invocation_request=message))

    def function_object(self, function: IndexedFunction) -> Any:
        """The Python function the runtime indexed and would invoke for ``function``: its
        registry's own object, for the direct engine (``functions_host.direct``)."""
        from azure_functions_runtime import handle_event

        info = handle_event._functions.get_function(function.function_id)
        if info is None:
            raise WorkerError(f"the runtime has no function {function.name} loaded")
        return info.func

    def succeeded(self, response: Any) -> bool:
        return bool(response.result.status == self.protos.StatusResult.Success)

    def failure(self, response: Any) -> str:
        return _failure(response.result)

    async def stop(self, grace: float = 5.0) -> None:
        """Shut the runtime's HTTP server down. The runtime keeps no handle on it, so the
        uvicorn server is found in its serving coroutine and asked to exit, as a signal would;
        a server that does not finish within ``grace`` seconds is cancelled."""
        for task in self._server_tasks:
            server = _uvicorn_server(task)
            if server is not None:
                server.should_exit = True
            else:
                task.cancel()
        if self._server_tasks:
            _, pending = await asyncio.wait(self._server_tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in self._server_tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._server_tasks.clear()


def _uvicorn_server(task: asyncio.Task[Any]) -> Any:
    """The ``uvicorn.Server`` a task of the HTTP-streams extension is serving, if any."""
    coroutine: Any = task.get_coro()
    frame = getattr(coroutine, "cr_frame", None)
    server = frame.f_locals.get("server") if frame is not None else None
    return server if hasattr(server, "should_exit") else None


def function_timeout(host_json: Mapping[str, Any], default: float = 300.0) -> float:
    """host.json's ``functionTimeout`` (hh:mm:ss) in seconds."""
    text = str(host_json.get("functionTimeout") or "")
    try:
        hours, minutes, seconds = (float(part) for part in text.split(":"))
    except ValueError:
        return default
    return hours * 3600 + minutes * 60 + seconds


def read_host_json(app_dir: Path) -> dict[str, Any]:
    try:
        loaded = json.loads((app_dir / "host.json").read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def app_directory() -> Path:
    """The function app's folder: the working directory, as under ``func start``."""
    return Path.cwd().resolve()
