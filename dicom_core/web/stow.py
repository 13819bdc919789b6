"""STOW-RS over HTTP: reading the request body into spooled parts, rendering the result.

The transaction itself (external metadata, storing, the outcome per instance) is
``StoreService.store_instances``; this module hands it the headers and a body reader.

Bodies stream: each multipart part (or the single application/dicom body) goes straight to
a staging file, so memory stays flat whatever the size. Nothing is stored until the whole
body has been read and is well-formed: a truncated or malformed body stores nothing (400).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import aclosing
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from dicom_core.bootstrap import Services
from dicom_core.domain.media_types import DICOM, DICOM_JSON, MULTIPART_RELATED
from dicom_core.errors import BadRequest, NotAcceptable, PayloadTooLarge, UnsupportedMediaType
from dicom_core.services.expiry import HEADER_PREFIX as EXPIRY_PREFIX
from dicom_core.services.external_metadata import HEADER_PREFIX
from dicom_core.services.staging import PartSpool
from dicom_core.web import responses
from dicom_core.web.bodies import check_declared_length, limited_chunks
from dicom_core.web.context import (
    api_version,
    optional_path_uid,
    partition_of,
    resource_base,
)
from dicom_core.web.multipart import (
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    parse_content_type,
    sniff_boundary,
)
from dicom_core.web.negotiation import accepts


async def store_instances(request: Request, services: Services) -> Response:
    version = api_version(request)
    partition = await partition_of(request, services, create=True)
    study_uid = optional_path_uid(request, "study")
    if not accepts(request.headers.getlist("accept"), DICOM_JSON):
        raise NotAcceptable(
            "Store answers only in application/dicom+json; change the Accept header."
        )
    limit = services.settings.max_request_bytes
    check_declared_length(request, limit, _too_large(limit))

    result = await services.store.store_instances(
        lambda: _spool_body(request, services, limit),
        partition=partition.key,
        study_uid=study_uid,
        upsert=request.method == "PUT",
        api_version=version,
        base_url=resource_base(request, version, partition),
        external_metadata=[
            (name, value)
            for name, value in request.headers.items()
            if name.lower().startswith(HEADER_PREFIX)
        ],
        expiry_headers=[
            (name, value)
            for name, value in request.headers.items()
            if name.lower().startswith(EXPIRY_PREFIX)
        ],
    )
    if result.status == 204:
        return Response(status_code=204)
    return responses.dicom_json(result.to_dicom_json(), status=result.status)


async def _spool_body(request: Request, services: Services, limit: int) -> list[Path]:
    raw_type = request.headers.get("content-type")
    if not raw_type:
        raise UnsupportedMediaType(
            'The Content-Type header is missing; use multipart/related; type="application/dicom"'
            " or application/dicom."
        )
    try:
        content_type = parse_content_type(raw_type)
    except MultipartError as exc:
        raise UnsupportedMediaType(f"The Content-Type header is not valid: {exc}") from exc
    if content_type.media_type == DICOM:
        return await _spool_single(request, services, limit)
    if content_type.media_type != MULTIPART_RELATED:
        raise UnsupportedMediaType(
            f"Content-Type {content_type.media_type} is not supported; use multipart/related;"
            ' type="application/dicom" or application/dicom.'
        )
    part_type = content_type.params.get("type")
    if part_type is not None and part_type.lower() != DICOM:
        raise UnsupportedMediaType(
            f'multipart/related with type="{part_type}" is not supported; use type="{DICOM}".'
        )
    return await _spool_multipart(request, services, limit, content_type.params.get("boundary"))


def _too_large(limit: int) -> Callable[[int | None], PayloadTooLarge]:
    def error(declared: int | None) -> PayloadTooLarge:
        if declared is not None:
            return PayloadTooLarge(
                f"The request body of {declared} bytes exceeds the {limit}-byte limit."
            )
        return PayloadTooLarge(f"The request body exceeds the {limit}-byte limit.")

    return error


async def _spool_single(request: Request, services: Services, limit: int) -> list[Path]:
    spool = services.staging.new_part()
    try:
        async with aclosing(limited_chunks(request, limit, _too_large(limit))) as chunks:
            async for chunk in chunks:
                spool.write(chunk)
        spool.close()
    except BaseException:
        spool.discard()
        raise
    if spool.size == 0:
        spool.discard()
        return []
    return [spool.path]


async def _spool_multipart(
    request: Request, services: Services, limit: int, boundary: str | None
) -> list[Path]:
    spools: list[PartSpool] = []
    current: PartSpool | None = None
    max_parts = services.settings.max_parts
    try:
        parser = MultipartParser(boundary.encode("utf-8")) if boundary else None
    except MultipartError as exc:
        raise BadRequest(f"The multipart boundary parameter is not valid: {exc}.") from exc
    head = b""

    def handle(events: list[PartStart | PartData | PartEnd]) -> None:
        nonlocal current
        for event in events:
            if isinstance(event, PartStart):
                if len(spools) == max_parts:
                    raise PayloadTooLarge(
                        f"The request has more than {max_parts} parts; send the instances in"
                        " several requests."
                    )
                part_type = event.content_type
                if part_type is not None:
                    media = parse_content_type(part_type).media_type
                    if media != DICOM:
                        raise UnsupportedMediaType(
                            f"A part has Content-Type {media}; every part must be {DICOM}."
                        )
                current = services.staging.new_part()
                spools.append(current)
            elif isinstance(event, PartData):
                assert current is not None
                current.write(event.data)
            else:
                assert current is not None
                current.close()
                current = None

    try:
        async with aclosing(limited_chunks(request, limit, _too_large(limit))) as chunks:
            async for chunk in chunks:
                if parser is None:
                    head += chunk
                    if len(head) < 80 and chunk:
                        continue
                    sniffed = sniff_boundary(head)
                    if sniffed is None:
                        raise BadRequest(
                            "The multipart body has no boundary parameter in Content-Type and does"
                            " not start with a boundary line."
                        )
                    parser = MultipartParser(sniffed)
                    chunk, head = head, b""
                handle(parser.feed(chunk))
        if parser is None and head:
            sniffed = sniff_boundary(head)
            if sniffed is None:
                raise BadRequest(
                    "The multipart body has no boundary parameter in Content-Type and does not"
                    " start with a boundary line."
                )
            parser = MultipartParser(sniffed)
            handle(parser.feed(head))
        if parser is not None:
            handle(parser.close())
    except MultipartError as exc:
        _discard(spools)
        raise BadRequest(f"The multipart body is malformed: {exc}.") from exc
    except BaseException:
        _discard(spools)
        raise
    return [spool.path for spool in spools]


def _discard(spools: list[PartSpool]) -> None:
    for spool in spools:
        spool.discard()
