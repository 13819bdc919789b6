"""Propagation of a study's summary keys to their copies, in the study's container.

A QIDO search reads one document kind and never joins: series documents carry a copy of their
study's matching keys (``sk``), instances a copy of their study's and series' keys (``sk``,
``rk``), each with the version of the summary it was copied from (``skv``, ``rkv``). When a
write changes a summary's keys (a newer instance with other values, a new modality in the
study, a delete of the latest instance), its transactional batch marks the study ``dirty``;
the copies are then patched here, each patch conditional on the copy's version being older, so
a late propagation never overwrites newer copies. The study is clean again only when its ETag
shows no write came in meanwhile; a propagation cut short leaves it dirty, and the next write
to the study (``cosmos_index``) finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from azure.core import MatchConditions
from azure.cosmos.exceptions import CosmosAccessConditionFailedError, CosmosResourceNotFoundError

from dicom_core.storage.azure.cosmos_io import query_items, read_item
from dicom_core.storage.azure.cosmos_placement import PlacedStudy
from dicom_core.storage.azure.cosmos_schema import INSTANCE, SERIES, STUDY_DOC_ID

log = logging.getLogger(__name__)

Doc = dict[str, Any]

PROPAGATION_CONCURRENCY = 16
"""Key-copy patches in flight at once for one study."""


async def propagate_safely(index: Any, study: PlacedStudy) -> None:
    """Propagate now; on failure the study stays dirty and the next write finishes it."""
    try:
        await propagate(index, study)
    except Exception:
        log.warning("propagating summary keys of study %s failed", study, exc_info=True)


async def propagate(index: Any, study: PlacedStudy) -> None:
    """Bring every copy of the study's and series' keys up to their summaries' versions
    (``index``: the container of the study's placement)."""
    pk = study.key
    semaphore = asyncio.Semaphore(PROPAGATION_CONCURRENCY)

    async def patch(item: str, operations: list[Doc], condition: str) -> None:
        async with semaphore:
            # 412: a newer copy is already there; 404: the document is gone.
            with contextlib.suppress(CosmosAccessConditionFailedError, CosmosResourceNotFoundError):
                await index.patch_item(
                    item,
                    partition_key=pk,
                    patch_operations=operations,
                    filter_predicate=condition,
                )

    for _ in range(5):
        summary = await read_item(index, STUDY_DOC_ID, pk)
        if summary is None or not summary.get("dirty"):
            return
        params: dict[str, object] = {"@series": SERIES, "@instance": INSTANCE}
        where = study.where(params)
        found = await query_items(
            index,
            "SELECT c.id, c.kind, c.series, c.skv, c.rkv, c.rk FROM c WHERE"
            f" {where} AND (c.kind = @series OR c.kind = @instance)",
            params,
            partition=pk,
        )
        kv = int(summary["kv"])
        series_keys = {
            str(d["series"]): (d["rk"], int(d.get("rkv", 0))) for d in found if d["kind"] == SERIES
        }
        jobs = []
        for d in found:
            if int(d.get("skv", 0)) < kv:
                jobs.append(
                    patch(
                        d["id"],
                        [
                            {"op": "set", "path": "/sk", "value": summary["sk"]},
                            {"op": "set", "path": "/skv", "value": kv},
                        ],
                        f"from c where c.skv < {kv}",
                    )
                )
            if d["kind"] == INSTANCE and str(d["series"]) in series_keys:
                rk, rkv = series_keys[str(d["series"])]
                if int(d.get("rkv", 0)) < rkv:
                    jobs.append(
                        patch(
                            d["id"],
                            [
                                {"op": "set", "path": "/rk", "value": rk},
                                {"op": "set", "path": "/rkv", "value": rkv},
                            ],
                            f"from c where c.rkv < {rkv}",
                        )
                    )
        await asyncio.gather(*jobs)
        try:
            await index.patch_item(
                STUDY_DOC_ID,
                partition_key=pk,
                patch_operations=[{"op": "set", "path": "/dirty", "value": False}],
                etag=summary["_etag"],
                match_condition=MatchConditions.IfNotModified,
            )
            return
        except CosmosAccessConditionFailedError:
            continue  # the study changed meanwhile: look again
        except CosmosResourceNotFoundError:
            return
