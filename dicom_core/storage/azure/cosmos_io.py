"""Point reads, queries and ETag-guarded writes on Cosmos DB containers, with the two 404s
told apart.

A 404 means "no such item" for a point read, but "no such container or database" when Cosmos
adds sub-status 1003; the second becomes ``ContainerGone`` so that the adapter can recreate
its containers (an emulator restarted empty, a container deleted by hand) and run the call
again, instead of answering "not found" for data that exists elsewhere.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from azure.core import MatchConditions
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosBatchOperationError,
    CosmosResourceNotFoundError,
)

from dicom_core.storage.azure.cosmos_docs import BatchPlan, without_system_properties
from dicom_core.storage.azure.cosmos_placement import Containers, PartitionKeyValue, PlacedStudy
from dicom_core.storage.azure.retry import sub_status_of
from dicom_core.storage.ports import StorageUnavailable

Doc = dict[str, Any]

OWNER_MISSING = 1003
"""Cosmos sub-status of a 404: the container or database of the request does not exist."""


class ContainerGone(Exception):
    """A request found its container or database missing (404 with sub-status 1003)."""


class MetadataGone(StorageUnavailable):
    """An instance document's metadata slices were deleted between the document's read and
    theirs (``cosmos_session.unpack_metadata``). A search reads the summaries again
    (``cosmos_query``); elsewhere it is a 503, a request to try again, never the 500 that
    joining missing slices gave."""


async def nothing() -> None:
    """A read not made: stands in for it in a gather that reads only some documents."""
    return None


def owner_missing(exc: BaseException) -> bool:
    return isinstance(exc, CosmosResourceNotFoundError) and sub_status_of(exc) == OWNER_MISSING


async def read_item(container: Any, item_id: str, partition: PartitionKeyValue) -> Doc | None:
    """A point read; None for a missing item (a missing container raises ``ContainerGone``)."""
    try:
        return dict(await container.read_item(item_id, partition_key=partition))
    except CosmosResourceNotFoundError as exc:
        if owner_missing(exc):
            raise ContainerGone(str(exc)) from exc
        return None


async def query_items(
    container: Any,
    sql: str,
    parameters: Mapping[str, object] | None = None,
    *,
    partition: PartitionKeyValue | None = None,
    page_size: int | None = None,
) -> list[Doc]:
    """All results of a parameterised query (single-partition when ``partition`` is given;
    a prefix of a hierarchical key scopes it to the physical partitions holding that prefix).

    The Cosmos DB server used in tests ignores the partition-key header on queries (real
    Cosmos answers from that logical partition only), so callers that name a partition also
    filter on ``c.pk`` in the query text.
    """
    params = [{"name": name, "value": value} for name, value in (parameters or {}).items()]
    try:
        results = container.query_items(
            sql, parameters=params, partition_key=partition, max_item_count=page_size
        )
        return [dict(item) async for item in results]
    except CosmosResourceNotFoundError as exc:
        # A query has no item to miss: its 404 always means the container is gone.
        raise ContainerGone(str(exc)) from exc


async def first_item(
    container: Any, sql: str, parameters: Mapping[str, object] | None = None
) -> Doc | None:
    """The first row of a cross-partition query, or None; no page after the one holding it
    is read.

    For "is there any?" probes: ``TOP 1`` would make a cross-partition query one that needs
    a query plan (two more round trips on real Cosmos), while a plain ``SELECT ... WHERE`` is
    walked by the gateway, one page at a time.
    """
    params = [{"name": name, "value": value} for name, value in (parameters or {}).items()]
    try:
        results = container.query_items(sql, parameters=params, max_item_count=1)
        async for item in results:
            return dict(item)
        return None
    except CosmosResourceNotFoundError as exc:
        raise ContainerGone(str(exc)) from exc


async def count_items(
    container: Any, sql: str, parameters: Mapping[str, object], partition: str | None = None
) -> int:
    """The number a ``SELECT VALUE COUNT(1)`` query answers (its rows are not objects, so
    ``query_items`` cannot read them; summed in case partition ranges answer separately)."""
    try:
        results = container.query_items(
            sql,
            parameters=[{"name": k, "value": v} for k, v in parameters.items()],
            partition_key=partition,
        )
        return sum([int(row) async for row in results])
    except CosmosResourceNotFoundError as exc:
        raise ContainerGone(str(exc)) from exc


async def replace_if_unchanged(container: Any, doc: Doc) -> bool:
    """Replace ``doc`` if nobody changed it since it was read (its ``_etag``); False when
    somebody did, or deleted it."""
    try:
        await container.replace_item(
            doc["id"],
            without_system_properties(doc),
            etag=doc["_etag"],
            match_condition=MatchConditions.IfNotModified,
        )
    except CosmosAccessConditionFailedError:
        return False
    except CosmosResourceNotFoundError as exc:
        if owner_missing(exc):
            raise ContainerGone(str(exc)) from exc
        return False
    return True


async def delete_if_present(container: Any, item_id: str, partition: PartitionKeyValue) -> None:
    """Delete an item; one already gone is fine (a missing container raises ``ContainerGone``)."""
    try:
        await container.delete_item(item_id, partition_key=partition)
    except CosmosResourceNotFoundError as exc:
        if owner_missing(exc):
            raise ContainerGone(str(exc)) from exc


CONFLICT_SECONDS = 30.0
"""How long a write keeps re-reading and retrying after losing ETag races (then 503)."""


class BatchConflict(Exception):
    """A write lost an ETag race (or found a document gone or already there); the step
    re-reads and runs again."""


def conflict_backoff() -> Iterator[float]:
    """Rounds of a write that may lose ETag races, each with the pause to take after a loss.

    Exponential with full jitter (5 ms doubling up to 400 ms), so that writers racing on one
    study's summaries spread out instead of colliding again; bounded in time, not in rounds.
    """
    deadline = time.monotonic() + CONFLICT_SECONDS
    ceiling = 0.005
    while time.monotonic() < deadline:
        wait = random.uniform(0, ceiling)
        ceiling = min(ceiling * 2, 0.4)
        yield wait


Execute = Callable[[Containers, PlacedStudy, BatchPlan], Awaitable[list[Any]]]
"""How a store runs a batch plan: ``execute_plan``, or the index store's wrapper of it."""


async def execute_plan(c: Containers, study: PlacedStudy, plan: BatchPlan) -> list[Any]:
    """Run ``plan`` as one transactional batch in the study's logical partition. An ETag or
    existence failure becomes ``BatchConflict`` (named after the failing operation), a missing
    container ``ContainerGone``; throttling and other failures propagate for the session's
    retry policy to judge by their status code."""
    try:
        return list(
            await study.container(c).execute_item_batch(
                batch_operations=plan.operations, partition_key=study.key
            )
        )
    except CosmosBatchOperationError as exc:
        name = plan.names[exc.error_index] if exc.error_index < len(plan.names) else "?"
        if exc.status_code in {404, 409, 412}:
            raise BatchConflict(name) from exc
        raise
    except CosmosResourceNotFoundError as exc:
        raise ContainerGone(str(exc)) from exc
