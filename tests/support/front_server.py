"""The local host's HTTP front (``functions_host.front``) serving an ASGI app in a thread of
the test process, so raw sockets can play clients against it exactly."""

from __future__ import annotations

import contextlib
import socket
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


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends on ``sock`` until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def body_length_app(disconnects: list[str] | None = None) -> Any:
    """An ASGI app that reads the whole body and answers its length in bytes; a disconnect it
    is told of while reading is recorded in ``disconnects``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if disconnects is not None:
                    disconnects.append("disconnect")
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = str(size).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app
