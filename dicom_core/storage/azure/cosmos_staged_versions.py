"""A bulk update of a study too large for one transactional batch, made visible all at once.

A transactional batch holds 100 operations and 2 MB in one partition key, and each new version
takes four (instance, original, reservation, pending change), so the versions of a study of
more than ``STUDY_BATCH_VERSIONS`` instances cannot change in one batch. They go through three
steps instead, and a ``commit`` document in the study's partition says where they are:

1. **Stage.** The commit document is created (state ``staging``, a fresh token). Every
   instance document gets its new version beside the current one, under ``next``, carrying
   the token (with its DICOM JSON in metadata slices, keyed by the new watermark, when both
   versions would not fit one document). Readers ignore ``next`` unless the commit document
   says ``committed`` with the same token, so nothing a reader sees changes yet.
2. **Flip.** One batch replaces the study and series summaries with what all the new versions
   make of them, and sets the commit document to ``committed``. From then on every read of the
   study resolves each instance document through ``next`` (``visible``): the whole study reads
   as updated at once, for retrieve, metadata, frames, QIDO and ETags alike.
3. **Roll forward.** Batches of instances replace each document with its ``next`` version as
   a single-batch update would have written it (the original kept, the reservation released,
   the change recorded for the change feed); the commit document goes last.

A crash before the flip leaves ``next`` versions nobody reads; a crash after it leaves a study
that reads as wholly updated. Either is finished by ``settle``, which a bulk update runs on a
study before anything else (``IndexStore.settle_versions``): it strips uncommitted ``next``
versions and rolls committed ones forward. The commit document is deleted only once no
document of the study has ``next``, so a study without one has nothing staged.

What readers pay: nothing while no instance document of the study has ``next``; while one
does, one point read of the commit document per request.

The commit document is never deleted: once every ``next`` is gone it stays as ``done`` (with
the last token), so a reader that read an instance document just before the last roll-forward
batch and the commit document just after it still resolves to the new version; the next
staged update of the study reuses it. A ``staging`` document of another run is left alone
while it is fresh (``STAGING_LEASE_SECONDS``): two runs of one step never strip each other's
staging, and a run that finds a fresh one waits for its message to come back.

A delete settles the study's committed versions first (``settle(committed_only=True)``), so
it computes the summaries it leaves from the versions readers see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from dicom_core.domain.model import InstanceKey, Reservation
from dicom_core.domain.timestamps import seconds_since, utc_timestamp
from dicom_core.storage.azure import cosmos_docs as docs
from dicom_core.storage.azure.cosmos_blob_debts import debt_document, debt_of
from dicom_core.storage.azure.cosmos_io import (
    BatchConflict,
    Execute,
    conflict_backoff,
    query_items,
    read_item,
    replace_if_unchanged,
)
from dicom_core.storage.azure.cosmos_placement import (
    PartitionKeyValue,
    PlacedStudy,
    placement_of,
)
from dicom_core.storage.azure.cosmos_propagation import propagate_safely
from dicom_core.storage.azure.cosmos_schema import (
    COMMIT,
    COMMIT_DOC_ID,
    INSTANCE,
    SERIES,
    STUDY,
    STUDY_DOC_ID,
    instance_id,
    reservation_id,
)
from dicom_core.storage.azure.cosmos_session import Containers, CosmosSession
from dicom_core.storage.ports import BlobDebt, NewVersion, StorageUnavailable

log = logging.getLogger(__name__)

Doc = dict[str, Any]

NEXT = "next"
"""The field of an instance document that holds its staged new version."""
TOKEN = "token"
STAGING = "staging"
COMMITTED = "committed"
DONE = "done"
VISIBLE_STATES = frozenset({COMMITTED, DONE})

STAGING_LEASE_SECONDS = 300
"""A staging this old (since it opened) was abandoned by a crash: another run may strip it."""

ROLL_FORWARD_VERSIONS = 20
"""Versions rolled forward per batch: four operations each, within the batch's 100."""
ROLL_FORWARD_BYTES = 1_500_000
"""What one roll-forward batch may weigh, under the batch's 2 MB: each staged document counts
whole, as it becomes the new document and its current version the original."""
STAGED_DOCUMENT_BYTES = 1_800_000
"""A staged instance document (both versions) stays this far under Cosmos DB's 2 MB."""
STAGE_CONCURRENCY = 16


