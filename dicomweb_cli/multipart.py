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
from typing import BinaryIO

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
            # Reads happen in a worker thread so that the other requests' sends go on; one
            # hop per chunk, the opening and the end-of-file check included, since each hop
            # costs the event loop a wake-up (most files are a single chunk: one hop).
            reader = _FileChunks(path, size)
            try:
                while chunk := await asyncio.to_thread(reader.next_chunk):
                    yield chunk
            finally:
                reader.close()
            yield b"\r\n"
        yield self._close


class _FileChunks:
    """A file's bytes, ``CHUNK_BYTES`` at a time, checked to be exactly ``size`` long: a file
    that changed size would make the Content-Length already sent a lie, so the request fails
    instead (:class:`FileChangedError`). Called from one worker thread at a time."""

    def __init__(self, path: Path, size: int) -> None:
        self._path = path
        self._remaining = size
        self._stream: BinaryIO | None = None
        self._done = False

    def next_chunk(self) -> bytes:
        """The next chunk; empty once the file is done (and then closed)."""
        if self._done:
            return b""
        if self._stream is None:
            self._stream = self._path.open("rb")
        chunk = self._stream.read(min(CHUNK_BYTES, self._remaining)) if self._remaining else b""
        if self._remaining and not chunk:
            raise FileChangedError(self._path)
        self._remaining -= len(chunk)
        if self._remaining == 0:
            if self._stream.read(1):
                raise FileChangedError(self._path)
            self._done = True
            self.close()
        return chunk

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class FileChangedError(Exception):
    """A file changed size between discovery and upload."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} changed size while it was being uploaded")
        self.path = path
