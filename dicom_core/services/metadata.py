"""Retrieve metadata (PS3.18 10.4.1.1.4): the DICOM JSON of a study, series or instance.

The JSON of each instance was computed once at store time, without the binary VRs, and kept
by the index; a metadata response is those documents joined into one array, with no file
read and no parsing.

The ETag (conformance statement, "Retrieve metadata cache validation") is a digest of the
resource's version: the watermarks of its stored instances (``IndexStore.metadata_version``).
A watermark names one stored version of one instance, whose metadata never changes, so the
ETag changes whenever an instance is added, replaced or removed, and a revalidation with
If-None-Match is answered from the index alone (``current_etag``), without reading or
hashing any instance's JSON. A 200 reads the documents and their version together
(``IndexStore.get_versioned_metadata``): one read of the index, not two (on Cosmos DB a
request less), and the tag always names exactly the body it comes with, even when a store
or delete races the request.

With external metadata asked for (v2), each instance carries its study's external elements
(spec/external-metadata.md); those elements then go into the ETag's digest too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from dicom_core.errors import resource_not_found
from dicom_core.services.external_metadata import (
    FIRST_API_VERSION,
    ExternalMetadataService,
    merge,
)
from dicom_core.storage.ports import IndexStore


@dataclass(frozen=True, slots=True)
class MetadataDocument:
    """A metadata response body (a JSON array) and its strong entity tag (quoted)."""

    body: bytes
    etag: str


def _etag(version: str, external: dict[str, dict[str, Any]] | None) -> str:
    digest = hashlib.blake2b(version.encode(), digest_size=16)
    if external is not None:
        digest.update(
            b"|external|"
            + orjson.dumps(external, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
        )
    return f'"{digest.hexdigest()}"'


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
        partition: int,
        api_version: int = FIRST_API_VERSION,
        with_external_metadata: bool = False,
        original: bool = False,
    ) -> MetadataDocument:
        """All instances' DICOM JSON of the resource, oldest first; 404 when there are none.
        ``with_external_metadata`` is the client's ``msdicom-request-meta`` (v2 only);
        ``original`` its ``msdicom-request-original`` (each instance's original version)."""
        found = await self._index.get_versioned_metadata(
            study_uid, series_uid, sop_uid, partition=partition, original=original
        )
        if found.version is None or not found.documents:
            raise resource_not_found(study_uid, series_uid, sop_uid)
        body = b"[" + b",".join(found.documents) + b"]"
        # One read of the external elements for both the body and its tag.
        external = await self._external_for(
            partition, study_uid, api_version, with_external_metadata
        )
        merged = merge(orjson.loads(body), external) if external else None
        if merged is not None:
            body = orjson.dumps(merged)
        return MetadataDocument(body, _etag(found.version, external))

    async def current_etag(
        self,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
        *,
        partition: int,
        api_version: int = FIRST_API_VERSION,
        with_external_metadata: bool = False,
        original: bool = False,
    ) -> str:
        """The ETag ``retrieve_metadata`` would answer with now, from the index alone (and the
        study's external elements when asked for); 404 when the resource has no instance.
        The original versions' tag differs from the latest's exactly when their documents
        do (Azure gives both the latest's tag, so a 304 can answer for the wrong one)."""
        version = await self._index.metadata_version(
            study_uid, series_uid, sop_uid, partition=partition, original=original
        )
        if version is None:
            raise resource_not_found(study_uid, series_uid, sop_uid)
        external = await self._external_for(
            partition, study_uid, api_version, with_external_metadata
        )
        return _etag(version, external)

    async def _external_for(
        self, partition: int, study_uid: str, api_version: int, asked: bool
    ) -> dict[str, dict[str, Any]] | None:
        """The study's external elements when the client asked for them (v2 only), else None."""
        if not (asked and api_version >= FIRST_API_VERSION):
            return None
        return await self._external_metadata.elements([study_uid], partition=partition)
