"""One step of a delete on Cosmos DB: a transactional batch that removes the oldest instances
in scope, with their summaries' new counts, their pending changes and the debt of their files.

``CosmosIndexStore.delete_instances`` repeats the step until the scope is empty (or, for the
expiry sweep, until the study summary no longer says expired), and settles each step's debt as
soon as its batch commits. The step lives here, apart from the store's writes, because it is
the one place that reads a scope in pages and cuts it to what one batch can hold: Cosmos DB
refuses a batch of more than 100 operations, and every instance removed costs its document,
its pending change, its metadata slices and its original's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.azure import cosmos_docs as docs
from dicom_core.storage.azure import cosmos_index_reads as reads
from dicom_core.storage.azure.cosmos_blob_debts import debt_document, debt_of
from dicom_core.storage.azure.cosmos_io import (
    BatchConflict,
    Execute,
    conflict_backoff,
    query_items,
)
from dicom_core.storage.azure.cosmos_placement import Containers, PlacedStudy
from dicom_core.storage.azure.cosmos_propagation import propagate_safely
from dicom_core.storage.azure.cosmos_schema import (
    INSTANCE,
    ORIGINAL,
    SERIES,
    STUDY,
    original_id,
)
from dicom_core.storage.azure.cosmos_staged_versions import NEXT, DropMetaparts
from dicom_core.storage.ports import BlobDebt, StorageUnavailable

Doc = dict[str, Any]

DELETE_CHUNK_OPERATIONS = 90
"""Operations per delete batch, below the 100 real Cosmos allows, leaving room for summaries."""
DELETE_CANDIDATES = 95
"""Instances a delete step lists (TOP): at least as many as one batch can remove."""


@dataclass(frozen=True, slots=True)
class DeleteStep:
    """One delete batch applied: the debt of the files it freed, and whether it removed the
    last instance of the scope that its query listed."""

    debt: BlobDebt
    last: bool
    watermarks: list[int]
    study_removed: bool = False


async def delete_step(
    c: Containers,
    study: PlacedStudy,
    series_uid: str | None,
    sop_uid: str | None,
    expired_by: str | None,
    *,
    execute: Execute,
    drop_metaparts: DropMetaparts,
) -> DeleteStep | None:
    """Remove one batch of instances; None when nothing in scope is left, or (with
    ``expired_by``) when the study summary no longer says expired by then. The batch
    replaces or deletes that summary under the ETag read here, so a store committed
    after the check makes the batch fail, and the next round checks again."""
    index, pk = study.container(c), study.key
    for backoff in conflict_backoff():
        where, params = reads.scope_filter(study, series_uid, sop_uid)
        params["@n"] = DELETE_CANDIDATES
        summary_params: dict[str, object] = {"@series": SERIES, "@study": STUDY}
        in_study = study.where(summary_params)
        candidates, summaries = await asyncio.gather(
            query_items(
                index,
                "SELECT TOP @n c.id, c.series, c.sop, c.wm, c.blobKey, c.metaParts,"
                f" c.hasOriginal, c.next, c.dp, c._etag FROM c WHERE {where} ORDER BY c.wm",
                params,
                partition=pk,
            ),
            query_items(
                index,
                f"SELECT * FROM c WHERE {in_study} AND (c.kind = @series OR c.kind = @study)",
                summary_params,
                partition=pk,
            ),
        )
        if not candidates:
            return None
        summary = next((d for d in summaries if d["kind"] == STUDY), None)
        if expired_by is not None and not expired(summary, expired_by):
            return None
        series_docs = {str(d["series"]): d for d in summaries if d["kind"] == SERIES}
        originals = await _originals_of(c, study, candidates)
        chunk = _delete_chunk(candidates, originals)
        if summary is None or any(str(d["series"]) not in series_docs for d in chunk):
            # An instance without summaries can only be a commit in flight; wait for it.
            await asyncio.sleep(backoff)
            continue
        removed_ids = {str(d["id"]) for d in chunk}
        next_latest: dict[str, Mapping[str, Any] | None] = {}
        for uid in {str(d["series"]) for d in chunk}:
            current = series_docs[uid]
            gone = sum(1 for d in chunk if str(d["series"]) == uid)
            if current["latestId"] in removed_ids and int(current["count"]) > gone:
                next_latest[uid] = await _newest_instance(c, study, uid, removed_ids)
        if any(doc is None for doc in next_latest.values()):
            await asyncio.sleep(backoff)
            continue
        plan = docs.plan_delete(
            study_doc=summary,
            series_docs=series_docs,
            removed=chunk,
            next_latest=next_latest,
            now=utc_timestamp(),
            originals=originals,
        )
        # A staged version of a large study's bulk update goes with its instance.
        staged = [doc[NEXT] for doc in chunk if doc.get(NEXT)]
        debt = debt_document(
            study, plan.removed_blob_keys + [str(version["blobKey"]) for version in staged]
        )
        plan.add("blob debt", ("create", (debt,)))
        try:
            await execute(c, study, plan)
        except BatchConflict:
            await asyncio.sleep(backoff)
            continue
        if plan.propagate:
            await propagate_safely(index, study)
        for version in staged:
            if int(version.get("metaParts") or 0):
                await drop_metaparts(study, int(version["wm"]))
        # Fewer candidates than TOP means the query saw the whole scope; the batch (guarded
        # by the summaries' ETags) removed all of it.
        last = len(candidates) < DELETE_CANDIDATES and len(chunk) == len(candidates)
        return DeleteStep(
            debt_of(debt),
            last,
            [int(d["wm"]) for d in chunk],
            study_removed=plan.study_removed,
        )
    raise StorageUnavailable(f"too many concurrent writes to study {study}")


async def _newest_instance(
    c: Containers, study: PlacedStudy, series_uid: str, excluded: set[str]
) -> Doc | None:
    params: dict[str, object] = {
        "@kind": INSTANCE,
        "@series": series_uid,
        "@excluded": sorted(excluded),
    }
    where = study.where(params)
    found = await query_items(
        study.container(c),
        f"SELECT TOP 1 c.id, c.wm, c.own FROM c WHERE {where} AND c.kind = @kind"
        " AND c.series = @series AND NOT ARRAY_CONTAINS(@excluded, c.id)"
        " ORDER BY c.wm DESC",
        params,
        partition=study.key,
    )
    return found[0] if found else None


def expired(study: Mapping[str, Any] | None, by: str) -> bool:
    """Whether a study summary says the study expired at or before ``by``."""
    expires_at = None if study is None else study.get("expiresAt")
    return isinstance(expires_at, str) and expires_at <= by


async def _originals_of(
    c: Containers, study: PlacedStudy, candidates: Sequence[Doc]
) -> dict[str, Doc]:
    """The original documents of the candidates that have one, by instance document id (one
    query, and none when no candidate was ever updated)."""
    wanted = {
        original_id(str(d["series"]), str(d["sop"])): str(d["id"])
        for d in candidates
        if d.get("hasOriginal")
    }
    if not wanted:
        return {}
    params: dict[str, object] = {"@kind": ORIGINAL, "@ids": sorted(wanted)}
    where = study.where(params)
    found = await query_items(
        study.container(c),
        "SELECT c.id, c.wm, c.blobKey, c.metaParts FROM c"
        f" WHERE {where} AND c.kind = @kind AND ARRAY_CONTAINS(@ids, c.id)",
        params,
        partition=study.key,
    )
    return {wanted[str(doc["id"])]: doc for doc in found}


def _delete_chunk(candidates: Sequence[Doc], originals: Mapping[str, Doc]) -> list[Doc]:
    """The oldest candidates whose deletion fits one batch with its summaries and feed."""
    chunk: list[Doc] = []
    series: set[str] = set()
    operations = 2  # the study summary, the blob debt
    for doc in candidates:
        cost = 2 + int(doc.get("metaParts") or 0)  # instance, pending change, metadata slices
        original = originals.get(str(doc["id"]))
        if original is not None:
            cost += 1 + int(original.get("metaParts") or 0)
        new_series = 0 if str(doc["series"]) in series else 1
        if chunk and operations + cost + new_series > DELETE_CHUNK_OPERATIONS:
            break
        chunk.append(doc)
        series.add(str(doc["series"]))
        operations += cost + new_series
    return chunk
