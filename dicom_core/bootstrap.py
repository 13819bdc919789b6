"""The composition root: builds the storage backend the settings name and the services on it.

``DICOM_STORAGE`` picks the backend in ``backend_factory``, the one place that knows which
backends exist. Each backend builds all its ports itself (``Backend``), so nothing here
depends on which one was picked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dicom_core.domain.export import DirectoryDestination, ExportDestination
from dicom_core.jobs.bulk_update import BulkUpdateJob
from dicom_core.jobs.events import EventPublisher
from dicom_core.jobs.export import ExportJob
from dicom_core.jobs.reindex import ReindexJob, plan_reindex
from dicom_core.services.blob_cleanup import BlobDebtSweep, BlobJanitor
from dicom_core.services.bulk_update import StudyUpdater
from dicom_core.services.change_feed import ChangeFeedService
from dicom_core.services.delete import DeleteService
from dicom_core.services.expiry import ExpirySweep
from dicom_core.services.extended_query_tags import ExtendedQueryTagService
from dicom_core.services.external_metadata import ExternalMetadataService
from dicom_core.services.frames import FrameService
from dicom_core.services.metadata import MetadataService
from dicom_core.services.operations import OperationService
from dicom_core.services.partitions import PartitionService
from dicom_core.services.rendering import RenderingService
from dicom_core.services.retrieve import RetrieveService
from dicom_core.services.search import SearchService
from dicom_core.services.staging import StagingArea
from dicom_core.services.store import StoreService
from dicom_core.services.transcoding import TranscodingService
from dicom_core.services.workitems import WorkitemService
from dicom_core.settings import Settings, SettingsError
from dicom_core.storage.ports import Backend, EventSink, ExportSink, JobQueue


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    backend: Backend
    staging: StagingArea
    janitor: BlobJanitor
    partitions: PartitionService
    """Which data partition a request is in; the ``/partitions`` listing."""
    store: StoreService
    delete: DeleteService
    retrieve: RetrieveService
    search: SearchService
    metadata: MetadataService
    frames: FrameService
    transcoding: TranscodingService
    rendering: RenderingService
    workitems: WorkitemService
    query_tags: ExtendedQueryTagService
    """Extended query tags and their reindex operations."""
    reindex: ReindexJob
    """The ``reindex-batches`` queue's batch step."""
    external_metadata: ExternalMetadataService
    """STOW msdicom-meta-* values."""
    change_feed: ChangeFeedService
    operations: OperationService
    bulk_update: BulkUpdateJob
    """Starts bulk updates; the ``bulk-update-batches`` queue's step."""
    export: ExportJob
    """Starts exports; the ``export-batches`` queue's step."""
    expiry: ExpirySweep
    """Deletes expired studies (the ``jobs_expire_studies`` timer)."""
    blob_debts: BlobDebtSweep
    """Deletes the files that deletes left to it (the ``jobs_settle_blob_debts`` timer)."""
    events: EventPublisher | None = None
    """The events timer's publisher; None while ``DICOM_EVENTS`` is off."""

    async def close(self) -> None:
        if self.events is not None:
            await self.events.close()
        await self.backend.close()


class BackendFactory(Protocol):
    """What ``dicom_core.storage.local.factory`` and ``dicom_core.storage.azure.factory`` offer."""

    def build_backend(self, settings: Settings) -> Backend: ...

    def build_job_queue(self, settings: Settings) -> JobQueue: ...


def backend_factory(settings: Settings) -> BackendFactory:
    """The backend ``DICOM_STORAGE`` names. Imported only when chosen, so the local backend
    never loads the Azure SDKs."""
    if settings.storage == "local":
        from dicom_core.storage.local import factory as local

        return local
    if settings.storage == "azure":
        from dicom_core.storage.azure import factory as azure

        return azure
    raise SettingsError(f"DICOM_STORAGE={settings.storage!r} is not a known backend")


