"""One SQLite database file shared by the local index and the local job queue.

SQLite calls block, so they run in worker threads, each with its own connection (WAL mode lets
readers proceed while one writer commits). Several server processes may share the file.

Durability: with ``durable=True`` (the default; ``DICOM_DURABLE_WRITES``) every write
transaction syncs the WAL after its COMMIT (``transaction``, ``sync_wal``) before it returns,
so an acknowledged store's index entry survives a power cut. Without it (scratch use) the WAL
is synced only at checkpoints: the database stays consistent, but the last commits before a
crash of the machine may be lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from dicom_core.storage.local.schema import AFTER_UPGRADES, DDL, SCHEMA_VERSION, UPGRADES
from dicom_core.storage.ports import StorageFull, StorageUnavailable

T = TypeVar("T")

#: How long a writer waits for another to finish before the request fails with a 503.
LOCK_TIMEOUT_SECONDS = 30.0
# Polling delays while another writer holds the database. A store's transaction takes well
# under a millisecond, so the first retry comes quickly; long holders (a reindex batch) are
# polled every few milliseconds. SQLite's own busy handler sleeps 1, 2, 5, 10... ms.
FIRST_RETRY = 0.0002
LAST_RETRY = 0.004


class SchemaTooNew(RuntimeError):
    """The database was written by a newer version of this server (``SCHEMA_VERSION``)."""


def _refuse_newer_schema(conn: sqlite3.Connection) -> None:
    """Stop before touching a database that newer code has upgraded: its rows may hold what
    this code does not know to keep up to date. The upgrade itself (in ``_migrate``) raises
    the stored version, in the same transaction as its steps."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone() if exists else None
    if row is not None and row[0] is not None and int(row[0]) > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the index database was written by a newer version of this server (schema"
            f" {int(row[0])}; this version knows {SCHEMA_VERSION}): run that version or newer,"
            " or restore a backup made by this one"
        )


log = logging.getLogger(__name__)

#: Free space below which a disk counts as full when SQLite reports only an I/O error.
_FULL_DISK_BYTES = 1 << 20


class WriterBusy(sqlite3.OperationalError):
    """Another writer holds the database: at once with ``wait=False``, else after the timeout.

    An ``OperationalError``, so ``run`` turns it into a 503 like SQLite's own "locked".
    """


