"""QIDO-RS over HTTP: the six search resources (conformance statement, "Search (QIDO-RS)").

HTTP concerns only: which resource the URL names, the URI length limit (414), Accept
negotiation (application/dicom+json, or plain application/json for clients that ask for it;
406 otherwise), the query string as a multi-dict (``includefield=a&includefield=b`` keeps
both), the ``msdicom-request-meta`` and ``erroneous-dicom-attributes`` headers, and 204 for
an empty result. Parsing the query against the catalog of the moment (extended query tags,
external metadata), searching and building the results is ``dicom_core.services.search``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.domain.media_types import DICOM_JSON, JSON
from dicom_core.errors import NotAcceptable, UriTooLong
from dicom_core.query.conditions import QueryResource
from dicom_core.services.external_metadata import requested
from dicom_core.web.context import api_version, optional_path_uid, partition_of, series_uid
from dicom_core.web.negotiation import parse_accept
from dicom_core.web.responses import dicom_json

MAX_URI_LENGTH = 8192
#: Names the extended query tags a search used whose indexing had errors.
ERRONEOUS_HEADER = "erroneous-dicom-attributes"


def _check_uri_length(request: Request) -> None:
    """414 for a request target (path and query) longer than the service supports."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    length = len(raw_path) + (len(query) + 1 if query else 0)
    if length > MAX_URI_LENGTH:
        raise UriTooLong(
            f"The request URI is {length} characters long; the maximum supported length is"
            f" {MAX_URI_LENGTH}."
        )


def _media_type(request: Request) -> str:
    """application/dicom+json unless the client accepts only application/json."""
    ranges = parse_accept(request.headers.getlist("accept"))
    if not ranges:
        return DICOM_JSON
    for media in ranges:
        if media.q <= 0:
            continue
        if media.matches(DICOM_JSON):
            return DICOM_JSON
        if media.media_type == JSON:
            return JSON
    raise NotAcceptable(
        "Search results are offered as application/dicom+json (or application/json); the"
        " Accept header admits neither."
    )


def _resource(request: Request, level: str) -> tuple[QueryResource, str | None, str | None]:
    study, series = optional_path_uid(request, "study"), series_uid(request)
    if level == "studies":
        return QueryResource.ALL_STUDIES, None, None
    if level == "series":
        return (QueryResource.STUDY_SERIES if study else QueryResource.ALL_SERIES), study, None
    if series is not None:
        return QueryResource.STUDY_SERIES_INSTANCES, study, series
    if study is not None:
        return QueryResource.STUDY_INSTANCES, study, None
    return QueryResource.ALL_INSTANCES, None, None


async def _search(request: Request, services: Services, level: str) -> Response:
    _check_uri_length(request)
    version = api_version(request)
    partition = await partition_of(request, services)
    resource, study, series = _resource(request, level)
    media_type = _media_type(request)
    found = await services.search.search_for(
        resource,
        request.query_params.multi_items(),
        partition=partition.key,
        study_uid=study,
        series_uid=series,
        api_version=version,
        with_external_metadata=requested(request.headers),
    )
    erroneous = found.erroneous_tags
    headers = {ERRONEOUS_HEADER: ",".join(erroneous)} if erroneous else {}
    if not found.results:
        return Response(status_code=204, headers=headers)
    response = dicom_json(found.results, headers=headers)
    response.headers["content-type"] = media_type
    return response


async def search_for_studies(request: Request, services: Services) -> Response:
    """GET ../studies"""
    return await _search(request, services, "studies")


async def search_for_series(request: Request, services: Services) -> Response:
    """GET ../series and ../studies/{study}/series"""
    return await _search(request, services, "series")


async def search_for_instances(request: Request, services: Services) -> Response:
    """GET ../instances, ../studies/{study}/instances and .../series/{series}/instances"""
    return await _search(request, services, "instances")