class ExportDestinations:
    """``ExportSinks``: the destination's type picks the adapter, whatever the backend. The
    blob sink is imported only when a request names a blob container, so the local backend
    loads the Azure SDKs only then."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def open(self, destination: ExportDestination, operation_id: str) -> ExportSink:
        if isinstance(destination, DirectoryDestination):
            from dicom_core.storage.local.export_directory import DirectoryExportSink

            root = self._settings.export_local_root
            return DirectoryExportSink(destination, operation_id, root=root)
        from dicom_core.storage.azure.export_blob import BlobExportSink

        azure = self._settings.azure
        identity = (azure.storage_credential, azure.storage_client_id)
        return BlobExportSink(
            destination,
            operation_id,
            identity=identity,
            allowed_hosts=self._settings.export_blob_hosts,
        )


def build_backend(settings: Settings) -> Backend:
    return backend_factory(settings).build_backend(settings)


def build_job_queue(settings: Settings) -> JobQueue:
    """The job queue alone: the local host's queue pollers need no index or blob store."""
    return backend_factory(settings).build_job_queue(settings)


def build_event_sink(settings: Settings) -> EventSink | None:
    """Where ``DICOM_EVENTS`` sends events (None: off). Both destinations are Azure services
    (a Storage queue, an Event Grid topic), whichever backend stores the data."""
    if not settings.events.enabled:
        return None
    from dicom_core.storage.azure import event_sinks

    return event_sinks.build_event_sink(settings)


def build_services(settings: Settings) -> Services:
    backend = build_backend(settings)
    index, blobs = backend.index, backend.blobs
    janitor = BlobJanitor(
        blobs, backend.queue, delay_seconds=backend.blob_delete_delay_seconds, index=index
    )
    query_tags = ExtendedQueryTagService(backend.query_tags, plan_reindex=plan_reindex)
    external_metadata = ExternalMetadataService(backend.external_metadata)
    staging = StagingArea(
        settings.effective_staging_dir,
        stale_seconds=settings.stale_create_seconds,
        writeback=backend.spool_writeback,
    )
    updater = StudyUpdater(index, blobs, janitor, staging, after_commit=query_tags.index_instance)
    delete = DeleteService(index, janitor, after_delete=query_tags.refresh_after_delete)
    partitions = PartitionService(backend.partitions, enabled=settings.data_partitions)
    return Services(
        settings=settings,
        backend=backend,
        staging=staging,
        janitor=janitor,
        partitions=partitions,
        store=StoreService(
            index,
            blobs,
            janitor,
            writer=backend.writer,
            after_commit=query_tags.index_instance,
            external_metadata=external_metadata,
            lease_seconds=settings.reservation_lease_seconds,
            max_inflated=settings.max_decoded_bytes,
        ),
        delete=delete,
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
        workitems=WorkitemService(backend.workitems),
        query_tags=query_tags,
        reindex=ReindexJob(backend.query_tags, batch_size=settings.reindex_batch_size),
        external_metadata=external_metadata,
        change_feed=ChangeFeedService(backend.change_feed),
        operations=OperationService(backend.operations),
        bulk_update=BulkUpdateJob(backend.operations, updater),
        export=ExportJob(
            backend.operations,
            index,
            blobs,
            ExportDestinations(settings),
            staging_dir=staging.directory,
            batch_size=settings.export_batch_size,
        ),
        expiry=ExpirySweep(index, delete),
        blob_debts=BlobDebtSweep(index, janitor),
        events=_event_publisher(settings, backend, partitions),
    )


def _event_publisher(
    settings: Settings, backend: Backend, partitions: PartitionService
) -> EventPublisher | None:
    sink = build_event_sink(settings)
    if sink is None:
        return None
    return EventPublisher(
        backend.change_feed,
        backend.cursors,
        sink,
        service_host=settings.events.service_host,
        batch_size=settings.events.batch_size,
        names=partitions.names if partitions.enabled else None,
    )
