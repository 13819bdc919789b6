"""Retrieve metadata (PS3.18 10.4.1.1.4): the DICOM JSON of a study, series or instance.

The JSON of each instance was computed once at store time, without the binary VRs, and kept
by the index; a metadata response is those documents joined into one array, with no file
read and no parsing. The ETag is a digest of exactly the bytes sent, so it changes whenever
any instance of the resource is added, replaced or removed, and a client revalidating with
If-None-Match gets 304 for unchanged data (conformance statement, "Retrieve metadata cache
validation").

With external metadata asked for (v2), each instance carries its study's external elements
(spec/external-metadata.md); the body is then rebuilt, and the ETag is that of the new body.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from dicom_core.errors import resource_not_found
from dicom_core.services.external_metadata import FIRST_API_VERSION, ExternalMetadataService
from dicom_core.storage.ports import IndexStore


@dataclass(frozen=True, slots=True)
class MetadataDocument:
    """A metadata response body (a JSON array) and its strong entity tag (quoted)."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> MetadataDocument:
        digest = hashlib.blake2b(body, digest_size=16).hexdigest()
        return cls(body=body, etag=f'"{digest}"')


class MetadataService:
    def __init__(self, index: IndexStore, *, external_metadata: ExternalMetadataService) -> None:
        self._index = index
        self._external_metadata = external_metadata

    async def retrieve_metadata(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        api_version: int = FIRST_API_VERSION,
        with_external_metadata: bool = False,
    ) -> MetadataDocument:
        """All instances' DICOM JSON of the resource, oldest first; 404 when there are none.
        ``with_external_metadata`` is the client's ``msdicom-request-meta`` (v2 only)."""
        documents = await self._index.get_metadata(study_uid, series_uid, sop_uid)
        if not documents:
            raise resource_not_found(study_uid, series_uid, sop_uid)
        document = MetadataDocument.of(b"[" + b",".join(documents) + b"]")
        if with_external_metadata and api_version >= FIRST_API_VERSION:
            return await self._with_external_metadata(document)
        return document

    async def _with_external_metadata(self, document: MetadataDocument) -> MetadataDocument:
        instances: list[dict[str, Any]] = orjson.loads(document.body)
        merged = await self._external_metadata.add_to(instances)
        return document if merged is None else MetadataDocument.of(orjson.dumps(merged))
