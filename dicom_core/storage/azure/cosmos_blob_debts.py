"""Blob debts on Cosmos DB (``ports.index.BlobDebt``): ``blobdebt`` documents.

A delete's batch, or a commit's that drops versions, creates one in the study's logical
partition, beside its removals, so the debt and the removal commit together;
``CosmosIndexStore`` deletes it once the janitor took every file. The sweep's read is one
cross-partition query per index container, served by the ``/kind``, ``/ord`` composite index
(``cosmos_schema``), so it never scans the studies.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from dicom_core.domain.model import StudyKey
from dicom_core.storage.azure.cosmos_io import delete_if_present, query_items
from dicom_core.storage.azure.cosmos_placement import (
    PlacedStudy,
    document_placement,
    placement_of,
)
from dicom_core.storage.azure.cosmos_schema import BLOB_DEBT
from dicom_core.storage.azure.cosmos_session import Containers
from dicom_core.storage.ports import BlobDebt

Doc = dict[str, Any]


def debt_document(study: PlacedStudy, blob_keys: Sequence[str]) -> Doc:
    """The debt a delete's batch creates for the files it frees."""
    return {
        "id": f"d|{uuid.uuid4().hex}",
        **study.fields(),
        "kind": BLOB_DEBT,
        "study": study.uid,
        "blobs": list(blob_keys),
        "ord": int(time.time() * 1000),
    }


def debt_of(doc: Doc) -> BlobDebt:
    return BlobDebt(
        id=str(doc["id"]),
        study=StudyKey(str(doc["study"]), partition=document_placement(doc).partition),
        blob_keys=tuple(str(key) for key in doc["blobs"]),
        recorded_at=datetime.fromtimestamp(int(doc["ord"]) / 1000, UTC),
    )


async def read_debts(c: Containers, recorded_before: datetime, limit: int) -> list[BlobDebt]:
    """The oldest debts of both index containers, merged."""
    found = await asyncio.gather(
        *(
            query_items(
                container,
                "SELECT TOP @n c.id, c.study, c.dp, c.blobs, c.ord FROM c"
                " WHERE c.kind = @debt AND c.ord < @before ORDER BY c.ord",
                {
                    "@n": limit,
                    "@debt": BLOB_DEBT,
                    "@before": int(recorded_before.timestamp() * 1000),
                },
            )
            for container in (c.index, c.partitioned)
        )
    )
    oldest = sorted((doc for docs in found for doc in docs), key=lambda doc: int(doc["ord"]))
    return [debt_of(doc) for doc in oldest[:limit]]


async def forget_debt(c: Containers, debt: BlobDebt) -> None:
    study = placement_of(debt.study.partition).study(debt.study.study_uid)
    await delete_if_present(study.container(c), debt.id, study.key)
