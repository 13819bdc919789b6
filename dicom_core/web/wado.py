"""WADO-RS over HTTP: negotiating the rendition and streaming stored files.

Instances are streamed from the blob store chunk by chunk, inside a multipart/related body
or as a single application/dicom body; a study of several GB is never held in memory.
Instances stored in another transfer syntax than the one negotiated are transcoded on the
way out (``dicom_core.services.transcoding``), frame by frame, also streamed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicom_core.bootstrap import Services
from dicom_core.domain.media_types import DICOM, MULTIPART_RELATED
from dicom_core.domain.pixels import EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000_LOSSLESS
from dicom_core.errors import NotAcceptable
from dicom_core.services.retrieve import OpenedInstance, close_all
from dicom_core.storage.ports import BlobReader
from dicom_core.web.context import api_version, partition_of, series_uid, sop_uid, study_uid
from dicom_core.web.multipart import closing_delimiter, new_boundary, part_header
from dicom_core.web.negotiation import MediaRange, parse_accept
from dicom_core.web.stored_body import StoredFilesResponse, zero_copy_possible
from dicom_core.web.wado_params import original_version

SUPPORTED_SYNTAXES = ("*", EXPLICIT_VR_LITTLE_ENDIAN, JPEG_2000_LOSSLESS)


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
        syntax = syntax or "*"
        if syntax not in SUPPORTED_SYNTAXES:
            return None
        return Rendition(multipart=multipart, transfer_syntax=syntax)
    if media.media_type == DICOM:
        if not single_instance:
            return None
        multipart = False
    elif media.media_type == MULTIPART_RELATED:
        part_type = media.params.get("type", DICOM).strip().lower()
        if part_type in {"*/*", "application/*"}:
            # Any part type (dicomweb-client's default): the instances as stored.
            syntax = syntax or "*"
        elif part_type != DICOM:
            return None
        multipart = True
    else:
        return None
    syntax = syntax or EXPLICIT_VR_LITTLE_ENDIAN
    if syntax not in SUPPORTED_SYNTAXES:
        return None
    return Rendition(multipart=multipart, transfer_syntax=syntax)


async def retrieve(request: Request, services: Services) -> Response:
    """GET a study, a series or an instance."""
    api_version(request)
    partition = await partition_of(request, services)
    study, series, sop = study_uid(request), series_uid(request), sop_uid(request)
    original = original_version(request)
    rendition = negotiate_instances(
        request.headers.getlist("accept"), single_instance=sop is not None
    )
    # Every file is opened before the status line: a delete racing this request either
    # wins before (a 404, or the study without what it removed) or cannot cut the body.
    opened = await services.retrieve.open_instances(
        study, series, sop, partition=partition.key, original=original
    )
    try:
        return await _answer(
            services,
            rendition,
            opened,
            zero_copy=zero_copy_possible(request.scope, [item.reader for item in opened]),
        )
    except BaseException:
        await close_all([item.reader for item in opened])
        raise


async def _answer(
    services: Services,
    rendition: Rendition,
    opened: Sequence[OpenedInstance],
    *,
    zero_copy: bool,
) -> Response:
    records = [item.record for item in opened]
    target = rendition.transfer_syntax
    services.transcoding.check(records, target)
    if not rendition.multipart:
        record = records[0]
        if services.transcoding.needs_transcoding(record, target):
            # The first chunk comes once every frame is transcoded: a frame that cannot be
            # decoded is still a 406 here, before the response starts.
            body = await _started(services.transcoding.stream(record, target, opened[0].reader))
            return StreamingResponse(
                _closing(body, opened), media_type=f"{DICOM}; transfer-syntax={target}"
            )
        media_type = f"{DICOM}; transfer-syntax={record.transfer_syntax_uid}"
        sized = {"Content-Length": str(opened[0].reader.size)}
        if zero_copy:
            return StoredFilesResponse([opened[0].reader], sized, media_type)
        # Reading the first chunk before answering turns an unreachable blob store into a
        # 503 instead of a 200 whose body breaks off.
        return StreamingResponse(
            _closing(await _started(opened[0].reader.read_stream()), opened),
            media_type=media_type,
            headers=sized,
        )
    boundary = new_boundary()
    content_type = f'{MULTIPART_RELATED}; type="{DICOM}"; boundary={boundary}'
    if not any(services.transcoding.needs_transcoding(record, target) for record in records):
        # Every part as stored: the length of the whole answer is known before it starts.
        headers = _stored_part_headers(opened, boundary)
        length = sum(map(len, headers)) + sum(item.reader.size for item in opened)
        length += len(closing_delimiter(boundary))
        announced = {"Content-Type": content_type, "Content-Length": str(length)}
        if zero_copy:
            segments: list[bytes | BlobReader] = []
            for header, item in zip(headers, opened, strict=True):
                segments += (header, item.reader)
            segments.append(closing_delimiter(boundary))
            return StoredFilesResponse(segments, announced)
        first = await _started(opened[0].reader.read_stream())
        return StreamingResponse(
            _closing(_stored_multipart_body(opened, headers, boundary, first), opened),
            headers=announced,
        )
    if services.transcoding.needs_transcoding(records[0], target):
        first = await _started(services.transcoding.stream(records[0], target, opened[0].reader))
    else:
        first = await _started(opened[0].reader.read_stream())
    return StreamingResponse(
        _closing(_multipart_body(services, opened, boundary, target, first), opened),
        headers={"Content-Type": content_type},
    )


async def _closing(
    chunks: AsyncIterator[bytes], opened: Sequence[OpenedInstance]
) -> AsyncIterator[bytes]:
    """Stream ``chunks``, then close the answer's files however the stream ends."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        await close_all([item.reader for item in opened])


