"""WADO-RS over HTTP: negotiating the rendition and streaming stored files.

Instances are streamed from the blob store chunk by chunk, inside a multipart/related body
or as a single application/dicom body; a study of several GB is never held in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicom_core.bootstrap import Services
from dicom_core.domain.model import InstanceRecord
from dicom_core.errors import NotAcceptable
from dicom_core.web.context import api_version, path_uid
from dicom_core.web.multipart import closing_delimiter, new_boundary, part_header
from dicom_core.web.negotiation import MediaRange, parse_accept

DICOM = "application/dicom"
MULTIPART = "multipart/related"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
JPEG2000_LOSSLESS = "1.2.840.10008.1.2.4.90"
SUPPORTED_SYNTAXES = ("*", EXPLICIT_VR_LITTLE_ENDIAN, JPEG2000_LOSSLESS)


@dataclass(frozen=True, slots=True)
class Rendition:
    multipart: bool
    transfer_syntax: str  # "*" = as stored


def negotiate_instances(accept: Sequence[str], *, single_instance: bool) -> Rendition:
    """Pick the rendition for a study/series/instance retrieve (conformance statement lists)."""
    ranges = parse_accept(accept) or [MediaRange("*/*", {}, 1.0)]
    for media in ranges:
        if media.q <= 0:
            continue
        rendition = _rendition(media, single_instance)
        if rendition is not None:
            return rendition
    offered = 'multipart/related; type="application/dicom"' + (
        " or application/dicom" if single_instance else ""
    )
    raise NotAcceptable(
        f"None of the Accept media types can be served; this resource offers {offered} with"
        f" transfer-syntax {', '.join(SUPPORTED_SYNTAXES)}."
    )


def _rendition(media: MediaRange, single_instance: bool) -> Rendition | None:
    syntax = media.params.get("transfer-syntax")
    if media.media_type in {"*/*", "multipart/*", "application/*"}:
        multipart = not single_instance or media.media_type == "multipart/*"
        return Rendition(multipart=multipart, transfer_syntax=syntax or "*")
    if media.media_type == DICOM:
        if not single_instance:
            return None
        multipart = False
    elif media.media_type == MULTIPART:
        part_type = media.params.get("type", DICOM).lower()
        if part_type != DICOM:
            return None
        multipart = True
    else:
        return None
    syntax = syntax or EXPLICIT_VR_LITTLE_ENDIAN
    if syntax not in SUPPORTED_SYNTAXES:
        return None
    return Rendition(multipart=multipart, transfer_syntax=syntax)


def _check_transcoding(records: Sequence[InstanceRecord], rendition: Rendition) -> None:
    if rendition.transfer_syntax == "*":
        return
    for record in records:
        if record.transfer_syntax_uid != rendition.transfer_syntax:
            raise NotAcceptable(
                f"Instance {record.key.sop_uid} is stored as {record.transfer_syntax_uid};"
                f" transcoding to {rendition.transfer_syntax} is not available. Ask for"
                " transfer-syntax=* to receive it as stored."
            )


async def retrieve(request: Request, services: Services) -> Response:
    """GET a study, a series or an instance."""
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
    rendition = negotiate_instances(
        request.headers.getlist("accept"), single_instance=sop is not None
    )
    records = await services.retrieve.find_instances(study, series, sop)
    _check_transcoding(records, rendition)
    if not rendition.multipart:
        record = records[0]
        return StreamingResponse(
            services.retrieve.open_file(record),
            media_type=f"{DICOM}; transfer-syntax={record.transfer_syntax_uid}",
            headers={"Content-Length": str(record.file_size)},
        )
    boundary = new_boundary()
    return StreamingResponse(
        _multipart_body(services, records, boundary),
        headers={
            "Content-Type": f'{MULTIPART}; type="{DICOM}"; boundary={boundary}',
        },
    )


async def _multipart_body(
    services: Services, records: Sequence[InstanceRecord], boundary: str
) -> AsyncIterator[bytes]:
    for position, record in enumerate(records):
        yield part_header(
            boundary,
            {
                "Content-Type": f"{DICOM}; transfer-syntax={record.transfer_syntax_uid}",
                "Content-Length": str(record.file_size),
            },
            first=position == 0,
        )
        async for chunk in services.retrieve.open_file(record):
            yield chunk
    yield closing_delimiter(boundary)
