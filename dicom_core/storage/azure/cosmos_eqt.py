"""Extended query tags and their reindex operations on Cosmos DB: ``CosmosQueryTagStore``.

Everything lives in the ``system`` container (partition ``/pk``, every path indexed), so no
container, index or Bicep change is needed:

- tag definitions (``kind`` "querytag", ``id`` ``t|{path}``) and operations (``kind``
  "operation", ``id`` ``o|{id}``) share the partition ``pk`` = "querytags": there are at most
  ``MAX_TAGS`` tags, and sharing one logical partition lets adding tags create the tags and
  their operation in one transactional batch (all or nothing; a taken path fails the batch);
- indexing errors (``kind`` "eqterr") in ``pk`` = ``e|{tag key}``, one per (tag, instance),
  with the ``dp`` of a partition other than Microsoft.Default (its id then starts ``{dp}|``),
  created create-only so that a redelivered batch does not count an error twice;
- indexed values (``kind`` "eqtv") in ``pk`` = ``v|{study}`` (``v|{dp}|{study}``), keyed by
  the entity of the tag's level; their layout, the QIDO over them and their deletion with the
  instances they describe are ``cosmos_extended_values``'s.

Every read-modify-write of a tag or operation replaces on the ETag read before it.

Reindex continuation (at-least-once queue delivery): a batch moves the operation's checkpoint
with a compare-and-set on its ETag, keeping the checkpoint it came from (``previous``) and
``sent`` = false, and only then sends the next message (and sets ``sent``). A message whose
checkpoint is not current does nothing, except when it is ``previous`` and the continuation
was not sent: the send failed after the move, and the retried message sends it again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson
from azure.core import MatchConditions
from azure.cosmos.exceptions import (
    CosmosAccessConditionFailedError,
    CosmosBatchOperationError,
    CosmosResourceExistsError,
    CosmosResourceNotFoundError,
)

from dicom_core.domain.extended_query_tags import (
    QueryStatusValues,
    QueryTagDefinition,
    QueryTagStatusValues,
    value_entity,
)
from dicom_core.domain.model import InstanceKey
from dicom_core.domain.operations import OperationKind, OperationStatusValues
from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY, DEFAULT_PARTITION_NAME
from dicom_core.domain.timestamps import utc_timestamp
from dicom_core.query.indexed_values import IndexedValue, InvalidValue, extract_value
from dicom_core.storage.azure.cosmos_docs import document_partition
from dicom_core.storage.azure.cosmos_extended_values import VALUE_KIND
from dicom_core.storage.azure.cosmos_io import (
    MetadataGone,
    count_items,
    delete_if_present,
    query_items,
    read_item,
    replace_if_unchanged,
)
from dicom_core.storage.azure.cosmos_operations import (
    OPERATION_KIND,
    OPERATION_PARTITION,
    CosmosOperationStore,
    operation_id_of,
    operation_record,
)
from dicom_core.storage.azure.cosmos_partitions import partition_names
from dicom_core.storage.azure.cosmos_placement import document_placement, placement_of
from dicom_core.storage.azure.cosmos_schema import (
    COUNTER_PARTITION,
    INSTANCE,
    WATERMARK_COUNTER,
    instance_id,
)
from dicom_core.storage.azure.cosmos_session import (
    Containers,
    advance_counter,
    unpack_metadata,
)
from dicom_core.storage.ports import (
    Continuation,
    IndexedInstance,
    OperationRecord,
    OperationStart,
    QueryTagRecord,
    TagConflict,
    TooManyTags,
)

log = logging.getLogger(__name__)
Doc = dict[str, Any]

TAG_PARTITION = OPERATION_PARTITION
TAG_KIND = "querytag"
ERROR_KIND = "eqterr"
TAG_KEY_COUNTER = "querytag"
_CAS_ATTEMPTS = 10


def tag_id(path: str) -> str:
    return f"t|{path}"


def error_partition(tag_key: int) -> str:
    return f"e|{tag_key}"


def _tag(doc: Doc) -> QueryTagRecord:
    return QueryTagRecord(
        key=int(doc["key"]),
        path=str(doc["path"]),
        vr=str(doc["vr"]),
        private_creator=doc.get("privateCreator"),
        level=str(doc["level"]),
        status=str(doc["status"]),
        query_status=str(doc["queryStatus"]),
        error_count=int(doc.get("errorCount") or 0),
        operation_id=doc.get("operationId"),
    )


# -- the query tag store ---------------------------------------------------------------------


def _value_document(
    tag: QueryTagRecord, key: InstanceKey, watermark: int, value: IndexedValue
) -> Doc:
    """The value document of ``tag`` for the entity of ``key`` at the tag's level."""
    _, series, sop = value_entity(tag.level, key)
    placement = placement_of(key.partition)
    return {
        "id": f"t{tag.key}|{series}|{sop}",
        "pk": placement.values_partition(key.study_uid),
        **placement.fields(),
        "kind": VALUE_KIND,
        "tag": tag.key,
        "path": tag.path,
        "study": key.study_uid,
        "series": series,
        "sop": sop,
        "wm": watermark,
        "text": value.text,
        "num": value.number,
        "norm": value.norm,
    }