# -- reads ---------------------------------------------------------------------------------


def visible(doc: Mapping[str, Any], commit: Mapping[str, Any] | None) -> Doc:
    """The version of an instance document a reader sees: its ``next`` version once the
    study's commit document says that staging is committed, else the document as it is."""
    staged = doc.get(NEXT)
    if (
        staged
        and commit is not None
        and commit.get("state") in VISIBLE_STATES
        and staged.get(TOKEN) == commit.get(TOKEN)
    ):
        return {k: v for k, v in staged.items() if k != TOKEN}
    return {k: v for k, v in doc.items() if k != NEXT}


async def read_commit(index: Any, pk: PartitionKeyValue) -> Doc | None:
    return await read_item(index, COMMIT_DOC_ID, pk)


async def visible_documents(index: Any, pk: PartitionKeyValue, found: Sequence[Doc]) -> list[Doc]:
    """``found`` (instance documents of one study, oldest first) as readers see them, still
    oldest first; one point read of the commit document when any of them has a staged
    version, none otherwise."""
    if not any(doc.get(NEXT) for doc in found):
        return list(found)
    commit = await read_commit(index, pk)
    return sorted((visible(doc, commit) for doc in found), key=lambda doc: int(doc["wm"]))


async def visible_document(index: Any, pk: PartitionKeyValue, doc: Doc | None) -> Doc | None:
    """One instance document as readers see it. The commit document is read afresh each
    time: one read earlier in a request may predate the flip (see cosmos_query)."""
    if doc is None or not doc.get(NEXT):
        return doc
    return visible(doc, await read_commit(index, pk))


def without_next(doc: Mapping[str, Any]) -> Doc:
    return {k: v for k, v in doc.items() if k != NEXT}


# -- writes --------------------------------------------------------------------------------


@dataclass(slots=True)
class VersionsOutcome:
    """What a commit of versions did, instance by instance (``VersionsCommitted`` fields)."""

    committed: list[InstanceKey] = field(default_factory=list)
    watermarks: list[int] = field(default_factory=list)
    changed: list[InstanceKey] = field(default_factory=list)
    obsolete: list[str] = field(default_factory=list)
    """Files to release after the commit."""
    debts: list[BlobDebt] = field(default_factory=list)
    """Files that batches of the commit recorded as their debt, to settle after it."""


@dataclass(slots=True)
class Settled:
    """What ``settle`` did: versions rolled forward (key, watermark), and the debts of the
    files that are no longer anyone's (stripped versions', and those between original and
    new), each recorded in the batch that dropped them."""

    rolled: dict[InstanceKey, int] = field(default_factory=dict)
    debts: list[BlobDebt] = field(default_factory=list)


DropMetaparts = Callable[[PlacedStudy, int], Awaitable[None]]
Abort = Callable[[Reservation], Awaitable[None]]


