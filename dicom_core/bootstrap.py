"""The composition root: the only place that chooses adapters for the storage ports."""

from __future__ import annotations

from dataclasses import dataclass

from dicom_core.services.blob_cleanup import BlobJanitor
from dicom_core.services.delete import DeleteService
from dicom_core.services.extended_query_tags import ExtendedQueryTagService
from dicom_core.services.external_metadata import ExternalMetadataService
from dicom_core.services.frames import FrameService
from dicom_core.services.metadata import MetadataService
from dicom_core.services.rendering import RenderingService
from dicom_core.services.retrieve import RetrieveService
from dicom_core.services.search import SearchService
from dicom_core.services.staging import StagingArea
from dicom_core.services.store import StoreService
from dicom_core.services.transcoding import TranscodingService
from dicom_core.services.workitems import WorkitemService
from dicom_core.settings import Settings, SettingsError
from dicom_core.storage.ports import BlobStore, IndexStore, InstanceWriter, JobQueue


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    index: IndexStore
    blobs: BlobStore
    queue: JobQueue
    staging: StagingArea
    janitor: BlobJanitor
    store: StoreService
    delete: DeleteService
    retrieve: RetrieveService
    search: SearchService
    metadata: MetadataService
    frames: FrameService
    transcoding: TranscodingService
    rendering: RenderingService
    workitems: WorkitemService
    query_tags: ExtendedQueryTagService | None = None
    """Extended query tags and operations; None where the backend has no store for them yet."""
    external_metadata: ExternalMetadataService | None = None
    """STOW msdicom-meta-* values; None where the backend has no store for them yet."""

    async def close(self) -> None:
        await self.index.close()
        await self.blobs.close()
        await self.queue.close()


def build_storage(settings: Settings) -> tuple[IndexStore, BlobStore, JobQueue]:
    if settings.storage == "local":
        from dicom_core.storage.local.file_blobs import FileBlobStore
        from dicom_core.storage.local.sqlite_db import SqliteDatabase
        from dicom_core.storage.local.sqlite_index import SqliteIndexStore
        from dicom_core.storage.local.sqlite_queue import SqliteJobQueue

        db = SqliteDatabase(settings.data_dir / "index.sqlite", durable=settings.durable_writes)
        return (
            SqliteIndexStore(db, stale_create_seconds=settings.stale_create_seconds),
            FileBlobStore(settings.data_dir / "blobs", durable=settings.durable_writes),
            SqliteJobQueue(db),
        )
    if settings.storage == "azure":
        from dicom_core.storage.azure.factory import build_azure_storage

        return build_azure_storage(settings)
    raise SettingsError(f"DICOM_STORAGE={settings.storage!r} is not a known backend")


def build_job_queue(settings: Settings) -> JobQueue:
    if settings.storage == "azure":
        # The queue alone: the local host's pollers need no index or blob clients.
        from dicom_core.storage.azure.factory import build_azure_job_queue

        return build_azure_job_queue(settings)
    from dicom_core.storage.local.sqlite_db import SqliteDatabase
    from dicom_core.storage.local.sqlite_queue import SqliteJobQueue

    database = SqliteDatabase(settings.data_dir / "index.sqlite", durable=settings.durable_writes)
    return SqliteJobQueue(database, owns_database=True)


def build_query_tags(
    settings: Settings, index: IndexStore, queue: JobQueue | None = None
) -> ExtendedQueryTagService | None:
    """The extended-query-tag service, on the index's own database.

    Local: the SQLite file (the queue is a table of it). Azure: the Cosmos ``system``
    container, with ``queue`` (Storage queues) carrying the reindex continuations.
    """
    from dicom_core.storage.local.sqlite_index import SqliteIndexStore

    if isinstance(index, SqliteIndexStore):
        from dicom_core.storage.local.sqlite_eqt import SqliteQueryTagStore

        return ExtendedQueryTagService(
            SqliteQueryTagStore(index.database), batch_size=settings.reindex_batch_size
        )
    if queue is not None and settings.storage == "azure":
        from dicom_core.storage.azure.cosmos_eqt import CosmosQueryTagStore
        from dicom_core.storage.azure.cosmos_index import CosmosIndexStore

        if isinstance(index, CosmosIndexStore):
            return ExtendedQueryTagService(
                CosmosQueryTagStore(index, queue), batch_size=settings.reindex_batch_size
            )
    return None


