"""Which data partition a request is in, as Azure's DICOM service decides it.

Azure checks the partition of a request before its action runs (its
``PopulateDataPartitionFilterAttribute``), and this service decides the same five cases:

- partitions off, no partition in the route: Microsoft.Default, as before partitions existed;
- partitions off, a partition route: 400 "Data partitions feature is disabled.";
- partitions on, no partition in the route: 400 "PartitionName value is missing...";
- partitions on, a store (STOW, workitem create): the named partition, created by this first
  store that names it;
- partitions on, anything else: the named partition; 400 "Specified PartitionName does not
  exist." when no store has created it (a 400, not a 404, as in Azure).

A name is checked against Azure's rule before it is looked up. Partitions are never renamed
or deleted, so a partition found is kept in memory for good; one not found is asked again
next time (a store may create it meanwhile).

The setting cannot be turned off once partitions other than Microsoft.Default exist: their
data would be unreachable. ``check_startup`` refuses it, as Azure refuses to start.
"""

from __future__ import annotations

from collections.abc import Iterable

from dicom_core.domain.partitions import (
    CANNOT_DISABLE,
    DEFAULT_PARTITION,
    FEATURE_DISABLED,
    INVALID_NAME,
    PARTITION_MISSING,
    PARTITION_NOT_FOUND,
    Partition,
    name_key,
    name_problem,
)
from dicom_core.errors import BadRequest
from dicom_core.settings import SettingsError
from dicom_core.storage.ports.partitions import PartitionStore


class PartitionService:
    def __init__(self, store: PartitionStore, *, enabled: bool) -> None:
        self._store = store
        self._enabled = enabled
        self._known: dict[str, Partition] = {}
        self._names: dict[int, str] = {DEFAULT_PARTITION.key: DEFAULT_PARTITION.name}

    @property
    def enabled(self) -> bool:
        """Whether data partitions are on (``DICOM_DATA_PARTITIONS``)."""
        return self._enabled

    async def resolve(self, name: str | None, *, create: bool = False) -> Partition:
        """The partition of a request whose route names ``name`` (None: a route without a
        partition); ``create`` for the requests that create a partition by naming it."""
        if name is None:
            if self._enabled:
                raise BadRequest(PARTITION_MISSING)
            return DEFAULT_PARTITION
        if not self._enabled:
            raise BadRequest(FEATURE_DISABLED)
        problem = name_problem(name)
        if problem is not None:
            raise BadRequest(f"{INVALID_NAME}: {problem}.")
        folded = name_key(name)
        known = self._known.get(folded)
        if known is not None:
            return known
        if create:
            found: Partition | None = await self._store.get_or_add_partition(name)
        else:
            found = await self._store.get_partition(name)
        if found is None:
            raise BadRequest(PARTITION_NOT_FOUND)
        self._known[folded] = found
        return found

    async def names(self, keys: Iterable[int]) -> dict[int, str]:
        """The name of each partition key (change feed entries name their partition); the
        registry is read only for a key not seen before."""
        wanted = set(keys)
        if not wanted <= self._names.keys():
            for partition in await self._store.list_partitions():
                self._names[partition.key] = partition.name
        return {key: self._names.get(key, f"unknown partition {key}") for key in wanted}

    async def list_partitions(self) -> list[Partition]:
        """``GET /partitions``: every partition, Microsoft.Default first; 400 when off."""
        if not self._enabled:
            raise BadRequest(FEATURE_DISABLED)
        return await self._store.list_partitions()

    async def check_startup(self) -> None:
        """Refuse to serve with partitions off while other partitions than Microsoft.Default
        exist (Azure counts partitions, not their data: one whose data was all deleted
        still counts)."""
        if self._enabled:
            return
        if len(await self._store.list_partitions()) > 1:
            raise SettingsError(CANNOT_DISABLE)
