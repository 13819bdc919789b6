"""The web layer: the only code that knows HTTP.

``function_app.py`` calls the functions exported here; each takes the Starlette request (the
HTTP-streams extension hands Azure Functions the same type) and the service container.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.services.blob_cleanup import CLEANUP_QUEUE
from dicom_core.services.extended_query_tags import REINDEX_QUEUE
from dicom_core.web import delete as _delete
from dicom_core.web import extended_query_tags as _eqt
from dicom_core.web import frames as _frames
from dicom_core.web import metadata as _metadata
from dicom_core.web import qido as _qido
from dicom_core.web import rendered as _rendered
from dicom_core.web import stow as _stow
from dicom_core.web import wado as _wado
from dicom_core.web import workitems as _workitems
from dicom_core.web.context import ServiceContainer, guard, handle
from dicom_core.web.unmatched import unmatched

__all__ = [
    "CLEANUP_QUEUE",
    "REINDEX_QUEUE",
    "ServiceContainer",
    "add_extended_query_tags",
    "extended_query_tag",
    "extended_query_tag_errors",
    "get_operation",
    "list_extended_query_tags",
    "reindex_batch",
    "cleanup_blob",
    "delete",
    "retrieve",
    "retrieve_frames",
    "retrieve_metadata",
    "retrieve_rendered",
    "search_for_instances",
    "search_for_series",
    "search_for_studies",
    "store_instances",
    "unknown_route",
    "ups_cancel_request",
    "ups_change_state",
    "ups_create",
    "ups_retrieve",
    "ups_search",
    "ups_subscription",
    "ups_update",
]


async def store_instances(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _stow.store_instances)


async def retrieve(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _wado.retrieve)


async def retrieve_metadata(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _metadata.retrieve_metadata)


async def retrieve_frames(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _frames.retrieve_frames)


async def retrieve_rendered(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _rendered.retrieve_rendered)


async def delete(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _delete.delete)


async def search_for_studies(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _qido.search_for_studies)


async def search_for_series(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _qido.search_for_series)


async def search_for_instances(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _qido.search_for_instances)


async def unknown_route(
    request: Request, container: ServiceContainer | None = None, app: Any = None
) -> Response:
    """The catch-all: 405 with Allow where another function's route matches with another
    method (``app`` is the FunctionApp), else 404 naming the versions. Behind the gate when
    the app passes its container (CORS on these answers, preflights of every route, which
    all land here, and the token)."""

    async def not_found() -> Response:
        return unmatched(app, request.method, request.url.path)

    if container is None:
        return await not_found()
    return await guard(request, container, not_found)


async def cleanup_blob(body: dict[str, Any], container: ServiceContainer) -> None:
    services = await container.get()
    await services.janitor.handle_message(body)


async def add_extended_query_tags(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _eqt.add_tags)


async def list_extended_query_tags(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _eqt.list_tags)


async def extended_query_tag(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _eqt.tag)


async def extended_query_tag_errors(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _eqt.tag_errors)


async def get_operation(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _eqt.operation)


# host.json extensions.queues.maxDequeueCount: the attempt after which a message is poison.
MAX_DEQUEUE_COUNT = 5


async def reindex_batch(
    body: dict[str, Any], container: ServiceContainer, *, dequeue_count: int = 1
) -> None:
    """Queue handler: one reindex batch; the last allowed attempt fails the operation."""
    services = await container.get()
    if services.query_tags is None:
        raise RuntimeError("extended query tags are not available on this backend")
    await services.query_tags.handle_message(body, final_attempt=dequeue_count >= MAX_DEQUEUE_COUNT)


# --- UPS-RS ----------------------------------------------------------------------------------


async def ups_create(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _workitems.create)


async def ups_retrieve(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _workitems.retrieve)


async def ups_update(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _workitems.update)


async def ups_change_state(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _workitems.change_state)


async def ups_cancel_request(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _workitems.cancel_request)


async def ups_search(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _workitems.search)


async def ups_subscription(request: Request, container: ServiceContainer) -> Response:
    return await handle(request, container, _workitems.subscription)
