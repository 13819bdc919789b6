"""The local host's HTTP front (``functions_host.front``) serving an ASGI app in a thread of
the test process, so raw sockets can play clients against it exactly."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from functions_host.front import FrontProtocol
from tests.support.server import free_port


@contextlib.contextmanager
def front_in_thread(app: Any, **config: Any) -> Iterator[int]:
    """Serve ``app`` behind the front on a free port until the block ends; yields the port.
    ``config``: more of uvicorn's settings (the event loop, timeouts)."""
    chosen = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=chosen,
            http=FrontProtocol,
            lifespan="off",
            log_level="critical",
            **config,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield chosen
    finally:
        server.should_exit = True
        thread.join(10)
