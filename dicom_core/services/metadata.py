"""Retrieve metadata (PS3.18 10.4.1.1.4): the DICOM JSON of a study, series or instance.

The JSON of each instance was computed once at store time, without the binary VRs, and kept
by the index; a metadata response is those documents joined into one array, with no file
read and no parsing. The ETag is a digest of exactly the bytes sent, so it changes whenever
any instance of the resource is added, replaced or removed, and a client revalidating with
If-None-Match gets 304 for unchanged data (conformance statement, "Retrieve metadata cache
validation").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from dicom_core.errors import resource_not_found
from dicom_core.storage.ports import IndexStore


@dataclass(frozen=True, slots=True)
class MetadataDocument:
    """A metadata response body (a JSON array) and its strong entity tag (quoted)."""

    body: bytes
    etag: str


class MetadataService:
    def __init__(self, index: IndexStore) -> None:
        self._index = index

    async def retrieve_metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> MetadataDocument:
        """All instances' DICOM JSON of the resource, oldest first; 404 when there are none."""
        documents = await self._index.get_metadata(study_uid, series_uid, sop_uid)
        if not documents:
            raise resource_not_found(study_uid, series_uid, sop_uid)
        body = b"[" + b",".join(documents) + b"]"
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        return MetadataDocument(body=body, etag=f'"{digest}"')
