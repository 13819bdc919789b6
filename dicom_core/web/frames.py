"""Retrieve frames over HTTP (PS3.18 10.4.1.1.2): one part per requested frame.

Each part's Content-Type names its media type and the transfer syntax of the bytes it holds,
which is how viewers (cornerstone, in OHIF) pick a decoder. Small answers, the common case
of one frame per request, are built in memory and sent with a Content-Length; large ones
(many frames of a big instance) are streamed frame by frame.

Whatever can be decided is decided before the status line: every frame of a buffered answer,
and the first frame of a streamed one, is read (and transcoded) before the response starts, so
a frame that cannot be decoded is a 406. A frame that fails once a streamed answer is under
way ends the body without the closing delimiter: the multipart is visibly incomplete, and
never a well-formed answer with fewer frames than asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicom_core.bootstrap import Services
from dicom_core.domain.media_types import MULTIPART_RELATED
from dicom_core.errors import DicomWebError
from dicom_core.services.frames import FrameSet
from dicom_core.web.context import api_version, instance_key, partition_of
from dicom_core.web.multipart import closing_delimiter, new_boundary, part_header
from dicom_core.web.renditions import negotiate_frames
from dicom_core.web.wado_params import frame_numbers, original_version

#: Answers estimated below this size are built in memory (one write, a Content-Length).
BUFFERED_RESPONSE_BYTES: Final = 8 * 1024 * 1024
#: Frames read or transcoded at once for a buffered answer.
_PARALLEL_READS: Final = 4

_log = logging.getLogger(__name__)


async def retrieve_frames(request: Request, services: Services) -> Response:
    api_version(request)
    key = instance_key(request, await partition_of(request, services))
    numbers = frame_numbers(str(request.path_params.get("frames", "")))
    original_version(request)
    record = await services.frames.find_instance(key)
    rendition = negotiate_frames(
        request.headers.getlist("accept"),
        frame_count=len(numbers),
        stored_syntax=record.transfer_syntax_uid,
    )
    frames = await services.frames.prepare(record, numbers, rendition.transfer_syntax)
    part_type = f"{rendition.media_type}; transfer-syntax={frames.transfer_syntax}"
    if not rendition.multipart:
        return Response(await frames.read(numbers[0]), media_type=part_type)
    boundary = new_boundary()
    content_type = f'{MULTIPART_RELATED}; type="{rendition.media_type}"; boundary={boundary}'
    if frames.frame_length * len(numbers) <= BUFFERED_RESPONSE_BYTES:
        payloads = await _read_all(frames, numbers)
        body = b"".join(_framed(boundary, part_type, payloads))
        return Response(body, headers={"Content-Type": content_type})
    first = await frames.read(numbers[0])
    return StreamingResponse(
        _stream(frames, numbers, boundary, part_type, first),
        headers={"Content-Type": content_type},
    )


async def _read_all(frames: FrameSet, numbers: Sequence[int]) -> list[bytes]:
    if len(numbers) == 1:
        return [await frames.read(numbers[0])]
    gate = asyncio.Semaphore(_PARALLEL_READS)

    async def read(number: int) -> bytes:
        async with gate:
            return await frames.read(number)

    return list(await asyncio.gather(*(read(number) for number in numbers)))


def _framed(boundary: str, part_type: str, payloads: Sequence[bytes]) -> list[bytes]:
    pieces: list[bytes] = []
    for position, payload in enumerate(payloads):
        headers = {"Content-Type": part_type, "Content-Length": str(len(payload))}
        pieces.append(part_header(boundary, headers, first=position == 0))
        pieces.append(payload)
    pieces.append(closing_delimiter(boundary))
    return pieces


async def _stream(
    frames: FrameSet, numbers: Sequence[int], boundary: str, part_type: str, first: bytes
) -> AsyncIterator[bytes]:
    """One part at a time; the next frame is read while the current one is sent.

    ``first`` is the first frame, read before the response started. A later frame that fails
    ends the body here, without the closing delimiter (the status line is already sent).
    """
    pending: asyncio.Future[bytes] | None = None
    try:
        for position in range(len(numbers)):
            payload = first if pending is None else await pending
            if position + 1 < len(numbers):
                pending = asyncio.ensure_future(frames.read(numbers[position + 1]))
            headers = {"Content-Type": part_type, "Content-Length": str(len(payload))}
            yield part_header(boundary, headers, first=position == 0) + payload
        yield closing_delimiter(boundary)
    except Exception as exc:  # anything: the status line is sent, only the body can tell
        _log.warning(
            "frames of instance %s ended without the closing delimiter: %s",
            frames.record.key.sop_uid,
            exc.message if isinstance(exc, DicomWebError) else repr(exc),
            exc_info=not isinstance(exc, DicomWebError),
        )
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
