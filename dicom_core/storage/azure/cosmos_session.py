"""The one Cosmos DB session that every Cosmos store of the azure backend runs on.

The index, workitem, query tag and external metadata stores share one client and its
containers (``index``, ``system`` and ``partitioned``, see ``cosmos_schema``). What they
share lives here, once:

- opening the containers lazily in the running loop, creating database and containers first
  when the adapter may create resources;
- running a protocol step under ``RetryPolicy`` (a store that stays unreachable is a
  ``StorageUnavailable``, a 503), recreating the containers once when a 404 says they are gone
  (an emulator restarted empty, a container deleted by hand), and turning any other SDK error
  into one the web layer knows;
- the counters of the ``system`` container (watermarks, tag keys, workitem sequences),
  advanced with atomic ``incr`` patches (the change feed's sequences are not a counter's:
  ``cosmos_change_feed``);
- reading an instance's DICOM JSON back from its packed form, split or not.

A store holds a ``CosmosSession`` and calls only its public methods; no store reaches into
another store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from azure.cosmos import PartitionKey
from azure.cosmos.exceptions import (
    CosmosHttpResponseError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from dicom_core.errors import DicomWebError
from dicom_core.settings import AzureSettings
from dicom_core.storage.azure import cosmos_docs as docs
from dicom_core.storage.azure.clients import CosmosClients
from dicom_core.storage.azure.cosmos_io import (
    ContainerGone,
    MetadataGone,
    owner_missing,
    query_items,
)
from dicom_core.storage.azure.cosmos_placement import PlacedStudy
from dicom_core.storage.azure.cosmos_schema import (
    COUNTER_PARTITION,
    INDEX_CONTAINER,
    METAPART,
    MULTI_HASH,
    PARTITIONED_CONTAINER,
    SYSTEM_CONTAINER,
    ContainerSpec,
)
from dicom_core.storage.azure.retry import RetryPolicy, unexpected
from dicom_core.storage.ports import InstanceBeingCreated, InstanceExists, StorageUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

DATABASE = "Cosmos DB"
"""How errors and retry logs name the service."""


@dataclass(frozen=True, slots=True)
class Containers:
    """The container clients of one session: the index of Microsoft.Default's instances,
    everything else, and the index of other data partitions (``cosmos_schema``,
    ``cosmos_placement``)."""

    index: Any
    system: Any
    partitioned: Any


def _partition_key(spec: ContainerSpec) -> PartitionKey:
    """The SDK's definition of a spec's partition key: one path hashed, or several (MultiHash)."""
    if spec.kind == MULTI_HASH:
        return PartitionKey(path=list(spec.partition_key_paths), kind=MULTI_HASH)
    (path,) = spec.partition_key_paths
    return PartitionKey(path=path)


class CosmosSession:
    """One Cosmos DB client and its containers, with the retry policy every store runs under."""

    def __init__(
        self, clients: CosmosClients, settings: AzureSettings, *, create_resources: bool = True
    ) -> None:
        self._clients = clients
        self._settings = settings
        self._create = create_resources
        self._retry = RetryPolicy(settings.retry_seconds)
        self._ready: Containers | None = None
        self._lock = asyncio.Lock()

    async def containers(self) -> Containers:
        """The container clients, creating database and containers first when allowed."""
        if self._ready is not None:
            return self._ready
        async with self._lock:
            if self._ready is None:
                self._ready = await self._retry.run(self._open, DATABASE)
        return self._ready

    async def _open(self) -> Containers:
        client = await self._clients.client()
        name = self._settings.cosmos_database
        names = {
            INDEX_CONTAINER.setting: self._settings.cosmos_index_container,
            SYSTEM_CONTAINER.setting: self._settings.cosmos_system_container,
            PARTITIONED_CONTAINER.setting: self._settings.cosmos_partitioned_container,
        }
        if not self._create:
            database = client.get_database_client(name)
            return Containers(
                index=database.get_container_client(names[INDEX_CONTAINER.setting]),
                system=database.get_container_client(names[SYSTEM_CONTAINER.setting]),
                partitioned=database.get_container_client(names[PARTITIONED_CONTAINER.setting]),
            )
        # The SDK's "if not exists" reads, and creates on a 404: a process that loses the race
        # between the two to another one (the host's workers all open at their first request)
        # gets a 409, as from Azure itself. What it wanted to create is then there to use.
        try:
            database = await client.create_database_if_not_exists(name)
        except CosmosResourceExistsError:
            database = client.get_database_client(name)

        async def create(spec: ContainerSpec) -> Any:
            try:
                return await database.create_container_if_not_exists(
                    id=names[spec.setting],
                    partition_key=_partition_key(spec),
                    indexing_policy=spec.indexing_policy,
                    unique_key_policy=(
                        {"uniqueKeys": spec.unique_keys} if spec.unique_keys else None
                    ),
                )
            except CosmosResourceExistsError:
                return database.get_container_client(names[spec.setting])

        index, system, partitioned = await asyncio.gather(
            create(INDEX_CONTAINER), create(SYSTEM_CONTAINER), create(PARTITIONED_CONTAINER)
        )
        return Containers(index=index, system=system, partitioned=partitioned)

    async def run(self, step: Callable[[Containers], Awaitable[T]], what: str = DATABASE) -> T:
        """Run one protocol step with retries; recreate containers once if they vanished."""
        for attempt in range(2):
            try:
                containers = await self.containers()
                return await self._retry.run(functools.partial(step, containers), what)
            except ContainerGone as exc:
                self._ready = None
                if attempt == 0 and self._create:
                    log.warning("Cosmos DB containers are missing; recreating them (%s)", exc)
                    continue
                raise StorageUnavailable(
                    "the Cosmos DB database or containers of the index do not exist"
                ) from exc
            except (StorageUnavailable, DicomWebError, InstanceExists, InstanceBeingCreated):
                raise
            except CosmosHttpResponseError as exc:
                if owner_missing(exc) and attempt == 0 and self._create:
                    self._ready = None
                    continue
                raise unexpected(DATABASE, exc) from exc
            except Exception as exc:
                if type(exc).__module__.startswith(("azure.", "aiohttp")):
                    raise unexpected(DATABASE, exc) from exc
                raise
        raise StorageUnavailable(DATABASE)  # pragma: no cover - the loop always returns

    async def close(self) -> None:
        self._ready = None
        await self._clients.close()


async def advance_counter(
    system: Any, counter: str, count: int = 1, *, seed: int | None = None
) -> int:
    """Atomically advance a counter by ``count``; returns its new value (the last one).

    A missing counter is created with the value ``seed`` before it is advanced, so the first
    value handed out is ``seed + count``. Without a seed it starts from the clock
    (milliseconds), so that an index recreated empty never hands out a watermark, and so a
    blob name, used before; counters whose values must stay small (partition keys, int32 in
    Azure's API) pass their own.
    """
    operations = [{"op": "incr", "path": "/value", "value": count}]
    for _ in range(3):
        try:
            doc = await system.patch_item(
                counter, partition_key=COUNTER_PARTITION, patch_operations=operations
            )
            return int(doc["value"])
        except CosmosResourceNotFoundError as exc:
            if owner_missing(exc):
                raise ContainerGone(str(exc)) from exc
            start = int(time.time() * 1000) if seed is None else seed
            with contextlib.suppress(CosmosResourceExistsError):
                await system.create_item({"id": counter, "pk": COUNTER_PARTITION, "value": start})
    raise StorageUnavailable(f"the {counter} counter could not be advanced")


async def unpack_metadata(container: Any, study: PlacedStudy, doc: Mapping[str, Any]) -> bytes:
    """The DICOM JSON of an instance document: inline, or joined from its metadata slices
    (in the study's logical partition of ``container``, the study's placement's)."""
    if doc.get("meta"):
        return docs.unpack_metadata(str(doc["meta"]))
    params: dict[str, object] = {"@kind": METAPART, "@wm": int(doc["wm"])}
    where = study.where(params)
    parts = await query_items(
        container,
        f"SELECT c.part, c.data FROM c WHERE {where} AND c.kind = @kind AND c.wm = @wm",
        params,
        partition=study.key,
    )
    expected = doc.get("metaParts")
    if not parts or (expected is not None and len(parts) < int(expected)):
        # A delete (or a replacing store) removed the slices after the document was read.
        raise MetadataGone(
            f"the metadata of instance {doc.get('sop')} was deleted while it was being read"
        )
    parts.sort(key=lambda part: int(part["part"]))
    return docs.unpack_metadata("".join(str(part["data"]) for part in parts))


async def unpack_all(
    container: Any, study: PlacedStudy, found: Sequence[Mapping[str, Any]]
) -> list[bytes]:
    """The DICOM JSON of several instance documents of one study, read concurrently."""
    return list(await asyncio.gather(*(unpack_metadata(container, study, doc) for doc in found)))
