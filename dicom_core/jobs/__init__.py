"""Long-running operations, run by queue-triggered functions.

The machinery is written once here, for every operation kind: the versioned message schema
(``messages``), the watermark checkpoint (``checkpoint``), the status rules of the operation
record (``operations``), the retry and poison rule read from host.json (``retry``), the queue
handlers ``function_app.py`` calls (``handlers``), and the operations themselves (``reindex``,
``bulk_update``, ``export``). Adapters give only storage primitives. ``events``
publishes DICOM events from the change feed, on a timer.
"""

from dicom_core.jobs.events import events_schedule
from dicom_core.jobs.handlers import (
    BULK_UPDATE_QUEUE,
    CLEANUP_QUEUE,
    EXPORT_QUEUE,
    REINDEX_QUEUE,
    bulk_update_step,
    cleanup_blob,
    expire_studies,
    export_batch,
    publish_events,
    reindex_batch,
    settle_blob_debts,
)
from dicom_core.jobs.retry import RetryRule

__all__ = [
    "BULK_UPDATE_QUEUE",
    "CLEANUP_QUEUE",
    "EXPORT_QUEUE",
    "REINDEX_QUEUE",
    "RetryRule",
    "bulk_update_step",
    "cleanup_blob",
    "events_schedule",
    "expire_studies",
    "publish_events",
    "export_batch",
    "reindex_batch",
    "settle_blob_debts",
]
