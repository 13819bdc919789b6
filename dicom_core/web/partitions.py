"""``GET /v{n}/partitions``: the data partitions, as Azure lists them.

Azure answers 200 with every partition (Microsoft.Default included, so the list is never
empty: its documentation's 204 does not happen), and 400 "Data partitions feature is
disabled." where the feature is off.
"""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.domain.media_types import JSON
from dicom_core.web.context import api_version


async def list_partitions(request: Request, services: Services) -> Response:
    api_version(request)
    found = await services.partitions.list_partitions()
    return Response(orjson.dumps([p.to_json() for p in found]), media_type=JSON)
