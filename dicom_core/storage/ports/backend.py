"""A storage backend as one object: every port, built together, closed together.

``dicom_core.storage.local.factory`` and ``dicom_core.storage.azure.factory`` each build a
complete ``Backend`` from the settings; the composition root (``dicom_core.bootstrap``) picks
one by ``DICOM_STORAGE`` and wires the services to its ports without looking inside. What
differs between backends is said here, as data, instead of being found out by inspecting the
adapters' types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dicom_core.storage.ports.blobs import BlobStore
from dicom_core.storage.ports.change_feed import ChangeFeedStore
from dicom_core.storage.ports.cursors import CursorStore
from dicom_core.storage.ports.external_metadata import ExternalMetadataStore
from dicom_core.storage.ports.index import IndexStore, InstanceWriter
from dicom_core.storage.ports.operations import OperationStore
from dicom_core.storage.ports.partitions import PartitionStore
from dicom_core.storage.ports.query_tags import QueryTagStore
from dicom_core.storage.ports.queue import JobQueue
from dicom_core.storage.ports.workitems import WorkitemStore

#: ``(fd, offset, length)``: start writing that range of a spool file to disk, without
#: waiting for it.
SpoolWriteback = Callable[[int, int, int], object]


@dataclass(frozen=True, slots=True)
class Backend:
    index: IndexStore
    blobs: BlobStore
    queue: JobQueue
    workitems: WorkitemStore
    query_tags: QueryTagStore
    external_metadata: ExternalMetadataStore
    change_feed: ChangeFeedStore
    cursors: CursorStore
    """Positions of the jobs that follow the change feed (event publishing)."""
    operations: OperationStore
    """Long-running operations; the query tag store on both backends (reindex is one)."""
    partitions: PartitionStore
    """The registry of data partitions (``Microsoft.Default`` and those stores created)."""
    writer: InstanceWriter | None
    """The one-step store of file and index entry, where the backend has one (local); None:
    the store uses the index's two-step protocol."""
    blob_delete_delay_seconds: float
    """How long a deleted file must stay readable for a retrieve that opened it. 0 where an
    open file stays readable by itself (local files); the setting's delay on Blob Storage."""
    spool_writeback: SpoolWriteback | None = None
    """Called with ``(fd, offset, length)`` as a spooled request part is written, a range at
    a time. The local store, which syncs every file it places, starts writing the range to
    disk there, so that its sync later waits for less; None where nothing is to be done
    (Blob Storage uploads the spool; scratch writes never sync)."""

    async def close(self) -> None:
        """Release connections and files. The stores that share the index's database or
        clients (workitems, query tags, external metadata, cursors, partitions) are closed
        with it."""
        await self.index.close()
        await self.blobs.close()
        await self.queue.close()
