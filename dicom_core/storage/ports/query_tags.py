"""The extended-query-tag port: tag definitions, their indexed values and errors, and the
reindex operations that fill them (spec/extended-query-tags.md).

The records are plain data; how they look in an HTTP response is the web layer's business.
The reindex algorithm lives in ``dicom_core.jobs``: adapters give it primitives only (read a
watermark range, write values and errors, and the operation primitives of
``dicom_core.storage.ports.operations``), and treat the checkpoint as opaque JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dicom_core.domain.extended_query_tags import (
    QueryStatusValues,
    QueryTagDefinition,
    QueryTagStatusValues,
)
from dicom_core.domain.model import InstanceKey
from dicom_core.query.conditions import QueryAttribute
from dicom_core.query.indexed_values import query_attribute
from dicom_core.storage.ports.operations import (
    Continuation,
    OperationRecord,
    OperationStore,
)


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


@dataclass(frozen=True, slots=True)
class IndexedInstance:
    """A stored instance as a batch reads it: key, watermark and its DICOM JSON (if any)."""

    key: InstanceKey
    watermark: int
    metadata: bytes | None


class OperationStart(Protocol):
    """Plans a new operation from what ``add_tags`` saw inside its write: the new tags' keys,
    the highest watermark and the count of stored instances. Returns the first checkpoint
    (opaque JSON to the store) and the first message to enqueue."""

    def __call__(
        self, tag_keys: tuple[int, ...], until: int, total: int
    ) -> tuple[dict[str, Any], Continuation]: ...


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

    @property
    def queryable(self) -> bool:
        """Whether QIDO searches on the tag: it is Ready and its query status Enabled."""
        return (
            self.status == QueryTagStatusValues.READY
            and self.query_status == QueryStatusValues.ENABLED
        )


class ReindexPrimitives(OperationStore, Protocol):
    """What a reindex batch (``dicom_core.jobs.reindex``) needs of a store, and no more."""

    async def list_tags(self) -> list[QueryTagRecord]: ...

    async def read_watermark_range(
        self, after: int, until: int, limit: int
    ) -> list[IndexedInstance]:
        """Up to ``limit`` stored instances with ``after < watermark <= until``, by watermark."""
        ...

    async def write_values(
        self, tags: Sequence[QueryTagRecord], instances: Sequence[IndexedInstance]
    ) -> None:
        """Upsert each instance's value of each tag, or record why it cannot be indexed (an
        error disables the tag). Idempotent: values are keyed by (tag, entity), the latest
        watermark wins; errors are keyed by (tag, instance). A tag that a delete has marked
        since the caller listed it keeps nothing of this call: no row may outlive its tag."""
        ...

    async def mark_tags_ready(self, tag_keys: Sequence[int]) -> None:
        """Tags still Adding become Ready and leave their operation (idempotent)."""
        ...


class QueryTagStore(ReindexPrimitives, Protocol):
    """The storage port of extended query tags, their values and errors, and operations."""

    async def get_tag(self, path: str) -> QueryTagRecord | None: ...

    async def add_tags(
        self,
        definitions: Sequence[QueryTagDefinition],
        operation_id: str,
        *,
        max_tags: int,
        start: OperationStart,
    ) -> OperationRecord:
        """Record the tags and the operation, with the checkpoint and first message ``start``
        plans; all or nothing. Raises ``TagConflict`` or ``TooManyTags``."""
        ...

    async def set_query_status(self, path: str, query_status: str) -> QueryTagRecord | None: ...

    async def delete_tag(self, path: str) -> bool: ...

    async def list_errors(
        self, tag_key: int, *, limit: int, offset: int
    ) -> list[dict[str, str]]: ...

    async def index_instance(
        self, key: InstanceKey, watermark: int, metadata_json: bytes
    ) -> None: ...

    async def refresh_after_delete(self, study_uid: str, *, partition: int) -> None:
        """After instances of the study were deleted, some remaining: each study- or
        series-level value that a deleted instance wrote (it was the newest with a value) is
        taken again from the newest remaining instance of its study or series that has one,
        or goes when none has. Each value is replaced in one write, guarded against a store
        that wrote a newer one meanwhile, so a search matches the old value or the new,
        never neither."""
        ...
