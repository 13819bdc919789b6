"""``make run``: the app behind the stand-in host, one runtime per serving process.

Each serving process is what one Azure instance holds: the host's front (routing and
forwarding) and a runtime worker with its own HTTP-streams server, on one event loop. Several
processes share the listening port, as the previous local host did, because parsing and HTTP
handling hold the GIL.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from dicom_core.bootstrap import build_job_queue
from dicom_core.jobs.retry import RetryRule
from dicom_core.settings import Settings
from dicom_core.storage.ports import JobQueue
from dicom_core.web.routing import HttpTrigger, RouteTable, host_routes
from functions_host import ohif
from functions_host.front import FrontProtocol
from functions_host.http import HttpForwarder
from functions_host.queues import QueuePump
from functions_host.supervisor import ClosingSupervisor
from functions_host.timers import TimerPump
from functions_host.viewer import ViewerFiles, serves, viewer_enabled
from functions_host.worker import (
    IndexedFunction,
    RuntimeWorker,
    app_directory,
    function_timeout,
    read_host_json,
)

log = logging.getLogger("functions_host")

# How HTTP invocations reach the functions: "runtime" through azure-functions-runtime and its
# HTTP-streams server, as in Azure; "direct" calls the runtime's function objects in process
# (functions_host.direct). Queue invocations always go through the runtime.
ENGINES = ("runtime", "direct")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def http_routes(functions: tuple[IndexedFunction, ...], route_prefix: str) -> RouteTable:
    """The host's route table, built from the runtime's function metadata as the host builds
    it (``host_routes``); a function the host would refuse gets no route, and says why."""
    triggers = []
    for function in functions:
        trigger = function.trigger
        if str(trigger.get("type", "")).lower() != "httptrigger":
            continue
        methods = trigger.get("methods")
        triggers.append(
            HttpTrigger(
                function.name,
                trigger.get("route"),
                None if methods is None else tuple(str(m) for m in methods),
            )
        )
    built = host_routes(triggers, route_prefix)
    for name, reason in built.refused.items():
        log.error("function %s gets no route: %s", name, reason)
    return built.table


def route_prefix(host_json: dict[str, Any]) -> str:
    """host.json's ``extensions.http.routePrefix``; the host's default is ``api``."""
    http = host_json.get("extensions", {}).get("http", {})
    prefix = http.get("routePrefix") if isinstance(http, dict) else None
    return "api" if prefix is None else str(prefix)


class FunctionsHost:
    """An ASGI app: the lifespan starts the runtime, the queue pump and the timers, requests
    go through the host's routing to the runtime. The serving processes share ``timer_lock``:
    the one holding it runs the timers. With ``viewer`` (``DICOM_VIEWER=true``) the host
    itself answers ``/viewer`` with the OHIF Viewer's files (``functions_host.viewer``)."""

    def __init__(
        self,
        app_dir: Path,
        queue_factory: Callable[[], JobQueue] | None,
        *,
        engine: str = "runtime",
        timer_lock: Path | None = None,
        viewer: ViewerFiles | None = None,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(
                f"DICOM_HOST_ENGINE must be one of {', '.join(ENGINES)}, not {engine!r}"
            )
        self._engine = engine
        self._app_dir = app_dir
        self._host_json = read_host_json(app_dir)
        self._timeout = function_timeout(self._host_json)
        self._queue_factory = queue_factory
        self._timer_lock = timer_lock or Path(".data") / "host" / "timers.lock"
        self._timers: TimerPump | None = None
        self.worker = RuntimeWorker(app_dir, function_timeout=self._timeout)
        self._forwarder: HttpForwarder | None = None
        self._pump: QueuePump | None = None
        self._viewer = viewer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._viewer is not None and serves(str(scope["path"])):
                await self._viewer(scope, receive, send)
                return
            assert self._forwarder is not None, "the host has not started"
            await self._forwarder(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    try:
                        await self.start()
                    except Exception as exc:
                        log.exception("the host could not start")
                        await send({"type": "lifespan.startup.failed", "message": str(exc)})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.stop()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def start(self) -> None:
        _quiet_per_request_logs()
        await self.worker.start()
        _quiet_per_request_logs()
        functions = self.worker.functions
        table = http_routes(functions, route_prefix(self._host_json))
        self._forwarder = HttpForwarder(
            self.worker,
            table,
            {f.name: f for f in functions},
            timeout=self._timeout,
            direct=self._engine == "direct",
        )
        await self._forwarder.start()
        queues = self._host_json.get("extensions", {}).get("queues", {})
        queue_functions = [
            f for f in functions if str(f.trigger.get("type", "")).lower() == "queuetrigger"
        ]
        if queue_functions and self._queue_factory is not None:
            self._pump = QueuePump(
                self.worker,
                queue_functions,
                self._queue_factory,
                retry=RetryRule.from_host_json(self._host_json),
                batch_size=int(queues.get("batchSize", 16)),
            )
            await self._pump.start()
        timer_functions = [
            f for f in functions if str(f.trigger.get("type", "")).lower() == "timertrigger"
        ]
        if timer_functions:
            self._timers = TimerPump(self.worker, timer_functions, self._timer_lock)
            await self._timers.start()

    async def stop(self) -> None:
        if self._timers is not None:
            await self._timers.stop()
        if self._pump is not None:
            await self._pump.stop()
        if self._forwarder is not None:
            await self._forwarder.close()
        await self.worker.stop()
        # Not something Azure does (it ends the worker process), but closing the app's
        # clients here keeps their sockets from outliving the event loop.
        app_module = sys.modules.get("function_app")
        close = getattr(getattr(app_module, "services", None), "close", None)
        if close is not None:
            await close()


def create_app() -> FunctionsHost:
    """Factory for uvicorn: the app in the working directory, on the configured backend.

    uvicorn calls it in each serving process, before that process serves: the place where a
    worker process ties its life to the main process (``die_with_parent``)."""
    die_with_parent()
    settings = Settings.from_environment()
    app_dir = app_directory()
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    engine = os.environ.get("DICOM_HOST_ENGINE", "runtime").strip().lower() or "runtime"
    # main() installed the viewer before starting the serving processes.
    viewer = (
        ViewerFiles(ohif.installed_directory(), data_partitions=settings.data_partitions)
        if viewer_enabled(os.environ.get("DICOM_VIEWER"))
        else None
    )
    return FunctionsHost(
        app_dir,
        lambda: build_job_queue(settings),
        engine=engine,
        timer_lock=settings.data_dir / "host" / "timers.lock",
        viewer=viewer,
    )


# prctl(2) option: the signal the kernel sends this process when the thread that created it
# exits (<linux/prctl.h>).
_PR_SET_PDEATHSIG = 1
_PARENT_POLL_SECONDS = 1.0


def die_with_parent() -> None:
    """In a worker process of ``make run``, end when the main process ends, however it ends.

    The main process stops its workers when it is stopped in order (SIGINT, SIGTERM), but a
    SIGKILL, or a crash, leaves them running: orphans that keep serving the shared port with
    nobody to stop them. So each worker asks for SIGTERM (uvicorn's own stop signal, which
    finishes the requests under way within ``timeout_graceful_shutdown``) when its parent
    dies: on Linux through the kernel's parent-death signal, elsewhere by a thread that watches
    its parent's PID. The main process itself (no multiprocessing parent) is left alone: its
    parent is a shell or a supervisor, whose end need not end the server.

    The parent may have died before this runs; the PID check after setting the signal catches
    that (the process was then re-parented, so the kernel will never send it).
    """
    parent = multiprocessing.parent_process()
    if parent is None or parent.pid is None:
        return
    if sys.platform.startswith("linux") and _set_parent_death_signal(signal.SIGTERM):
        if os.getppid() != parent.pid:
            log.error("the main process %d ended before this worker started", parent.pid)
            raise SystemExit(1)
        return
    threading.Thread(
        target=_watch_parent, args=(parent.pid,), name="parent-watch", daemon=True
    ).start()


def _set_parent_death_signal(signum: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0:
            return True
        error = ctypes.get_errno()
    except (OSError, AttributeError) as exc:
        log.warning("no parent-death signal (%s); watching the parent instead", exc)
        return False
    log.warning("prctl(PR_SET_PDEATHSIG) failed (%s); watching the parent instead", error)
    return False


def _watch_parent(parent_pid: int) -> None:
    """Where prctl is missing: SIGTERM to this process once its parent has gone."""
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_SECONDS)
    log.error("the main process %d has ended; this worker stops", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def _quiet_per_request_logs() -> None:
    """The runtime logs two lines per invocation and its uvicorn an access line per request;
    in Azure those go to Application Insights, here they would cost more than the work."""
    if os.environ.get("DICOM_LOG_LEVEL", "INFO").upper() != "DEBUG":
        importlib.import_module("azure_functions_runtime.logging").logger.setLevel(logging.WARNING)
    # The runtime's uvicorn configures "uvicorn.access" anew when it starts; the front's own
    # access log follows DICOM_ACCESS_LOG.
    if os.environ.get("DICOM_ACCESS_LOG", "false").lower() != "true":
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def main() -> None:
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    logging.basicConfig(level=os.environ.get("DICOM_LOG_LEVEL", "INFO"))
    port = int(os.environ.get("PORT", "7071"))
    host = os.environ.get("DICOM_HOST", "127.0.0.1")
    # One process per core (at most 4): pydicom parsing and HTTP handling hold the GIL, so a
    # single process uses one core. Worker processes share the SQLite index and job queue.
    default_workers = min(os.cpu_count() or 1, 4)
    workers = int(os.environ.get("DICOM_LOCAL_WORKERS") or default_workers)
    try:
        viewer = viewer_enabled(os.environ.get("DICOM_VIEWER"))
        if viewer and not ohif.is_installed():  # first use: once, before the serving processes
            print(f"Installing the OHIF Viewer {ohif.VERSION} (about 50 MB from npm)", flush=True)
            ohif.ensure_installed()
    except (ValueError, ohif.ViewerInstallError) as exc:
        raise SystemExit(str(exc)) from exc
    print(f"Serving the DICOMweb API on http://{host}:{port} (Ctrl-C stops it)", flush=True)
    if viewer:
        print(f"Serving the OHIF Viewer on http://{host}:{port}{ohif.BASE_PATH}", flush=True)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    config = uvicorn.Config(
        "functions_host.serve:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        # httptools, with the request-head limits of Azure's Kestrel (414, 431): front.py.
        http=FrontProtocol,
        # No WebSockets: Azure's host serves an Upgrade request as the plain request it is;
        # uvicorn would take it for a WebSocket the app cannot accept (a 500).
        ws="none",
        log_level=os.environ.get("DICOM_LOG_LEVEL", "info").lower(),
        access_log=os.environ.get("DICOM_ACCESS_LOG", "false").lower() == "true",
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    # What uvicorn.run does, with a supervisor that refuses connections once it stops the
    # workers (supervisor.py); a single process closes its own listener first anyway.
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            ClosingSupervisor(config, sockets=[config.bind_socket()]).run()
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    if config.workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)
