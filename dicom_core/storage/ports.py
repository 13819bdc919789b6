"""Storage ports: what the services need from an index, a blob store and a job queue.

Each port is a ``typing.Protocol`` with two adapters, ``local`` (SQLite + files + a SQLite job
table) and ``azure`` (Cosmos DB + Blob Storage + Storage queues). One contract test suite runs
unchanged against both. Ports speak in domain types (``dicom_core.domain.model``), never in
SQL, HTTP or SDK types.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from dicom_core.domain.model import InstanceKey, InstanceRecord, Reservation, StoredInstance
from dicom_core.domain.workitems import WorkitemRecord
from dicom_core.query.conditions import QueryDescription, QueryLevel
from dicom_core.query.results import SearchMatch
from dicom_core.query.workitems import WorkitemQuery


class InstanceExists(Exception):
    """POST of an instance that is already stored (failure 45070)."""


class InstanceBeingCreated(Exception):
    """Another request holds the instance identity, or a failed attempt left it (45071)."""


class BlobNotFound(Exception):
    """The blob store has no object under the key."""


class StorageUnavailable(Exception):
    """The backing store cannot be reached right now; the web layer answers 503."""


class WorkitemExists(Exception):
    """Create of a workitem whose UID is already taken (409)."""


class WorkitemChanged(Exception):
    """A workitem write named a version that is no longer current (another write won)."""


class IndexStore(Protocol):
    """The index: what is stored, where its file is, and what QIDO searches.

    Writes follow a two-step protocol so that an instance is either fully stored or invisible:
    ``begin_instance`` reserves the identity (and allocates the watermark that names the file),
    the file is written, then ``commit_instance`` makes file, metadata and index attributes
    visible in one step. ``abort_instance`` releases a reservation whose file failed.
    """

    async def begin_instance(self, key: InstanceKey, *, upsert: bool) -> Reservation: ...

    async def commit_instance(
        self, reservation: Reservation, instance: StoredInstance
    ) -> list[str]:
        """Make the instance visible; returns the blob keys of versions it replaced."""
        ...

    async def abort_instance(self, reservation: Reservation) -> None: ...

    async def get_instance(self, key: InstanceKey) -> InstanceRecord | None: ...

    async def list_instances(
        self, study_uid: str, series_uid: str | None = None
    ) -> list[InstanceRecord]:
        """Fully stored instances of a study or series, oldest first."""
        ...

    async def get_metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[bytes]:
        """Precomputed DICOM JSON objects (one per instance) of a study, series or instance."""
        ...

    async def delete_instances(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[str]:
        """Remove instances from the index; returns their blob keys (empty if none matched)."""
        ...

    async def search(
        self, query: QueryDescription, *, metadata: frozenset[QueryLevel] = frozenset()
    ) -> list[SearchMatch]:
        """QIDO-RS: one page of matches, newest first.

        The adapter compiles ``query`` (contract: ``dicom_core.query.conditions``) to its own
        query language and must agree with ``dicom_core.query.matching``. For each level in
        ``metadata`` it also returns the precomputed DICOM JSON of the latest stored instance
        of the match's entity at that level (study, series, or the instance itself). Only the
        attributes ``dicom_core.query.attributes.document_tags(query)`` names are read from
        those documents, so an adapter may return documents cut down to them.
        """
        ...

    # -- UPS-RS workitems (dicom_core.services.workitems) ------------------------------------

    async def create_workitem(self, uid: str, dataset: dict[str, Any]) -> None:
        """Store a new workitem (its dataset holds state and lock); WorkitemExists if taken."""
        ...

    async def get_workitem(self, uid: str) -> WorkitemRecord | None: ...

    async def replace_workitem(self, uid: str, dataset: dict[str, Any], *, version: str) -> None:
        """Replace the dataset if ``version`` is still current; WorkitemChanged otherwise."""
        ...

    async def search_workitems(self, query: WorkitemQuery) -> list[WorkitemRecord]:
        """Search Workitems: one page (``offset``, ``limit``) of matches, newest first.

        What matches is ``dicom_core.query.workitems.workitem_matches``; an adapter compiles
        the conditions against the keys of ``workitem_keys`` it stored with the workitem.
        """
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WrittenInstance:
    """What an ``InstanceWriter`` did: the new version and the files it made obsolete."""

    watermark: int
    blob_key: str
    # Files of the versions an upsert replaced, and of crashed attempts whose reservations
    # were taken over; the store deletes them once the write is visible.
    obsolete_blob_keys: tuple[str, ...] = ()


class InstanceWriter(Protocol):
    """Stores an instance's file and index entry in one step, where a backend can.

    The local backend keeps both on one machine, so it reserves, moves the file into place and
    commits inside a single SQLite write transaction: one lock, one commit, no window in which
    a crash leaves a reservation behind. Backends without this capability use the two-step
    ``IndexStore`` protocol instead. Either way, a failed write leaves nothing visible and no
    stored file behind (``source`` itself stays the caller's to remove).
    """

    async def write_instance(
        self, source: Path, instance: StoredInstance, *, upsert: bool
    ) -> WrittenInstance:
        """Raises InstanceExists, InstanceBeingCreated or StorageUnavailable."""
        ...


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

    async def read_range(self, key: str, offset: int, length: int) -> bytes: ...

    async def size(self, key: str) -> int: ...

    async def delete(self, key: str) -> bool:
        """Delete one object; True if it existed."""
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class QueueMessage:
    """A job message as received from a queue, with what is needed to settle it."""

    id: str
    queue: str
    body: dict[str, Any]
    dequeue_count: int
    receipt: str
    # What the queue trigger reports beside the body (its InsertionTime, ExpirationTime and
    # NextVisibleTime metadata), where the queue knows it.
    inserted_at: datetime | None = None
    expires_at: datetime | None = None
    next_visible_at: datetime | None = None


class JobQueue(Protocol):
    """Durable job queues driving the queue-triggered functions (at-least-once delivery)."""

    async def send(self, queue: str, body: dict[str, Any], *, delay_seconds: float = 0) -> None: ...

    async def receive(
        self, queue: str, *, max_messages: int = 1, visibility_timeout: float = 30
    ) -> Sequence[QueueMessage]: ...

    async def complete(self, message: QueueMessage) -> None: ...

    async def abandon(self, message: QueueMessage) -> None:
        """Make a message visible again at once (the handler failed)."""
        ...

    async def dead_letter(self, message: QueueMessage, reason: str) -> None:
        """Move a message that keeps failing to the queue's poison path."""
        ...

    async def close(self) -> None: ...
