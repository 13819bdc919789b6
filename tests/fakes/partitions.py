"""``FakePartitionStore``: the partition registry as a dict by folded name."""

from __future__ import annotations

from dicom_core.domain.partitions import (
    DEFAULT_PARTITION_KEY,
    DEFAULT_PARTITION_NAME,
    Partition,
    name_key,
)
from dicom_core.domain.timestamps import utc_timestamp


class FakePartitionStore:
    """The ``PartitionStore`` port; ``by_name`` (folded name -> partition) is what a test
    looks at (or fills)."""

    def __init__(self) -> None:
        default = Partition(DEFAULT_PARTITION_KEY, DEFAULT_PARTITION_NAME, utc_timestamp())
        self.by_name: dict[str, Partition] = {name_key(default.name): default}
        self._last_key = DEFAULT_PARTITION_KEY

    async def list_partitions(self) -> list[Partition]:
        return sorted(self.by_name.values(), key=lambda partition: partition.key)

    async def get_partition(self, name: str) -> Partition | None:
        return self.by_name.get(name_key(name))

    async def get_or_add_partition(self, name: str) -> Partition:
        # No await between the look-up and the insert: atomic on the event loop.
        found = self.by_name.get(name_key(name))
        if found is None:
            self._last_key += 1
            found = Partition(self._last_key, name, utc_timestamp())
            self.by_name[name_key(name)] = found
        return found
