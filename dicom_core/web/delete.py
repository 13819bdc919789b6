"""Delete over HTTP: 204 when something was deleted, 404 when nothing matched."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.web.context import api_version, path_uid


async def delete(request: Request, services: Services) -> Response:
    api_version(request)
    study = path_uid(request, "study", "study instance UID in the URL")
    series = (
        path_uid(request, "series", "series instance UID in the URL")
        if "series" in request.path_params
        else None
    )
    sop = (
        path_uid(request, "instance", "SOP instance UID in the URL")
        if "instance" in request.path_params
        else None
    )
    await services.delete.delete(study, series, sop)
    return Response(status_code=204)
