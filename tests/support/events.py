"""What consumers of DICOM events see, for tests: a Storage queue consumer (on Azurite) and a
stand-in for an Event Grid topic endpoint that records what the SDK posts to it.

There is no Event Grid emulator. The stand-in is a plain HTTP server on loopback: the app's
sink talks to it through the real ``azure-eventgrid`` SDK over real HTTP, so what it records
is exactly the request Event Grid would get.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from tests.support.server import free_port


class EventQueueConsumer:
    """Receives and deletes the messages of an event queue, as a consumer would, keeping every
    event it saw (repeats included) in ``events``."""

    def __init__(self, connection: str, queue: str) -> None:
        self.connection = connection
        self.queue = queue
        self.events: list[dict[str, Any]] = []

    def waiting(self) -> bool:
        """Whether a message waits (one quick peek, taking nothing)."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.queue import QueueClient

        with QueueClient.from_connection_string(self.connection, self.queue) as client:
            try:
                return bool(list(client.peek_messages(max_messages=1)))
            except ResourceNotFoundError:
                return False

    def drain(self) -> list[dict[str, Any]]:
        """Take every visible message; returns the new events (decoded base64 JSON)."""
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.queue import QueueClient

        new: list[dict[str, Any]] = []
        with QueueClient.from_connection_string(self.connection, self.queue) as client:
            try:
                while True:
                    batch = list(client.receive_messages(max_messages=32, visibility_timeout=60))
                    if not batch:
                        break
                    for message in batch:
                        new.append(orjson.loads(base64.b64decode(message.content, validate=True)))
                        client.delete_message(message)
            except ResourceNotFoundError:
                pass  # nothing published yet: the queue is created with the first event
        self.events.extend(new)
        return new


@dataclass
class RecordedPost:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class TopicStandIn:
    """An HTTP server that answers like an Event Grid topic and records each POST."""

    url: str
    posts: list[RecordedPost] = field(default_factory=list)
    status: int = 200
    """What the next POSTs are answered with (400: the topic refuses them)."""


@contextlib.contextmanager
def topic_stand_in() -> Iterator[TopicStandIn]:
    port = free_port()
    topic = TopicStandIn(url=f"http://127.0.0.1:{port}/api/events")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = orjson.loads(self.rfile.read(length))
            topic.posts.append(
                RecordedPost(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            answer = b"" if topic.status == 200 else b'{"error": {"code": "BadRequest"}}'
            self.send_response(topic.status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield topic
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
