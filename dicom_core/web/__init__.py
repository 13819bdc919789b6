"""The web layer: the only code that knows HTTP.

``function_app.py`` calls the functions exported here; each takes the Starlette request (the
HTTP-streams extension hands Azure Functions the same type) and the service container.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.services.blob_cleanup import CLEANUP_QUEUE
from dicom_core.web import delete as _delete
from dicom_core.web import frames as _frames
from dicom_core.web import metadata as _metadata
from dicom_core.web import qido as _qido
from dicom_core.web import rendered as _rendered
from dicom_core.web import responses
from dicom_core.web import stow as _stow
from dicom_core.web import wado as _wado
from dicom_core.web.context import ServiceContainer, handle

__all__ = [
    "CLEANUP_QUEUE",
    "ServiceContainer",
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


async def unknown_route(request: Request) -> Response:
    return responses.unknown_route(request.url.path)


async def cleanup_blob(body: dict[str, Any], container: ServiceContainer) -> None:
    services = await container.get()
    await services.janitor.handle_message(body)
