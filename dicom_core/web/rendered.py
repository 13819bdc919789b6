"""Retrieve rendered (PS3.18 10.4.1.1.3): an instance's first frame, or a given frame, as an
image/jpeg (the default) or image/png body."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.web.context import api_version, instance_key, partition_of
from dicom_core.web.renditions import negotiate_rendered
from dicom_core.web.wado_params import frame_number, original_version, quality


async def retrieve_rendered(request: Request, services: Services) -> Response:
    api_version(request)
    key = instance_key(request, await partition_of(request, services))
    raw_frame = request.path_params.get("frame")
    number = frame_number(str(raw_frame)) if raw_frame is not None else 1
    level = quality(request)
    original_version(request)
    media_type = negotiate_rendered(request.headers.getlist("accept"))
    image = await services.rendering.render(key, number, media_type=media_type, quality=level)
    return Response(image, media_type=media_type)
