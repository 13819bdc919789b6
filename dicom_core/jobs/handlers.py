"""The job handlers: what each queue- or timer-triggered function in ``function_app.py`` calls.

They are not HTTP, so they live with the jobs rather than in the web layer. Each queue handler
takes the decoded message body and the app's service source; the retry rule says which
delivery is the last before the poison queue. A timer handler takes the service source alone.
"""

from __future__ import annotations

from typing import Any, Protocol

from dicom_core.jobs.bulk_update import BULK_UPDATE_QUEUE, BulkUpdateJob
from dicom_core.jobs.events import EventPublisher
from dicom_core.jobs.export import EXPORT_QUEUE, ExportJob
from dicom_core.jobs.reindex import REINDEX_QUEUE, ReindexJob
from dicom_core.jobs.retry import RetryRule
from dicom_core.services.blob_cleanup import CLEANUP_QUEUE, BlobDebtSweep, BlobJanitor
from dicom_core.services.expiry import ExpirySweep

__all__ = [
    "BULK_UPDATE_QUEUE",
    "CLEANUP_QUEUE",
    "EXPORT_QUEUE",
    "REINDEX_QUEUE",
    "bulk_update_step",
    "cleanup_blob",
    "expire_studies",
    "publish_events",
    "settle_blob_debts",
    "export_batch",
    "reindex_batch",
]


class JobServices(Protocol):
    """What the handlers use of the app's services."""

    @property
    def janitor(self) -> BlobJanitor: ...

    @property
    def reindex(self) -> ReindexJob: ...

    @property
    def bulk_update(self) -> BulkUpdateJob: ...

    @property
    def events(self) -> EventPublisher | None: ...

    @property
    def export(self) -> ExportJob: ...

    @property
    def expiry(self) -> ExpirySweep: ...

    @property
    def blob_debts(self) -> BlobDebtSweep: ...


class ServiceSource(Protocol):
    """The app's lazily built services (``dicom_core.web.ServiceContainer``)."""

    async def get(self) -> JobServices: ...


async def cleanup_blob(
    body: dict[str, Any], source: ServiceSource, *, dequeue_count: int, retry: RetryRule
) -> None:
    """``blob-cleanup``: delete a blob the index no longer references; on the last allowed
    delivery a failure is tried again later rather than given up."""
    services = await source.get()
    await services.janitor.handle_message(body, final_attempt=retry.is_final(dequeue_count))


async def reindex_batch(
    body: dict[str, Any], source: ServiceSource, *, dequeue_count: int, retry: RetryRule
) -> None:
    """``reindex-batches``: one batch; the last allowed delivery fails the operation."""
    services = await source.get()
    await services.reindex.handle_message(body, final_attempt=retry.is_final(dequeue_count))


async def bulk_update_step(
    body: dict[str, Any], source: ServiceSource, *, dequeue_count: int, retry: RetryRule
) -> None:
    """``bulk-update-batches``: one study; the last allowed delivery fails the operation."""
    services = await source.get()
    await services.bulk_update.handle_message(body, final_attempt=retry.is_final(dequeue_count))


async def publish_events(source: ServiceSource) -> None:
    """The events timer: publish the changes not yet published; nothing while events are off."""
    services = await source.get()
    if services.events is not None:
        await services.events.publish()


async def export_batch(
    body: dict[str, Any], source: ServiceSource, *, dequeue_count: int, retry: RetryRule
) -> None:
    """``export-batches``: one batch of instances; the last allowed delivery fails the
    operation."""
    services = await source.get()
    await services.export.handle_message(body, final_attempt=retry.is_final(dequeue_count))


async def expire_studies(source: ServiceSource) -> None:
    """The expiry timer: delete one page of expired studies (``services/expiry.py``)."""
    services = await source.get()
    await services.expiry.sweep()


async def settle_blob_debts(source: ServiceSource) -> None:
    """The blob debt timer: delete the files of one page of debts that deletes left
    (``services/blob_cleanup.py``)."""
    services = await source.get()
    await services.blob_debts.sweep()
