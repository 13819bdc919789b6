"""The local blob adapter: ``BlobStore`` on a directory tree.

Keys are '/'-separated relative paths built from validated UIDs; every segment is checked
again here so that no key can leave the root. Writes consume a staged file with a rename
(the staging directory sits on the same file system), so a stored file is written once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

from dicom_core.storage.ports import BlobNotFound

_SEGMENT = re.compile(r"^[0-9A-Za-z._-]{1,128}$")


class FileBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        segments = key.split("/")
        for segment in segments:
            if not _SEGMENT.match(segment) or segment in {".", ".."}:
                raise ValueError(f"unsafe blob key segment {segment!r}")
        return self.root.joinpath(*segments)

    async def put_file(self, key: str, source: Path, *, overwrite: bool = False) -> None:
        await asyncio.to_thread(self.place_file, key, source, overwrite=overwrite)

    def place_file(self, key: str, source: Path, *, overwrite: bool = False) -> None:
        """Move ``source`` to ``key`` (blocking; ``put_file`` runs it in a thread).

        Create-only unless ``overwrite``: an existing file raises FileExistsError.
        """
        target = self.path_for(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        if overwrite:
            os.replace(source, target)
            return
        # link() fails if the target exists: an atomic create-only write.
        try:
            os.link(source, target)
        except OSError as exc:
            if isinstance(exc, FileExistsError):
                raise
            # File systems without hard links: fall back to a checked rename.
            if target.exists():
                raise FileExistsError(str(target)) from exc
            os.replace(source, target)
            return
        source.unlink()

    async def read_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        path = self.path_for(key)
        try:
            handle = await asyncio.to_thread(open, path, "rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        try:
            while True:
                chunk = await asyncio.to_thread(handle.read, chunk_size)
                if not chunk:
                    break
                yield chunk
        finally:
            handle.close()

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        path = self.path_for(key)

        def read() -> bytes:
            with open(path, "rb") as handle:
                return os.pread(handle.fileno(), length, offset)

        try:
            return await asyncio.to_thread(read)
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    async def size(self, key: str) -> int:
        try:
            return (await asyncio.to_thread(self.path_for(key).stat)).st_size
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(self.remove_file, key)

    def remove_file(self, key: str) -> bool:
        """Delete ``key``'s file (blocking); False if there was none."""
        path = self.path_for(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        # Prune empty series/study directories so deleted data leaves nothing behind.
        for parent in (path.parent, path.parent.parent):
            if parent == self.root:
                break
            with contextlib.suppress(OSError):
                parent.rmdir()
        return True

    async def close(self) -> None:
        return None
