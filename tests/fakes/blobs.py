"""``FakeBlobStore``: stored files as bytes in a dict."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from dicom_core.storage.ports import BlobNotFound


def _chunks(data: bytes, chunk_size: int) -> list[bytes]:
    return [data[start : start + chunk_size] for start in range(0, len(data), chunk_size)]


class FakeBlobReader:
    """An opened object: the bytes as they were at opening (like an open local file)."""

    def __init__(self, key: str, data: bytes) -> None:
        self._key = key
        self._data = data

    @property
    def key(self) -> str:
        return self._key

    @property
    def size(self) -> int:
        return len(self._data)

    async def read_stream(self, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        for chunk in _chunks(self._data, chunk_size):
            yield chunk

    async def read_range(self, offset: int, length: int) -> bytes:
        return self._data[offset : offset + length]

    def local_fd(self) -> int | None:
        return None  # bytes in memory: always streamed

    async def close(self) -> None:
        return None


class FakeBlobStore:
    """The ``BlobStore`` port. ``fail_deletes`` makes deletes raise (a storage outage)."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail_deletes = False

    def _get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise BlobNotFound(key) from None

    async def put_file(self, key: str, source: Path, *, overwrite: bool = False) -> None:
        if key in self.objects and not overwrite:
            raise FileExistsError(key)
        self.objects[key] = await asyncio.to_thread(source.read_bytes)
        source.unlink()

    async def read_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        for chunk in _chunks(self._get(key), chunk_size):
            yield chunk

    async def open_reader(self, key: str) -> FakeBlobReader:
        return FakeBlobReader(key, self._get(key))

    async def open_readers(self, keys: Sequence[str]) -> list[FakeBlobReader]:
        return [await self.open_reader(key) for key in keys]  # nothing to close on failure

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        return self._get(key)[offset : offset + length]

    async def size(self, key: str) -> int:
        return len(self._get(key))

    async def delete(self, key: str) -> bool:
        if self.fail_deletes:
            raise ConnectionError(f"deleting {key}: the blob store is unreachable")
        return self.objects.pop(key, None) is not None

    async def close(self) -> None:
        return None
