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
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from dicom_core.domain.extended_query_tags import MAX_TAGS, QueryTagDefinition
from dicom_core.domain.model import InstanceKey
from dicom_core.errors import BadRequest, Conflict, NotFound
from dicom_core.query.attributes import CORE_CATALOG, describe_tag
from dicom_core.query.conditions import QueryAttribute
from dicom_core.query.indexed_values import query_attribute

log = logging.getLogger(__name__)

REINDEX_QUEUE = "reindex-batches"
MESSAGE_SCHEMA = 1
DEFAULT_BATCH_SIZE = 100


class TagConflict(Exception):
    """Some of the tags to add already exist (409)."""

    def __init__(self, paths: Sequence[str]) -> None:
        super().__init__(", ".join(paths))
        self.paths = list(paths)


class TooManyTags(Exception):
    """Adding the tags would exceed the limit of extended query tags (400)."""

    def __init__(self, existing: int) -> None:
        super().__init__(str(existing))
        self.existing = existing


class BatchOutcome(Enum):
    STALE = "stale"
    CONTINUED = "continued"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class ReindexCheckpoint:
    """Where a reindex stands: instances with ``after < watermark <= until`` remain."""

    tag_keys: tuple[int, ...]
    after: int
    until: int
    total: int
    done: int

    def to_json(self) -> dict[str, Any]:
        return {
            "tagKeys": list(self.tag_keys),
            "after": self.after,
            "until": self.until,
            "total": self.total,
            "done": self.done,
        }

    @classmethod
    def from_json(cls, body: Any) -> ReindexCheckpoint:
        if not isinstance(body, dict):
            raise ValueError(f"a reindex checkpoint must be an object, not {body!r}")
        return cls(
            tag_keys=tuple(int(k) for k in body["tagKeys"]),
            after=int(body["after"]),
            until=int(body["until"]),
            total=int(body["total"]),
            done=int(body["done"]),
        )


@dataclass(frozen=True, slots=True)
class QueryTagRecord:
    key: int
    path: str
    vr: str
    private_creator: str | None
    level: str
    status: str
    query_status: str
    error_count: int
    operation_id: str | None

    @property
    def attribute(self) -> QueryAttribute:
        return query_attribute(self.path, self.vr, self.level, self.private_creator)

    def to_json(self, base_url: str) -> dict[str, Any]:
        """The spec's Extended Query Tag object (camelCase)."""
        body: dict[str, Any] = {
            "path": self.path,
            "vr": self.vr,
        }
        if self.private_creator:
            body["privateCreator"] = self.private_creator
        body["level"] = self.level
        body["status"] = self.status
        body["queryStatus"] = self.query_status
        if self.error_count:
            body["errors"] = {
                "count": self.error_count,
                "href": f"{base_url}/extendedquerytags/{self.path}/errors",
            }
        if self.operation_id and self.status == "Adding":
            body["operation"] = {
                "id": self.operation_id,
                "href": f"{base_url}/operations/{self.operation_id}",
            }
        return body


@dataclass(frozen=True, slots=True)
class OperationRecord:
    operation_id: str
    type: str
    status: str
    percent_complete: int
    resources: tuple[str, ...]
    checkpoint: ReindexCheckpoint | None
    created_at: str
    updated_at: str

    @property
    def done(self) -> bool:
        return self.status in ("Completed", "Failed")

    def to_json(self, base_url: str) -> dict[str, Any]:
        """The spec's Operation object."""
        return {
            "operationId": self.operation_id,
            "type": self.type,
            "createdTime": self.created_at,
            "lastUpdatedTime": self.updated_at,
            "status": self.status,
            "percentComplete": self.percent_complete,
            "resources": [f"{base_url}/extendedquerytags/{p}" for p in self.resources],
        }


class QueryTagStore(Protocol):
    """The storage port of extended query tags, their values and errors, and operations."""

    async def list_tags(self) -> list[QueryTagRecord]: ...

    async def get_tag(self, path: str) -> QueryTagRecord | None: ...

    async def add_tags(
        self,
        definitions: Sequence[QueryTagDefinition],
        operation_id: str,
        *,
        max_tags: int,
        queue: str,
        message: dict[str, Any],
    ) -> OperationRecord:
        """Record the tags and the operation, and enqueue ``message`` with the first checkpoint.

        Raises ``TagConflict`` or ``TooManyTags``; all or nothing.
        """
        ...

    async def set_query_status(self, path: str, query_status: str) -> QueryTagRecord | None: ...

    async def delete_tag(self, path: str) -> bool: ...

    async def list_errors(
        self, tag_key: int, *, limit: int, offset: int
    ) -> list[dict[str, str]]: ...

    async def get_operation(self, operation_id: str) -> OperationRecord | None: ...

    async def fail_operation(self, operation_id: str) -> None: ...

    async def reindex_batch(
        self,
        operation_id: str,
        checkpoint: ReindexCheckpoint,
        *,
        batch_size: int,
        queue: str,
        message: dict[str, Any],
    ) -> BatchOutcome:
        """Index one batch after ``checkpoint``; move the checkpoint and enqueue ``message``
        with the next one (or complete the operation), atomically. A checkpoint that is not
        the operation's current one is stale: nothing happens."""
        ...

    async def index_instance(
        self, key: InstanceKey, watermark: int, metadata_json: bytes
    ) -> None: ...

    async def queryable_tags(self) -> list[QueryTagRecord]: ...

    async def erroneous_tags(self) -> list[QueryTagRecord]: ...


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
