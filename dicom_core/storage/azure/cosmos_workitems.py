"""UPS-RS workitems on Cosmos DB: documents in the ``system`` container.

Each workitem is one document (``kind`` "workitem", ``id`` ``w|{uid}``) in the logical
partition ``pk`` = "workitems", so listing the worklist is a single-partition query and
needs no new container (nor a Bicep change).

Data partitions: a workitem UID is unique per partition (as in Azure), and every partition's
workitems share that one logical partition; only the document id and a field tell them apart.
Microsoft.Default's documents are exactly those written before partitions existed (id
``w|{uid}``, no ``dp`` field), so nothing needs migrating; another partition's have id
``w|{key}|{uid}`` (a UID has no ``|``, so no id of one partition is another's) and ``dp`` =
the partition key. A read is a point read of that id; every query filters on the partition
(``NOT IS_DEFINED(c.dp)`` for the default one, ``c.dp = @key`` otherwise).

Creation is create-only (409 from Cosmos means the UID is taken); every replace is
conditional on the ETag read before it, which makes the Transaction UID lock safe against two
clients claiming the same workitem at once.

Search: a document carries the matching keys of its searchable attributes
(``query.workitems.workitem_keys``), the top-level ones (all of value multiplicity 1) as
``wv.k<tag>`` strings that conditions compile to with QIDO's predicates (``cosmos_query``).
Conditions on paths through sequences (``ReferencedRequestSequence.AccessionNumber``) match
any item's value; the Cosmos DB server of the tests cannot evaluate ``EXISTS`` over a list
that some documents lack, so those are checked on the candidates the query returns, with the
reference matcher (``wk`` keeps their keys for a later compiled form). Newest first by ``seq``.

The dataset is kept as DICOM JSON text (``dataset_json``), not as a nested object: Cosmos DB
refuses items whose objects and arrays nest more than 128 levels, and each sequence level is
three of them in DICOM JSON, so a workitem within ``MAX_SEQUENCE_DEPTH`` (64) could not be
stored as an object. Documents written as objects (``dataset``) by earlier versions are still
read. Nothing queries inside the dataset; searches use the ``wv`` and ``wk`` fields.

Paging reads no more than a page needs: an exact query asks for ``TOP (offset + limit)``
(clamped to the 32-bit integer TOP takes; the parser already caps both), and the candidates of
an inexact one are read page by page until ``offset + limit`` of them have matched.
"""

from __future__ import annotations

from typing import Any

import orjson
from azure.core import MatchConditions
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from dicom_core.domain.partitions import is_default
from dicom_core.domain.workitems import WorkitemRecord
from dicom_core.query.workitems import WorkitemQuery, workitem_keys, workitem_matches
from dicom_core.storage.azure.cosmos_docs import without_system_properties
from dicom_core.storage.azure.cosmos_io import ContainerGone, owner_missing, query_items, read_item
from dicom_core.storage.azure.cosmos_query import MAX_TOP, Parameters, predicate
from dicom_core.storage.azure.cosmos_session import Containers, CosmosSession, advance_counter
from dicom_core.storage.ports import WorkitemChanged, WorkitemExists

WORKITEM = "workitem"
WORKITEM_PARTITION = "workitems"
WORKITEM_COUNTER = "workitem"


def workitem_id(uid: str, *, partition: int) -> str:
    """The document id of workitem ``uid`` in data partition ``partition``."""
    return f"w|{uid}" if is_default(partition) else f"w|{partition}|{uid}"


def partition_filter(partition: int, params: Parameters) -> str:
    """The condition a workitem query keeps the documents of ``partition`` with."""
    return "NOT IS_DEFINED(c.dp)" if is_default(partition) else f"c.dp = {params.add(partition)}"


def _dataset_fields(dataset: dict[str, Any]) -> dict[str, Any]:
    """The fields a workitem document derives from its dataset: the dataset as text, and the
    matching keys its searches compile to."""
    keys = workitem_keys(dataset)
    top = {f"k{path}": values[0] for path, values in keys.items() if "." not in path}
    return {"dataset_json": orjson.dumps(dataset).decode(), "wk": keys, "wv": top}


def _dataset(doc: dict[str, Any]) -> dict[str, Any]:
    text = doc.get("dataset_json")
    if text is None:
        return dict(doc["dataset"])  # written as an object before dataset_json
    loaded: dict[str, Any] = orjson.loads(text)
    return loaded


