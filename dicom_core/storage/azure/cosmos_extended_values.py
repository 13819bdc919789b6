"""Extended query tag values and external metadata values on Cosmos DB, and QIDO over them.

Both kinds of value live in the ``system`` container, in the partition ``pk`` = ``v|{study}``
(``v|{dp}|{study}`` outside Microsoft.Default, with a ``dp`` field: ``cosmos_placement``),
keyed by the entity they describe, so a study's values sit together and a value never needs a
write to the index container's summaries (whose ETag protocol belongs to ``cosmos_index``):

- an extended query tag's value (``kind`` "eqtv", ``id`` ``t{tag key}|{series}|{sop}``, with
  "" for the UIDs above the tag's level), written by ``cosmos_eqt``;
- an external metadata value of a study (``kind`` "xval", ``id`` ``x|{tag}``), written by
  ``cosmos_external_metadata``.

This module is what the index store needs of them, so that it imports no other store: a
QIDO condition on an extended tag (or, with ``msdicom-request-meta: true``, on external
metadata) first finds the matching entities among the value documents (one parameterised
query per condition, across the ``system`` container's partitions, kept to the searched data
partition by ``dp``; so a data partition's search with such a condition reads the value
partitions of every data partition, as Microsoft.Default's always did), then restricts the
index query with ``ARRAY_CONTAINS`` over their UIDs (``cosmos_query.compile_search``'s
``restrictions``); and a delete drops the values of what
it deleted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection
from typing import Any

from dicom_core.query.conditions import (
    EXTERNAL_METADATA_PATH,
    Condition,
    QueryDescription,
    QueryLevel,
    UnsupportedCondition,
    ValueMatch,
)
from dicom_core.query.indexed_values import NUMERIC_VRS
from dicom_core.storage.azure.cosmos_io import delete_if_present, query_items
from dicom_core.storage.azure.cosmos_placement import Placement, placement_of
from dicom_core.storage.azure.cosmos_query import Parameters, predicate

VALUE_KIND = "eqtv"
EXTERNAL_KIND = "xval"


def value_partition(study_uid: str, *, partition: int) -> str:
    """The ``system`` logical partition of a study's values (``cosmos_placement``)."""
    return placement_of(partition).values_partition(study_uid)


def _value_test(condition: Condition, params: Parameters) -> str:
    attribute = condition.attribute
    if attribute.vr in NUMERIC_VRS:
        if not isinstance(condition, ValueMatch):
            raise UnsupportedCondition(f"{attribute.tag} ({attribute.vr}) takes single values")
        return f"c.num = {params.add(float(condition.key))}"
    return predicate(condition, "c.norm", params)


async def resolve_extended(
    system: Any, query: QueryDescription
) -> tuple[QueryDescription, list[tuple[str, list[str]]]]:
    """The query without its extended conditions, and the UID restrictions they stand for.

    Each restriction is (field of the searched document, UIDs it must be one of); an empty
    list matches nothing, as a condition no value satisfies should.
    """
    kept: list[Condition] = []
    restrictions: list[tuple[str, list[str]]] = []
    for condition in query.conditions:
        attribute = condition.attribute
        if not attribute.extended:
            kept.append(condition)
            continue
        if attribute.level > query.level:
            raise UnsupportedCondition(
                f"{attribute.tag} is not searchable at {query.level.label} level"
            )
        params = Parameters()
        if attribute.path[:1] == (EXTERNAL_METADATA_PATH,):
            kind, field, source = EXTERNAL_KIND, "c.pk", "study"
            clauses = [f"c.tag = {params.add(attribute.tag)}"]
        else:
            kind = VALUE_KIND
            field, source = {
                QueryLevel.STUDY: ("c.pk", "study"),
                QueryLevel.SERIES: ("c.series", "series"),
                QueryLevel.INSTANCE: ("c.sop", "sop"),
            }[attribute.level]
            clauses = [f"c.path = {params.add(attribute.tag)}"]
        clauses.insert(0, f"c.kind = {params.add(kind)}")
        clauses.insert(1, placement_of(query.partition).system_where(params.values))
        if query.study_uid is not None:
            clauses.append(f"c.study = {params.add(query.study_uid)}")
        clauses.append(_value_test(condition, params))
        rows = await query_items(
            system, f"SELECT c.{source} FROM c WHERE {' AND '.join(clauses)}", params.values
        )
        restrictions.append((field, sorted({str(row[source]) for row in rows})))
    return dataclasses.replace(query, conditions=tuple(kept)), restrictions


async def drop_values(
    system: Any,
    placement: Placement,
    study_uid: str,
    series_uid: str | None,
    sop_uid: str | None,
    *,
    removed_watermarks: Collection[int],
    study_gone: bool,
) -> None:
    """Delete the values that deleted instances wrote, as the local index does.

    A value document keeps the watermark of the instance that wrote it (the newest wins), so a
    value goes only when that instance was removed: an instance a concurrent store commits
    into the deleted scope keeps its values (or writes them again, if the delete took the
    older ones). A series- or study-level value written by an instance that stays is kept the
    same way. External metadata belongs to the study, and goes only with the study's last
    instance (``study_gone``), by a study, series or instance delete alike.
    """
    partition = placement.values_partition(study_uid)
    params = Parameters()
    clauses = [f"c.pk = {params.add(partition)}"]
    if not study_gone:
        if series_uid is not None:
            clauses.append(f"c.series = {params.add(series_uid)}")
        if sop_uid is not None:
            clauses.append(f"c.sop = {params.add(sop_uid)}")
        clauses.append(f"c.kind = {params.add(VALUE_KIND)}")
    # With the study gone, its whole partition is read: the values of the removed instances
    # and the external metadata, whatever the scope of the delete that removed the last one.
    rows = await query_items(
        system,
        f"SELECT c.id, c.kind, c.wm FROM c WHERE {' AND '.join(clauses)}",
        params.values,
        partition=partition,
    )
    removed = set(removed_watermarks)
    for row in rows:
        if row.get("kind") == VALUE_KIND and row.get("wm") not in removed:
            continue
        await delete_if_present(system, str(row["id"]), partition)