async def _started(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Produce the first chunk now (so its errors become a status code), then stream."""
    first = await anext(chunks)

    async def replay() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return replay()


def _stored_part_headers(opened: Sequence[OpenedInstance], boundary: str) -> list[bytes]:
    return [
        part_header(
            boundary,
            {
                "Content-Type": f"{DICOM}; transfer-syntax={item.record.transfer_syntax_uid}",
                "Content-Length": str(item.reader.size),
            },
            first=position == 0,
        )
        for position, item in enumerate(opened)
    ]


async def _stored_multipart_body(
    opened: Sequence[OpenedInstance],
    headers: Sequence[bytes],
    boundary: str,
    first: AsyncIterator[bytes],
) -> AsyncIterator[bytes]:
    """Every instance as stored, in a body whose length was announced: the host writes each
    chunk as it is, instead of copying it into chunked-encoding framing, and a body cut short
    by a failing read is one a client sees is shorter than announced."""
    for position, item in enumerate(opened):
        yield headers[position]
        async for chunk in first if position == 0 else item.reader.read_stream():
            yield chunk
    yield closing_delimiter(boundary)


async def _multipart_body(
    services: Services,
    opened: Sequence[OpenedInstance],
    boundary: str,
    target: str,
    first: AsyncIterator[bytes] | None = None,
) -> AsyncIterator[bytes]:
    """One part per instance; a failure after the first byte aborts the connection, so a
    client never mistakes a truncated body for a complete one: the closing delimiter is
    written only after every part. ``first`` is the already started stream of the first
    instance (transcoded or as stored)."""
    for position, item in enumerate(opened):
        record = item.record
        if services.transcoding.needs_transcoding(record, target):
            yield part_header(
                boundary,
                {"Content-Type": f"{DICOM}; transfer-syntax={target}"},
                first=position == 0,
            )
            chunks = first if position == 0 and first is not None else None
            try:
                async for chunk in chunks or services.transcoding.stream(
                    record, target, item.reader
                ):
                    yield chunk
            except NotAcceptable:
                # Every frame is transcoded before the instance's first byte, so this part is
                # still empty; ending here, without the closing delimiter, leaves a multipart
                # a client sees is incomplete, instead of a shorter answer that looks whole.
                return
            continue
        yield part_header(
            boundary,
            {
                "Content-Type": f"{DICOM}; transfer-syntax={record.transfer_syntax_uid}",
                "Content-Length": str(item.reader.size),
            },
            first=position == 0,
        )
        stored = first if position == 0 and first is not None else None
        async for chunk in stored or item.reader.read_stream():
            yield chunk
    yield closing_delimiter(boundary)
