"""Small request bodies (JSON datasets and definitions), read with a size limit.

A body is refused with 413 before a byte of it is read when its Content-Length already passes
the limit, and while it is read once the bytes received pass it, so a chunked body (no
Content-Length) or one that lies about its length never costs more than the limit in memory.
STOW has its own streaming reader (``stow``); this one is for bodies held whole to be parsed.
"""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request

from dicom_core.errors import BadRequest, PayloadTooLarge


def _too_large(limit: int, what: str) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The {what} is larger than the {limit}-byte limit (DICOM_MAX_JSON_BODY_BYTES)."
    )


async def read_limited(request: Request, limit: int, *, what: str = "request body") -> bytes:
    """The whole body of ``request``; 413 naming ``limit`` as soon as it is known to pass it."""
    declared = request.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, what)
    chunks: list[bytes] = []
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise _too_large(limit, what)
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise BadRequest("The client disconnected before the body was complete.") from exc
    return b"".join(chunks)
