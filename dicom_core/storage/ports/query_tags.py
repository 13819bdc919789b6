"""The extended-query-tag port: tag definitions, their indexed values and errors, and the
reindex operations that fill them (spec/extended-query-tags.md).

The records are plain data; how they look in an HTTP response is the web layer's business.
``ReindexCheckpoint`` is also the checkpoint a ``reindex-batches`` message carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from dicom_core.domain.extended_query_tags import QueryTagDefinition
from dicom_core.domain.model import InstanceKey
from dicom_core.query.conditions import QueryAttribute
from dicom_core.query.indexed_values import query_attribute


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
    """What one reindex batch did: nothing (a stale checkpoint), moved on, or finished."""

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
    """An extended query tag as stored: definition, status, and its count of indexing errors."""

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


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """A long-running operation (a reindex) as stored, with the checkpoint it stands at."""

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
