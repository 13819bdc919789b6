"""Long-running operations, run by queue-triggered functions.

The machinery is written once here, for every operation kind: the versioned message schema
(``messages``), the watermark checkpoint (``checkpoint``), the status rules of the operation
record (``operations``), the retry and poison rule read from host.json (``retry``), the queue
handlers ``function_app.py`` calls (``handlers``), and the operations themselves (``reindex``;
bulk update and export are to follow). Adapters give only storage primitives.
"""

from dicom_core.jobs.handlers import CLEANUP_QUEUE, REINDEX_QUEUE, cleanup_blob, reindex_batch
from dicom_core.jobs.retry import RetryRule

__all__ = ["CLEANUP_QUEUE", "REINDEX_QUEUE", "RetryRule", "cleanup_blob", "reindex_batch"]
