"""Request bodies read with a size limit: streamed (STOW) or held whole (JSON datasets).

A body is refused with 413 before a byte of it is read when its Content-Length already passes
the limit, and while it is read once the bytes received pass it, so a chunked body (no
Content-Length) or one that lies about its length never costs more than the limit. A client
that goes away mid-body gets a 400 (which it will not read, but the request ends as one).
``limited_chunks`` is the one reader; STOW spools its chunks to disk, ``read_limited`` keeps
them for bodies parsed whole.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from starlette.requests import ClientDisconnect, Request

from dicom_core.domain.integers import PAST_ANY_RANGE, decimal_integer
from dicom_core.domain.media_types import JSON
from dicom_core.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType


def check_declared_length(
    request: Request, limit: int, too_large: Callable[[int | None], PayloadTooLarge]
) -> None:
    """Raise ``too_large(declared)`` when the body's Content-Length already passes ``limit``."""
    header = request.headers.get("content-length", "").strip()
    declared = decimal_integer(header) if header.isdigit() else None
    if declared is not None and declared > limit:
        raise too_large(declared if declared < PAST_ANY_RANGE else None)


async def limited_chunks(
    request: Request, limit: int, too_large: Callable[[int | None], PayloadTooLarge]
) -> AsyncGenerator[bytes]:
    """The body of ``request`` chunk by chunk; ``too_large(declared)`` is raised as soon as
    the body is known to pass ``limit`` (``declared`` is its Content-Length, or None when the
    bytes received passed it)."""
    check_declared_length(request, limit, too_large)
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise too_large(None)
            yield chunk
    except ClientDisconnect as exc:
        raise BadRequest("The client disconnected before the body was complete.") from exc


async def read_limited(request: Request, limit: int, *, what: str = "request body") -> bytes:
    """The whole body of ``request``; 413 naming ``limit`` as soon as it is known to pass it."""

    def too_large(_: int | None) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The {what} is larger than the {limit}-byte limit (DICOM_MAX_JSON_BODY_BYTES)."
        )

    return b"".join([chunk async for chunk in limited_chunks(request, limit, too_large)])


async def read_json_bytes(request: Request, limit: int) -> bytes:
    """A JSON request body, unparsed: refused with 415 when it is declared as anything but
    JSON (no Content-Type is taken as JSON), and with 413 past ``limit``."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type != JSON and not content_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"The content type '{content_type}' is not supported; send application/json."
        )
    return await read_limited(request, limit)
