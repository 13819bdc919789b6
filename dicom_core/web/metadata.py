"""Retrieve metadata over HTTP (PS3.18 10.4.1.1.4) with ETag / If-None-Match revalidation.

The document, external metadata included when ``msdicom-request-meta`` asks for it, is
``MetadataService``'s; this module negotiates and answers 200 or 304. A request with
If-None-Match first asks for the current ETag alone, which the index answers without reading
any instance's JSON, and reads the document only when the tag does not match.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.services.external_metadata import requested
from dicom_core.web import responses
from dicom_core.web.context import api_version, partition_of, series_uid, sop_uid, study_uid
from dicom_core.web.renditions import negotiate_metadata
from dicom_core.web.wado_params import ORIGINAL_VERSION_HEADER, original_version

#: The request headers an answer depends on: a shared cache must not serve the latest
#: version's metadata to a request for the original, nor one without external metadata to a
#: request with it.
VARY = f"Accept, {ORIGINAL_VERSION_HEADER}, msdicom-request-meta"


async def retrieve_metadata(request: Request, services: Services) -> Response:
    version = api_version(request)
    partition = await partition_of(request, services)
    study, series, sop = study_uid(request), series_uid(request), sop_uid(request)
    original = original_version(request)
    negotiate_metadata(request.headers.getlist("accept"))
    with_external = requested(request.headers)
    if_none_match = request.headers.getlist("if-none-match")
    if if_none_match:
        # Revalidation: the ETag comes from the index alone; no instance JSON is read.
        etag = await services.metadata.current_etag(
            study,
            series,
            sop,
            partition=partition.key,
            api_version=version,
            with_external_metadata=with_external,
            original=original,
        )
        if _matches(if_none_match, etag):
            return Response(status_code=304, headers={"ETag": etag, "Vary": VARY})
    document = await services.metadata.retrieve_metadata(
        study,
        series,
        sop,
        partition=partition.key,
        api_version=version,
        with_external_metadata=with_external,
        original=original,
    )
    return responses.raw_dicom_json(document.body, headers={"ETag": document.etag, "Vary": VARY})


def _matches(if_none_match: list[str], etag: str) -> bool:
    """RFC 9110 13.1.2: weak comparison against each listed tag; ``*`` matches any."""
    for header in if_none_match:
        for candidate in header.split(","):
            tag = candidate.strip()
            if tag == "*":
                return True
            if tag.startswith("W/"):
                tag = tag[2:]
            if tag == etag or tag == etag.strip('"'):
                return True
    return False