REFRESH_PAGE = 50
"""Instances a refresh lists per page, newest first."""


async def _refresh_values(
    c: Containers, tags: Mapping[int, QueryTagRecord], study_uid: str, partition: int
) -> bool:
    """One round of ``refresh_after_delete``; False when a write lost its ETag."""
    placement = placement_of(partition)
    study = placement.study(study_uid)
    values_pk = placement.values_partition(study_uid)
    values = await query_items(
        c.system,
        "SELECT * FROM c WHERE c.pk = @pk AND c.kind = @kind AND c.sop = ''",
        {"@pk": values_pk, "@kind": VALUE_KIND},
        partition=values_pk,
    )
    if not values:
        return True
    params: dict[str, object] = {"@kind": INSTANCE, "@wms": sorted({int(v["wm"]) for v in values})}
    writers = await query_items(
        study.container(c),
        f"SELECT c.wm FROM c WHERE {study.where(params)} AND c.kind = @kind"
        " AND ARRAY_CONTAINS(@wms, c.wm)",
        params,
        partition=study.key,
    )
    live = {int(row["wm"]) for row in writers}
    pending = {(int(v["tag"]), str(v["series"])): v for v in values if int(v["wm"]) not in live}
    settled = True
    below = 2**62
    while pending:
        params = {"@kind": INSTANCE, "@n": REFRESH_PAGE, "@below": below}
        page = await query_items(
            study.container(c),
            f"SELECT TOP @n c.series, c.sop, c.wm FROM c WHERE {study.where(params)}"
            " AND c.kind = @kind AND c.wm < @below ORDER BY c.wm DESC",
            params,
            partition=study.key,
        )
        for row in page:
            series, sop, watermark = str(row["series"]), str(row["sop"]), int(row["wm"])
            wanted = [entry for entry in pending if entry[1] in ("", series)]
            if not wanted:
                continue
            stored = await read_item(study.container(c), instance_id(series, sop), study.key)
            try:
                if stored is None or int(stored["wm"]) != watermark:
                    continue  # deleted or replaced meanwhile: an older instance stands in
                doc = orjson.loads(await unpack_metadata(study.container(c), study, stored))
            except MetadataGone:
                continue
            key = InstanceKey(study_uid, series, sop, partition=partition)
            for entry in wanted:
                tag = tags.get(entry[0])
                try:
                    value = None if tag is None else extract_value(doc, tag.attribute)
                except InvalidValue:
                    continue
                if tag is None or value is None:
                    continue
                old = pending.pop(entry)
                body = _value_document(tag, key, watermark, value)
                settled &= await replace_if_unchanged(c.system, {**body, "_etag": old["_etag"]})
            if not pending:
                break
        if len(page) < REFRESH_PAGE:
            break
        below = int(page[-1]["wm"])
    for old in pending.values():  # no remaining instance has a value
        try:
            await c.system.delete_item(
                old["id"],
                partition_key=values_pk,
                etag=old["_etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except CosmosAccessConditionFailedError:
            settled = False
        except CosmosResourceNotFoundError:
            pass  # gone already: another refresh, or the study's delete
    return settled


class CosmosQueryTagStore(CosmosOperationStore):
    """``QueryTagStore`` on Cosmos DB (see the module docstring for the documents); its
    reindex operations are ``CosmosOperationStore``'s."""

    # -- tags ------------------------------------------------------------------------------

    async def _tag_docs(self, system: Any) -> list[Doc]:
        return await query_items(
            system,
            "SELECT * FROM c WHERE c.pk = @pk AND c.kind = @kind ORDER BY c.key",
            {"@pk": TAG_PARTITION, "@kind": TAG_KIND},
            partition=TAG_PARTITION,
        )

    async def list_tags(self) -> list[QueryTagRecord]:
        docs = await self._session.run(lambda c: self._tag_docs(c.system))
        return sorted((_tag(d) for d in docs), key=lambda t: t.key)

    async def get_tag(self, path: str) -> QueryTagRecord | None:
        doc = await self._session.run(lambda c: read_item(c.system, tag_id(path), TAG_PARTITION))
        return None if doc is None else _tag(doc)

    async def add_tags(
        self,
        definitions: Sequence[QueryTagDefinition],
        operation_id: str,
        *,
        max_tags: int,
        start: OperationStart,
    ) -> OperationRecord:
        first_message: list[Continuation] = []

        async def write(c: Containers) -> Doc:
            existing = await self._tag_docs(c.system)
            taken = {str(d["path"]) for d in existing}
            conflicts = [d.path for d in definitions if d.path in taken]
            if conflicts:
                raise TagConflict(conflicts)
            if len(existing) + len(definitions) > max_tags:
                raise TooManyTags(len(existing))
            first = await advance_counter(c.system, TAG_KEY_COUNTER, len(definitions))
            keys = [first - len(definitions) + 1 + n for n in range(len(definitions))]
            counter = await read_item(c.system, WATERMARK_COUNTER, COUNTER_PARTITION)
            until = int(counter["value"]) if counter else 0
            # The reindex covers the instances of every data partition, in both index
            # containers (``cosmos_placement``), as ``read_watermark_range`` reads them.
            counts = await asyncio.gather(
                *(
                    count_items(
                        container,
                        "SELECT VALUE COUNT(1) FROM c WHERE c.kind = @kind AND c.wm <= @until",
                        {"@kind": INSTANCE, "@until": until},
                    )
                    for container in (c.index, c.partitioned)
                )
            )
            total = sum(counts)
            checkpoint, message = start(tuple(keys), until, total)
            first_message[:] = [message]
            now = utc_timestamp()
            operations: list[tuple[Any, ...]] = []
            for key, d in zip(keys, definitions, strict=True):
                tag_doc = {
                    "id": tag_id(d.path),
                    "pk": TAG_PARTITION,
                    "kind": TAG_KIND,
                    "key": key,
                    "path": d.path,
                    "vr": d.vr,
                    "privateCreator": d.private_creator,
                    "level": d.level.value,
                    "status": QueryTagStatusValues.ADDING.value,
                    "queryStatus": QueryStatusValues.ENABLED.value,
                    "errorCount": 0,
                    "operationId": operation_id,
                    "createdAt": now,
                }
                operations.append(("create", (tag_doc,)))
            op_doc = {
                "id": operation_id_of(operation_id),
                "pk": TAG_PARTITION,
                "kind": OPERATION_KIND,
                "operationId": operation_id,
                "type": OperationKind.REINDEX.value,
                "status": OperationStatusValues.NOT_STARTED.value,
                "percentComplete": 0,
                "resources": [d.path for d in definitions],
                "checkpoint": checkpoint,
                "previous": None,
                "sent": False,
                "createdAt": now,
                "updatedAt": now,
            }
            operations.append(("create", (op_doc,)))
            try:
                await c.system.execute_item_batch(
                    batch_operations=operations, partition_key=TAG_PARTITION
                )
            except CosmosBatchOperationError as exc:
                if exc.status_code == 409:  # a concurrent add took one of the paths
                    raise TagConflict([d.path for d in definitions]) from exc
                raise
            return op_doc

        op_doc = await self._session.run(write)
        try:
            await self._queue.send(first_message[0].queue, first_message[0].body)
        except Exception:
            # Without its first message the operation would never run: undo the add.
            log.exception("could not enqueue reindex %s; removing its tags", operation_id)
            await self._undo_add(op_doc)
            raise
        try:
            await self._mark_sent(operation_id, op_doc["checkpoint"])
        except Exception:  # only an optimisation for redeliveries: the add has succeeded
            log.warning("could not mark the first message of %s sent", operation_id)
        return operation_record(op_doc)

    async def _undo_add(self, op_doc: Doc) -> None:
        async def undo(c: Containers) -> None:
            for path in op_doc["resources"]:
                await delete_if_present(c.system, tag_id(str(path)), TAG_PARTITION)
            await delete_if_present(c.system, str(op_doc["id"]), TAG_PARTITION)

        await self._session.run(undo)

    async def _update_tag(
        self, system: Any, path: str, change: Callable[[Doc], bool | None]
    ) -> Doc | None:
        """Read-change-replace one tag document on its ETag, again while others win. A
        ``change`` that returns False leaves the document as it is, unwritten."""
        for _ in range(_CAS_ATTEMPTS):
            doc = await read_item(system, tag_id(path), TAG_PARTITION)
            if doc is None:
                return None
            if change(doc) is False:
                return doc
            if await replace_if_unchanged(system, doc):
                return doc
        raise RuntimeError(f"the extended query tag {path} kept changing")

    async def set_query_status(self, path: str, query_status: str) -> QueryTagRecord | None:
        def change(doc: Doc) -> None:
            doc["queryStatus"] = query_status

        doc = await self._session.run(lambda c: self._update_tag(c.system, path, change))
        return None if doc is None else _tag(doc)

    async def delete_tag(self, path: str) -> bool:
        """Mark the tag Deleting (QIDO stops using it), remove its values and errors, then it."""

        def change(doc: Doc) -> None:
            doc["status"] = QueryTagStatusValues.DELETING.value

        doc = await self._session.run(lambda c: self._update_tag(c.system, path, change))
        if doc is None:
            return False
        key = int(doc["key"])

        async def purge(c: Containers) -> None:
            await _purge_rows(c.system, key)
            await delete_if_present(c.system, tag_id(path), TAG_PARTITION)

        await self._session.run(purge)
        return True

    async def list_errors(self, tag_key: int, *, limit: int, offset: int) -> list[dict[str, str]]:
        async def read(c: Containers) -> tuple[list[Doc], dict[int, str]]:
            rows = await query_items(
                c.system,
                "SELECT * FROM c WHERE c.pk = @pk AND c.kind = @kind",
                {"@pk": error_partition(tag_key), "@kind": ERROR_KIND},
                partition=error_partition(tag_key),
            )
            names = {DEFAULT_PARTITION_KEY: DEFAULT_PARTITION_NAME}
            if any(document_partition(row) not in names for row in rows):
                names.update(await partition_names(c.system))
            return rows, names

        rows, names = await self._session.run(read)
        rows.sort(key=lambda r: (str(r["createdAt"]), str(r["sop"])))
        return [
            {
                "studyInstanceUid": str(r["study"]),
                "seriesInstanceUid": str(r["series"]),
                "sopInstanceUid": str(r["sop"]),
                "createdTime": str(r["createdAt"]),
                "errorMessage": str(r["message"]),
                "partitionName": names.get(document_partition(r), DEFAULT_PARTITION_NAME),
            }
            for r in rows[offset : offset + limit]
        ]

    # -- indexing ----------------------------------------------------------------------------

    async def _record_error(
        self, system: Any, tag: QueryTagRecord, key: InstanceKey, message: str
    ) -> None:
        """Record the error once per (tag, instance); a new one disables the tag's QIDO."""
        partition = error_partition(tag.key)
        placement = placement_of(key.partition)
        entity = f"{key.study_uid}|{key.series_uid}|{key.sop_uid}"
        error = {
            # Microsoft.Default's errors keep their ids; another partition's name it first.
            "id": entity if placement.default else f"{placement.dp}|{entity}",
            "pk": partition,
            **placement.fields(),
            "kind": ERROR_KIND,
            "study": key.study_uid,
            "series": key.series_uid,
            "sop": key.sop_uid,
            "createdAt": utc_timestamp(),
            "message": message,
        }
        try:
            await system.create_item(error)
        except CosmosResourceExistsError:
            return
        count = await count_items(
            system,
            "SELECT VALUE COUNT(1) FROM c WHERE c.pk = @pk",
            {"@pk": partition},
            partition=partition,
        )

        def change(doc: Doc) -> bool:
            if int(doc["key"]) != tag.key:
                return False  # deleted since, and added again under the same path: not ours
            doc["queryStatus"] = QueryStatusValues.DISABLED.value
            doc["errorCount"] = max(count, int(doc.get("errorCount") or 0))
            return True

        await self._update_tag(system, tag.path, change)

    async def _index_one(
        self,
        system: Any,
        tag: QueryTagRecord,
        key: InstanceKey,
        watermark: int,
        doc: Doc,
        *,
        record_errors: bool = True,
    ) -> None:
        """Upsert one instance's value for one tag (the newest watermark wins), or its error.

        At store time (``record_errors=False``) an invalid value is only left out: the store
        answer already reported it as a validation warning, which is not an indexing error.
        """
        try:
            value = extract_value(doc, tag.attribute)
        except InvalidValue as exc:
            if record_errors:
                await self._record_error(system, tag, key, str(exc))
            return
        if value is None:
            return
        body = _value_document(tag, key, watermark, value)
        partition = body["pk"]
        for _ in range(_CAS_ATTEMPTS):
            current = await read_item(system, body["id"], partition)
            if current is None:
                try:
                    await system.create_item(body)
                    return
                except CosmosResourceExistsError:
                    continue
            if int(current["wm"]) > watermark:
                return
            if await replace_if_unchanged(system, {**body, "_etag": current["_etag"]}):
                return
        raise RuntimeError(f"the value of {tag.path} for {key} kept changing")

    async def index_instance(self, key: InstanceKey, watermark: int, metadata_json: bytes) -> None:
        tags = [t for t in await self.list_tags() if t.status != QueryTagStatusValues.DELETING]
        if not tags:
            return
        doc = orjson.loads(metadata_json)

        async def write(c: Containers) -> None:
            for tag in tags:
                await self._index_one(c.system, tag, key, watermark, doc, record_errors=False)
            await self._purge_if_deleted(c.system, tags)

        await self._session.run(write)

    async def refresh_after_delete(self, study_uid: str, *, partition: int) -> None:
        """The stale study- and series-level values (their ``wm`` is no stored instance's)
        are replaced, each under the ETag read here, from the newest remaining instance with
        a value; one that none has is deleted the same way. A write that loses its ETag (a
        store, or another delete's refresh, changed the value meanwhile) makes the whole
        refresh run again on what is there now, so two deletes racing in one study leave the
        value of an instance that remains.

        Cost: one query of the study's values, and one of which of their writers remain;
        only when one is gone, pages of the study's instances newest first (light fields) and
        a point read of each one whose metadata is read, until every stale value is found."""
        tags = {
            t.key: t for t in await self.list_tags() if t.status != QueryTagStatusValues.DELETING
        }
        for _ in range(_CAS_ATTEMPTS):
            settled = await self._session.run(
                lambda c: _refresh_values(c, tags, study_uid, partition)
            )
            if settled:
                return
        raise RuntimeError(f"the tag values of study {study_uid} kept changing")

    # -- the primitives of a reindex batch --------------------------------------------------------

    async def read_watermark_range(
        self, after: int, until: int, limit: int
    ) -> list[IndexedInstance]:
        """The first ``limit`` instances of the range by watermark, of every data partition:
        one cross-partition query per index container (``cosmos_placement``), merged."""

        async def read(c: Containers) -> list[IndexedInstance]:
            found = await asyncio.gather(
                *(
                    query_items(
                        container,
                        "SELECT TOP @n c.pk, c.dp, c.series, c.sop, c.wm, c.meta FROM c"
                        " WHERE c.kind = @kind AND c.wm > @after AND c.wm <= @until"
                        " ORDER BY c.wm",
                        {"@n": limit, "@kind": INSTANCE, "@after": after, "@until": until},
                    )
                    for container in (c.index, c.partitioned)
                )
            )
            rows = sorted((row for part in found for row in part), key=lambda r: int(r["wm"]))
            instances = []
            for row in rows[:limit]:
                study = document_placement(row).study(str(row["pk"]))
                key = InstanceKey(
                    study.uid, str(row["series"]), str(row["sop"]), partition=study.partition
                )
                metadata = await unpack_metadata(study.container(c), study, row)
                instances.append(IndexedInstance(key, int(row["wm"]), metadata))
            return instances

        return await self._session.run(read)

    async def write_values(
        self, tags: Sequence[QueryTagRecord], instances: Sequence[IndexedInstance]
    ) -> None:
        async def write(c: Containers) -> None:
            for instance in instances:
                if instance.metadata is None:
                    continue
                doc = orjson.loads(instance.metadata)
                for tag in tags:
                    await self._index_one(c.system, tag, instance.key, instance.watermark, doc)
            await self._purge_if_deleted(c.system, tags)

        await self._session.run(write)

    async def _purge_if_deleted(self, system: Any, tags: Sequence[QueryTagRecord]) -> None:
        """Remove what was just written for any of ``tags`` that a delete has marked since
        they were listed.

        No transaction spans a tag and its rows here, so a delete that marked a tag after the
        caller listed it may have purged before these rows existed. Looking again after the
        writes closes that gap: a tag still standing now is marked later, and its own purge,
        which queries after marking, finds the rows.

        That holds as far as one process's finished write is visible to another's later query,
        which the account's Session consistency promises within a session only (the delete's
        own mark-then-query leans on the same). A batch that fails between its writes and this
        look leaves its rows too. Either way the rows are litter, never a wrong answer: tag
        keys come from a counter and are never reused.
        """
        standing = {
            int(d["key"])
            for d in await self._tag_docs(system)
            if d["status"] != QueryTagStatusValues.DELETING
        }
        for tag in tags:
            if tag.key not in standing:
                await _purge_rows(system, tag.key)

    async def mark_tags_ready(self, tag_keys: Sequence[int]) -> None:
        async def write(c: Containers) -> None:
            wanted = set(tag_keys)
            for doc in await self._tag_docs(c.system):
                if int(doc["key"]) in wanted and doc["status"] == QueryTagStatusValues.ADDING:

                    def change(d: Doc) -> None:
                        if d["status"] == QueryTagStatusValues.ADDING:
                            d["status"] = QueryTagStatusValues.READY.value
                            d["operationId"] = None

                    await self._update_tag(c.system, str(doc["path"]), change)

        await self._session.run(write)


async def _purge_rows(system: Any, key: int) -> None:
    """Delete every value and error document of the tag numbered ``key`` (not the tag)."""
    values = await query_items(
        system,
        "SELECT c.id, c.pk FROM c WHERE c.kind = @kind AND c.tag = @key",
        {"@kind": VALUE_KIND, "@key": key},
    )
    for value in values:
        await delete_if_present(system, str(value["id"]), str(value["pk"]))
    errors = await query_items(
        system,
        "SELECT c.id FROM c WHERE c.pk = @pk",
        {"@pk": error_partition(key)},
        partition=error_partition(key),
    )
    for error in errors:
        await delete_if_present(system, str(error["id"]), error_partition(key))
