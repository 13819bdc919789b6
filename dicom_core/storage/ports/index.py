"""The index port: what is stored, where each file is, and what QIDO searches.

``IndexStore`` is the two-step protocol every backend offers; ``InstanceWriter`` is the
one-step capability a backend may add when file and index live on one machine.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from dicom_core.domain.model import (
    InstanceKey,
    InstanceRecord,
    Reservation,
    StoredInstance,
    StudyKey,
)
from dicom_core.query.conditions import QueryDescription, QueryLevel
from dicom_core.query.results import SearchMatch

log = logging.getLogger(__name__)


class InstanceExists(Exception):
    """POST of an instance that is already stored (failure 45070)."""


class InstanceBeingCreated(Exception):
    """Another request holds the instance identity, or a failed attempt left it (45071)."""


class InstanceChanged(Exception):
    """A new version was based on one that is no longer the instance's current version: a
    store, a replacing store or a delete came in between (a bulk update skips the instance)."""


BlobRelease = Callable[[str], Awaitable[None]]
"""Takes the blob key of a file whose index entry is gone, to delete the file (now, or
through the cleanup queue: ``services/blob_cleanup.BlobJanitor.delete``)."""


@dataclass(frozen=True, slots=True)
class BlobDebt:
    """Files an index step stopped naming, recorded in that same step (transaction or batch).

    The index keeps the record until the files were handed to a ``BlobRelease``, so that a
    process that dies between the step and the delete of its files leaves a record rather
    than files nothing will ever delete: the debt sweep (``services/blob_cleanup``) settles
    what is left. Keys are never reused, so deleting a debt's files again is harmless.
    """

    id: str
    study: StudyKey
    blob_keys: tuple[str, ...]
    recorded_at: datetime


async def release_all(release: BlobRelease | None, blob_keys: Sequence[str]) -> bool:
    """Hand every key to ``release``; True when all were taken (their debt may go).

    A failure is logged and the rest are still handed over: the step that freed them is
    committed, so its request succeeded, and the debt it left is settled by the sweep.
    """
    if release is None:
        return False
    taken = True
    for blob_key in blob_keys:
        try:
            await release(blob_key)
        except Exception:
            log.warning(
                "could not release %s; its debt stays for the sweep", blob_key, exc_info=True
            )
            taken = False
    return taken


async def settle_debt(
    debt: BlobDebt,
    release: BlobRelease | None,
    forget: Callable[[BlobDebt], Awaitable[None]],
) -> bool:
    """Release a debt's files, then forget it; True when it is settled. Best effort: the
    step that recorded it has committed (its request succeeded), so a failure here is
    logged and leaves the debt for the next sweep."""
    if not await release_all(release, debt.blob_keys):
        return False
    try:
        await forget(debt)
    except Exception:
        log.warning("could not forget blob debt %s; the sweep will", debt.id, exc_info=True)
        return False
    return True


async def settled_keys(
    debt: BlobDebt | None,
    release: BlobRelease | None,
    forget: Callable[[BlobDebt], Awaitable[None]],
) -> list[str]:
    """``settle_debt`` for a commit that may have made nothing obsolete; the debt's keys."""
    if debt is None:
        return []
    await settle_debt(debt, release, forget)
    return list(debt.blob_keys)


@dataclass(frozen=True, slots=True)
class VersionedMetadata:
    """The DICOM JSON of a resource's stored instances, oldest first, and its version (see
    ``IndexStore.metadata_version``; None when there is no stored instance)."""

    version: str | None
    documents: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class NewVersion:
    """A bulk update's rewrite of one stored instance: the new version, its file already
    written under ``blob_key`` (a key no other attempt uses), and ``based_on``, the watermark
    of the version it was made from."""

    instance: StoredInstance
    blob_key: str
    based_on: int
    claim: str = ""
    """Names the attempt across repeats (a bulk update: the operation and ``based_on``), so
    a repeat after a crash takes back the reservation the first attempt left (Cosmos DB)."""

    @property
    def key(self) -> InstanceKey:
        return self.instance.key


@dataclass(frozen=True, slots=True)
class VersionsCommitted:
    """What ``commit_versions`` did."""

    committed: tuple[InstanceKey, ...]
    watermarks: tuple[int, ...]
    """The new versions' watermarks, one per ``committed`` instance."""
    changed: tuple[InstanceKey, ...]
    """Instances left as they were: their current version is no longer ``based_on``, or
    another store holds them (their new files are among ``obsolete_blob_keys``)."""
    obsolete_blob_keys: tuple[str, ...]
    """Files no version names any more: replaced intermediate versions (the original is kept)
    and the new files of ``changed`` instances."""
    tags_indexed: bool
    """Whether the extended query tag values of the committed versions were written in the
    same step (the local index); if not, the caller indexes them after."""


