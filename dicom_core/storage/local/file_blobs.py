"""The local blob adapter: ``BlobStore`` on a directory tree.

Keys are '/'-separated relative paths built from validated UIDs; every segment is checked
again here so that no key can leave the root. Writes consume a staged file with a rename
(the staging directory sits on the same file system), so a stored file is written once.

Durability (``durable=True``, the default; ``DICOM_DURABLE_WRITES``): a placed file must
survive a power cut once the store is acknowledged, so both ways of placing a file sync its
data and every directory whose entries changed: the file's own directory and the parent of
any directory it created. A rename alone is atomic but not durable: without the directory
sync the new name may be gone after a crash even though the data is not.

- ``place_file`` may replace a file that something already names, so it syncs the data
  before the rename: the name never points at a file whose blocks were lost.
- ``place_new_file`` places a file under a fresh key that nothing names until the caller
  commits a reference, so it renames first and syncs after. A crash in between leaves at worst
  an unnamed orphan, and on a journalling file system (ext4, XFS) the file's sync then commits
  the rename with it, so the directory's sync finds nothing left to write: one journal commit
  per file instead of two.
- A STOW part is handed to the kernel's writeback (``start_writeback``) once it is spooled,
  so most of its data is on disk by the time it is placed. That is a head start only: the
  sync above is still what makes it durable, and now waits for less.

A staged file on another file system (``DICOM_STAGING_DIR`` on another disk) cannot be
renamed or linked into place; it is copied beside its target, synced, and then renamed, so
the target's name still only ever points at a whole file. Placing a file fails with the ports'
``StorageFull`` (507) on a full disk and ``StorageUnavailable`` (503) on any other system
error, rather than an error the store would report as a failure of the instance itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import functools
import os
import re
import shutil
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

from dicom_core.storage.ports import BlobNotFound, StorageUnavailable, storage_error
from dicom_core.storage.ports.scratch import left_by_a_dead_process, scratch_name

_SEGMENT = re.compile(r"^[0-9A-Za-z._-]{1,128}$")


def sync_file(path: Path) -> None:
    """Flush ``path``'s data and inode to disk (any descriptor of the file will do on Linux)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_directory(path: Path) -> None:
    """Flush ``path``'s entries (names created, renamed or removed in it) to disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: ``sync_file_range`` flag: start writing the range's dirty pages, wait for none of them.
_SYNC_FILE_RANGE_WRITE = 2


def _writeback_starter() -> Callable[[int, int, int], bool] | None:
    """Linux's ``sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)``, which Python's
    ``os`` lacks; None where the C library has no such call (macOS)."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    call.restype = ctypes.c_int

    def start_writeback(fd: int, offset: int, length: int) -> bool:
        """Start writing ``length`` bytes of ``fd``'s file from ``offset`` to disk (True if the
        kernel took it). The kernel queues the range's pages for writing and returns without
        waiting for them, unless the disk's queue is full. Nothing is durable by this:
        ``sync_file`` still is what makes it so, and only waits for less."""
        return bool(call(fd, offset, length, _SYNC_FILE_RANGE_WRITE) == 0)

    return start_writeback


#: Given to the staging area for a store that syncs what it places: a STOW part's data goes
#: to disk while the part arrives and is parsed, instead of all at once in ``sync_file`` after
#: that. It made a seventh more instances a second (benchmarks/stow.py, 6 alternating
#: rounds, one and four clients).
start_writeback = _writeback_starter()


#: The root's directory of cross-disk copies in progress (``_copy_across``): on the same file
#: system as every target, and the one place a start must look for what a killed copy left.
INCOMING = ".incoming"
COPY_SUFFIX = ".copy"
#: Seconds after which a copy in .incoming is removed at start whoever made it.
INCOMING_MAX_AGE = 86_400


