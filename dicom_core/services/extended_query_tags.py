"""Extended query tags and their reindex operations (spec/extended-query-tags.md).

Adding tags records them (status Adding), creates a Reindex operation and enqueues its first
message in one step; the operation planner is injected (``dicom_core.jobs.reindex``, which
sits above the services and runs the batches).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dicom_core.domain.extended_query_tags import (
    MAX_TAGS,
    QueryTagDefinition,
)
from dicom_core.domain.model import InstanceKey
from dicom_core.domain.operations import new_operation_id
from dicom_core.errors import BadRequest, Conflict, NotFound
from dicom_core.query.attributes import CORE_CATALOG, describe_tag
from dicom_core.storage.ports import (
    OperationRecord,
    OperationStart,
    QueryTagRecord,
    QueryTagStore,
    TagConflict,
    TooManyTags,
)


class ExtendedQueryTagService:
    def __init__(
        self, store: QueryTagStore, *, plan_reindex: Callable[[str], OperationStart]
    ) -> None:
        self._store = store
        self._plan_reindex = plan_reindex

    async def add(self, definitions: Sequence[QueryTagDefinition]) -> OperationRecord:
        # A tag QIDO already searches (at any level) is refused, as Microsoft's service does:
        # indexing it again would only start a reindex whose values no search ever reads.
        supported = [describe_tag(d.path) for d in definitions if CORE_CATALOG.find(d.path)]
        if supported:
            raise BadRequest(
                f"The query tag(s) {', '.join(supported)} are already supported by QIDO and"
                " cannot be added as extended query tags."
            )
        operation_id = new_operation_id()
        try:
            return await self._store.add_tags(
                definitions,
                operation_id,
                max_tags=MAX_TAGS,
                start=self._plan_reindex(operation_id),
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

    async def queryable(self) -> list[QueryTagRecord]:
        """Ready tags with QIDO enabled: the ones the search catalog adds."""
        return [t for t in await self._store.list_tags() if t.queryable]

    async def erroneous(self) -> list[QueryTagRecord]:
        return [t for t in await self._store.list_tags() if t.error_count > 0]

    async def index_instance(self, key: InstanceKey, watermark: int, metadata_json: bytes) -> None:
        await self._store.index_instance(key, watermark, metadata_json)

    async def refresh_after_delete(self, study_uid: str, partition: int) -> None:
        """After a delete that left instances in the study: the study- and series-level
        values are those of the newest remaining instance again (``QueryTagStore``)."""
        await self._store.refresh_after_delete(study_uid, partition=partition)
