"""The reads of the Cosmos DB index: instance records, DICOM JSON and QIDO searches.

Each is one protocol step on a session's containers (``CosmosIndexStore`` runs it under the
session's retries). They read committed documents only: an instance document is written in
the same transactional batch as its summaries (``cosmos_index``), so a read sees an instance
together with its summaries, or not at all. An instance document with a staged version
(``next``, a large study's bulk update) is read through ``cosmos_staged_versions.visible``,
so the study's versions appear together, when its commit document flips.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dicom_core.domain.model import InstanceKey, InstanceRecord
from dicom_core.query.conditions import QueryDescription, QueryLevel
from dicom_core.query.results import SearchMatch
from dicom_core.storage.azure import cosmos_docs as docs
from dicom_core.storage.azure.cosmos_extended_values import resolve_extended
from dicom_core.storage.azure.cosmos_io import query_items, read_item
from dicom_core.storage.azure.cosmos_placement import PlacedStudy, placement_of
from dicom_core.storage.azure.cosmos_query import run_search
from dicom_core.storage.azure.cosmos_schema import INSTANCE, ORIGINAL, instance_id, original_id
from dicom_core.storage.azure.cosmos_session import Containers, unpack_all, unpack_metadata
from dicom_core.storage.azure.cosmos_staged_versions import (
    NEXT,
    visible_document,
    visible_documents,
    without_next,
)
from dicom_core.storage.ports import VersionedMetadata

Doc = dict[str, Any]


async def read_instance(
    c: Containers, key: InstanceKey, original: bool = False
) -> InstanceRecord | None:
    """The current version (one point read); with ``original``, the kept original when the
    current version says there is one (a second point read)."""
    study = placement_of(key.partition).study(key.study_uid)
    doc = await _original_or_current(c, study, key.series_uid, key.sop_uid, original)
    return docs.record_from_document(doc) if doc else None


async def _original_or_current(
    c: Containers, study: PlacedStudy, series_uid: str, sop_uid: str, original: bool
) -> Doc | None:
    """The instance's current document; with ``original``, its original document when it has
    one. A replacing store that removed the original between the two reads leaves the
    current document as the original: it is read again."""
    index, pk = study.container(c), study.key
    current = await read_item(index, instance_id(series_uid, sop_uid), pk)
    if current is None:
        return None
    if not original:
        return await visible_document(index, pk, current)
    if not current.get("hasOriginal"):
        # A staged version is not committed yet, or its commit has not rolled forward: the
        # document's own version is still the one first stored.
        return without_next(current)
    kept = await read_item(index, original_id(series_uid, sop_uid), pk)
    if kept is not None:
        return kept
    again = await read_item(index, instance_id(series_uid, sop_uid), pk)
    return without_next(again) if again is not None else None


async def list_records(
    c: Containers, study: PlacedStudy, series_uid: str | None, original: bool = False
) -> list[InstanceRecord]:
    found = await scope_query(
        study.container(c), docs.RECORD_FIELDS, study, series_uid, None, original=original
    )
    return [docs.record_from_document(doc) for doc in found]


def scope_filter(
    study: PlacedStudy, series_uid: str | None, sop_uid: str | None, original: bool = False
) -> tuple[str, dict[str, object]]:
    """The WHERE condition and its parameters that select the instance documents of a study,
    a series or one instance (in the study's partition); with ``original``, the kept
    originals too (``pick_versions`` then keeps one document per instance)."""
    params: dict[str, object] = {"@kind": INSTANCE}
    clauses = [
        study.where(params),
        "(c.kind = @kind OR c.kind = @original)" if original else "c.kind = @kind",
    ]
    if original:
        params["@original"] = ORIGINAL
    if series_uid is not None:
        clauses.append("c.series = @series")
        params["@series"] = series_uid
    if sop_uid is not None:
        clauses.append("c.sop = @sop")
        params["@sop"] = sop_uid
    return " AND ".join(clauses), params


def pick_versions(found: list[Doc]) -> list[Doc]:
    """One document per instance from a scope read with originals, oldest first: the kept
    original where there is one, else the current version."""
    originals = {(d["series"], d["sop"]) for d in found if d.get("kind") == ORIGINAL}
    return [
        d for d in found if d.get("kind") == ORIGINAL or (d["series"], d["sop"]) not in originals
    ]


async def scope_query(
    index: Any,
    fields: str,
    study: PlacedStudy,
    series_uid: str | None,
    sop_uid: str | None,
    *,
    original: bool = False,
) -> list[Doc]:
    """The ``fields`` of the instances of a study, series or instance, oldest first (with
    ``original``, each one's kept original where it has one)."""
    where, params = scope_filter(study, series_uid, sop_uid, original)
    names = [name.strip() for name in fields.split(",")]
    if original:
        names += [name for name in ("kind", "series", "sop") if name not in names]
    else:
        names.append(NEXT)  # a staged version, present only while a large update commits
    projection = ", ".join(f"c.{name}" for name in names)
    found = await query_items(
        index,
        f"SELECT {projection} FROM c WHERE {where} ORDER BY c.wm",
        params,
        partition=study.key,
    )
    if original:
        return pick_versions(found)
    return await visible_documents(index, study.key, found)


async def _metadata_scope(
    c: Containers,
    fields: str,
    study: PlacedStudy,
    series_uid: str | None,
    sop_uid: str | None,
    original: bool = False,
) -> list[Doc]:
    """The instance documents of a metadata request, oldest first: one point read for an
    instance (two for its original), else one query projecting ``fields``."""
    if series_uid is not None and sop_uid is not None:
        doc = await _original_or_current(c, study, series_uid, sop_uid, original)
        return [doc] if doc else []
    return await scope_query(
        study.container(c), fields, study, series_uid, sop_uid, original=original
    )


def _version(found: list[Doc]) -> str | None:
    return ",".join(str(doc["wm"]) for doc in found) or None


async def read_metadata(
    c: Containers, study: PlacedStudy, series_uid: str | None, sop_uid: str | None
) -> list[bytes]:
    found = await _metadata_scope(c, "wm, meta, metaParts", study, series_uid, sop_uid)
    return await unpack_all(study.container(c), study, found)


async def read_metadata_version(
    c: Containers,
    study: PlacedStudy,
    series_uid: str | None,
    sop_uid: str | None,
    original: bool = False,
) -> str | None:
    """``IndexStore.metadata_version``: the watermarks of the scope, as ``read_metadata``
    finds its instances, without their metadata (one point read or one projected query)."""
    fields = "wm, hasOriginal"
    return _version(await _metadata_scope(c, fields, study, series_uid, sop_uid, original))


async def read_versioned_metadata(
    c: Containers,
    study: PlacedStudy,
    series_uid: str | None,
    sop_uid: str | None,
    original: bool = False,
) -> VersionedMetadata:
    """Both of the above from one point read or one query (slices of a split document
    aside): the version is that of the very documents returned."""
    found = await _metadata_scope(c, "wm, meta, metaParts", study, series_uid, sop_uid, original)
    documents = await unpack_all(study.container(c), study, found)
    return VersionedMetadata(version=_version(found), documents=tuple(documents))


async def search_index(
    c: Containers,
    query: QueryDescription,
    metadata: frozenset[QueryLevel],
    cached: Callable[[int], bool] | None = None,
) -> list[SearchMatch]:
    searched = query
    restrictions: list[tuple[str, list[str]]] = []
    if any(condition.attribute.extended for condition in query.conditions):
        # Extended query tags and external metadata: their values are system documents.
        searched, restrictions = await resolve_extended(c.system, query)
    placement = placement_of(query.partition)
    index = placement.container(c)
    return await run_search(
        index,
        searched,
        metadata,
        lambda study_uid, doc: unpack_metadata(index, placement.study(study_uid), doc),
        restrictions,
        cached,
    )
