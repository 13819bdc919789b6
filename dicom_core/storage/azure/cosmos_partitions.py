"""The azure ``PartitionStore``: one small document per data partition in the ``system``
container, all in the logical partition "partitions" (``cosmos_schema``).

- A document's id is ``n|{name_key}``: Cosmos keeps ids unique within a logical partition, so
  a create-only write of that id is what makes a name's registration atomic. The prefix keeps
  names such as ``..`` from being a path segment of their own in the request URL.
- A get-or-add reads the id first (the usual answer: the partition exists). When it is
  missing it takes a key from the counter ``partition`` and creates the document create-only;
  the loser of a race between two first stores gets a 409, reads the winner's document and
  answers with it, so both get one key. The key the loser took is never used: keys have gaps,
  as Azure's (a SQL sequence) do.
- The counter is seeded at 1, ``Microsoft.Default``'s key, so new partitions get 2, 3, ... and
  never a clock value (the watermark counter's seed, far beyond Azure's int32 keys).
- ``Microsoft.Default`` always exists: its document is created, create-only, the first time
  the registry is read without finding it, so its ``createdAt`` is fixed from then on.
  Naming it never takes a key.
- A listing is one single-partition query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from azure.cosmos.exceptions import CosmosResourceExistsError

from dicom_core.domain.partitions import (
    DEFAULT_PARTITION_KEY,
    DEFAULT_PARTITION_NAME,
    Partition,
    name_key,
)
from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.storage.azure.cosmos_io import query_items, read_item
from dicom_core.storage.azure.cosmos_schema import (
    DATA_PARTITION,
    DATA_PARTITIONS_PARTITION,
    PARTITION_COUNTER,
    data_partition_id,
)
from dicom_core.storage.azure.cosmos_session import Containers, CosmosSession, advance_counter
from dicom_core.storage.ports import StorageUnavailable

_DEFAULT_KEY = name_key(DEFAULT_PARTITION_NAME)


def _partition(doc: Mapping[str, Any]) -> Partition:
    return Partition(key=int(doc["key"]), name=str(doc["name"]), created_at=str(doc["createdAt"]))


async def _create_or_read(system: Any, key: int, name: str) -> Partition:
    """Register ``name`` under ``key`` unless it is registered; the registered partition."""
    doc_id = data_partition_id(name_key(name))
    doc = {
        "id": doc_id,
        "pk": DATA_PARTITIONS_PARTITION,
        "kind": DATA_PARTITION,
        "key": key,
        "name": name,
        "createdAt": utc_timestamp(),
    }
    try:
        await system.create_item(doc)
        return _partition(doc)
    except CosmosResourceExistsError:
        winner = await read_item(system, doc_id, DATA_PARTITIONS_PARTITION)
    if winner is None:  # registered, then deleted by hand in between
        raise StorageUnavailable(f"the data partition {name!r} could not be registered")
    return _partition(winner)


async def _default(system: Any) -> Partition:
    return await _create_or_read(system, DEFAULT_PARTITION_KEY, DEFAULT_PARTITION_NAME)


async def _registered(system: Any) -> list[Partition]:
    # The test server ignores a query's partition key: the WHERE names it as well.
    found = await query_items(
        system,
        "SELECT c.key, c.name, c.createdAt FROM c WHERE c.pk = @pk AND c.kind = @kind",
        {"@pk": DATA_PARTITIONS_PARTITION, "@kind": DATA_PARTITION},
        partition=DATA_PARTITIONS_PARTITION,
    )
    return [_partition(doc) for doc in found]


async def partition_names(system: Any) -> dict[int, str]:
    """The names of the registered partitions by key (one single-partition query), for
    the stores that list documents of several partitions by name (query tag errors)."""
    return {partition.key: partition.name for partition in await _registered(system)}


class CosmosPartitionStore:
    def __init__(self, session: CosmosSession) -> None:
        self._session = session

    async def list_partitions(self) -> list[Partition]:
        async def read(c: Containers) -> list[Partition]:
            partitions = await _registered(c.system)
            if all(partition.key != DEFAULT_PARTITION_KEY for partition in partitions):
                partitions.append(await _default(c.system))
            return sorted(partitions, key=lambda partition: partition.key)

        return await self._session.run(read)

    async def get_partition(self, name: str) -> Partition | None:
        async def read(c: Containers) -> Partition | None:
            doc = await read_item(
                c.system, data_partition_id(name_key(name)), DATA_PARTITIONS_PARTITION
            )
            if doc is not None:
                return _partition(doc)
            return await _default(c.system) if name_key(name) == _DEFAULT_KEY else None

        return await self._session.run(read)

    async def get_or_add_partition(self, name: str) -> Partition:
        async def add(c: Containers) -> Partition:
            doc = await read_item(
                c.system, data_partition_id(name_key(name)), DATA_PARTITIONS_PARTITION
            )
            if doc is not None:
                return _partition(doc)
            if name_key(name) == _DEFAULT_KEY:
                return await _default(c.system)
            key = await advance_counter(c.system, PARTITION_COUNTER, seed=DEFAULT_PARTITION_KEY)
            return await _create_or_read(c.system, key, name)

        return await self._session.run(add)
