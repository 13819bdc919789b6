"""The partition registry port: which data partitions exist, and their keys.

A partition is created by the first store or workitem that names it, so two first stores of
one name may race: ``get_or_add_partition`` must give both the same key (one insert wins and
the other reads it). Partitions are never renamed or deleted, so a caller may cache what it
reads for as long as it likes. ``Microsoft.Default`` (key 1) always exists; new partitions
get keys from 2 upwards, never reused.
"""

from __future__ import annotations

from typing import Protocol

from dicom_core.domain.partitions import Partition


class PartitionStore(Protocol):
    async def list_partitions(self) -> list[Partition]:
        """Every partition, ``Microsoft.Default`` included, by ascending key."""
        ...

    async def get_partition(self, name: str) -> Partition | None:
        """The partition ``name`` names (compared by ``domain.partitions.name_key``)."""
        ...

    async def get_or_add_partition(self, name: str) -> Partition:
        """The partition ``name`` names, created first if there is none; atomic."""
        ...
