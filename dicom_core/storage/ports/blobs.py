"""The blob port: stored DICOM files, addressed by key; create-only writes, ranged reads."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Protocol


class BlobNotFound(Exception):
    """The blob store has no object under the key."""


class BlobDamaged(BlobNotFound):
    """The object under the key is not the one the index recorded: shorter, or another size.

    Only a broken disk or a writer outside the service can do that. A ``BlobNotFound`` too, so
    every path that answers a missing file (424, never a short body) answers this one.
    """


class BlobReader(Protocol):
    """One stored object, opened before a response starts and readable until closed.

    Opening is where a missing object shows (``BlobNotFound``), while a retrieve can still
    answer with a status code. Once open, a concurrent delete does not cut the read: the local
    store holds the file open (POSIX keeps an unlinked file readable), Blob Storage deletes
    only after the cleanup delay and the read is pinned to the ETag seen at opening.
    """

    @property
    def key(self) -> str: ...

    @property
    def size(self) -> int: ...

    def read_stream(self, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """The object's bytes as opened, in chunks; an error here can only end the body."""
        ...

    async def read_range(self, offset: int, length: int) -> bytes:
        """``length`` bytes of the object as opened, from ``offset`` (fewer at its end)."""
        ...

    def local_fd(self) -> int | None:
        """The open descriptor of an object that is a local file, which a host able to send
        files without copying them (``sendfile``) can send from; None for remote objects.
        The descriptor belongs to the reader: it is valid until ``close``."""
        ...

    async def close(self) -> None: ...


class BlobStore(Protocol):
    """Stored DICOM files, addressed by key. Create-only writes; byte-range reads."""

    async def put_file(self, key: str, source: Path, *, overwrite: bool = False) -> None:
        """Store the file at ``source`` under ``key`` and consume ``source``.

        With ``overwrite=False`` an existing object is never replaced (FileExistsError).
        """
        ...

    def read_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]: ...

    async def open_reader(self, key: str) -> BlobReader:
        """Open ``key`` for a read that a concurrent delete cannot cut; BlobNotFound if none."""
        ...

    async def open_readers(self, keys: Sequence[str]) -> Sequence[BlobReader]:
        """``open_reader`` for every key, in order, or for none: on a failure the readers
        already opened are closed and a failure is raised. An adapter that opens several at
        once raises another failure before BlobNotFound, since a missing file is what a
        caller may retry after a delete."""
        ...

    async def read_range(self, key: str, offset: int, length: int) -> bytes: ...

    async def size(self, key: str) -> int: ...

    async def delete(self, key: str) -> bool:
        """Delete one object; True if it existed."""
        ...

    async def close(self) -> None: ...