class FileBlobStore:
    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = root
        self._root_name = str(root)
        self.durable = durable
        self._incoming = root / INCOMING
        created = self._make_directories(self._incoming)
        if durable:
            # The root's own name, once per start: a fresh DATA_DIR needs it synced.
            for directory in {root, *created}:
                sync_directory(directory.parent)
        self._remove_dead_copies()

    def _remove_dead_copies(self) -> None:
        """Remove the partial copies of processes of this host that were killed mid-copy, and
        any copy a day old (another host's on a shared directory, or one whose process number
        was reused since): no copy of a live store takes that long."""
        cutoff = time.time() - INCOMING_MAX_AGE
        for leftover in self._incoming.glob(f"*{COPY_SUFFIX}"):
            with contextlib.suppress(OSError):
                dead = left_by_a_dead_process(leftover.name, COPY_SUFFIX)
                if dead or leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def path_for(self, key: str) -> Path:
        return Path(self.file_name(key))

    def file_name(self, key: str) -> str:
        """``path_for`` as a string, cheaper where a series opens hundreds of files."""
        segments = key.split("/")
        for segment in segments:
            if not _SEGMENT.match(segment) or segment in {".", ".."}:
                raise ValueError(f"unsafe blob key segment {segment!r}")
        return os.path.join(self._root_name, *segments)

    async def put_file(self, key: str, source: Path, *, overwrite: bool = False) -> None:
        await asyncio.to_thread(self.place_file, key, source, overwrite=overwrite)

    def place_file(self, key: str, source: Path, *, overwrite: bool = False) -> None:
        """Move ``source`` to ``key`` (blocking; ``put_file`` runs it in a thread).

        Create-only unless ``overwrite``: an existing file raises FileExistsError. When the
        store is durable, the file and the directory entries are on disk when this returns.
        """
        target = self.path_for(key)
        with _writing(key):
            if self.durable:
                sync_file(source)
            self._move_into_place(source, target, overwrite=overwrite)
            if self.durable:
                self._sync_directories(target)

    def place_new_file(self, key: str, source: Path) -> None:
        """Move ``source`` to a fresh ``key`` nothing names yet, then sync (blocking).

        Create-only. Durable once this returns, like ``place_file``; the caller must not
        publish the key before then (see the module docstring for why the order differs).
        """
        target = self.path_for(key)
        with _writing(key):
            self._move_into_place(source, target, overwrite=False)
            if self.durable:
                sync_file(target)
                self._sync_directories(target)

    def _sync_directories(self, target: Path) -> None:
        """Sync every directory from the file's own up to the root, where each name lives.

        All of them, not only those this call created: a directory another store (or
        process) made a moment ago may not have its name synced yet, and this store must not
        be acknowledged before it is. A directory with nothing new to write syncs in
        microseconds. The order does not matter, only that all precede the caller's commit.
        """
        for directory in target.parents:
            sync_directory(directory)
            if directory == self.root:
                break

    def _move_into_place(self, source: Path, target: Path, *, overwrite: bool) -> None:
        """Create the target's directories and move the file.

        A concurrent delete prunes directories it empties (``remove_file``), so one made here
        can vanish before the move: then they are made again, a few times at most.
        """
        attempts = 3
        while True:
            try:
                self._make_directories(target.parent)
                _move(source, target, overwrite=overwrite, durable=self.durable, via=self._incoming)
                return
            except FileNotFoundError:
                attempts -= 1
                if attempts == 0 or not source.exists():
                    raise

    def _make_directories(self, directory: Path) -> list[Path]:
        """Create ``directory`` and missing ancestors; returns those created, deepest first."""
        missing: list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        created: list[Path] = []
        for path in reversed(missing):
            # Made by a concurrent store meanwhile: fine, its name is synced all the same.
            with contextlib.suppress(FileExistsError):
                path.mkdir()
            created.append(path)
        created.reverse()
        return created

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

    async def open_reader(self, key: str) -> LocalBlobReader:
        """Open the file now: the descriptor keeps it readable if a delete unlinks it.

        An answer holds one descriptor per instance while it streams, so the process's soft
        limit is raised to its hard limit once; past that, opening fails with a 503.
        """
        (reader,) = await self.open_readers([key])
        return reader

    async def open_readers(self, keys: Sequence[str]) -> Sequence[LocalBlobReader]:
        """Every file opened in one worker thread: a series of 500 instances costs one hop
        to a thread and back, not 500."""
        _raise_open_file_limit()
        paths = [(key, self.file_name(key)) for key in keys]

        def open_files() -> list[LocalBlobReader]:
            readers: list[LocalBlobReader] = []
            try:
                for key, path in paths:
                    readers.append(_open_file(key, path))
            except BaseException:
                for reader in readers:
                    reader.close_now()
                raise
            return readers

        return await asyncio.to_thread(open_files)

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


@contextlib.contextmanager
def _writing(key: str) -> Iterator[None]:
    """A system error while placing ``key``'s file is the store's outage (``storage_error``);
    FileExistsError (create-only) and FileNotFoundError (no staged source) stay the caller's."""
    try:
        yield
    except (FileExistsError, FileNotFoundError):
        raise
    except OSError as exc:
        raise storage_error(exc, f"writing the stored file {key}") from exc


