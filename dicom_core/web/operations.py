"""HTTP for long-running operations: ``GET /v{n}/operations/{id}``, whatever their kind.

The Operation object is the extended-query-tags spec's; a reindex lists the tags it fills as
``resources``, a bulk update reports ``results`` (studies processed, updated and failed,
instances updated, errors) and an export its ``results`` (``exported``, ``skipped``,
``errorHref``), as Azure's operations do. 202 while it runs, with a ``Location`` naming the
operation to poll again (Azure's ``OperationsController`` adds one), 200 once done.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.domain.media_types import JSON
from dicom_core.jobs.bulk_update import update_results
from dicom_core.jobs.export import export_results
from dicom_core.storage.ports import OperationRecord
from dicom_core.web.context import api_version, base_url


def operation_json(operation: OperationRecord, base_url: str) -> dict[str, Any]:
    """The Operation object: ``resources`` for a reindex, ``results`` for a bulk update and
    an export."""
    body: dict[str, Any] = {
        "operationId": operation.operation_id,
        "type": operation.type,
        "createdTime": operation.created_at,
        "lastUpdatedTime": operation.updated_at,
        "status": operation.status,
        "percentComplete": operation.percent_complete,
    }
    results = update_results(operation)
    if results is None:
        results = export_results(operation)
    if results is None:
        body["resources"] = [f"{base_url}/extendedquerytags/{p}" for p in operation.resources]
    else:
        body["results"] = results
    return body


def operation_reference(operation_id: str, base_url: str) -> dict[str, str]:
    """What a request that starts an operation answers (202): its id and where to poll."""
    return {"id": operation_id, "href": f"{base_url}/operations/{operation_id}"}


async def operation(request: Request, services: Services) -> Response:
    base = base_url(request, api_version(request))
    operation_id = str(request.path_params.get("operationId", "")).strip()
    found = await services.operations.get(operation_id)
    if found.done:
        status, headers = 200, None
    else:
        status = 202
        headers = {"Location": operation_reference(found.operation_id, base)["href"]}
    return Response(
        orjson.dumps(operation_json(found, base)),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )
