"""HTTP for extended query tags and operations (spec/extended-query-tags.md).

Responses are plain JSON with camelCase fields; request field names are case-insensitive.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.domain.extended_query_tags import (
    QueryTagError,
    parse_definitions,
    parse_query_status,
    resolve_path,
)
from dicom_core.errors import BadRequest, DicomWebError, UnsupportedMediaType
from dicom_core.query.attributes import CORE_CATALOG, AttributeCatalog
from dicom_core.query.conditions import (
    EXTERNAL_METADATA_PATH,
    FuzzyMatch,
    QueryDescription,
    ValueMatch,
)
from dicom_core.query.parser import MAX_OFFSET
from dicom_core.services.extended_query_tags import ExtendedQueryTagService
from dicom_core.services.external_metadata import ExternalMetadataService, requested
from dicom_core.web.bodies import read_limited
from dicom_core.web.context import api_version, base_url

_JSON = "application/json"


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=_JSON, headers=headers)


def _service(services: Services) -> ExtendedQueryTagService:
    service = getattr(services, "query_tags", None)
    if service is None:
        raise DicomWebError(
            "Extended query tags are not available on this storage backend yet.", status=501
        )
    return service  # type: ignore[no-any-return]


async def _read_json(request: Request, services: Services) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != _JSON and not content_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"The content type '{content_type}' is not supported; send application/json."
        )
    body = await read_limited(request, services.settings.max_json_body_bytes)
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
    service = _service(services)
    try:
        definitions = parse_definitions(await _read_json(request, services))
    except QueryTagError as exc:
        raise BadRequest(str(exc)) from exc
    operation = await service.add(definitions)
    href = f"{base_url(request, version)}/operations/{operation.operation_id}"
    return _json({"id": operation.operation_id, "href": href}, 202, {"Location": href})


async def list_tags(request: Request, services: Services) -> Response:
    base = base_url(request, api_version(request))
    tags = await _service(services).list_tags()
    return _json([t.to_json(base) for t in tags])


async def tag(request: Request, services: Services) -> Response:
    """GET, PATCH and DELETE of one tag (one function per route, dispatched on the method)."""
    base = base_url(request, api_version(request))
    service = _service(services)
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
        return _json(updated.to_json(base))
    return _json((await service.get(path)).to_json(base))


def _int_param(request: Request, name: str, default: int, maximum: int | None) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"The query parameter '{name}' must be an integer.") from exc
    minimum = 1 if name == "limit" else 0
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise BadRequest(f"The query parameter '{name}' is out of range: give {allowed}.")
    return value


async def tag_errors(request: Request, services: Services) -> Response:
    api_version(request)
    path = _tag_path(request)
    limit = _int_param(request, "limit", 100, 200)
    offset = _int_param(request, "offset", 0, MAX_OFFSET)
    errors = await _service(services).errors(path, limit=limit, offset=offset)
    return _json(errors)


async def operation(request: Request, services: Services) -> Response:
    base = base_url(request, api_version(request))
    operation_id = str(request.path_params.get("operationId", "")).strip()
    found = await _service(services).operation(operation_id)
    return _json(found.to_json(base), 200 if found.done else 202)


# -- QIDO --------------------------------------------------------------------------------------

ERRONEOUS_HEADER = "erroneous-dicom-attributes"
_NUMERIC_VRS = frozenset({"DS", "FD", "FL", "IS", "SL", "SS", "UL", "US"})


@dataclass(frozen=True, slots=True)
class ExtendedSearch:
    """The QIDO catalog with the queryable extended tags, and those with indexing errors."""

    catalog: AttributeCatalog
    erroneous: frozenset[str]
    external: ExternalMetadataService | None = None


async def extended_search(services: Services, request: Request) -> ExtendedSearch:
    """The catalog of one search: core attributes, queryable extended query tags, and (v2 with
    ``msdicom-request-meta: true``) external metadata tags, which then win over a tag with the
    same path."""
    service = getattr(services, "query_tags", None)
    tags = await service.queryable() if service is not None else []
    attributes = [t.attribute for t in tags]
    external: ExternalMetadataService | None = getattr(services, "external_metadata", None)
    if external is not None and not (api_version(request) >= 2 and requested(request.headers)):
        external = None
    if external is not None:
        extra = await external.attributes()
        paths = {a.tag for a in extra}
        attributes = [a for a in attributes if a.tag not in paths] + extra
    return ExtendedSearch(
        CORE_CATALOG.with_extended(attributes),
        frozenset(t.path for t in tags if t.error_count),
        external,
    )


async def add_external_results(search: ExtendedSearch, results: list[dict[str, Any]]) -> None:
    """With ``msdicom-request-meta: true``, each result carries its study's external metadata."""
    if search.external is None or not results:
        return
    studies = {_study_of(r) for r in results}
    elements = await search.external.elements(sorted(studies))
    for position, result in enumerate(results):
        extra = elements.get(_study_of(result))
        if extra:
            results[position] = dict(sorted({**result, **extra}.items()))


def _study_of(result: dict[str, Any]) -> str:
    values = result.get("0020000D", {}).get("Value") or [""]
    return str(values[0])


def check_extended_query(query: QueryDescription, search: ExtendedSearch) -> dict[str, str]:
    """400 for matching an extended tag's VR does not allow; the erroneous-tags header."""
    used: list[str] = []
    for condition in query.conditions:
        attribute = condition.attribute
        if not attribute.extended:
            continue
        if attribute.path[:1] != (EXTERNAL_METADATA_PATH,):  # external metadata has no errors
            used.append(attribute.tag)
        if attribute.vr in _NUMERIC_VRS:
            if not isinstance(condition, ValueMatch):
                raise BadRequest(
                    f"The extended query tag {attribute.tag} ({attribute.vr}) supports single"
                    " value matching only."
                )
            try:
                float(condition.key)
            except ValueError as exc:
                raise BadRequest(
                    f"The value '{condition.key}' of {attribute.tag} is not a number."
                ) from exc
        elif isinstance(condition, FuzzyMatch) and attribute.vr != "PN":
            raise BadRequest(f"Fuzzy matching is not supported on {attribute.tag}.")
    flagged = sorted(t for t in (*used, *query.returned_tags) if t in search.erroneous)
    return {ERRONEOUS_HEADER: ",".join(flagged)} if flagged else {}
