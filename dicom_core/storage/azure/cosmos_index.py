"""The azure index adapter: ``IndexStore`` on Cosmos DB (NoSQL API, async SDK).

Documents and containers are described in ``cosmos_schema``; how a write changes them in
``cosmos_docs``. The protocol of the port maps onto Cosmos like this:

- ``begin_instance`` creates the reservation document with create-only semantics (a second
  store of the same instance gets 409 and answers 45071), after checking that no stored
  instance is in the way; the watermark comes from an atomic ``incr`` patch on a counter.
  Check and create are two requests: a store committed between them lets a POST reserve an
  instance that is stored, and that POST's commit refuses it, releasing the reservation
  before it answers (no store that lost leaves a reservation behind).
- ``commit_instance`` writes, in one transactional batch in the study's partition: the
  instance document, the deletion of the reservation, the series and study summaries and a
  pending change for the change feed. Every replace is guarded by the ETag read just before,
  so two stores in the same study never lose each other's counts: the loser re-reads and
  tries again. A reader sees the instance with its summaries, or nothing.
- ``delete_instances`` removes instances in batches of the same kind (oldest first, so the
  summaries stay true after each batch). The expiry sweep's delete checks, at each batch,
  that the study summary it read still says expired; the batch's ETag on that summary makes
  the check hold until the batch applies.
- ``expired_studies`` is one cross-partition query on the study summaries (``expiresAt``) of
  each index container, Microsoft.Default's and the other data partitions'.

Data partitions: every step works on one study of one partition, a ``PlacedStudy``
(``cosmos_placement``): Microsoft.Default's studies in ``index`` keyed by the study, the
others' in ``partitioned`` keyed by ``[dp, study]``, so a study's batch is one logical
partition on both.
- After its batches, a store or delete runs the change feed's sequencer on its study's pending
  changes (``cosmos_change_feed``), best effort: the pending changes are durable, and every
  read of the feed sequences what is left.

A write Cosmos DB acknowledges is durable (committed to a quorum of its replicas), so an
acknowledged store needs no sync of its own; ``DICOM_DURABLE_WRITES`` is a local setting.

Every call runs on the backend's ``CosmosSession`` (retries, container recreation, counters).
The writes live here; the propagation of changed summary keys to their copies is
``cosmos_propagation``'s, the reads ``cosmos_index_reads``'s, one batch of a delete
``cosmos_delete_step``'s, and the values of extended query tags and external metadata (searched
and deleted with the instances) ``cosmos_extended_values``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosBatchOperationError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from dicom_core.domain.identifiers import blob_key_for
from dicom_core.domain.model import (
    InstanceKey,
    InstanceRecord,
    Reservation,
    StoredInstance,
    StudyKey,
)
from dicom_core.domain.timestamps import seconds_since, timestamp_of, utc_timestamp
from dicom_core.query.conditions import QueryDescription, QueryLevel
from dicom_core.query.results import SearchMatch
from dicom_core.storage.azure import cosmos_docs as docs
from dicom_core.storage.azure import cosmos_index_reads as reads
from dicom_core.storage.azure.cosmos_blob_debts import (
    debt_document,
    debt_of,
    forget_debt,
    read_debts,
)
from dicom_core.storage.azure.cosmos_change_feed import sequence_pending
from dicom_core.storage.azure.cosmos_delete_step import delete_step, expired
from dicom_core.storage.azure.cosmos_extended_values import drop_values
from dicom_core.storage.azure.cosmos_io import (
    BatchConflict,
    conflict_backoff,
    execute_plan,
    nothing,
    query_items,
    read_item,
)
from dicom_core.storage.azure.cosmos_placement import Containers as IndexContainers
from dicom_core.storage.azure.cosmos_placement import (
    PlacedStudy,
    document_placement,
    placement_of,
)
from dicom_core.storage.azure.cosmos_propagation import propagate_safely
from dicom_core.storage.azure.cosmos_schema import (
    INSTANCE,
    METAPART,
    ORIGINAL,
    RESERVATION,
    SERIES,
    STUDY,
    STUDY_DOC_ID,
    WATERMARK_COUNTER,
    instance_id,
    original_id,
    reservation_id,
    series_id,
)
from dicom_core.storage.azure.cosmos_session import Containers, CosmosSession, advance_counter
from dicom_core.storage.azure.cosmos_staged_versions import (
    NEXT,
    StagedVersions,
    VersionsOutcome,
    read_version_documents,
)
from dicom_core.storage.ports import (
    BlobDebt,
    BlobRelease,
    InstanceBeingCreated,
    InstanceChanged,
    InstanceExists,
    NewVersion,
    StorageUnavailable,
    VersionedMetadata,
    VersionsCommitted,
    release_all,
    settle_debt,
    settled_keys,
)

log = logging.getLogger(__name__)

Doc = dict[str, Any]


class CosmosIndexStore:
    """``IndexStore`` on the ``index``, ``partitioned`` and ``system`` containers (see
    ``cosmos_schema``; which container a partition's study is in: ``cosmos_placement``)."""

    def __init__(
        self,
        session: CosmosSession,
        *,
        stale_create_seconds: float = 3600,
        unrenewed_lease_seconds: float | None = None,
    ) -> None:
        """``stale_create_seconds``: the lease of a store's reservation, which the store
        renews while it uploads. ``unrenewed_lease_seconds`` (default the same): the lease
        of a bulk update's reservations, which nothing renews while the update stages and
        commits a large study; each reservation document says which lease it has."""
        self._session = session
        self._stale_seconds = stale_create_seconds
        self._unrenewed_lease = unrenewed_lease_seconds or stale_create_seconds
        self._reservation_etags: dict[tuple[InstanceKey, int], str] = {}
        self._staged = StagedVersions(
            session, self._run_batch, self._drop_metaparts, self.abort_instance
        )

    @property
    def session(self) -> CosmosSession:
        """The session this store runs on (the backend's other Cosmos stores share it)."""
        return self._session

    def _is_stale(self, reservation: Doc) -> bool:
        """Whether a reservation's lease ran out: not renewed (``heldAt``; made: ``createdAt``)
        for the lease time."""
        held_at = reservation.get("heldAt") or reservation.get("createdAt")
        lease = float(reservation.get("lease") or self._stale_seconds)
        return seconds_since(str(held_at)) > lease

    # -- writes -----------------------------------------------------------------------------

    async def begin_instance(self, key: InstanceKey, *, upsert: bool) -> Reservation:
        """Reserve ``key`` for a store (``_begin``).

        A POST refused because the instance is stored (``InstanceExists``) leaves no
        reservation behind, even when it is refused on a retry: the attempt that failed
        transiently may have had its reservation created before its answer was lost, and the
        retry then finds the instance that another store committed in between. That
        reservation is ours (its owner token), so it is released before the refusal.
        """
        owner = uuid.uuid4().hex
        attempts = 0

        async def reserve(c: Containers) -> Reservation:
            nonlocal attempts
            attempts += 1
            return await self._begin(c, key, upsert, owner)

        try:
            return await self._session.run(reserve)
        except InstanceExists:
            if attempts > 1:
                await self._release_refused(key, lambda held: held.get("owner") == owner)
            raise

    async def _begin(
        self,
        c: Containers,
        key: InstanceKey,
        upsert: bool,
        owner: str,
        blob_key: str | None = None,
    ) -> Reservation:
        """Reserve ``key``; the file's key is made from the new watermark unless the caller
        wrote the file already (``blob_key``). A caller that repeats itself after a crash
        (a bulk update's step) passes the same ``owner`` and takes its own reservation back."""
        study = _study_of(key)
        index, pk = study.container(c), study.key
        rid = reservation_id(key.series_uid, key.sop_uid)
        for _ in range(3):
            if upsert:
                existing, watermark = None, await advance_counter(c.system, WATERMARK_COUNTER)
            else:
                existing, watermark = await asyncio.gather(
                    read_item(index, instance_id(key.series_uid, key.sop_uid), pk),
                    advance_counter(c.system, WATERMARK_COUNTER),
                )
            if existing is not None:
                raise InstanceExists(key)
            doc: Doc = {
                "id": rid,
                **study.fields(),
                "kind": RESERVATION,
                "study": key.study_uid,
                "series": key.series_uid,
                "sop": key.sop_uid,
                "wm": watermark,
                "blobKey": blob_key
                or blob_key_for(key.study_uid, key.series_uid, key.sop_uid, watermark),
                "owner": owner,
                "upsert": upsert,
                "createdAt": utc_timestamp(),
                **({} if blob_key is None else {"lease": self._unrenewed_lease}),
            }
            abandoned: list[str] = []
            try:
                held = dict(await index.create_item(doc))
            except CosmosResourceExistsError:
                current = await read_item(index, rid, pk)
                if current is None:
                    continue  # released between our create and our read: try again
                own = current.get("owner") == owner
                if own and (blob_key is None or current.get("blobKey") == blob_key):
                    held = current  # our own earlier attempt, whose answer was lost
                elif not own and not self._is_stale(current):
                    raise InstanceBeingCreated(key) from None
                else:
                    # A crashed attempt, or an earlier attempt of ours with a file of its own
                    # (a repeated bulk update step): take its reservation over, delete its
                    # file. Its commit, if it still comes, fails on the reservation's ETag.
                    held = await self._take_over(index, study, key, doc, current, own=own)
                    abandoned.append(str(current["blobKey"]))
            wm = int(held["wm"])
            self._reservation_etags[(key, wm)] = str(held["_etag"])
            return Reservation(
                key=key,
                watermark=wm,
                blob_key=str(held["blobKey"]),
                upsert=upsert,
                abandoned_blob_keys=tuple(abandoned),
            )
        raise InstanceBeingCreated(key)

    @staticmethod
    async def _take_over(
        index: Any, study: PlacedStudy, key: InstanceKey, doc: Doc, current: Doc, *, own: bool
    ) -> Doc:
        """Replace the lapsed reservation ``current`` with ``doc`` under its ETag.

        A crashed store's file is owed in the same batch (a blob debt): nothing names it from
        this step on (its commit needed this reservation's ETag), and the commit that
        releases it may never come (this store fails, or dies). A bulk update's reservation
        (one with a ``lease`` of its own, ours or another run's) is not: its version may be
        staged under ``next`` and flipped, or rolled forward, whatever became of the
        reservation since, so its file may be named yet; the commits that drop it read back
        what is named before releasing anything (``cosmos_staged_versions``).
        """
        rid = str(doc["id"])
        if own or current.get("lease") is not None:
            try:
                return dict(
                    await index.replace_item(
                        rid,
                        doc,
                        etag=current["_etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                )
            except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                raise InstanceBeingCreated(key) from None
        try:
            results = await index.execute_item_batch(
                batch_operations=[
                    ("replace", (rid, doc), {"if_match_etag": current["_etag"]}),
                    ("create", (debt_document(study, [str(current["blobKey"])]),)),
                ],
                partition_key=study.key,
            )
        except CosmosBatchOperationError as exc:
            if exc.status_code in (404, 409, 412):  # another store took it over first
                raise InstanceBeingCreated(key) from None
            raise
        return dict(results[0]["resourceBody"])

    async def renew_instance(self, reservation: Reservation) -> None:
        """Patch the reservation's ``heldAt`` under the ETag this store last saw, and keep
        the new one for the commit. A failed condition is checked by reading: an earlier
        attempt whose answer was lost may have renewed it (same watermark, new ETag), and
        the patch is tried again under the ETag read."""
        key, watermark = reservation.key, reservation.watermark
        study = _study_of(key)
        rid = reservation_id(key.series_uid, key.sop_uid)

        async def renew(c: Containers) -> None:
            index = study.container(c)
            for _ in range(3):
                etag = self._reservation_etags.get((key, watermark))
                if etag is not None:
                    try:
                        held = await index.patch_item(
                            rid,
                            partition_key=study.key,
                            patch_operations=[
                                {"op": "set", "path": "/heldAt", "value": utc_timestamp()}
                            ],
                            etag=etag,
                            match_condition=MatchConditions.IfNotModified,
                        )
                        self._reservation_etags[(key, watermark)] = str(held["_etag"])
                        return
                    except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                        pass
                current = await read_item(index, rid, study.key)
                if current is None or int(current["wm"]) != watermark:
                    raise InstanceBeingCreated(key)
                self._reservation_etags[(key, watermark)] = str(current["_etag"])
            raise InstanceBeingCreated(key)  # kept changing under us: someone else holds it

        await self._session.run(renew)

    async def commit_instance(
        self,
        reservation: Reservation,
        instance: StoredInstance,
        *,
        expires_at: datetime | None = None,
        release: BlobRelease | None = None,
    ) -> list[str]:
        expiry = None if expires_at is None else timestamp_of(expires_at)
        try:
            debt = await self._commit_version(
                reservation, instance, None, expiry, owed=reservation.abandoned_blob_keys
            )
        except InstanceExists:
            # A POST that lost the race to another store of the instance. ``_begin`` checks
            # that the instance is not stored, then reserves; a store that committed in
            # between (its batch deleting its own reservation) lets the reservation be made,
            # and only this commit finds the instance. The loser releases its reservation
            # before it is told, so it leaves nothing behind whatever its caller does.
            watermark = reservation.watermark
            self._reservation_etags.pop((reservation.key, watermark), None)
            await self._release_refused(reservation.key, lambda held: int(held["wm"]) == watermark)
            raise
        await self._sequence_changes(_study_of(reservation.key))
        return await settled_keys(debt, release, self.forget_blob_debt)

    async def commit_versions(
        self, versions: Sequence[NewVersion], *, release: BlobRelease | None = None
    ) -> VersionsCommitted:
        """A study's versions, visible to readers all at once.

        A batch holds at most 100 operations and 2 MB, and each new version takes four
        (instance, original, reservation, pending change) beside the summaries, so a study of
        up to ``STUDY_BATCH_VERSIONS`` instances is made visible in one batch. A larger one
        (or one with a version whose metadata needs slices) is staged, flipped by one batch
        and rolled forward (``cosmos_staged_versions``). A study of more series than one
        flip batch holds (``FLIP_SERIES``), and a chunk that keeps losing races with other
        writers, are committed in chunks and instance by instance instead. A repeated step
        reserves with the same owner (the version's claim) and takes back what an earlier
        attempt left. The files of the versions a batch drops are a debt of that batch; the
        rest (a staged commit's, which a crash leaves for ``settle_versions`` to find, and the
        new files of versions not committed) go to ``release`` after the commit.
        """
        outcome = VersionsOutcome()
        reserved: list[tuple[NewVersion, Reservation]] = []
        for version in versions:
            try:
                reservation = await self._reserve_for(version)
            except InstanceBeingCreated:
                outcome.changed.append(version.key)
                outcome.obsolete.append(version.blob_key)
                continue
            outcome.obsolete.extend(reservation.abandoned_blob_keys)
            reserved.append((version, reservation))
        alone = [item for item in reserved if docs.split_metadata(_packed(item[0]))]
        together = [item for item in reserved if item not in alone]
        chunks = _study_chunks(together)
        series = {version.key.series_uid for version, _ in reserved}
        if (len(chunks) > 1 or (alone and len(reserved) > 1)) and len(series) <= FLIP_SERIES:
            alone = await self._staged.commit(reserved, outcome)
            chunks = []
        for chunk in chunks:
            if not await self._commit_together(chunk, outcome):
                alone.extend(chunk)
        for version, reservation in alone:
            try:
                debt = await self._commit_version(reservation, version.instance, version.based_on)
            except (InstanceChanged, InstanceBeingCreated):
                # Changed meanwhile, or its reservation taken over by a store: left alone.
                await self.abort_instance(reservation)
                outcome.changed.append(version.key)
                outcome.obsolete.append(version.blob_key)
                continue
            if debt is not None:
                outcome.debts.append(debt)
            outcome.committed.append(version.key)
            outcome.watermarks.append(reservation.watermark)
        for version, reservation in reserved:
            self._reservation_etags.pop((version.key, reservation.watermark), None)
        obsolete: list[str] = []
        if versions:
            study = _study_of(versions[0].key)
            await self._sequence_changes(study)
            obsolete = await self._unnamed(study, outcome.obsolete)
        owed = await self._settle_all(outcome.debts, release)
        await release_all(release, obsolete)
        return VersionsCommitted(
            committed=tuple(outcome.committed),
            watermarks=tuple(outcome.watermarks),
            changed=tuple(outcome.changed),
            obsolete_blob_keys=(*obsolete, *owed),
            tags_indexed=False,
        )

    async def _unnamed(self, study: PlacedStudy, blob_keys: Sequence[str]) -> list[str]:
        """Those of ``blob_keys`` that no instance of the study names (current, staged
        ``next``, or original). A file taken over from an earlier run of the same step may
        be visible by now: that run's staged commit flipped after the takeover and rolls
        forward without the reservation. A review deleted the current versions' files so."""
        if not blob_keys:
            return []
        params: dict[str, object] = {"@instance": INSTANCE, "@original": ORIGINAL}
        where = study.where(params)
        rows = await self._session.run(
            lambda c: query_items(
                study.container(c),
                f"SELECT c.blobKey, c.next.blobKey AS staged FROM c WHERE {where}"
                " AND (c.kind = @instance OR c.kind = @original)",
                params,
                partition=study.key,
            )
        )
        named = {
            str(row[field]) for row in rows for field in ("blobKey", "staged") if row.get(field)
        }
        return [blob for blob in dict.fromkeys(blob_keys) if blob not in named]

    async def _commit_together(
        self, chunk: list[tuple[NewVersion, Reservation]], outcome: VersionsOutcome
    ) -> bool:
        """Commit ``chunk`` (versions of one study) in one batch; False, having committed
        nothing, when it should go instance by instance (it kept losing races)."""
        study = _study_of(chunk[0][0].key)

        async def attempt(c: Containers) -> bool | None:
            now = utc_timestamp()
            index = study.container(c)
            found = await read_version_documents(c, study, [v.key for v, _ in chunk])
            by_id = {str(doc["id"]): doc for doc in found}
            summary = by_id.get(STUDY_DOC_ID)
            series_docs = {str(d["series"]): d for d in found if d["kind"] == SERIES}
            items: list[docs.VersionItem] = []
            for version, reservation in list(chunk):
                key = version.key
                old = by_id.get(instance_id(key.series_uid, key.sop_uid))
                held = by_id.get(reservation_id(key.series_uid, key.sop_uid))
                if old is not None and int(old["wm"]) == reservation.watermark:
                    chunk.remove((version, reservation))  # committed already; answer lost
                    outcome.committed.append(key)
                    outcome.watermarks.append(reservation.watermark)
                    continue
                if old is None or int(old["wm"]) != version.based_on or held is None:
                    return None  # changed, or lost its reservation: decided one by one
                if int(held["wm"]) != reservation.watermark:
                    return None
                items.append(
                    docs.VersionItem(
                        reservation=reservation,
                        reservation_etag=str(held["_etag"]),
                        instance_doc=docs.instance_document(
                            reservation,
                            version.instance,
                            now=now,
                            packed=_packed(version),
                            parts=0,
                        ),
                        old_instance=old,
                    )
                )
            if not items:
                return True
            if summary is None or any(
                i.reservation.key.series_uid not in series_docs for i in items
            ):
                return None
            plan = docs.plan_versions(items, series_docs, summary, now)
            # The versions between an original and these go (each document's own file).
            between = [i.old_instance for i in items if i.old_instance.get("hasOriginal")]
            freed = [str(old["blobKey"]) for old in between]
            debt = debt_document(study, freed) if freed else None
            if debt is not None:
                plan.add("blob debt", ("create", (debt,)))
            try:
                await self._execute(c, study, plan)
            except BatchConflict:
                return False
            if debt is not None:
                outcome.debts.append(debt_of(debt))
            if plan.propagate:
                await propagate_safely(index, study)
            for item in items:
                outcome.committed.append(item.reservation.key)
                outcome.watermarks.append(item.reservation.watermark)
                self._reservation_etags.pop(
                    (item.reservation.key, item.reservation.watermark), None
                )
            for old in between:
                if int(old.get("metaParts") or 0):
                    await self._drop_metaparts(study, int(old["wm"]))
            return True

        for backoff in conflict_backoff():
            done = await self._session.run(attempt)
            if done is None:
                return False
            if done:
                return True
            await asyncio.sleep(backoff)
        return False

    async def _reserve_for(self, version: NewVersion) -> Reservation:
        """Reserve a bulk update's new version, its file already written; its claim is the
        owner, so a repeated step takes the reservation an earlier attempt left back."""
        owner = version.claim or version.blob_key

        async def reserve(c: Containers) -> Reservation:
            return await self._begin(c, version.key, True, owner, version.blob_key)

        return await self._session.run(reserve)

    async def _commit_version(
        self,
        reservation: Reservation,
        instance: StoredInstance,
        based_on: int | None,
        expires_at: str | None = None,
        *,
        owed: Sequence[str] = (),
    ) -> BlobDebt | None:
        """Commit one version; the debt of the files it made obsolete (those it replaced,
        and ``owed``), recorded in its batch; None when there were none."""
        packed = docs.pack_metadata(instance.metadata_json)
        parts = docs.split_metadata(packed)
        attempts = 0

        async def attempt(c: Containers) -> BlobDebt | None:
            nonlocal attempts
            attempts += 1
            # A POST's reservation was made after its check found no instance. Its first
            # attempt need not read the instance again: its batch creates the document, and
            # fails if a store committed one since. A retry reads it, since the attempt
            # whose answer was lost may have committed.
            assume_new = attempts == 1 and not reservation.upsert and based_on is None
            return await self._commit(
                c, reservation, instance, packed, parts, based_on, expires_at, assume_new, owed
            )

        try:
            debt = await self._session.run(attempt)
        except BaseException:
            if parts:
                await self._drop_metaparts(_study_of(reservation.key), reservation.watermark)
            raise
        self._reservation_etags.pop((reservation.key, reservation.watermark), None)
        return debt

    async def _commit(
        self,
        c: Containers,
        reservation: Reservation,
        instance: StoredInstance,
        packed: str,
        parts: list[str],
        based_on: int | None = None,
        expires_at: str | None = None,
        assume_new: bool = False,
        owed: Sequence[str] = (),
    ) -> BlobDebt | None:
        """One attempt at the commit batch; with ``assume_new`` it takes the instance as not
        stored without reading it (``_commit_version``): every round's batch creates the
        document, and a store that committed one meanwhile makes it fail (45071). The batch
        creates the debt of the files it makes obsolete. An attempt that finds its commit
        done (an earlier answer was lost) returns None: that batch's debt is the sweep's."""
        key = reservation.key
        study = _study_of(key)
        index, pk = study.container(c), study.key
        now = utc_timestamp()
        for part in docs.metapart_documents(study, reservation.watermark, parts):
            await index.upsert_item(part)
        instance_doc = docs.instance_document(
            reservation, instance, now=now, packed=packed, parts=len(parts)
        )
        etag = self._reservation_etags.get((key, reservation.watermark))
        if etag is None:
            held = await read_item(index, reservation_id(key.series_uid, key.sop_uid), pk)
            if held is None or int(held["wm"]) != reservation.watermark:
                raise InstanceBeingCreated(key)
            etag = str(held["_etag"])
        for backoff in conflict_backoff():
            old, series, summary = await asyncio.gather(
                nothing() if assume_new else read_item(index, instance_doc["id"], pk),
                read_item(index, series_id(key.series_uid), pk),
                read_item(index, STUDY_DOC_ID, pk),
            )
            if old is not None and int(old["wm"]) == reservation.watermark:
                return None  # this very commit already happened; its answer was lost
            if old is not None and not reservation.upsert:
                raise InstanceExists(key)
            if based_on is not None and (old is None or int(old["wm"]) != based_on):
                raise InstanceChanged(key)
            old_original = None
            if based_on is None and old is not None and old.get("hasOriginal"):
                old_original = await read_item(index, original_id(key.series_uid, key.sop_uid), pk)
            plan = docs.plan_commit(
                reservation=reservation,
                reservation_etag=etag,
                instance_doc=instance_doc,
                old_instance=old,
                series_doc=series,
                study_doc=summary,
                now=now,
                updating=based_on is not None,
                old_original=old_original,
                expires_at=expires_at,
            )
            dropped = _dropped_by(old, old_original, based_on)
            freed = [*(str(gone["blobKey"]) for gone in dropped), *owed]
            debt = debt_document(study, freed) if freed else None
            if debt is not None:
                plan.add("blob debt", ("create", (debt,)))
            try:
                await self._execute(c, study, plan)
            except BatchConflict as conflict:
                if str(conflict) == "reservation":
                    # Taken over, or renewed by a write whose answer never came back.
                    held = await read_item(index, reservation_id(key.series_uid, key.sop_uid), pk)
                    if held is None or int(held["wm"]) != reservation.watermark:
                        raise InstanceBeingCreated(key) from None
                    etag = str(held["_etag"])
                    await asyncio.sleep(backoff)
                    continue
                if str(conflict) == "instance" and not reservation.upsert:
                    raise InstanceExists(key) from None
                await asyncio.sleep(backoff)
                continue
            if plan.propagate:
                await propagate_safely(index, study)
            for gone in dropped:
                if int(gone.get("metaParts") or 0):
                    await self._drop_metaparts(study, int(gone["wm"]))
            return None if debt is None else debt_of(debt)
        raise StorageUnavailable(f"too many concurrent writes to study {study}")

    async def settle_versions(
        self, study_uid: str, *, partition: int, release: BlobRelease | None = None
    ) -> list[str]:
        """Finish a staged bulk update of the study that a crash interrupted (roll committed
        versions forward, strip the others); the files no version uses any more, owed by
        the batches that dropped them and released after."""
        study = placement_of(partition).study(study_uid)
        settled = await self._staged.settle(study)
        if settled.rolled:
            await self._sequence_changes(study)
        return await self._settle_all(settled.debts, release)

    async def _settle_all(
        self, debts: Sequence[BlobDebt], release: BlobRelease | None
    ) -> list[str]:
        """Settle each of ``debts``; their keys, together."""
        freed: list[str] = []
        for debt in debts:
            freed += await settled_keys(debt, release, self.forget_blob_debt)
        return freed

    async def _run_batch(
        self, c: IndexContainers, study: PlacedStudy, plan: docs.BatchPlan
    ) -> list[Any]:
        """``_execute``, looked up at each call: the callback the staged versions and the
        delete step run their batches with, so that wrapping ``_execute`` reaches them too."""
        return await self._execute(c, study, plan)

    async def _execute(
        self, c: IndexContainers, study: PlacedStudy, plan: docs.BatchPlan
    ) -> list[Any]:
        """Every batch of the store goes through here (``cosmos_io.execute_plan``): the one
        place where the tests lose a batch's answer or race another write."""
        return await execute_plan(c, study, plan)

    async def abort_instance(self, reservation: Reservation) -> None:
        await self._release(reservation.key, lambda held: int(held["wm"]) == reservation.watermark)
        self._reservation_etags.pop((reservation.key, reservation.watermark), None)

    async def _release(self, key: InstanceKey, ours: Callable[[Doc], bool]) -> None:
        """Delete the reservation of ``key`` if ``ours`` says it is the caller's; another
        store's (a newer one, or one that took a stale reservation over) is left alone. The
        delete is guarded by the ETag just read, so a takeover in between wins too."""
        study = _study_of(key)

        async def release(c: Containers) -> None:
            rid = reservation_id(key.series_uid, key.sop_uid)
            index = study.container(c)
            held = await read_item(index, rid, study.key)
            if held is None or not ours(held):
                return
            with contextlib.suppress(CosmosResourceNotFoundError, CosmosAccessConditionFailedError):
                await index.delete_item(
                    rid,
                    partition_key=study.key,
                    etag=held["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                )

        await self._session.run(release)

    async def _release_refused(self, key: InstanceKey, ours: Callable[[Doc], bool]) -> None:
        """``_release``, best effort, before a store is refused (``InstanceExists``): when
        Cosmos fails now the refusal still stands, as it did before the release was tried,
        and the reservation is taken over once stale (``DICOM_STALE_CREATE_SECONDS``)."""
        try:
            await self._release(key, ours)
        except Exception:
            log.warning("could not release the refused reservation of %s", key, exc_info=True)

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
        """Delete in batches, oldest first; each batch records the debt of its files, and
        they are released as soon as it commits (a failure in a later step loses nothing).

        A step whose query listed the whole scope and whose batch removed all of it is the
        last: no further query confirms that nothing is left (an instance committed after
        that query is kept, as if it had been stored just after the delete).

        With ``expired_by``, each step goes only while the study summary says the study
        expired by then (``cosmos_delete_step``); a store that moved or cleared the expiry ends the
        delete there.
        """
        study = placement_of(partition).study(study_uid)
        expiry = None if expired_by is None else timestamp_of(expired_by)
        if expiry is not None:
            summary = await self._session.run(
                lambda c: read_item(study.container(c), STUDY_DOC_ID, study.key)
            )
            if not expired(summary, expiry):
                return []  # not (or no longer) expired: nothing to settle or delete
        # A large study's bulk update that is visible but not rolled forward yet is finished
        # first, so the summaries this delete leaves come from the versions readers see.
        # Its obsolete files are owed by the batches that dropped them.
        settled = await self._staged.settle(study, committed_only=True)
        removed = await self._settle_all(settled.debts, release)
        watermarks: list[int] = []
        study_gone = False
        while True:
            step = await self._session.run(
                lambda c: delete_step(
                    c,
                    study,
                    series_uid,
                    sop_uid,
                    expiry,
                    execute=self._run_batch,
                    drop_metaparts=self._drop_metaparts,
                )
            )
            if step is None:
                break
            await settle_debt(step.debt, release, self.forget_blob_debt)
            removed.extend(step.debt.blob_keys)
            watermarks.extend(step.watermarks)
            study_gone = study_gone or step.study_removed
            if step.last:
                break
        if removed:
            await self._sequence_changes(study)
            # Extended query tag values of what was deleted, and external metadata when
            # the study's last instance went, whatever the scope of the delete.
            await self._session.run(
                lambda c: drop_values(
                    c.system,
                    study.placement,
                    study_uid,
                    series_uid,
                    sop_uid,
                    removed_watermarks=watermarks,
                    study_gone=study_gone,
                )
            )
        return removed

    async def blob_debts(self, recorded_before: datetime, limit: int) -> list[BlobDebt]:
        return await self._session.run(lambda c: read_debts(c, recorded_before, limit))

    async def forget_blob_debt(self, debt: BlobDebt) -> None:
        await self._session.run(lambda c: forget_debt(c, debt))

    async def _sequence_changes(self, study: PlacedStudy) -> None:
        """Best effort, before the answer: give the study's pending changes their feed entries.

        Inline rather than in the background, so a client that reads the feed after its
        answer finds its change there without waiting, and tests stay deterministic. A failure
        costs nothing but time: the pending change is durable, and the next reader (or store
        in the study) sequences it; so no retry policy either.
        """
        try:
            c = await self._session.containers()
            await sequence_pending(c, study=study)
        except Exception:
            log.warning(
                "could not sequence the changes of study %s now; the next feed read will",
                study,
                exc_info=True,
            )

    async def _drop_metaparts(self, study: PlacedStudy, watermark: int) -> None:
        """Best effort: slices of an aborted or replaced instance's DICOM JSON."""
        try:
            index = study.container(await self._session.containers())
            params: dict[str, object] = {"@kind": METAPART, "@wm": watermark}
            where = study.where(params)
            parts = await query_items(
                index,
                f"SELECT c.id FROM c WHERE {where} AND c.kind = @kind AND c.wm = @wm",
                params,
                partition=study.key,
            )
            for part in parts:
                with contextlib.suppress(CosmosResourceNotFoundError):
                    await index.delete_item(part["id"], partition_key=study.key)
        except Exception:
            log.warning(
                "could not remove metadata slices of watermark %s", watermark, exc_info=True
            )

    # -- reads ------------------------------------------------------------------------------

    async def expired_studies(self, now: datetime, limit: int) -> list[StudyKey]:
        """One cross-partition query on the study summaries of each index container (the
        ``/kind``, ``/expiresAt`` composite index), merged earliest first; documents without
        ``expiresAt`` never match the range."""

        async def read(c: Containers) -> list[StudyKey]:
            found = await asyncio.gather(
                *(
                    query_items(
                        container,
                        "SELECT TOP @n c.study, c.dp, c.expiresAt FROM c"
                        " WHERE c.kind = @study AND c.expiresAt <= @now ORDER BY c.expiresAt",
                        {"@n": limit, "@study": STUDY, "@now": timestamp_of(now)},
                    )
                    for container in (c.index, c.partitioned)
                )
            )
            earliest = sorted(
                (doc for docs_ in found for doc in docs_), key=lambda doc: str(doc["expiresAt"])
            )[:limit]
            return [
                StudyKey(str(doc["study"]), partition=document_placement(doc).partition)
                for doc in earliest
            ]

        return await self._session.run(read)

    async def get_instance(
        self, key: InstanceKey, *, original: bool = False
    ) -> InstanceRecord | None:
        return await self._session.run(lambda c: reads.read_instance(c, key, original))

    async def list_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> list[InstanceRecord]:
        study = placement_of(partition).study(study_uid)
        return await self._session.run(lambda c: reads.list_records(c, study, series_uid, original))

    async def get_metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
    ) -> list[bytes]:
        study = placement_of(partition).study(study_uid)
        return await self._session.run(lambda c: reads.read_metadata(c, study, series_uid, sop_uid))

    async def metadata_version(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> str | None:
        study = placement_of(partition).study(study_uid)
        return await self._session.run(
            lambda c: reads.read_metadata_version(c, study, series_uid, sop_uid, original)
        )

    async def get_versioned_metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> VersionedMetadata:
        study = placement_of(partition).study(study_uid)
        return await self._session.run(
            lambda c: reads.read_versioned_metadata(c, study, series_uid, sop_uid, original)
        )

    async def search(
        self,
        query: QueryDescription,
        *,
        metadata: frozenset[QueryLevel] = frozenset(),
        cached: Callable[[int], bool] | None = None,
    ) -> list[SearchMatch]:
        return await self._session.run(lambda c: reads.search_index(c, query, metadata, cached))

    async def close(self) -> None:
        await self._session.close()


#: Versions of one study committed in one transactional batch: four operations each, beside
#: the study summary and a series summary per series, within Cosmos DB's 100 (and 2 MB).
STUDY_BATCH_VERSIONS = 20

#: Series of a study whose summaries one flip batch replaces (with the study summary and the
#: commit document) within Cosmos DB's 100 operations.
FLIP_SERIES = 90


#: What one batch's versions may weigh, under Cosmos DB's 2 MB: each version's packed
#: metadata counts twice (the new document, and the replaced one kept as the original).
STUDY_BATCH_BYTES = 1_500_000


def _packed(version: NewVersion) -> str:
    return docs.pack_metadata(version.instance.metadata_json)


#: Operations of one version in a batch of versions: its instance, original, reservation and
#: pending change (``cosmos_docs.plan_commit``); and those every such batch has besides its
#: series summaries: the study summary and the blob debt.
VERSION_OPERATIONS = 4
STUDY_BATCH_OVERHEAD = 2


def _study_chunks(
    reserved: list[tuple[NewVersion, Reservation]],
) -> list[list[tuple[NewVersion, Reservation]]]:
    """``reserved`` in order, cut into chunks one batch holds: in count, in size, and in
    operations, which a chunk spread over many series runs out of first (20 versions in 20
    series took 101, and Cosmos DB refuses a batch of more than 100)."""
    chunks: list[list[tuple[NewVersion, Reservation]]] = []
    weight = operations = 0
    series: set[str] = set()
    for item in reserved:
        size = 2 * len(_packed(item[0])) + 4096
        uid = item[0].key.series_uid
        cost = VERSION_OPERATIONS + (0 if uid in series else 1)
        if (
            not chunks
            or len(chunks[-1]) >= STUDY_BATCH_VERSIONS
            or weight + size > STUDY_BATCH_BYTES
            or operations + cost > docs.MAX_BATCH_OPERATIONS
        ):
            chunks.append([])
            weight, operations, series = 0, STUDY_BATCH_OVERHEAD, set()
            cost = VERSION_OPERATIONS + 1
        chunks[-1].append(item)
        weight += size
        operations += cost
        series.add(uid)
    return chunks


def _study_of(key: InstanceKey) -> PlacedStudy:
    return placement_of(key.partition).study(key.study_uid)


def _dropped_by(old: Doc | None, old_original: Doc | None, based_on: int | None) -> list[Doc]:
    """The versions a commit drops: none when nothing is replaced, or when a bulk update's
    version turns the replaced one into the original; else the replaced version, a store's
    replaced original, and a large study's staged version of it."""
    if old is None or (based_on is not None and not old.get("hasOriginal")):
        return []
    dropped = [old] if old_original is None else [old, old_original]
    if old.get(NEXT):
        dropped.append(old[NEXT])
    return dropped
