"""Where requests go: the service URL, the API version, and a data partition.

Every DICOMweb path of the client is relative to :func:`dicom_root`, ``{url}/v2``, or
``{url}/v2/partitions/{name}`` with ``--partition`` (the Azure DICOM service's data
partitions; this server answers 404 there until it has partitions).
"""

from __future__ import annotations

import re

API_VERSION = "v2"
#: The Azure DICOM service's rule for partition names: letters, digits, '.', '-' and '_'.
PARTITION_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")


def partition_problem(name: str) -> str | None:
    """Why ``name`` cannot be a partition name (it becomes a URL segment), or None."""
    if PARTITION_RE.fullmatch(name) is None or name.strip(".") == "":
        return f"{name!r} is not a partition name (1 to 64 letters, digits, '.', '-' or '_')"
    return None


def dicom_root(url: str, partition: str | None = None) -> str:
    """The DICOMweb root every study, series and instance path is under."""
    root = f"{url.rstrip('/')}/{API_VERSION}"
    return f"{root}/partitions/{partition}" if partition else root
