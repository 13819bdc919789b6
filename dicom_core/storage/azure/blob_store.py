"""The azure blob adapter: ``BlobStore`` on one Blob Storage container.

- Uploads stream the staged file in 1 MiB blocks (four staged at a time, committed with one
  Put Block List), so memory stays bounded for a 2 GB instance.
- ``overwrite=False`` is a create-only write: the commit carries ``If-None-Match: *`` and an
  existing blob makes it fail (``FileExistsError``), never replaced, unless it holds exactly
  the file being written: then an earlier attempt of this write got through (its answer lost
  in a stall, its retry refused) and the write succeeded.
- Durable when acknowledged: Blob Storage answers Put Block List only once the blob is
  committed to its replicas, so a store needs no sync of its own here (the local backend's
  ``DICOM_DURABLE_WRITES`` does not apply).
- Frames are byte-range reads (``x-ms-range``); streams are read chunk by chunk.
- A retrieve opens its blobs before answering (``open_reader``: one Get Blob Properties each),
  so a missing blob is still a status code, and reads them with ``If-Match`` on the ETag seen
  then. Deletes wait for the cleanup delay (``BlobJanitor``), so an answer already streaming
  keeps reading what it opened.
- A missing container (a new account, an emulator restarted empty) is created on first write
  when the adapter may create resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)

from dicom_core.settings import AzureSettings
from dicom_core.storage.azure.clients import StorageClients
from dicom_core.storage.azure.retry import RetryPolicy, is_transient, status_of, unexpected
from dicom_core.storage.ports import BlobNotFound, StorageUnavailable

log = logging.getLogger(__name__)

_UPLOAD_CONCURRENCY = 4
# Blobs an answer opens at once (a properties request each): enough to hide the round trips.
_OPEN_CONCURRENCY = 16


def _container_missing(exc: BaseException) -> bool:
    return getattr(exc, "error_code", None) == "ContainerNotFound"


class AzureBlobStore:
    def __init__(
        self, clients: StorageClients, settings: AzureSettings, *, create_resources: bool = True
    ) -> None:
        self._clients = clients
        self._container_name = settings.blob_container
        self._create = create_resources
        self._retry = RetryPolicy(settings.retry_seconds)
        self._container_ready = False

    def _container(self) -> Any:
        return self._clients.blob_service().get_container_client(self._container_name)

    async def _ensure_container(self) -> None:
        if self._container_ready or not self._create:
            return
        with contextlib.suppress(ResourceExistsError):
            await self._container().create_container()
        self._container_ready = True

    async def _call(self, what: str, operation: Any) -> Any:
        """Run ``operation`` with retries; SDK errors that remain become the ports' errors."""
        try:
            return await self._retry.run(operation, f"Blob Storage ({what})")
        except (StorageUnavailable, BlobNotFound, FileExistsError):
            raise
        except ResourceNotFoundError as exc:
            raise BlobNotFound(what) from exc
        except Exception as exc:
            if type(exc).__module__.startswith(("azure.", "aiohttp")) or is_transient(exc):
                raise unexpected("Blob Storage", exc) from exc
            raise

    async def put_file(self, key: str, source: Path, *, overwrite: bool = False) -> None:
        size = source.stat().st_size

        async def upload() -> None:
            await self._ensure_container()
            blob = self._container().get_blob_client(key)
            with open(source, "rb") as handle:
                try:
                    await blob.upload_blob(
                        handle,
                        length=size,
                        overwrite=overwrite,
                        max_concurrency=_UPLOAD_CONCURRENCY,
                    )
                except ResourceExistsError as exc:
                    raise FileExistsError(key) from exc
                except ResourceNotFoundError as exc:
                    if not _container_missing(exc) or not self._create:
                        raise
                    self._container_ready = False
                    raise _Retry from exc

        try:
            try:
                await self._call(key, upload)
            except _Retry:
                await self._call(key, upload)
        except FileExistsError:
            if overwrite or not await self._holds(key, source, size):
                raise
            # Our own earlier attempt: an upload whose answer was lost (a stall past the SDK's
            # read timeout) went through, and the SDK's or our retry then found it. Keys are
            # unique to one attempt (a watermark, a random token), so the blob is this file.
            log.warning("%s was already uploaded by an earlier attempt of this write", key)
        # Like the local store, a stored file consumes its staged source.
        await asyncio.to_thread(source.unlink, True)

    async def _holds(self, key: str, source: Path, size: int) -> bool:
        """Whether the blob ``key`` holds exactly the bytes of ``source`` (compared in chunks:
        only a create-only write that found its key taken comes here)."""
        try:
            with open(source, "rb") as handle:
                read = 0
                async for chunk in self._download(key, None, 1 << 20):
                    if await asyncio.to_thread(handle.read, len(chunk)) != chunk:
                        return False
                    read += len(chunk)
                return read == size and not await asyncio.to_thread(handle.read, 1)
        except BlobNotFound:
            return False  # gone again meanwhile: the conflict stands

    async def read_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        async for chunk in self._download(key, None, chunk_size):
            yield chunk

    async def open_reader(self, key: str) -> AzureBlobReader:
        """Take the blob's ETag and size now; the read later is pinned to that ETag."""

        async def properties() -> tuple[str, int]:
            props = await self._container().get_blob_client(key).get_blob_properties()
            return str(props.etag), int(props.size)

        etag, size = await self._call(key, properties)
        return AzureBlobReader(self, key, etag, size)

    async def open_readers(self, keys: Sequence[str]) -> Sequence[AzureBlobReader]:
        """One properties request per blob, ``_OPEN_CONCURRENCY`` at a time."""
        semaphore = asyncio.Semaphore(_OPEN_CONCURRENCY)

        async def open_one(key: str) -> AzureBlobReader:
            async with semaphore:
                return await self.open_reader(key)

        results = await asyncio.gather(*map(open_one, keys), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            # Nothing is held open between reads, so there is nothing to close.
            raise next((f for f in failures if not isinstance(f, BlobNotFound)), failures[0])
        return [r for r in results if not isinstance(r, BaseException)]

    async def _download(self, key: str, etag: str | None, chunk_size: int) -> AsyncIterator[bytes]:
        """The blob in ``chunk_size`` pieces; with ``etag``, only that version of it."""

        async def open_download() -> Any:
            blob = self._container().get_blob_client(key)
            if etag is None:
                return await blob.download_blob()
            return await blob.download_blob(
                etag=etag, match_condition=MatchConditions.IfNotModified
            )

        downloader = await self._call(key, open_download)
        try:
            async for chunk in downloader.chunks():
                for start in range(0, len(chunk), chunk_size):
                    yield chunk[start : start + chunk_size]
        except Exception as exc:
            # The response has started; all that is left is to end it with an error.
            if type(exc).__module__.startswith(("azure.", "aiohttp")) or is_transient(exc):
                raise unexpected("Blob Storage", exc) from exc
            raise

    async def read_range(
        self, key: str, offset: int, length: int, *, etag: str | None = None
    ) -> bytes:
        """``length`` bytes from ``offset``; with ``etag``, only from that version."""
        if length <= 0:
            return b""

        async def download() -> bytes:
            blob = self._container().get_blob_client(key)
            pinned: dict[str, Any] = (
                {}
                if etag is None
                else {"etag": etag, "match_condition": MatchConditions.IfNotModified}
            )
            try:
                stream = await blob.download_blob(offset=offset, length=length, **pinned)
            except HttpResponseError as exc:
                if status_of(exc) == 416:  # the range starts past the end, as pread gives b""
                    return b""
                raise
            return bytes(await stream.readall())

        result: bytes = await self._call(key, download)
        return result

    async def size(self, key: str) -> int:
        async def properties() -> int:
            props = await self._container().get_blob_client(key).get_blob_properties()
            return int(props.size)

        result: int = await self._call(key, properties)
        return result

    async def delete(self, key: str) -> bool:
        async def remove() -> bool:
            try:
                await self._container().get_blob_client(key).delete_blob(delete_snapshots="include")
            except ResourceNotFoundError:
                return False
            return True

        result: bool = await self._call(key, remove)
        return result

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every blob whose key starts with ``prefix`` (a study's or series' files).

        Not part of the port: a maintenance tool for files left behind (the index decides
        what is stored, and deletes go through it).
        """
        if not prefix or prefix.startswith("/"):
            raise ValueError("a prefix delete needs a non-empty relative prefix")

        async def remove_all() -> int:
            container = self._container()
            names = [blob.name async for blob in container.list_blobs(name_starts_with=prefix)]
            semaphore = asyncio.Semaphore(8)

            async def remove(name: str) -> None:
                async with semaphore:
                    with contextlib.suppress(ResourceNotFoundError):
                        await container.delete_blob(name, delete_snapshots="include")

            await asyncio.gather(*(remove(name) for name in names))
            return len(names)

        try:
            result: int = await self._call(prefix, remove_all)
        except BlobNotFound:
            return 0  # no container: nothing to delete
        return result

    async def close(self) -> None:
        await self._clients.close()


class AzureBlobReader:
    """A blob opened by its ETag (``BlobReader``): the read fails rather than return other
    content, and the cleanup delay keeps a deleted blob readable while answers finish."""

    def __init__(self, store: AzureBlobStore, key: str, etag: str, size: int) -> None:
        self._store = store
        self._key = key
        self.etag = etag
        self._size = size

    @property
    def key(self) -> str:
        return self._key

    @property
    def size(self) -> int:
        return self._size

    async def read_stream(self, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        read = 0
        async for chunk in self._store._download(self._key, self.etag, chunk_size):
            read += len(chunk)
            yield chunk
        if read != self._size:
            raise OSError(f"{self._key} gave {read} of {self._size} bytes")

    async def read_range(self, offset: int, length: int) -> bytes:
        return await self._store.read_range(self._key, offset, length, etag=self.etag)

    def local_fd(self) -> int | None:
        return None  # a blob is read over HTTP

    async def close(self) -> None:
        return None  # nothing is held between reads


class _Retry(Exception):
    """The container was missing and has been forgotten: create it and upload again."""