def build_external_metadata(index: IndexStore) -> ExternalMetadataService | None:
    """The external-metadata service, on the index's own database (local backend)."""
    from dicom_core.storage.local.sqlite_index import SqliteIndexStore

    if isinstance(index, SqliteIndexStore):
        from dicom_core.storage.local.sqlite_eqt import SqliteExternalMetadataStore

        return ExternalMetadataService(SqliteExternalMetadataStore(index.database))
    # By module name, so the local backend never imports the azure SDK here.
    if type(index).__module__ == "dicom_core.storage.azure.cosmos_index":
        from dicom_core.storage.azure.cosmos_eqt import CosmosExternalMetadataStore
        from dicom_core.storage.azure.cosmos_index import CosmosIndexStore

        if isinstance(index, CosmosIndexStore):
            return ExternalMetadataService(CosmosExternalMetadataStore(index))
    return None


def build_instance_writer(index: IndexStore, blobs: BlobStore) -> InstanceWriter | None:
    """The one-transaction writer of the local backend (None elsewhere: two-step protocol).

    It indexes extended query tags inside its own transaction, so the store needs no
    after-commit hook when it is used.
    """
    from dicom_core.storage.local.file_blobs import FileBlobStore
    from dicom_core.storage.local.sqlite_index import SqliteIndexStore

    if isinstance(index, SqliteIndexStore) and isinstance(blobs, FileBlobStore):
        from dicom_core.storage.local.instance_writer import SqliteInstanceWriter
        from dicom_core.storage.local.sqlite_eqt import SqliteQueryTagStore

        return SqliteInstanceWriter(index, blobs, hooks=(SqliteQueryTagStore(index.database),))
    return None


def build_services(settings: Settings) -> Services:
    index, blobs, queue = build_storage(settings)
    query_tags = build_query_tags(settings, index, queue)
    external_metadata = build_external_metadata(index)
    writer = build_instance_writer(index, blobs)
    # Local files stay readable while a retrieve holds them open; blobs need the delay.
    delete_delay = settings.azure.blob_delete_delay_seconds if settings.storage == "azure" else 0
    janitor = BlobJanitor(blobs, queue, delay_seconds=delete_delay)
    # An index that deletes in several steps (Cosmos) hands the janitor the files of steps
    # already done when a later one fails, so no file outlives its index entry.
    set_orphan_sink = getattr(index, "set_orphan_sink", None)
    if set_orphan_sink is not None:
        set_orphan_sink(janitor.delete)
    return Services(
        settings=settings,
        index=index,
        blobs=blobs,
        queue=queue,
        staging=StagingArea(
            settings.effective_staging_dir, stale_seconds=settings.stale_create_seconds
        ),
        janitor=janitor,
        store=StoreService(
            index,
            blobs,
            janitor,
            writer=writer,
            after_commit=(
                query_tags.index_instance if query_tags is not None and writer is None else None
            ),
            external_metadata=external_metadata,
        ),
        delete=DeleteService(index, janitor),
        retrieve=RetrieveService(index, blobs),
        search=SearchService(index, query_tags=query_tags, external_metadata=external_metadata),
        metadata=MetadataService(index, external_metadata=external_metadata),
        frames=FrameService(
            index,
            blobs,
            max_transcode_bytes=settings.max_transcode_bytes,
            max_decoded_bytes=settings.max_decoded_bytes,
        ),
        transcoding=TranscodingService(
            blobs,
            max_transcode_bytes=settings.max_transcode_bytes,
            max_decoded_bytes=settings.max_decoded_bytes,
        ),
        rendering=RenderingService(
            index,
            blobs,
            max_transcode_bytes=settings.max_transcode_bytes,
            max_decoded_bytes=settings.max_decoded_bytes,
        ),
        workitems=WorkitemService(index),
        query_tags=query_tags,
        external_metadata=external_metadata,
    )
