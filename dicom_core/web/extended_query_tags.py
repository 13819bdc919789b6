"""HTTP for extended query tags and operations (spec/extended-query-tags.md).

Responses are plain JSON with camelCase fields; request field names are case-insensitive.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.domain.extended_query_tags import (
    QueryTagError,
    QueryTagStatusValues,
    parse_definitions,
    parse_query_status,
    resolve_path,
)
from dicom_core.domain.media_types import JSON
from dicom_core.errors import BadRequest
from dicom_core.query.parser import MAX_OFFSET
from dicom_core.storage.ports import QueryTagRecord
from dicom_core.web.bodies import read_json_bytes
from dicom_core.web.context import api_version, base_url
from dicom_core.web.operations import operation_reference
from dicom_core.web.query_params import int_param


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def tag_json(tag: QueryTagRecord, base_url: str) -> dict[str, Any]:
    """The spec's Extended Query Tag object (camelCase)."""
    body: dict[str, Any] = {
        "path": tag.path,
        "vr": tag.vr,
    }
    if tag.private_creator:
        body["privateCreator"] = tag.private_creator
    body["level"] = tag.level
    body["status"] = tag.status
    body["queryStatus"] = tag.query_status
    if tag.error_count:
        body["errors"] = {
            "count": tag.error_count,
            "href": f"{base_url}/extendedquerytags/{tag.path}/errors",
        }
    if tag.operation_id and tag.status == QueryTagStatusValues.ADDING:
        body["operation"] = {
            "id": tag.operation_id,
            "href": f"{base_url}/operations/{tag.operation_id}",
        }
    return body


async def _read_json(request: Request, services: Services) -> Any:
    body = await read_json_bytes(request, services.settings.max_json_body_bytes)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"The request body is not valid JSON: {exc}") from exc


def _tag_path(request: Request) -> str:
    try:
        return resolve_path(str(request.path_params.get("tagPath", "")))
    except QueryTagError as exc:
        raise BadRequest(str(exc)) from exc


async def add_tags(request: Request, services: Services) -> Response:
    version = api_version(request)
    service = services.query_tags
    try:
        definitions = parse_definitions(await _read_json(request, services))
    except QueryTagError as exc:
        raise BadRequest(str(exc)) from exc
    operation = await service.add(definitions)
    reference = operation_reference(operation.operation_id, base_url(request, version))
    return _json(reference, 202, {"Location": reference["href"]})


async def list_tags(request: Request, services: Services) -> Response:
    base = base_url(request, api_version(request))
    tags = await services.query_tags.list_tags()
    return _json([tag_json(t, base) for t in tags])


async def tag(request: Request, services: Services) -> Response:
    """GET, PATCH and DELETE of one tag (one function per route, dispatched on the method)."""
    base = base_url(request, api_version(request))
    service = services.query_tags
    path = _tag_path(request)
    if request.method == "DELETE":
        await service.delete(path)
        return Response(status_code=204)
    if request.method == "PATCH":
        try:
            query_status = parse_query_status(await _read_json(request, services))
        except QueryTagError as exc:
            raise BadRequest(str(exc)) from exc
        updated = await service.set_query_status(path, query_status.value)
        return _json(tag_json(updated, base))
    return _json(tag_json(await service.get(path), base))


async def tag_errors(request: Request, services: Services) -> Response:
    api_version(request)
    path = _tag_path(request)
    limit = int_param(request, "limit", default=100, minimum=1, maximum=200)
    offset = int_param(request, "offset", default=0, minimum=0, maximum=MAX_OFFSET)
    errors = await services.query_tags.errors(path, limit=limit, offset=offset)
    return _json(errors)