class SqliteDatabase:
    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        self.durable = durable
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # Writers queue here rather than in SQLite's busy handler, whose sleeps are far longer
        # than a store's transaction: threads of this process on a lock, processes sharing the
        # file on an flock of a sibling file (released by the kernel if a process dies).
        self._write_lock = threading.Lock()
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            # One process at a time creates or upgrades the file, under the writers' file lock.
            # SQLite's busy handler does not cover this: a fresh file's switch to WAL fails at
            # once with "database is locked" when another process is switching it too, which
            # stopped one of `make run`'s workers on a new DATA_DIR about one start in four.
            # No time limit: another process may be upgrading a large index, and a worker
            # that gave up would fail its start and stop the whole host with it.
            self._lock_writers(wait=True, forever=True)
            try:
                # A Connection used as a context manager commits but does not close it.
                with contextlib.closing(self._connect()) as conn:
                    self._migrate(conn)
                    row = conn.execute("SELECT id FROM database_identity").fetchone()
            except sqlite3.DatabaseError as exc:
                # Named for what it is (a full disk, a read-only or damaged file): the host's
                # start or the request that opened the index reports it, never a bare 500.
                raise self.unavailable(exc) from exc
            finally:
                self._unlock_writers()
        except BaseException:
            os.close(self._lock_fd)
            raise
        #: The database's own random name (schema.py, ``database_identity``).
        self.identity = str(row[0])
        if durable:
            # The database file's own name (SQLite syncs the directory for its WAL, not for
            # the main file it creates): once per start, cheap.
            fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in both modes: a durable database syncs the WAL itself after each COMMIT,
            # outside the writers' lock (sync_wal), rather than inside it as FULL would.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=30000")
        except BaseException:
            conn.close()  # a file that is no database, or a full disk: nothing to keep open
            raise
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        _refuse_newer_schema(conn)
        # Every statement is idempotent (IF NOT EXISTS): a process that opens the file after
        # another created or upgraded it finds nothing left to do.
        conn.executescript(DDL)
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif int(row[0]) > SCHEMA_VERSION:  # a newer process upgraded it just now
                _refuse_newer_schema(conn)
            elif int(row[0]) < SCHEMA_VERSION:
                conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
            if conn.execute("SELECT id FROM database_identity").fetchone() is None:
                conn.execute("INSERT INTO database_identity (id) VALUES (?)", (uuid.uuid4().hex,))
            for table, column, statements in UPGRADES:
                columns = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in columns:
                    for statement in statements:
                        if callable(statement):
                            statement(conn)
                        else:
                            conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.executescript(AFTER_UPGRADES)

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def transaction(
        self, *, wait: bool = True, defer_sync: bool = False
    ) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE), so two writers never deadlock.

        With ``wait=False`` it raises ``WriterBusy`` at once when another writer holds the
        database: the store takes its write on the event loop when the database is free and
        retries later when it is not, rather than waiting in a thread that would then hold the
        lock while it queues for the GIL.

        Durable databases sync the WAL after the COMMIT, once the writers' lock is released, so
        other writers commit while this one waits for the disk (one sync can then cover
        several commits: group commit). ``defer_sync=True`` leaves that sync to the caller
        (``sync_wal``), who must do it before acknowledging anything.
        """
        conn = self.connection()
        self._lock_writers(wait)
        committed = False
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            committed = True
        finally:
            self._unlock_writers()
        if committed and not defer_sync:
            self.sync_wal()

    def sync_wal(self) -> None:
        """Make every COMMIT so far durable: sync the WAL (a no-op for scratch databases).

        Safe with ``synchronous=NORMAL``: a commit's frames are in the WAL file when COMMIT
        returns, and recovery replays every committed frame it finds intact; a checkpoint
        syncs the WAL before copying it back. A WAL that no longer exists was checkpointed
        (and synced) and removed, so there is nothing left to sync. ``fdatasync``, as SQLite
        itself syncs on Linux: it writes the size when the WAL grew, and skips a journal
        commit for the modification time alone when the WAL is reused in place.
        """
        if not self.durable:
            return
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            getattr(os, "fdatasync", os.fsync)(fd)  # macOS has no fdatasync
        finally:
            os.close(fd)

    def _lock_writers(self, wait: bool, *, forever: bool = False) -> None:
        """Take this process's writer lock, then the file lock shared by all processes:
        at once, within ``LOCK_TIMEOUT_SECONDS`` when ``wait``, or however long it takes when
        ``forever`` (an open waits out another process's upgrade, which may be long)."""
        timeout = LOCK_TIMEOUT_SECONDS if wait else 0.0
        deadline = float("inf") if forever else time.monotonic() + timeout
        if not self._write_lock.acquire(timeout=-1 if forever else timeout):
            raise WriterBusy("the database is locked by another writer of this process")
        try:
            delay = FIRST_RETRY
            while True:
                try:
                    fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise WriterBusy("the database is locked by another process") from None
                time.sleep(delay)
                delay = min(delay * 2, LAST_RETRY)
        except BaseException:
            self._write_lock.release()
            raise

    def _unlock_writers(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
        self._write_lock.release()

    async def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a worker thread, its errors as ``errors_as_unavailable`` says."""
        with self.errors_as_unavailable():
            return await asyncio.to_thread(fn)

    @contextlib.contextmanager
    def errors_as_unavailable(self) -> Iterator[None]:
        """A locked, unreadable or damaged database becomes the ports' error (503, and 507
        for a full disk: ``unavailable``). IntegrityError and ProgrammingError stay as they
        are: a defect in a statement, not an index to retry later."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
                raise
            raise self.unavailable(exc) from exc

    def unavailable(self, exc: sqlite3.Error) -> StorageUnavailable:
        """The ports' error for SQLite's ``exc``: ``StorageFull`` when the disk holding the
        index is full (SQLite says "database or disk is full", or only "disk I/O error" when
        it cannot even create its shared-memory file), else ``StorageUnavailable`` naming
        SQLite's reason (locked, read-only, "database disk image is malformed")."""
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and self._disk_full()):
            log.error("the disk holding the local index %s is full", self.path)
            return StorageFull("the disk holding the local index is full")
        return StorageUnavailable(f"the local index is unavailable: {exc}")

    def _disk_full(self) -> bool:
        try:
            return shutil.disk_usage(self.path.parent).free < _FULL_DISK_BYTES
        except OSError:
            return False

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1
