"""``FakeQueryTagStore``: extended query tags a test puts in place, without reindexing.

Adding tags and running their reindex operation belong to ``dicom_core.jobs`` and its own
tests; this fake only holds tag records, so that the services that read the catalog (store,
search) can be tested with tags present. The operation methods raise ``NotImplementedError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from dicom_core.domain.extended_query_tags import QueryTagDefinition
from dicom_core.domain.model import InstanceKey
from dicom_core.domain.operations import OperationKind
from dicom_core.storage.ports import (
    Continuation,
    IndexedInstance,
    OperationProgress,
    OperationRecord,
    OperationStart,
    QueryTagRecord,
)


class FakeQueryTagStore:
    """The ``QueryTagStore`` port's catalog; ``indexed`` records each ``index_instance``."""

    def __init__(self, tags: Sequence[QueryTagRecord] = ()) -> None:
        self.tags: dict[str, QueryTagRecord] = {tag.path: tag for tag in tags}
        self.indexed: list[tuple[InstanceKey, int, bytes]] = []
        self.refreshed: list[tuple[str, int]] = []

    async def list_tags(self) -> list[QueryTagRecord]:
        return sorted(self.tags.values(), key=lambda tag: tag.key)

    async def get_tag(self, path: str) -> QueryTagRecord | None:
        return self.tags.get(path)

    async def set_query_status(self, path: str, query_status: str) -> QueryTagRecord | None:
        if path not in self.tags:
            return None
        self.tags[path] = dataclasses.replace(self.tags[path], query_status=query_status)
        return self.tags[path]

    async def delete_tag(self, path: str) -> bool:
        return self.tags.pop(path, None) is not None

    async def index_instance(self, key: InstanceKey, watermark: int, metadata_json: bytes) -> None:
        self.indexed.append((key, watermark, metadata_json))

    async def refresh_after_delete(self, study_uid: str, *, partition: int) -> None:
        self.refreshed.append((study_uid, partition))

    # -- reindex operations: dicom_core.jobs and its tests ----------------------------------

    async def add_tags(
        self,
        definitions: Sequence[QueryTagDefinition],
        operation_id: str,
        *,
        max_tags: int,
        start: OperationStart,
    ) -> OperationRecord:
        raise NotImplementedError("reindex operations are not faked")

    async def list_errors(self, tag_key: int, *, limit: int, offset: int) -> list[dict[str, str]]:
        raise NotImplementedError("reindex operations are not faked")

    async def start_operation(
        self,
        operation_id: str,
        kind: OperationKind,
        *,
        checkpoint: dict[str, Any],
        first: Continuation,
        holds: Sequence[str] = (),
    ) -> OperationRecord:
        raise NotImplementedError("operations are FakeOperationStore's")

    async def get_operation(self, operation_id: str) -> OperationRecord | None:
        raise NotImplementedError("reindex operations are not faked")

    async def fail_operation(self, operation_id: str) -> None:
        raise NotImplementedError("reindex operations are not faked")

    async def read_watermark_range(
        self, after: int, until: int, limit: int
    ) -> list[IndexedInstance]:
        raise NotImplementedError("reindex operations are not faked")

    async def write_values(
        self, tags: Sequence[QueryTagRecord], instances: Sequence[IndexedInstance]
    ) -> None:
        raise NotImplementedError("reindex operations are not faked")

    async def mark_tags_ready(self, tag_keys: Sequence[int]) -> None:
        raise NotImplementedError("reindex operations are not faked")

    async def compare_and_set_checkpoint(
        self,
        operation_id: str,
        expected: dict[str, Any],
        progress: OperationProgress,
        continuation: Continuation | None,
    ) -> bool:
        raise NotImplementedError("reindex operations are not faked")

    async def resend_continuation(
        self, operation_id: str, stale: dict[str, Any], continuation: Continuation
    ) -> None:
        raise NotImplementedError("reindex operations are not faked")
