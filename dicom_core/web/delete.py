"""Delete over HTTP: 204 when something was deleted, 404 when nothing matched."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.web.context import api_version, partition_of, series_uid, sop_uid, study_uid


async def delete(request: Request, services: Services) -> Response:
    api_version(request)
    partition = await partition_of(request, services)
    study, series, sop = study_uid(request), series_uid(request), sop_uid(request)
    await services.delete.delete(study, series, sop, partition=partition.key)
    return Response(status_code=204)