class StagedVersions:
    """Stage, flip and roll forward the versions of one study (see the module docstring).

    ``execute`` runs a batch plan (raising ``BatchConflict`` on an ETag or existence
    failure), ``drop_metaparts`` removes a watermark's metadata slices, ``abort`` releases a
    reservation: the index store's own.
    """

    def __init__(
        self,
        session: CosmosSession,
        execute: Execute,
        drop_metaparts: DropMetaparts,
        abort: Abort,
    ) -> None:
        self._session = session
        self._execute = execute
        self._drop_metaparts = drop_metaparts
        self._abort = abort

    async def commit(
        self, reserved: Sequence[tuple[NewVersion, Reservation]], outcome: VersionsOutcome
    ) -> list[tuple[NewVersion, Reservation]]:
        """Make ``reserved`` (versions of one study, each reserved) visible together.

        Fills ``outcome``; returns the versions that cannot be staged (an instance document
        too large for two versions even with its metadata in slices), to commit one by one.
        Whether a version was committed is read back from the index at the end, so a batch
        whose answer was lost, or another run that rolled the study forward meanwhile, never
        makes a visible version's file look obsolete.
        """
        first = reserved[0][0].key
        study = placement_of(first.partition).study(first.study_uid)
        earlier = await self.settle(study)  # an interrupted update's leftovers come first
        token = uuid.uuid4().hex
        await self._session.run(lambda c: self._open(c, study, token))
        staged, alone = await self._stage(study, token, reserved, outcome)
        owed: set[str] = set()
        if staged and not await self._session.run(lambda c: self._flip(c, study, token, staged)):
            # Another run stripped this staging (its lease ran out): what it staged since is
            # invisible, and goes now rather than stay under ``next`` for good.
            stripped = await self._strip_own(study, token)
            outcome.debts.extend(stripped.debts)
            owed = {blob for debt in stripped.debts for blob in debt.blob_keys}
        done = await self.settle(study, own=token)
        ids = [instance_id(v.key.series_uid, v.key.sop_uid) for v, _ in staged]
        params: dict[str, object] = {"@kind": INSTANCE, "@ids": ids}
        where = study.where(params)
        current = await self._session.run(
            lambda c: query_items(
                study.container(c),
                f"SELECT c.id, c.wm, c.blobKey FROM c WHERE {where} AND c.kind = @kind"
                " AND ARRAY_CONTAINS(@ids, c.id)",
                params,
                partition=study.key,
            )
        )
        named = {str(doc["blobKey"]) for doc in current}
        watermarks = {str(doc["id"]): int(doc["wm"]) for doc in current}
        for version, reservation in staged:
            key = version.key
            if watermarks.get(instance_id(key.series_uid, key.sop_uid)) == reservation.watermark:
                outcome.committed.append(key)
                outcome.watermarks.append(reservation.watermark)
            else:
                await self._abort(reservation)
                outcome.changed.append(key)
        outcome.debts.extend([*earlier.debts, *done.debts])
        staged_files = sorted(version.blob_key for version, _ in staged)
        outcome.obsolete.extend(b for b in staged_files if b not in named and b not in owed)
        return alone

    async def settle(
        self, study: PlacedStudy, *, own: str | None = None, committed_only: bool = False
    ) -> Settled:
        """Finish what the study's commit document says is under way: roll committed
        versions forward, strip the others, and mark the commit document done.

        A fresh ``staging`` of another run (not ``own``) is left alone: ``StorageUnavailable``,
        so a bulk update step comes back later; with ``committed_only`` (a delete) nothing
        happens to a staging at all, since its versions are not visible yet.
        """
        settled = Settled()
        pk = study.key
        commit = await self._session.run(lambda c: read_commit(study.container(c), pk))
        if commit is None or commit.get("state") == DONE:
            return settled
        if commit.get("state") == STAGING and commit.get(TOKEN) != own:
            if committed_only:
                return settled
            if seconds_since(str(commit.get("updatedAt"))) < STAGING_LEASE_SECONDS:
                raise StorageUnavailable(f"another bulk update of study {study} is staging")
        if commit.get("state") == STAGING:
            await self._take_staging_away(study, commit)
            return await self._strip_own(study, str(commit.get(TOKEN)))
        await self._settle_versions(study, commit, settled)
        await self._mark_done(study, commit)  # changed meanwhile: its new state stands
        return settled

    async def _mark_done(
        self, study: PlacedStudy, commit: Mapping[str, Any], **changes: str
    ) -> bool:
        """Set the commit document ``done`` (with ``changes``) under the ETag it was read
        with; False when it changed or went meanwhile."""
        finished = {**commit, "state": DONE, "updatedAt": utc_timestamp(), **changes}
        return await self._session.run(lambda c: replace_if_unchanged(study.container(c), finished))

    async def _take_staging_away(self, study: PlacedStudy, commit: Mapping[str, Any]) -> None:
        """Before a staging is stripped, its commit document becomes ``done`` under a token of
        its own, guarded by the ETag read: the run it was, if still alive past its lease, then
        finds it gone (its flip, its next ``_stage_one``), and nothing it stages can become
        visible (``visible`` reads ``done`` as visible for its token only). Reviews found a
        stripped run's versions half visible, and a flip landing while the strip went on."""
        if not await self._mark_done(study, commit, **{TOKEN: f"stripped-{uuid.uuid4().hex}"}):
            raise StorageUnavailable(
                f"the bulk update of study {study} changed while it was being settled"
            )

    async def _settle_versions(
        self, study: PlacedStudy, commit: Mapping[str, Any], settled: Settled
    ) -> None:
        """Roll forward or strip, chunk by chunk, the instances that have a ``next``."""
        params: dict[str, object] = {"@kind": INSTANCE}
        where = study.where(params)
        rows = await self._session.run(
            lambda c: query_items(
                study.container(c),
                f"SELECT c.id, c.next.token AS token FROM c WHERE {where} AND c.kind = @kind",
                params,
                partition=study.key,
            )
        )
        ids = [str(row["id"]) for row in rows if row.get("token")]
        while ids:
            chunk = ids[:ROLL_FORWARD_VERSIONS]
            ids = ids[await self._settle_step(study, chunk, commit, settled) :]

    async def _strip_own(self, study: PlacedStudy, token: str) -> Settled:
        """Strip the versions this run staged under ``token``, and nothing else."""
        stripped = Settled()
        await self._settle_versions(study, {"state": STAGING, TOKEN: token}, stripped)
        return stripped

    # -- the steps ---------------------------------------------------------------------------

    async def _settle_step(
        self, study: PlacedStudy, ids: Sequence[str], commit: Mapping[str, Any], settled: Settled
    ) -> int:
        return await self._session.run(lambda c: self._settle_chunk(c, study, ids, commit, settled))

    async def _open(self, c: Containers, study: PlacedStudy, token: str) -> None:
        """Open a staging: create the commit document, or reuse the study's ``done`` one.
        Ours already (an answer lost) is fine; another run's unfinished one is not."""
        index = study.container(c)
        for _ in range(3):
            existing = await read_commit(index, study.key)
            doc = {
                "id": COMMIT_DOC_ID,
                **study.fields(),
                "kind": COMMIT,
                "state": STAGING,
                TOKEN: token,
                "updatedAt": utc_timestamp(),
            }
            try:
                if existing is None:
                    await index.create_item(doc)
                    return
                if existing.get(TOKEN) == token:
                    return
                if existing.get("state") != DONE:
                    break
                await index.replace_item(
                    COMMIT_DOC_ID,
                    doc,
                    etag=existing["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
                return
            except (CosmosResourceExistsError, CosmosAccessConditionFailedError):
                continue  # another run opened it meanwhile: look again
        raise StorageUnavailable(f"another bulk update of study {study} is under way")

    async def _stage(
        self,
        study: PlacedStudy,
        token: str,
        reserved: Sequence[tuple[NewVersion, Reservation]],
        outcome: VersionsOutcome,
    ) -> tuple[list[tuple[NewVersion, Reservation]], list[tuple[NewVersion, Reservation]]]:
        """Put each version under ``next`` of its instance document. Returns the staged
        versions and those too large to stage; records the others in ``outcome``."""
        semaphore = asyncio.Semaphore(STAGE_CONCURRENCY)
        staged: list[tuple[NewVersion, Reservation]] = []
        alone: list[tuple[NewVersion, Reservation]] = []

        async def stage_one(version: NewVersion, reservation: Reservation) -> None:
            async with semaphore:
                result = await self._session.run(
                    lambda c: self._stage_one(c, study, token, version, reservation)
                )
            if result == "staged":
                staged.append((version, reservation))
            elif result == "alone":
                alone.append((version, reservation))
            elif result == "committed":
                outcome.committed.append(version.key)
                outcome.watermarks.append(reservation.watermark)
            else:
                await self._abort(reservation)
                outcome.changed.append(version.key)
                outcome.obsolete.append(version.blob_key)

        async with asyncio.TaskGroup() as group:  # a failure stops the others
            for version, reservation in reserved:
                group.create_task(stage_one(version, reservation))
        order = {version.key: n for n, (version, _) in enumerate(reserved)}
        staged.sort(key=lambda item: order[item[0].key])
        alone.sort(key=lambda item: order[item[0].key])
        return staged, alone

    async def _stage_one(
        self,
        c: Containers,
        study: PlacedStudy,
        token: str,
        version: NewVersion,
        reservation: Reservation,
    ) -> str:
        key = version.key
        index, pk = study.container(c), study.key
        packed = docs.pack_metadata(version.instance.metadata_json)
        sliced = False
        for backoff in conflict_backoff():
            doc, commit = await asyncio.gather(
                read_item(index, instance_id(key.series_uid, key.sop_uid), pk),
                read_commit(index, pk),
            )
            if doc is not None and int(doc["wm"]) == reservation.watermark:
                return "committed"  # an earlier attempt's commit, whose answer was lost
            if commit is None or commit.get(TOKEN) != token or commit.get("state") != STAGING:
                # Our staging was taken away (stripped once its lease ran out): staging on
                # would overwrite what another run staged since. A review found it did.
                if sliced:
                    await self._drop_metaparts(study, reservation.watermark)
                return "changed"
            if doc is None or int(doc["wm"]) != version.based_on:
                if sliced:
                    await self._drop_metaparts(study, reservation.watermark)
                return "changed"
            current = without_next(docs.without_system_properties(doc))
            now = utc_timestamp()
            staged = docs.instance_document(
                reservation, version.instance, now=now, packed=packed, parts=0
            )
            staged[TOKEN] = token
            if _size(current) + _size(staged) > STAGED_DOCUMENT_BYTES:
                slices = [
                    packed[i : i + docs.METADATA_PART_CHARS]
                    for i in range(0, len(packed), docs.METADATA_PART_CHARS)
                ]
                for part in docs.metapart_documents(study, reservation.watermark, slices):
                    await index.upsert_item(part)
                sliced = True
                staged = docs.instance_document(
                    reservation, version.instance, now=now, packed=packed, parts=len(slices)
                )
                staged[TOKEN] = token
                if _size(current) + _size(staged) > STAGED_DOCUMENT_BYTES:
                    await self._drop_metaparts(study, reservation.watermark)
                    return "alone"
            try:
                await index.replace_item(
                    doc["id"],
                    {**current, NEXT: staged},
                    etag=doc["_etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except (CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                await asyncio.sleep(backoff)  # a key-copy patch, or a delete: read again
                continue
            return "staged"
        raise StorageUnavailable(f"too many concurrent writes to study {study}")

    async def _flip(
        self,
        c: Containers,
        study: PlacedStudy,
        token: str,
        staged: Sequence[tuple[NewVersion, Reservation]],
    ) -> bool:
        """One batch: the summaries all the staged versions make, and the commit document
        set to committed. False when the staging was taken away (``settle`` by another run)."""
        index = study.container(c)
        for backoff in conflict_backoff():
            found = await read_version_documents(
                c, study, [v.key for v, _ in staged], with_commit=True
            )
            by_id = {str(doc["id"]): doc for doc in found}
            commit = by_id.get(COMMIT_DOC_ID)
            summary = by_id.get(STUDY_DOC_ID)
            series_docs = {str(d["series"]): d for d in found if d["kind"] == SERIES}
            if commit is None or commit.get(TOKEN) != token:
                return False
            if commit.get("state") in VISIBLE_STATES:
                return True  # this very flip ran already; its answer was lost
            items: list[docs.VersionItem] = []
            unheld: list[Doc] = []
            for version, reservation in staged:
                key = version.key
                doc = by_id.get(instance_id(key.series_uid, key.sop_uid))
                held = by_id.get(reservation_id(key.series_uid, key.sop_uid))
                staged_version = doc.get(NEXT) if doc else None
                if doc is None or not staged_version or staged_version.get(TOKEN) != token:
                    continue  # deleted or replaced meanwhile
                if held is None or int(held["wm"]) != reservation.watermark:
                    unheld.append(doc)  # its reservation was taken over: it must not flip
                    continue
                items.append(
                    docs.VersionItem(
                        reservation=reservation,
                        reservation_etag=str(held["_etag"]),
                        instance_doc={k: v for k, v in staged_version.items() if k != TOKEN},
                        old_instance=without_next(doc),
                    )
                )
            if unheld:
                for doc in unheld:
                    with contextlib.suppress(
                        CosmosAccessConditionFailedError, CosmosResourceNotFoundError
                    ):
                        await index.replace_item(
                            doc["id"],
                            without_next(docs.without_system_properties(doc)),
                            etag=doc["_etag"],
                            match_condition=MatchConditions.IfNotModified,
                        )
                continue  # read again: only versions still held flip
            if (
                not items
                or summary is None
                or any(i.reservation.key.series_uid not in series_docs for i in items)
            ):
                return False
            whole = docs.plan_versions(items, series_docs, summary, utc_timestamp())
            plan = docs.BatchPlan(propagate=whole.propagate)
            for name, operation in zip(whole.names, whole.operations, strict=True):
                if name in ("series", "study"):
                    plan.add(name, operation)
            committed = {**docs.without_system_properties(commit), "state": COMMITTED}
            committed["committedAt"] = utc_timestamp()
            plan.put("commit", committed, commit)
            try:
                await self._execute(c, study, plan)
            except BatchConflict:
                await asyncio.sleep(backoff)
                continue
            if plan.propagate:
                await propagate_safely(index, study)
            return True
        raise StorageUnavailable(f"too many concurrent writes to study {study}")

    async def _settle_chunk(
        self,
        c: Containers,
        study: PlacedStudy,
        ids: Sequence[str],
        commit: Mapping[str, Any],
        settled: Settled,
    ) -> int:
        """Roll forward (committed) or strip (not) the staged versions of the first of
        ``ids`` that one batch holds (by count and by bytes), each instance as a single-batch
        update would have left it; returns how many of ``ids`` it settled."""
        for backoff in conflict_backoff():
            reservations = [reservation_id(*_series_sop(doc_id)) for doc_id in ids]
            params: dict[str, object] = {
                "@ids": list(ids),
                "@reservations": reservations,
                "@series": SERIES,
                "@study": STUDY,
            }
            where = study.where(params)
            found = await query_items(
                study.container(c),
                f"SELECT * FROM c WHERE {where} AND (ARRAY_CONTAINS(@ids, c.id)"
                " OR ARRAY_CONTAINS(@reservations, c.id) OR c.kind = @series"
                " OR c.kind = @study)",
                params,
                partition=study.key,
            )
            by_id = {str(doc["id"]): doc for doc in found}
            summary = by_id.get(STUDY_DOC_ID)
            series_docs = {str(d["series"]): d for d in found if d["kind"] == SERIES}
            plan = docs.BatchPlan()
            rolled: dict[InstanceKey, int] = {}
            obsolete: list[str] = []
            dropped_parts: list[int] = []
            now = utc_timestamp()
            weight = 0
            taken = 0
            for doc_id in ids:
                doc = by_id.get(doc_id)
                staged = doc.get(NEXT) if doc else None
                if doc is None or not staged or _not_this_stagings(staged, commit):
                    taken += 1
                    continue  # deleted, or replaced by a store, meanwhile; or another run's
                weight += _size(doc) + 4096
                if taken and weight > ROLL_FORWARD_BYTES:
                    break
                taken += 1
                key = InstanceKey(
                    study.uid, str(doc["series"]), str(doc["sop"]), partition=study.partition
                )
                watermark = int(staged["wm"])
                held = by_id.get(reservation_id(key.series_uid, key.sop_uid))
                if held is not None and int(held["wm"]) != watermark:
                    held = None  # another store's reservation now: not ours to release
                current = without_next(doc)
                committed = commit.get("state") == COMMITTED and staged.get(TOKEN) == commit.get(
                    TOKEN
                )
                series_doc = series_docs.get(key.series_uid)
                if committed and (summary is None or series_doc is None):
                    taken -= 1
                    break  # its summaries are in flight (a store or a delete): later
                if committed and summary is not None and series_doc is not None:
                    single = docs.plan_commit(
                        reservation=Reservation(
                            key=key,
                            watermark=watermark,
                            blob_key=str(staged["blobKey"]),
                            upsert=True,
                        ),
                        reservation_etag=str(held["_etag"]) if held else "",
                        instance_doc={k: v for k, v in staged.items() if k != TOKEN},
                        old_instance=current,
                        series_doc=series_doc,
                        study_doc=summary,
                        now=now,
                        updating=True,
                    )
                    for name, operation in zip(single.names, single.operations, strict=True):
                        if name in ("series", "study") or (name == "reservation" and not held):
                            continue  # the flip wrote the summaries
                        plan.add(name, operation)
                    rolled[key] = watermark
                    if current.get("hasOriginal"):
                        # The version between the original and this one goes.
                        obsolete.append(str(current["blobKey"]))
                        if int(current.get("metaParts") or 0):
                            dropped_parts.append(int(current["wm"]))
                else:
                    plan.put("instance", docs.without_system_properties(current), doc)
                    if held is not None:
                        plan.remove("reservation", held)
                    obsolete.append(str(staged["blobKey"]))
                    if int(staged.get("metaParts") or 0):
                        dropped_parts.append(watermark)
            if not plan.operations and taken < len(ids):
                await asyncio.sleep(backoff)
                continue
            if not plan.operations:
                return taken
            debt = debt_document(study, obsolete) if obsolete else None
            if debt is not None:
                plan.add("blob debt", ("create", (debt,)))
            try:
                await self._execute(c, study, plan)
            except BatchConflict:
                await asyncio.sleep(backoff)
                continue
            settled.rolled.update(rolled)
            if debt is not None:
                settled.debts.append(debt_of(debt))
            for watermark in dropped_parts:
                await self._drop_metaparts(study, watermark)
            return taken
        raise StorageUnavailable(f"too many concurrent writes to study {study}")


def _not_this_stagings(staged: Mapping[str, Any], commit: Mapping[str, Any]) -> bool:
    """Whether a strip (a ``staging`` commit) must leave ``staged`` alone: it is another
    run's, which may be visible by now. A roll-forward (``committed``) strips stale ones."""
    return commit.get("state") != COMMITTED and staged.get(TOKEN) != commit.get(TOKEN)


def _size(doc: Mapping[str, Any]) -> int:
    return len(orjson.dumps(doc))


def _series_sop(doc_id: str) -> tuple[str, str]:
    """The series and SOP UIDs of an instance document's id (``i|{series}|{sop}``)."""
    _, series, sop = doc_id.split("|", 2)
    return series, sop


async def read_version_documents(
    c: Containers, study: PlacedStudy, keys: Sequence[InstanceKey], *, with_commit: bool = False
) -> list[Any]:
    """In one query of the study's partition, what a commit of new versions of ``keys``
    starts from: their instance and reservation documents and the series and study
    summaries (and, ``with_commit``, the study's commit document)."""
    params: dict[str, object] = {
        "@ids": [instance_id(k.series_uid, k.sop_uid) for k in keys],
        "@reservations": [reservation_id(k.series_uid, k.sop_uid) for k in keys],
        "@series": SERIES,
        "@study": STUDY,
    }
    kinds = " OR c.kind = @series OR c.kind = @study"
    if with_commit:
        params["@commit"] = COMMIT
        kinds += " OR c.kind = @commit"
    where = study.where(params)
    return await query_items(
        study.container(c),
        f"SELECT * FROM c WHERE {where} AND (ARRAY_CONTAINS(@ids, c.id)"
        f" OR ARRAY_CONTAINS(@reservations, c.id){kinds})",
        params,
        partition=study.key,
    )
