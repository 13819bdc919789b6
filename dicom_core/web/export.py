"""HTTP for export: ``POST /v{n}/export`` (Azure's "Export DICOM files").

The body names the source (identifiers of studies, series and instances) and the destination
(a blob container, or beyond Azure a ``file://`` directory of the server); it is checked
whole (``dicom_core.domain.export``) and the destination is prepared before anything starts,
so a bad body, a missing container or a directory outside the allowed root is a 400 naming
it. The answer is 202 with the operation's id and href (and ``Location``); the operation
record reports ``exported``, ``skipped`` and ``errorHref`` (``dicom_core.jobs.export``).
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.domain.export import ExportRequestError, parse_export_request
from dicom_core.domain.media_types import JSON
from dicom_core.errors import BadRequest
from dicom_core.storage.ports import ExportDestinationError
from dicom_core.web.bodies import read_json_bytes
from dicom_core.web.context import api_version, base_url, partition_of
from dicom_core.web.operations import operation_reference


async def start_export(request: Request, services: Services) -> Response:
    version = api_version(request)
    partition = await partition_of(request, services)
    body = await read_json_bytes(request, services.settings.max_json_body_bytes)
    try:
        parsed = parse_export_request(body)
    except ExportRequestError as exc:
        raise BadRequest(str(exc)) from exc
    try:
        operation = await services.export.start(parsed, partition=partition.key)
    except ExportDestinationError as exc:
        raise BadRequest(str(exc)) from exc
    reference = operation_reference(operation.operation_id, base_url(request, version))
    return Response(
        orjson.dumps(reference),
        status_code=202,
        media_type=JSON,
        headers={"Location": reference["href"]},
    )
