"""A streaming ``multipart/related; type="application/dicom"`` request body (RFC 2387).

httpx writes ``multipart/form-data`` only, and STOW-RS needs ``multipart/related``; so the
client frames the parts itself. Files are read in chunks while the request is sent, never
whole, and the total length is known up front (each part's headers plus its file's size),
so the request carries a Content-Length and a server need not accept chunked bodies.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

CHUNK_BYTES = 1 << 20
PART_TYPE = "application/dicom"


class MultipartRelated:
    """The body of one STOW request: the files of ``paths``, one part each, in order.

    It can be iterated more than once (each time from the files), which is what a retry needs.
    """

    def __init__(self, paths: Sequence[Path], sizes: Sequence[int], boundary: str = "") -> None:
        if len(paths) != len(sizes):
            raise ValueError("one size per path")
        self.paths = list(paths)
        self.sizes = list(sizes)
        # 32 random hex digits cannot plausibly occur in a file (RFC 2046 5.1.1 asks only that
        # the boundary not occur in the parts).
        self.boundary = boundary or f"dicomweb-{secrets.token_hex(16)}"
        self._part_head = f"--{self.boundary}\r\nContent-Type: {PART_TYPE}\r\n\r\n".encode("ascii")
        self._close = f"--{self.boundary}--\r\n".encode("ascii")

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="{PART_TYPE}"; boundary={self.boundary}'

    @property
    def content_length(self) -> int:
        framing = len(self._part_head) + len(b"\r\n")
        return sum(self.sizes) + framing * len(self.paths) + len(self._close)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for path, size in zip(self.paths, self.sizes, strict=True):
            yield self._part_head
            # Reads happen in a worker thread so that the other requests' sends go on. A file
            # that changed size would make the Content-Length already sent a lie: the request
            # fails instead.
            with await asyncio.to_thread(open, path, "rb") as stream:
                remaining = size
                while remaining:
                    chunk = await asyncio.to_thread(stream.read, min(CHUNK_BYTES, remaining))
                    if not chunk:
                        raise FileChangedError(path)
                    remaining -= len(chunk)
                    yield chunk
                if await asyncio.to_thread(stream.read, 1):
                    raise FileChangedError(path)
            yield b"\r\n"
        yield self._close


class FileChangedError(Exception):
    """A file changed size between discovery and upload."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} changed size while it was being uploaded")
        self.path = path
