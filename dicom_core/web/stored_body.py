"""Answers of stored files sent as they are, by the kernel rather than through Python.

A whole series as stored is hundreds of megabytes the app only moves from files to a socket.
Where the server offers ASGI's ``http.response.zerocopysend`` extension (this project's local
host does, in ``functions_host/zero_copy.py``) and every file of an answer is a local file, the
answer hands the server each file's open descriptor, and the server sends it with
``sendfile``: no read into Python, no copy back out, about half the CPU per byte.

Elsewhere the same answers stream as chunks (``dicom_core.web.wado``): behind Azure's
Functions host the runtime's HTTP server offers no such extension, and blobs are not local
files. A client cannot tell the two apart.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from dicom_core.services.retrieve import close_all
from dicom_core.storage.ports import BlobReader

ZERO_COPY = "http.response.zerocopysend"  # the extension's name in the ASGI specification


def zero_copy_possible(scope: MutableMapping[str, Any], readers: Sequence[BlobReader]) -> bool:
    """True when the server offers the extension and every reader is a local file."""
    extensions = scope.get("extensions") or {}
    return ZERO_COPY in extensions and all(reader.local_fd() is not None for reader in readers)


class _Descriptor:
    """What the extension's ``file`` asks for: an object with ``fileno()``."""

    __slots__ = ("_fd",)

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd


class StoredFilesResponse(Response):
    """A body of ``segments``, each bytes or an opened stored file, sent in order with the
    files by descriptor; every file's reader is closed when the answer ends, however it ends.

    Only for a server that offers the extension (``zero_copy_possible``); ``headers`` must
    announce the Content-Length, which the caller knows from the sizes.
    """

    def __init__(
        self,
        segments: Sequence[bytes | BlobReader],
        headers: Mapping[str, str],
        media_type: str | None = None,
    ) -> None:
        super().__init__(headers=headers, media_type=media_type)
        self._segments = segments

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            last = len(self._segments) - 1
            for position, segment in enumerate(self._segments):
                more = position < last
                if isinstance(segment, bytes):
                    await send({"type": "http.response.body", "body": segment, "more_body": more})
                    continue
                fd = segment.local_fd()
                if fd is None:
                    raise ValueError(f"the reader of {segment.key} was closed before its turn")
                await send(
                    {
                        "type": ZERO_COPY,
                        "file": _Descriptor(fd),
                        "offset": 0,
                        "count": segment.size,
                        "more_body": more,
                    }
                )
        finally:
            await close_all([s for s in self._segments if not isinstance(s, bytes)])
