"""The composition root: the only place that chooses adapters for the storage ports."""

from __future__ import annotations

from dataclasses import dataclass

from dicom_core.services.blob_cleanup import BlobJanitor
from dicom_core.services.delete import DeleteService
from dicom_core.services.retrieve import RetrieveService
from dicom_core.services.staging import StagingArea
from dicom_core.services.store import StoreService
from dicom_core.settings import Settings, SettingsError
from dicom_core.storage.ports import BlobStore, IndexStore, JobQueue


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

        db = SqliteDatabase(settings.data_dir / "index.sqlite")
        return (
            SqliteIndexStore(db, stale_create_seconds=settings.stale_create_seconds),
            FileBlobStore(settings.data_dir / "blobs"),
            SqliteJobQueue(db),
        )
    raise SettingsError(
        "DICOM_STORAGE=azure is not available in this build yet; use DICOM_STORAGE=local"
    )


def build_job_queue(settings: Settings) -> JobQueue:
    return build_storage(settings)[2]


def build_services(settings: Settings) -> Services:
    index, blobs, queue = build_storage(settings)
    janitor = BlobJanitor(blobs, queue)
    return Services(
        settings=settings,
        index=index,
        blobs=blobs,
        queue=queue,
        staging=StagingArea(
            settings.effective_staging_dir, stale_seconds=settings.stale_create_seconds
        ),
        janitor=janitor,
        store=StoreService(index, blobs, janitor),
        delete=DeleteService(index, janitor),
        retrieve=RetrieveService(index, blobs),
    )