class IndexStore(Protocol):
    """The index: what is stored, where its file is, and what QIDO searches.

    Writes follow a two-step protocol so that an instance is either fully stored or invisible:
    ``begin_instance`` reserves the identity (and allocates the watermark that names the file),
    the file is written, then ``commit_instance`` makes file, metadata and index attributes
    visible in one step. ``abort_instance`` releases a reservation whose file failed.
    """

    async def begin_instance(self, key: InstanceKey, *, upsert: bool) -> Reservation:
        """Reserve ``key`` for a store (``InstanceBeingCreated`` while another holds it).

        A reservation is a lease: one that has not been renewed (``renew_instance``) for the
        index's lease time is an interrupted store's, and the next store takes it over, its
        file named in ``abandoned_blob_keys``; a store's file is also owed by a ``BlobDebt``
        of the takeover's own step (the commit releases it sooner; the debt covers a store
        that never gets there), a bulk update's, which may be staged, is not.
        """
        ...

    async def renew_instance(self, reservation: Reservation) -> None:
        """Renew the lease of a reservation still being worked on (a store writing a large
        file). ``InstanceBeingCreated`` when another store has taken it over: its lease ran
        out, and the commit would fail too."""
        ...

    async def commit_instance(
        self,
        reservation: Reservation,
        instance: StoredInstance,
        *,
        expires_at: datetime | None = None,
        release: BlobRelease | None = None,
    ) -> list[str]:
        """Make the instance visible; returns the blob keys it made obsolete: of the versions
        it replaced, and of interrupted stores whose reservations it took over.

        Those files are a debt of the commit (``BlobDebt``), released once it committed, as
        ``delete_instances`` releases its files: a process that dies in between leaves them
        to the debt sweep, not on disk for good.

        A commit is a store (STOW), and a store decides its study's expiry: the study expires
        at ``expires_at``, or never when it is None, whatever an earlier store said. It is
        written in the same step as the instance, so the sweep's conditional delete
        (``delete_instances(expired_by=...)``) sees either the old expiry with the old
        instances or the new one with the new instance.
        """
        ...

    async def abort_instance(self, reservation: Reservation) -> None: ...

    async def commit_versions(
        self, versions: Sequence[NewVersion], *, release: BlobRelease | None = None
    ) -> VersionsCommitted:
        """Make new versions of stored instances current, together (a bulk update's commit).

        Each instance's first version is kept as its original (served with
        ``original=True``); a version between the original and the new one is dropped.
        Summaries, metadata versions and the change feed (``update``) follow, as for a
        store. The versions are made visible as one unit: the local index in one
        transaction; Cosmos DB in one batch, or for a large study by staging them and
        flipping one commit document, so a reader sees all of them or none. An instance whose
        current version is no longer ``based_on`` is left alone (``changed``).

        The ``obsolete_blob_keys`` go to ``release`` once committed; the local index and
        Cosmos DB's one-instance commits record them as a debt first (``commit_instance``).
        """
        ...

    async def settle_versions(
        self, study_uid: str, *, partition: int, release: BlobRelease | None = None
    ) -> list[str]:
        """Finish a commit of the study's versions that a crash interrupted, where a backend
        commits in steps (Cosmos DB's staged commit: visible already, rolled forward here);
        returns the files no version uses any more, owed as ``commit_instance``'s are and
        released to ``release``. Nothing to do where a commit is one transaction. A bulk
        update runs it on a study before reading it.
        """
        ...

    async def get_instance(
        self, key: InstanceKey, *, original: bool = False
    ) -> InstanceRecord | None:
        """The instance's current version; with ``original``, its original version (the one
        first stored, kept by a bulk update), or the current one if it has no other."""
        ...

    async def list_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> list[InstanceRecord]:
        """Fully stored instances of a study or series, oldest first (``original``: as for
        ``get_instance``)."""
        ...

    async def get_metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
    ) -> list[bytes]:
        """Precomputed DICOM JSON objects (one per instance) of a study, series or instance."""
        ...

    async def metadata_version(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> str | None:
        """The watermarks of the resource's stored instances, oldest first, as one string,
        after a ``prefix:`` naming the index where its watermarks could repeat.

        Each watermark names one stored version of one instance, whose metadata never changes,
        so two equal strings mean equal ``get_metadata`` answers: what a metadata ETag is made
        of, read from the index alone. The local index names its database (a re-created one
        starts its watermarks again); Cosmos DB's counter never repeats, so it needs none.
        None when the resource has no stored instance. With ``original``, the watermarks of
        the versions ``get_instance(original=True)`` picks: the same string as without it
        exactly when no instance in scope has an original apart from its current version.
        """
        ...

    async def get_versioned_metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> VersionedMetadata:
        """``get_metadata`` and ``metadata_version`` of the same instances, in one read
        (``original``: of the versions ``get_instance`` picks with it).

        The version names exactly the documents returned with it (a store or delete racing
        the read changes both or neither), and the index is asked once, not twice: on Cosmos
        DB one point read or one query instead of two.
        """
        ...

    async def delete_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        release: BlobRelease | None = None,
        expired_by: datetime | None = None,
    ) -> list[str]:
        """Remove instances from the index; returns their blob keys (empty if none matched).

        Each step that removes instances (SQLite: the one transaction; Cosmos DB: a batch per
        step) records a ``BlobDebt`` for the files it freed, in that step. Once the step is
        committed its keys go to ``release`` (``release_all``) and, when all were taken, the
        debt is forgotten. Without ``release``, or when the process dies first, the debt stays
        for ``blob_debts``: no file outlives its index entry for good.

        With ``expired_by`` (a study's expiry sweep; a whole study only), the study's
        instances go only while its expiry is at or before that time: checked in the same
        transaction as the removal (SQLite), or with each step under the study summary's ETag
        (Cosmos DB), so a store that moved or cleared the expiry in between keeps the study
        (what a multi-step delete had already removed stays removed).
        """
        ...

    async def blob_debts(self, recorded_before: datetime, limit: int) -> list[BlobDebt]:
        """Up to ``limit`` debts recorded before that time, the oldest first where the
        adapter can order them: what steps left unsettled (the sweep's page)."""
        ...

    async def forget_blob_debt(self, debt: BlobDebt) -> None:
        """Remove a debt whose files were all handed over (nothing if it is gone already)."""
        ...

    async def expired_studies(self, now: datetime, limit: int) -> list[StudyKey]:
        """Up to ``limit`` studies whose expiry is at or before ``now``, the earliest first:
        the expiry sweep's page, found through an index on the expiry (no study scan)."""
        ...

    async def search(
        self,
        query: QueryDescription,
        *,
        metadata: frozenset[QueryLevel] = frozenset(),
        cached: Callable[[int], bool] | None = None,
    ) -> list[SearchMatch]:
        """QIDO-RS: one page of matches, newest first.

        The adapter compiles ``query`` (contract: ``dicom_core.query.conditions``) to its own
        query language and must agree with ``dicom_core.query.matching``. For each level in
        ``metadata`` it also returns the precomputed DICOM JSON of the latest stored instance
        of the match's entity at that level (study, series, or the instance itself). Only the
        attributes ``dicom_core.query.attributes.document_tags(query)`` names are read from
        those documents, so an adapter may return documents cut down to them.

        ``cached`` tells, by watermark, which of those documents the caller holds already (a
        watermark names one immutable version of an instance). An adapter for which reading a
        document is a request of its own (Cosmos DB: a point read) leaves those out, so the
        match carries None there; one that reads them with the page anyway may ignore it.
        """
        ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WrittenInstance:
    """What an ``InstanceWriter`` did: the new version and the files it made obsolete."""

    watermark: int
    blob_key: str
    # Files of the versions an upsert replaced, and of crashed attempts whose reservations
    # were taken over; released by the writer once the write is durable (its debt).
    obsolete_blob_keys: tuple[str, ...] = ()


class InstanceWriter(Protocol):
    """Stores an instance's file and index entry in one step, where a backend can.

    The local backend keeps both on one machine, so it reserves, moves the file into place and
    commits inside a single SQLite write transaction: one lock, one commit, no window in which
    a crash leaves a reservation behind. Backends without this capability use the two-step
    ``IndexStore`` protocol instead. Either way, a failed write leaves nothing visible and no
    stored file behind (``source`` itself stays the caller's to remove).

    A writer also indexes the instance's extended query tag values in its own transaction,
    which the two-step protocol leaves to the store's after-commit step.
    """

    async def write_instance(
        self,
        source: Path,
        instance: StoredInstance,
        *,
        upsert: bool,
        expires_at: datetime | None = None,
        release: BlobRelease | None = None,
    ) -> WrittenInstance:
        """Raises InstanceExists, InstanceBeingCreated or StorageUnavailable. ``expires_at``
        sets (or with None clears) the study's expiry, and the obsolete files are a debt
        released to ``release``, as in ``IndexStore.commit_instance``."""
        ...
