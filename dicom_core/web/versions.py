"""API versions in URLs: ``/v{version}/...``, read as Azure's API versioning reads them.

Azure serves ``v1.0-prerelease``, ``v1`` and ``v2`` ("API versioning for DICOM service"). Its
ASP.NET API versioning parses the segment as ``major[.minor][-status]``: ``1.0`` is ``1``,
``2.0`` is ``2``, and the status label compares without regard to case. The prerelease
version behaves as v1.
"""

from __future__ import annotations

import re
from typing import Final

#: The versions an error message lists, as a client would write them.
SUPPORTED_VERSIONS: Final = ("v1.0-prerelease", "v1", "v2")

_SEGMENT: Final = re.compile(r"([0-9]{1,5})(?:\.([0-9]{1,5}))?(?:-([A-Za-z0-9]{1,32}))?")
#: (major, minor, status) of each version served, and the API version it behaves as.
_SERVED: Final = {(1, 0, "prerelease"): 1, (1, 0, ""): 1, (2, 0, ""): 2}


def version_of(segment: str) -> int | None:
    """The API version a URL's version segment (after the ``v``) asks for; None if none."""
    parsed = _SEGMENT.fullmatch(segment)
    if parsed is None:
        return None
    major, minor, status = parsed.groups()
    return _SERVED.get((int(major), int(minor or 0), (status or "").lower()))