def compile_workitem_search(query: WorkitemQuery) -> tuple[str, dict[str, object], bool]:
    """The Cosmos SQL of a workitem search, its parameters, and whether it is exact.

    Exact (no condition through a sequence): the query returns the first ``offset + limit``
    matches itself. Otherwise it returns every candidate for the conditions it could compile.
    """
    params = Parameters()
    clauses = [
        f"c.pk = {params.add(WORKITEM_PARTITION)}",
        f"c.kind = {params.add(WORKITEM)}",
        partition_filter(query.partition, params),
    ]
    exact = True
    for condition in query.conditions:
        path = condition.attribute.path
        if len(path) == 1:
            clauses.append(predicate(condition, f"c.wv.k{path[0]}", params))
        else:
            exact = False
    top = f"TOP {params.add(min(query.offset + query.limit, MAX_TOP))} " if exact else ""
    sql = f"SELECT {top}* FROM c WHERE {' AND '.join(clauses)} ORDER BY c.seq DESC"
    return sql, params.values, exact


def _record(doc: dict[str, Any]) -> WorkitemRecord:
    return WorkitemRecord(
        uid=str(doc["uid"]),
        dataset=_dataset(doc),
        version=str(doc["_etag"]),
        sequence=int(doc["seq"]),
    )


class CosmosWorkitemStore:
    """``WorkitemStore`` on the ``system`` container of the backend's one Cosmos session."""

    def __init__(self, session: CosmosSession) -> None:
        self._session = session

    async def create_workitem(self, uid: str, dataset: dict[str, Any], *, partition: int) -> None:
        doc_id = workitem_id(uid, partition=partition)

        async def create(c: Containers) -> None:
            if await read_item(c.system, doc_id, WORKITEM_PARTITION) is not None:
                raise WorkitemExists(uid)
            sequence = await advance_counter(c.system, WORKITEM_COUNTER)
            doc: dict[str, Any] = {
                "id": doc_id,
                "pk": WORKITEM_PARTITION,
                "kind": WORKITEM,
                "uid": uid,
                "seq": sequence,
                **_dataset_fields(dataset),
            }
            if not is_default(partition):
                doc["dp"] = partition
            try:
                await c.system.create_item(doc)
            except CosmosResourceExistsError as exc:
                raise WorkitemExists(uid) from exc

        await self._session.run(create)

    async def get_workitem(self, uid: str, *, partition: int) -> WorkitemRecord | None:
        doc_id = workitem_id(uid, partition=partition)

        async def read(c: Containers) -> WorkitemRecord | None:
            doc = await read_item(c.system, doc_id, WORKITEM_PARTITION)
            return _record(doc) if doc else None

        result: WorkitemRecord | None = await self._session.run(read)
        return result

    async def replace_workitem(
        self, uid: str, dataset: dict[str, Any], *, partition: int, version: str
    ) -> None:
        doc_id = workitem_id(uid, partition=partition)

        async def replace(c: Containers) -> None:
            current = await read_item(c.system, doc_id, WORKITEM_PARTITION)
            if current is None or current["_etag"] != version:
                raise WorkitemChanged(uid)
            body = without_system_properties(current)
            body.pop("dataset", None)  # an earlier version's object form
            body |= _dataset_fields(dataset)
            try:
                await c.system.replace_item(
                    doc_id,
                    body,
                    etag=version,
                    match_condition=MatchConditions.IfNotModified,
                )
            except CosmosAccessConditionFailedError as exc:
                raise WorkitemChanged(uid) from exc
            except CosmosResourceNotFoundError as exc:
                if owner_missing(exc):
                    raise ContainerGone(str(exc)) from exc
                raise WorkitemChanged(uid) from exc

        await self._session.run(replace)

    async def search_workitems(self, query: WorkitemQuery) -> list[WorkitemRecord]:
        sql, params, exact = compile_workitem_search(query)

        async def read(c: Containers) -> list[WorkitemRecord]:
            if exact:
                found = await query_items(c.system, sql, params, partition=WORKITEM_PARTITION)
                records = [_record(doc) for doc in found]
            else:
                records = await _first_matches(c.system, sql, params, query)
            return records[query.offset : query.offset + query.limit]

        result: list[WorkitemRecord] = await self._session.run(read)
        return result


async def _first_matches(
    container: Any, sql: str, params: dict[str, object], query: WorkitemQuery
) -> list[WorkitemRecord]:
    """The first ``offset + limit`` candidates that match, newest first: the query's pages are
    read only until the page the client asked for is complete, not to the end of the list."""
    wanted = query.offset + query.limit
    matched: list[WorkitemRecord] = []
    parameters = [{"name": name, "value": value} for name, value in params.items()]
    try:
        results = container.query_items(
            sql, parameters=parameters, partition_key=WORKITEM_PARTITION
        )
        async for doc in results:
            record = _record(dict(doc))
            if workitem_matches(query, record.dataset):
                matched.append(record)
                if len(matched) >= wanted:
                    break
    except CosmosResourceNotFoundError as exc:
        # A query has no item to miss: its 404 means the container is gone (cosmos_io).
        raise ContainerGone(str(exc)) from exc
    return matched