def _move(source: Path, target: Path, *, overwrite: bool, durable: bool, via: Path | None) -> None:
    """Rename or link ``source`` to ``target``; create-only unless ``overwrite``. From another
    file system, ``source`` is copied into ``via`` first (``_copy_across``); with no ``via``
    (a copy already), that fails as the rename did."""
    if overwrite:
        try:
            os.replace(source, target)
        except OSError as exc:
            if exc.errno != errno.EXDEV or via is None:
                raise
            _copy_across(source, target, overwrite=True, durable=durable, via=via)
        return
    # link() fails if the target exists: an atomic create-only write.
    try:
        os.link(source, target)
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            raise
        if exc.errno == errno.EXDEV and via is not None:
            _copy_across(source, target, overwrite=False, durable=durable, via=via)
            return
        # File systems without hard links: fall back to a checked rename.
        if target.exists():
            raise FileExistsError(str(target)) from exc
        os.replace(source, target)
        return
    source.unlink()


def _copy_across(source: Path, target: Path, *, overwrite: bool, durable: bool, via: Path) -> None:
    """Move ``source`` to ``target`` on another file system: copy it into ``via``, the
    target's file system (synced when ``durable``), then move the copy into place as any
    staged file (so the target's name never points at a partial file), then remove
    ``source``. A process killed in between leaves its copy in ``via``, named after it
    (``ports.scratch``), and the next start removes it.

    A target directory on yet another file system than ``via`` (a study's directory an
    operator moved to another disk and linked back) gets the copy beside the target, hidden,
    as before ``via`` existed: a copy into ``via`` could not be renamed there either.
    """
    copy = via / scratch_name(COPY_SUFFIX)
    if os.stat(via).st_dev != os.stat(target.parent).st_dev:
        copy = target.parent / f".{scratch_name(COPY_SUFFIX)}"
    try:
        shutil.copyfile(source, copy)
        if durable:
            sync_file(copy)
        _move(copy, target, overwrite=overwrite, durable=durable, via=None)
    finally:
        with contextlib.suppress(FileNotFoundError):
            copy.unlink()
    source.unlink()


@functools.cache
def _raise_open_file_limit() -> None:
    """Lift the soft RLIMIT_NOFILE to the hard limit (once; where the platform has one)."""
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _open_file(key: str, path: str) -> LocalBlobReader:
    """Open one stored file (blocking); the errors a caller can answer with a status code."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise BlobNotFound(key) from exc
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            # Out of descriptors: a 503 before the answer starts, never a cut body.
            raise StorageUnavailable(f"too many open files to read {key}") from exc
        raise
    try:
        return LocalBlobReader(key, fd, os.fstat(fd).st_size)
    except BaseException:
        os.close(fd)
        raise


class LocalBlobReader:
    """A stored file held open by its descriptor (``BlobReader``).

    Reads use ``pread`` from the descriptor, never the path, so unlinking the file (a delete
    of the instance) leaves what this reader streams whole. The descriptor is closed by
    ``close``, or when the reader is collected if a response was dropped before its body ran.
    """

    def __init__(self, key: str, fd: int, size: int) -> None:
        self._key = key
        self._fd = fd
        self._size = size
        self._closer = weakref.finalize(self, os.close, fd)

    @property
    def key(self) -> str:
        return self._key

    @property
    def size(self) -> int:
        return self._size

    async def read_stream(self, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        offset = 0
        while offset < self._size:
            if not self._closer.alive:
                raise ValueError(f"reader of {self._key} is closed")
            chunk = await asyncio.to_thread(
                os.pread, self._fd, min(chunk_size, self._size - offset), offset
            )
            if not chunk:
                # The file is shorter than when it was opened: only a broken disk or a writer
                # outside the service can do that. End the body as a failure, never short.
                raise OSError(errno.EIO, f"{self._key} ended at {offset} of {self._size} bytes")
            offset += len(chunk)
            yield chunk

    async def read_range(self, offset: int, length: int) -> bytes:
        if not self._closer.alive:
            raise ValueError(f"reader of {self._key} is closed")
        return await asyncio.to_thread(os.pread, self._fd, length, offset)

    def local_fd(self) -> int | None:
        return self._fd if self._closer.alive else None

    async def close(self) -> None:
        self.close_now()

    def close_now(self) -> None:
        """``close`` for blocking code."""
        self._closer()
