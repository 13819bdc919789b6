"""Extended query tags and their reindex operations (spec/extended-query-tags.md).

Adding tags records them (status Adding), creates a Reindex operation and enqueues its first
``reindex-batches`` message in one step. Each message carries a ``ReindexCheckpoint``: the
queue-triggered handler indexes one bounded watermark batch, moves the checkpoint and enqueues
the continuation (dicom-server's ContinueAsNew done by hand), so a crash or a redelivery
repeats at most one batch, and repeating one does no harm (upserts keyed by entity).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from dicom_core.domain.extended_query_tags import MAX_TAGS, QueryTagDefinition
from dicom_core.domain.model import InstanceKey
from dicom_core.errors import BadRequest, Conflict, NotFound
from dicom_core.query.attributes import CORE_CATALOG, describe_tag
from dicom_core.storage.ports import (
    BatchOutcome,
    OperationRecord,
    QueryTagRecord,
    QueryTagStore,
    ReindexCheckpoint,
    TagConflict,
    TooManyTags,
)

log = logging.getLogger(__name__)

REINDEX_QUEUE = "reindex-batches"
MESSAGE_SCHEMA = 1
DEFAULT_BATCH_SIZE = 100


def reindex_message(operation_id: str) -> dict[str, Any]:
    """A ``reindex-batches`` message without its checkpoint (the store adds it)."""
    return {"schema": MESSAGE_SCHEMA, "operationId": operation_id}


class ExtendedQueryTagService:
    def __init__(self, store: QueryTagStore, *, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self._store = store
        self._batch_size = batch_size

    async def add(self, definitions: Sequence[QueryTagDefinition]) -> OperationRecord:
        # A tag QIDO already searches (at any level) is refused, as Microsoft's service does:
        # indexing it again would only start a reindex whose values no search ever reads.
        supported = [describe_tag(d.path) for d in definitions if CORE_CATALOG.find(d.path)]
        if supported:
            raise BadRequest(
                f"The query tag(s) {', '.join(supported)} are already supported by QIDO and"
                " cannot be added as extended query tags."
            )
        operation_id = uuid.uuid4().hex
        try:
            return await self._store.add_tags(
                definitions,
                operation_id,
                max_tags=MAX_TAGS,
                queue=REINDEX_QUEUE,
                message=reindex_message(operation_id),
            )
        except TagConflict as exc:
            raise Conflict(
                f"The extended query tag(s) {', '.join(exc.paths)} already exist."
            ) from exc
        except TooManyTags as exc:
            raise BadRequest(
                f"At most {MAX_TAGS} extended query tags are allowed; {exc.existing} exist"
                f" and {len(definitions)} were requested."
            ) from exc

    async def list_tags(self) -> list[QueryTagRecord]:
        return await self._store.list_tags()

    async def get(self, path: str) -> QueryTagRecord:
        tag = await self._store.get_tag(path)
        if tag is None:
            raise NotFound(f"The extended query tag {path} is not found.")
        return tag

    async def set_query_status(self, path: str, query_status: str) -> QueryTagRecord:
        tag = await self._store.set_query_status(path, query_status)
        if tag is None:
            raise NotFound(f"The extended query tag {path} is not found.")
        return tag

    async def delete(self, path: str) -> None:
        if not await self._store.delete_tag(path):
            raise NotFound(f"The extended query tag {path} is not found.")

    async def errors(self, path: str, *, limit: int, offset: int) -> list[dict[str, str]]:
        tag = await self.get(path)
        return await self._store.list_errors(tag.key, limit=limit, offset=offset)

    async def operation(self, operation_id: str) -> OperationRecord:
        operation = await self._store.get_operation(operation_id)
        if operation is None:
            raise NotFound(f"The operation {operation_id} is not found.")
        return operation

    async def queryable(self) -> list[QueryTagRecord]:
        return await self._store.queryable_tags()

    async def erroneous(self) -> list[QueryTagRecord]:
        return await self._store.erroneous_tags()

    async def index_instance(self, key: InstanceKey, watermark: int, metadata_json: bytes) -> None:
        await self._store.index_instance(key, watermark, metadata_json)

    async def handle_message(self, body: dict[str, Any], *, final_attempt: bool = False) -> None:
        """Queue handler for ``reindex-batches``: one batch, then the continuation.

        Raises to be retried; on the final attempt the operation is marked Failed first.
        """
        if body.get("schema") != MESSAGE_SCHEMA or not isinstance(body.get("operationId"), str):
            raise ValueError(f"unexpected {REINDEX_QUEUE} message: {body!r}")
        operation_id = body["operationId"]
        try:
            checkpoint = ReindexCheckpoint.from_json(body.get("checkpoint"))
            outcome = await self._store.reindex_batch(
                operation_id,
                checkpoint,
                batch_size=self._batch_size,
                queue=REINDEX_QUEUE,
                message=reindex_message(operation_id),
            )
        except Exception:
            if final_attempt:
                log.error("reindex operation %s failed for good", operation_id)
                await self._store.fail_operation(operation_id)
            raise
        if outcome is BatchOutcome.STALE:
            log.info("reindex message for %s is stale (already handled)", operation_id)
