"""Storage ports: what the services need from storage, one module per port.

Each port is a ``typing.Protocol`` with two adapters, ``local`` (SQLite + files + a SQLite job
table) and ``azure`` (Cosmos DB + Blob Storage + Storage queues). One contract test suite runs
unchanged against both. Ports speak in domain and query types, never in SQL, HTTP or SDK
types; each port's records and errors live in its module, and this package names them all so
that callers import from ``dicom_core.storage.ports``:

- ``index``: ``IndexStore`` (the two-step store protocol, retrieve and QIDO) and the
  ``InstanceWriter`` capability;
- ``blobs``: ``BlobStore`` and ``BlobReader``;
- ``queue``: ``JobQueue``;
- ``workitems``: ``WorkitemStore``, the UPS-RS workitems;
- ``query_tags``: ``QueryTagStore``, extended query tags and their values and errors;
- ``operations``: ``OperationStore``, long-running operations (reindex, bulk update, export);
- ``export``: ``ExportSinks`` and ``ExportSink``, where an export writes (not a backend's
  store: any backend exports to a blob container or, locally, a directory);
- ``external_metadata``: ``ExternalMetadataStore``;
- ``change_feed``: ``ChangeFeedStore``, reading the entries the index writes with each change;
- ``cursors``: ``CursorStore``, the positions of jobs that follow the change feed;
- ``partitions``: ``PartitionStore``, the registry of data partitions;
- ``events``: ``EventSink``, where DICOM events are published (not storage, but an outbound
  port all the same, with adapters of its own);
- ``errors``: ``StorageUnavailable`` and ``StorageFull``, which any port may raise, and
  ``storage_error``, which turns an ``OSError`` into one of them;
- ``backend``: ``Backend``, all the ports of one backend as one object.
"""

from __future__ import annotations

from dicom_core.storage.ports.backend import Backend, SpoolWriteback
from dicom_core.storage.ports.blobs import BlobDamaged, BlobNotFound, BlobReader, BlobStore
from dicom_core.storage.ports.change_feed import ChangeFeedStore, ChangeQuery
from dicom_core.storage.ports.cursors import CursorStore
from dicom_core.storage.ports.errors import StorageFull, StorageUnavailable, storage_error
from dicom_core.storage.ports.events import EventSink
from dicom_core.storage.ports.export import ExportDestinationError, ExportSink, ExportSinks
from dicom_core.storage.ports.external_metadata import (
    ExternalMetadataStore,
    ExternalValue,
    ExternalVrConflict,
)
from dicom_core.storage.ports.index import (
    BlobDebt,
    BlobRelease,
    IndexStore,
    InstanceBeingCreated,
    InstanceChanged,
    InstanceExists,
    InstanceWriter,
    NewVersion,
    VersionedMetadata,
    VersionsCommitted,
    WrittenInstance,
    release_all,
    settle_debt,
    settled_keys,
)
from dicom_core.storage.ports.operations import (
    Continuation,
    OperationConflict,
    OperationProgress,
    OperationRecord,
    OperationStore,
)
from dicom_core.storage.ports.partitions import PartitionStore
from dicom_core.storage.ports.query_tags import (
    IndexedInstance,
    OperationStart,
    QueryTagRecord,
    QueryTagStore,
    ReindexPrimitives,
    TagConflict,
    TooManyTags,
)
from dicom_core.storage.ports.queue import POISON_SUFFIX, JobQueue, LeaseLost, QueueMessage
from dicom_core.storage.ports.workitems import WorkitemChanged, WorkitemExists, WorkitemStore

__all__ = [
    "BlobDebt",
    "BlobDamaged",
    "Backend",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "ChangeFeedStore",
    "ChangeQuery",
    "SpoolWriteback",
    "Continuation",
    "CursorStore",
    "EventSink",
    "ExportDestinationError",
    "ExportSink",
    "ExportSinks",
    "ExternalMetadataStore",
    "ExternalValue",
    "ExternalVrConflict",
    "IndexStore",
    "IndexedInstance",
    "InstanceBeingCreated",
    "InstanceChanged",
    "InstanceExists",
    "InstanceWriter",
    "JobQueue",
    "LeaseLost",
    "NewVersion",
    "OperationConflict",
    "OperationProgress",
    "OperationRecord",
    "OperationStart",
    "OperationStore",
    "BlobRelease",
    "PartitionStore",
    "POISON_SUFFIX",
    "QueryTagRecord",
    "QueryTagStore",
    "QueueMessage",
    "ReindexPrimitives",
    "StorageFull",
    "StorageUnavailable",
    "TagConflict",
    "TooManyTags",
    "VersionedMetadata",
    "VersionsCommitted",
    "WorkitemChanged",
    "WorkitemExists",
    "WorkitemStore",
    "WrittenInstance",
    "release_all",
    "settle_debt",
    "settled_keys",
    "storage_error",
]
