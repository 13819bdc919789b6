"""HTTP side of external metadata: STOW headers in, metadata and QIDO results out (v2 only)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from starlette.requests import Request

from dicom_core.bootstrap import Services
from dicom_core.services.external_metadata import ExternalMetadataService, requested
from dicom_core.services.metadata import MetadataDocument

_STUDY_UID = "0020000D"


def _service(services: Services) -> ExternalMetadataService | None:
    return getattr(services, "external_metadata", None)


async def with_external_metadata(
    request: Request, services: Services, version: int, document: MetadataDocument
) -> MetadataDocument:
    """Add the studies' external metadata to a metadata response when the header asks."""
    service = _service(services)
    if version < 2 or service is None or not requested(request.headers):
        return document
    instances: list[dict[str, Any]] = orjson.loads(document.body)
    studies = {_study_of(i) for i in instances}
    elements = await service.elements(sorted(studies))
    if not elements:
        return document
    merged = [merge(i, elements.get(_study_of(i))) for i in instances]
    body = orjson.dumps(merged)
    digest = hashlib.blake2b(body, digest_size=16).hexdigest()
    return MetadataDocument(body=body, etag=f'"{digest}"')


def _study_of(instance: dict[str, Any]) -> str:
    values = instance.get(_STUDY_UID, {}).get("Value") or [""]
    return str(values[0])


def merge(instance: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """The instance's DICOM JSON with the external elements; the external values win."""
    if not extra:
        return instance
    combined = {**instance, **extra}
    return dict(sorted(combined.items()))
