"""Store (STOW-RS): PS3.18 10.5 with the service's rules (conformance statement, "Store").

``StoreService.store_instances`` is the whole transaction, in this order:

1. the external metadata sent with the request (v2 ``msdicom-meta-*``) is validated, and a
   VR that contradicts the stored one refused, before the body is read: one bad value fails
   the whole transaction, so nothing may be stored (spec/external-metadata.md); so are the
   expiry headers (v2 ``msdicom-expiry-*``, ``services/expiry.py``);
2. the body's parts are received, spooled to disk (``staging.py``, through the caller);
3. each part is parsed once, checked, its identity reserved in the index, its file moved
   into the blob store, and only then committed to the index, so a reader sees either the
   whole instance or nothing. The commit sets its study's expiry as the request says (none:
   cleared). Failures are per instance (FailedSOPSequence); the status code summarises them;
4. the external metadata is saved for the studies stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dicom_core.domain.deflate import InflationDeferred
from dicom_core.domain.instance import (
    DEFAULT_MAX_INFLATED,
    INSTANCE_BEING_CREATED,
    INSTANCE_EXISTS,
    PROCESSING_FAILURE,
    SEARCHABLE_TAGS,
    STUDY_MISMATCH,
    VALIDATION_FAILURE,
    WARNING_SOP_CLASS_MISMATCH,
    WARNING_VALIDATION,
    InstanceRejected,
    ParsedInstance,
    parse_instance,
)
from dicom_core.domain.model import InstanceKey, Reservation, StoredInstance
from dicom_core.domain.timestamps import utc_now
from dicom_core.services.blob_cleanup import BlobJanitor
from dicom_core.services.expiry import ExpiryRequest, expiry_of_request
from dicom_core.services.external_metadata import (
    FIRST_API_VERSION,
    ExternalMetadataService,
    parse_headers,
)
from dicom_core.storage.ports import (
    BlobStore,
    ExternalValue,
    IndexStore,
    InstanceBeingCreated,
    InstanceExists,
    InstanceWriter,
    StorageUnavailable,
    WrittenInstance,
)

log = logging.getLogger(__name__)

#: How soon a reservation renewal that failed is tried again.
RENEW_RETRY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class StoredEntry:
    key: InstanceKey
    sop_class_uid: str
    retrieve_url: str
    warning_reason: int | None = None
    comments: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FailedEntry:
    failure_reason: int
    sop_class_uid: str | None
    sop_uid: str | None
    comments: tuple[str, ...] = ()


@dataclass(slots=True)
class StoreResult:
    """The outcome of one store request, per instance; renders the response dataset."""

    study_url: str | None = None
    stored: list[StoredEntry] = field(default_factory=list)
    failed: list[FailedEntry] = field(default_factory=list)

    @property
    def status(self) -> int:
        if not self.stored and not self.failed:
            return 204
        if not self.stored:
            return 409
        if self.failed or any(entry.warning_reason for entry in self.stored):
            return 202
        return 200

    def to_dicom_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.study_url and self.stored:
            body["00081190"] = {"vr": "UR", "Value": [self.study_url]}
        if self.failed:
            body["00081198"] = {"vr": "SQ", "Value": [_failed_item(f) for f in self.failed]}
        if self.stored:
            body["00081199"] = {"vr": "SQ", "Value": [_stored_item(s) for s in self.stored]}
        return body


def _comments(comments: Sequence[str]) -> dict[str, Any]:
    return {
        "vr": "SQ",
        "Value": [{"00000902": {"vr": "LO", "Value": [comment]}} for comment in comments],
    }


def _failed_item(entry: FailedEntry) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if entry.sop_class_uid:
        item["00081150"] = {"vr": "UI", "Value": [entry.sop_class_uid]}
    if entry.sop_uid:
        item["00081155"] = {"vr": "UI", "Value": [entry.sop_uid]}
    item["00081197"] = {"vr": "US", "Value": [entry.failure_reason]}
    if entry.comments:
        item["00741048"] = _comments(entry.comments)
    return item


def _stored_item(entry: StoredEntry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [entry.sop_class_uid]},
        "00081155": {"vr": "UI", "Value": [entry.key.sop_uid]},
        "00081190": {"vr": "UR", "Value": [entry.retrieve_url]},
    }
    if entry.warning_reason is not None:
        item["00081196"] = {"vr": "US", "Value": [entry.warning_reason]}
        if entry.comments:
            item["00741048"] = _comments(entry.comments)
    return item


def instance_url(base_url: str, key: InstanceKey) -> str:
    return f"{base_url}/studies/{key.study_uid}/series/{key.series_uid}/instances/{key.sop_uid}"


#: Parts up to this size are parsed on the event loop: their header is small, so a parse takes
#: about a millisecond, less than handing it to a thread and back under load.
INLINE_PARSE_BYTES = 4 << 20


AfterCommit = Callable[[InstanceKey, int, bytes], Awaitable[None]]
#: Reads the request body into spooled part files (the web layer's, for HTTP): called once the
#: request's external metadata is known to be valid, so a refused request is never read.
ReceiveParts = Callable[[], Awaitable[Sequence[Path]]]


@dataclass(slots=True)
class _Outage:
    """The storage outage a request met after storing some of its parts, if it met one."""

    error: StorageUnavailable | None = None

    def failure(self, sop_class_uid: str | None, sop_uid: str | None) -> FailedEntry:
        return FailedEntry(
            PROCESSING_FAILURE,
            sop_class_uid,
            sop_uid,
            (f"The instance could not be stored: {self.error}.",),
        )


class StoreService:
    def __init__(
        self,
        index: IndexStore,
        blobs: BlobStore,
        janitor: BlobJanitor,
        *,
        external_metadata: ExternalMetadataService,
        writer: InstanceWriter | None = None,
        after_commit: AfterCommit | None = None,
        lease_seconds: float = 120,
        max_inflated: int = DEFAULT_MAX_INFLATED,
    ) -> None:
        """``lease_seconds``: how long the index keeps a reservation without renewal
        (``Settings.reservation_lease_seconds``); a two-step store renews it every third of
        that while it writes the file. ``max_inflated``: the most a deflated part may
        inflate to (``Settings.max_decoded_bytes``)."""
        self._max_inflated = max_inflated
        self._index = index
        self._renew_every = lease_seconds / 3
        self._blobs = blobs
        self._janitor = janitor
        self._external_metadata = external_metadata
        # A backend that can store file and index entry in one step (local) passes its writer;
        # otherwise the two-step reserve/commit protocol of the index is used.
        self._writer = writer
        # Indexes a committed instance for extended query tags being added or ready, after a
        # two-step store (a writer does it in its own transaction: ``InstanceWriter``).
        self._after_commit = after_commit

    async def store_instances(
        self,
        receive_parts: ReceiveParts,
        *,
        partition: int,
        study_uid: str | None,
        upsert: bool,
        api_version: int,
        base_url: str,
        external_metadata: Sequence[tuple[str, str]] = (),
        expiry_headers: Sequence[tuple[str, str]] = (),
    ) -> StoreResult:
        """One store request: check ``external_metadata`` (the ``msdicom-meta-*`` name and
        value pairs sent with it) and ``expiry_headers`` (``msdicom-expiry-*``), receive the
        parts, store each one, save the metadata for the studies stored. ``partition`` is the
        data partition stored into; ``study_uid`` the study the URL names (each instance must
        belong to it); ``upsert`` replaces instances already stored (PUT). ``base_url`` is
        what RetrieveURLs start with (the partition's URL where partitions are on)."""
        expiry = expiry_of_request(expiry_headers, api_version)
        external = await self._check_external_metadata(external_metadata, api_version)
        parts = await receive_parts()
        result = await self._store_parts(
            parts,
            partition=partition,
            study_uid=study_uid,
            upsert=upsert,
            api_version=api_version,
            base_url=base_url,
            expiry=expiry,
        )
        if external and result.stored:
            studies = sorted({entry.key.study_uid for entry in result.stored})
            await self._external_metadata.save(studies, external, partition=partition)
        return result

    async def _check_external_metadata(
        self, headers: Sequence[tuple[str, str]], api_version: int
    ) -> list[ExternalValue]:
        """The validated values, or a 400 (malformed) or 409 (VR conflict); none before v2."""
        if not headers or api_version < FIRST_API_VERSION:
            return []
        values = parse_headers(headers)
        await self._external_metadata.check(values)
        return values

    async def _store_parts(
        self,
        parts: Sequence[Path],
        *,
        partition: int,
        study_uid: str | None,
        upsert: bool,
        api_version: int,
        base_url: str,
        expiry: ExpiryRequest | None,
    ) -> StoreResult:
        """Store every spooled part; each part's file is consumed or removed.

        A storage outage (``StorageUnavailable``, ``StorageFull``) before anything is stored
        fails the whole request (503, 507): the client retries it whole. Once a part is
        stored, an outage fails the part it hits and every part after it (272, with the
        reason), without trying them: each would wait out the same outage (a locked index
        waits 30 s a part), and the answer must still come in time to list every instance the
        request did store.
        """
        result = StoreResult(study_url=f"{base_url}/studies/{study_uid}" if study_uid else None)
        outage: _Outage = _Outage()
        try:
            for path in parts:
                outcome = await self._store_one(
                    path,
                    partition=partition,
                    study_uid=study_uid,
                    upsert=upsert,
                    api_version=api_version,
                    base_url=base_url,
                    expiry=expiry,
                    outage=outage if result.stored else None,
                )
                if isinstance(outcome, StoredEntry):
                    result.stored.append(outcome)
                else:
                    result.failed.append(outcome)
                # Small parts parse on the event loop: let the worker's other requests run
                # between them, however many parts this request has.
                await asyncio.sleep(0)
        finally:
            for path in parts:
                path.unlink(missing_ok=True)
        return result

    async def _store_one(
        self,
        path: Path,
        *,
        partition: int,
        study_uid: str | None,
        upsert: bool,
        api_version: int,
        base_url: str,
        expiry: ExpiryRequest | None,
        outage: _Outage | None = None,
    ) -> StoredEntry | FailedEntry:
        """Store one part. With ``outage`` (see ``_store_parts``), a storage outage is this
        part's failure instead of the request's, recorded there so that later parts fail
        with it at once."""
        try:
            size = path.stat().st_size
            parsed = None
            if size <= INLINE_PARSE_BYTES:
                with contextlib.suppress(InflationDeferred):  # deflated: parsed in a thread
                    parsed = parse_instance(
                        path,
                        size,
                        partition=partition,
                        max_inflated=self._max_inflated,
                        defer_inflation=True,
                    )
            if parsed is None:
                parsed = await asyncio.to_thread(
                    parse_instance,
                    path,
                    size,
                    partition=partition,
                    max_inflated=self._max_inflated,
                )
        except InstanceRejected as rejected:
            return FailedEntry(
                rejected.failure_code,
                rejected.sop_class_uid,
                rejected.sop_uid,
                tuple(rejected.comments),
            )
        key = parsed.key
        if study_uid is not None and key.study_uid != study_uid:
            return FailedEntry(
                STUDY_MISMATCH,
                parsed.sop_class_uid,
                key.sop_uid,
                (
                    f"StudyInstanceUID {key.study_uid} of the instance does not match"
                    f" {study_uid} of the request URL.",
                ),
            )
        warning_reason: int | None = None
        comments = tuple(problem.error_comment for problem in parsed.problems)
        if parsed.problems:
            searchable = [p for p in parsed.problems if p.tag in SEARCHABLE_TAGS]
            if api_version < 2 and searchable:
                return FailedEntry(
                    VALIDATION_FAILURE,
                    parsed.sop_class_uid,
                    key.sop_uid,
                    tuple(p.error_comment for p in searchable),
                )
            warning_reason = WARNING_VALIDATION if api_version >= 2 else WARNING_SOP_CLASS_MISMATCH
        if outage is not None and outage.error is not None:
            return outage.failure(parsed.sop_class_uid, key.sop_uid)
        try:
            failure = await self._write(path, parsed, upsert, expiry)
        except StorageUnavailable as error:
            if outage is None:
                raise
            log.warning("storing %s failed: %s", key, error)
            outage.error = error
            return outage.failure(parsed.sop_class_uid, key.sop_uid)
        if failure is not None:
            return failure
        return StoredEntry(
            key=key,
            sop_class_uid=parsed.sop_class_uid,
            retrieve_url=instance_url(base_url, key),
            warning_reason=warning_reason,
            comments=comments,
        )

    async def _write(
        self, path: Path, parsed: ParsedInstance, upsert: bool, expiry: ExpiryRequest | None
    ) -> FailedEntry | None:
        key = parsed.key
        stored: StoredInstance = parsed  # the problems ride along; the index keeps the rest
        # "RelativeToNow": from this instance's store, so the study expires that long after
        # the last instance of the request was stored.
        expires_at = expiry.deadline(utc_now()) if expiry is not None else None
        try:
            if self._writer is not None:
                written = await self._writer.write_instance(
                    path, stored, upsert=upsert, expires_at=expires_at, release=self._janitor.delete
                )
            else:
                written = await self._write_in_steps(path, stored, upsert, expires_at)
        except InstanceExists:
            return FailedEntry(
                INSTANCE_EXISTS,
                parsed.sop_class_uid,
                key.sop_uid,
                (
                    "An instance with the same study, series and SOP instance UIDs is already"
                    " stored; delete it first or use PUT to replace it.",
                ),
            )
        except InstanceBeingCreated:
            return FailedEntry(
                INSTANCE_BEING_CREATED,
                parsed.sop_class_uid,
                key.sop_uid,
                ("The same instance is being stored by another request.",),
            )
        except StorageUnavailable:
            raise
        except Exception:
            log.exception("storing %s failed", key)
            return FailedEntry(
                PROCESSING_FAILURE,
                parsed.sop_class_uid,
                key.sop_uid,
                ("The instance could not be stored because of an internal error.",),
            )
        # Committed: from here on nothing may report the instance as not stored. The files it
        # made obsolete went to the janitor with the commit, or stay its debt (``BlobDebt``).
        if self._writer is None and self._after_commit is not None:
            try:
                await self._after_commit(key, written.watermark, parsed.metadata_json)
            except Exception:
                log.exception("indexing %s for extended query tags failed", key)
        return None

    async def _write_in_steps(
        self, path: Path, stored: StoredInstance, upsert: bool, expires_at: datetime | None
    ) -> WrittenInstance:
        """The two-step protocol: reserve, write the file, commit (undone on failure)."""
        reservation = await self._index.begin_instance(stored.key, upsert=upsert)
        try:
            async with self._holding(reservation):
                await self._blobs.put_file(reservation.blob_key, path)
        except BaseException:
            await self._undo(reservation.blob_key, reservation)
            raise
        try:
            obsolete = await self._index.commit_instance(
                reservation, stored, expires_at=expires_at, release=self._janitor.delete
            )
        except InstanceExists as exc:
            # Another request stored it between our reservation and commit: a race (45071).
            await self._after_unknown_commit(reservation)
            raise InstanceBeingCreated(stored.key) from exc
        except BaseException:
            await self._after_unknown_commit(reservation)
            raise
        return WrittenInstance(
            watermark=reservation.watermark,
            blob_key=reservation.blob_key,
            obsolete_blob_keys=tuple(obsolete),
        )

    @contextlib.asynccontextmanager
    async def _holding(self, reservation: Reservation) -> AsyncIterator[None]:
        """Renew the reservation's lease while the body runs, so a large file's upload is
        never taken for an interrupted store's; a renewal that fails is tried again after
        ``RENEW_RETRY_SECONDS`` (if the lease runs out meanwhile, the commit fails with
        45071)."""

        done = asyncio.Event()

        async def renew() -> None:
            wait = self._renew_every
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), wait)
                    return
                try:
                    await self._index.renew_instance(reservation)
                    wait = self._renew_every
                except InstanceBeingCreated:
                    log.warning("the reservation of %s was taken over", reservation.key)
                    return
                except Exception:
                    # Sooner than a turn: two failed turns in a row would let it lapse.
                    log.warning("renewing the reservation of %s failed", reservation.key)
                    wait = min(RENEW_RETRY_SECONDS, self._renew_every)

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            # A renewal under way is let finish rather than cancelled: cancelled after its
            # write, it would leave the index's kept ETag behind the reservation's.
            done.set()
            await renewing

    async def _after_unknown_commit(self, reservation: Reservation) -> None:
        """A commit that failed may have been applied, or may yet be: its batch can reach
        Cosmos DB and land after its answer was given up on (a timeout, an outage, a cancelled
        request). Even a refusal does not tell: the index retries a commit whose answer was
        lost, and the retry is refused when the first attempt landed and a bulk update or a
        store came after it (the instance exists, the reservation is gone), while the file is
        the original's by then. Deleting the file now could leave a committed version without
        it, so the janitor deletes it later, and only if the index does not name it then
        (``BlobJanitor.delete_unless_named``). The reservation is released first, best
        effort, which makes a commit still in flight fail."""
        try:
            await self._index.abort_instance(reservation)
        except Exception:
            log.warning("releasing reservation %s failed", reservation, exc_info=True)
        await self._janitor.delete_unless_named(reservation)

    async def _undo(self, blob_key: str, reservation: Reservation) -> None:
        try:
            await self._index.abort_instance(reservation)
        except Exception:
            log.exception("releasing reservation %s failed", reservation)
        # Never committed, so never visible: no retrieve can be reading it; no delay needed.
        await self._janitor.delete(blob_key, unseen=True)
