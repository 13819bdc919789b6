"""The web layer: the only code that knows HTTP.

``function_app.py`` calls the HTTP handlers of this package's modules directly, one module per
transaction family (``stow``, ``wado``, ``metadata``, ``frames``, ``rendered``, ``qido``,
``delete``, ``extended_query_tags``, ``workitems``), each through ``context.handle``: the one
place that puts a handler behind the gate (CORS, token) and maps errors to status codes. No
forwarding functions stand in between, so a route leads straight to its handler.

The queue-triggered handlers below are not HTTP; they wait here for ``dicom_core.jobs``.
"""

from __future__ import annotations

from typing import Any

from dicom_core.services.blob_cleanup import CLEANUP_QUEUE
from dicom_core.services.extended_query_tags import REINDEX_QUEUE
from dicom_core.web.context import ServiceContainer

__all__ = [
    "CLEANUP_QUEUE",
    "REINDEX_QUEUE",
    "cleanup_blob",
    "reindex_batch",
]


async def cleanup_blob(body: dict[str, Any], container: ServiceContainer) -> None:
    services = await container.get()
    await services.janitor.handle_message(body)


# host.json extensions.queues.maxDequeueCount: the attempt after which a message is poison.
MAX_DEQUEUE_COUNT = 5


async def reindex_batch(
    body: dict[str, Any], container: ServiceContainer, *, dequeue_count: int = 1
) -> None:
    """Queue handler: one reindex batch; the last allowed attempt fails the operation."""
    services = await container.get()
    await services.query_tags.handle_message(body, final_attempt=dequeue_count >= MAX_DEQUEUE_COUNT)
