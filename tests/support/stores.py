"""The storage ports of one backend, as the contract suites see them, with back doors.

A ``Stores`` holds the ports of one backend (``local``, ``azure`` or the in-memory fakes of
``tests.fakes``, id ``memory``) and opens back doors into what the adapters wrote (raw SQLite
rows, raw Cosmos documents, raw blob listings, raw queue messages), so a port is never tested
only through itself; on ``memory`` the back doors read the fakes' own dicts and lists.

Two parts of the contract are not faked, and ``Stores`` skips the tests that reach them on
``memory``: QIDO search (``require_search``), which would mean a third query compiler, and the
``QueryTagStore``'s reindex operations (``query_tags``), which ``dicom_core.jobs`` tests.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from dicom_core.domain.model import InstanceKey, StudyKey
from dicom_core.domain.partitions import DEFAULT_PARTITION_KEY
from dicom_core.domain.timestamps import timestamp_of
from dicom_core.settings import Settings
from dicom_core.storage.ports import (
    POISON_SUFFIX,
    Backend,
    BlobStore,
    ChangeFeedStore,
    CursorStore,
    IndexStore,
    JobQueue,
    OperationStore,
    PartitionStore,
    QueryTagStore,
    WorkitemStore,
)
from tests.fakes import (
    FakeBlobStore,
    FakeCursorStore,
    FakeIndexStore,
    FakeJobQueue,
    FakePartitionStore,
)

MEMORY = "memory"
"""The backend id of the in-memory fakes (``tests.fakes``)."""

StoresFactory = Callable[..., Awaitable["Stores"]]


@dataclass
class Stores:
    """The ports of one backend built for one test, and back doors into what they wrote."""

    backend: str
    settings: Settings
    ports: Backend
    _closed: bool = field(default=False, repr=False)

    @property
    def index(self) -> IndexStore:
        return self.ports.index

    @property
    def blobs(self) -> BlobStore:
        return self.ports.blobs

    @property
    def queue(self) -> JobQueue:
        return self.ports.queue

    @property
    def workitems(self) -> WorkitemStore:
        return self.ports.workitems

    @property
    def change_feed(self) -> ChangeFeedStore:
        return self.ports.change_feed

    @property
    def cursors(self) -> CursorStore:
        return self.ports.cursors

    @property
    def operations(self) -> OperationStore:
        return self.ports.operations

    @property
    def partitions(self) -> PartitionStore:
        return self.ports.partitions

    @property
    def query_tags(self) -> QueryTagStore:
        if self.backend == MEMORY:
            pytest.skip("the fakes do not run reindex operations (dicom_core.jobs tests them)")
        return self.ports.query_tags

    def require_search(self) -> None:
        """Skip on ``memory``: the fake index answers prepared matches, it compiles no QIDO."""
        if self.backend == MEMORY:
            pytest.skip("the fake index does not evaluate QIDO queries")

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self.ports.close()

    def queue_name(self) -> str:
        """A queue name no other test uses (Storage rules: lower case, digits, hyphens)."""
        return f"q-{uuid.uuid4().hex[:16]}"

    # -- back doors -------------------------------------------------------------------------

    def _sqlite(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(self.settings.data_dir / "index.sqlite")) as conn:
            return conn.execute(sql, params).fetchall()

    def _cosmos(
        self, sql: str, params: dict[str, object], container: str | None = None
    ) -> list[dict[str, Any]]:
        from tests.support.azure_backdoor import cosmos_query

        return cosmos_query(self.settings.azure, sql, params, container=container)

    async def raw_instance_states(self, key: InstanceKey) -> list[tuple[str, int]]:
        """Every index entry of an identity as (``creating`` | ``created``, watermark)."""

        if isinstance(self.index, FakeIndexStore):
            claim = self.index.claims.get(key)
            entry = self.index.stored.get(key)
            states = [("creating", claim.reservation.watermark)] if claim else []
            states += [("created", entry[0].watermark)] if entry else []
            return sorted(states, key=lambda s: s[1])

        def read() -> list[tuple[str, int]]:
            if self.backend == "local":
                rows = self._sqlite(
                    "SELECT status, watermark FROM instance WHERE study_uid = ? AND series_uid = ?"
                    " AND sop_uid = ? ORDER BY watermark",
                    (key.study_uid, key.series_uid, key.sop_uid),
                )
                return [("created" if s == 1 else "creating", int(w)) for s, w in rows]
            docs = self._cosmos(
                "SELECT c.kind, c.wm FROM c WHERE c.pk = @pk AND c.series = @series"
                " AND c.sop = @sop AND (c.kind = 'instance' OR c.kind = 'reservation')",
                {"@pk": key.study_uid, "@series": key.series_uid, "@sop": key.sop_uid},
            )
            states = [
                ("created" if d["kind"] == "instance" else "creating", int(d["wm"])) for d in docs
            ]
            return sorted(states, key=lambda s: s[1])

        return await asyncio.to_thread(read)

    async def raw_study_summary(self, study_uid: str) -> dict[str, Any] | None:
        """The study summary as stored: series and instance counts, modalities, latest wm,
        the matching key (case-folded) of the latest instance's PatientID, and the expiry
        (``utc_timestamp`` text, None for never)."""
        if isinstance(self.index, FakeIndexStore):
            return _memory_study_summary(self.index, study_uid)

        def read() -> dict[str, Any] | None:
            if self.backend == "local":
                rows = self._sqlite(
                    "SELECT num_series, num_instances, modalities, latest_watermark,"
                    " patient_id_fold, expires_at FROM study WHERE study_uid = ?",
                    (study_uid,),
                )
                if not rows:
                    return None
                series, instances, modalities, latest, patient_id, expires_at = rows[0]
                return {
                    "series": series,
                    "instances": instances,
                    "modalities": modalities.split("\\") if modalities else [],
                    "latest": latest,
                    "patient_id": patient_id,
                    "expires_at": expires_at,
                }
            docs = self._cosmos(
                "SELECT * FROM c WHERE c.pk = @pk AND c.kind = 'study'", {"@pk": study_uid}
            )
            if not docs:
                return None
            doc = docs[0]
            latest = self._cosmos(
                "SELECT c.own FROM c WHERE c.pk = @pk AND c.kind = 'instance' AND c.wm = @wm",
                {"@pk": study_uid, "@wm": doc["latestWm"]},
            )
            return {
                "series": doc["numSeries"],
                "instances": doc["numInstances"],
                "modalities": doc["modalities"],
                "latest": doc["latestWm"],
                "patient_id": latest[0]["own"]["sk"].get("PatientID") if latest else None,
                "expires_at": doc.get("expiresAt"),
            }

        return await asyncio.to_thread(read)

    async def raw_blob_keys(self) -> list[str]:
        """Every stored file, listed by the storage itself (not through the port)."""

        if isinstance(self.blobs, FakeBlobStore):
            return sorted(self.blobs.objects)

        def read() -> list[str]:
            if self.backend == "local":
                root = self.settings.data_dir / "blobs"
                if not root.exists():
                    return []
                return sorted(
                    p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                )
            from tests.support.azure_backdoor import blob_files

            return [f.key for f in blob_files(self.settings.azure)]

        return await asyncio.to_thread(read)

    async def raw_cursor(self, name: str) -> int | None:
        """A cursor's position as stored (None: no record of it), read beside the port."""
        if isinstance(self.cursors, FakeCursorStore):
            return self.cursors.positions.get(name)

        def read() -> int | None:
            if self.backend == "local":
                rows = self._sqlite("SELECT position FROM cursor WHERE name = ?", (name,))
            else:
                docs = self._cosmos(
                    "SELECT c.position FROM c WHERE c.pk = 'cursor' AND c.id = @name",
                    {"@name": name},
                    container=self.settings.azure.cosmos_system_container,
                )
                rows = [(doc["position"],) for doc in docs]
            return int(rows[0][0]) if rows else None

        return await asyncio.to_thread(read)

    async def raw_partitions(self) -> list[tuple[int, str]]:
        """The registered partitions as stored, (key, name) by key, read beside the port.

        On azure, ``Microsoft.Default`` is there once the registry has been read."""
        if isinstance(self.partitions, FakePartitionStore):
            return sorted((p.key, p.name) for p in self.partitions.by_name.values())

        def read() -> list[tuple[int, str]]:
            if self.backend == "local":
                rows = self._sqlite("SELECT partition_key, name FROM data_partition")
            else:
                docs = self._cosmos(
                    "SELECT c.key, c.name FROM c WHERE c.pk = 'partitions'",
                    {},
                    container=self.settings.azure.cosmos_system_container,
                )
                rows = [(doc["key"], doc["name"]) for doc in docs]
            return sorted((int(key), str(name)) for key, name in rows)

        return await asyncio.to_thread(read)

    async def raw_messages(self, queue: str, *, poison: bool = False) -> list[dict[str, Any]]:
        """Message bodies waiting in a queue (or its poison path), decoded from the wire format.

        On Storage queues the wire format is base64 of the JSON text (what the Functions queue
        trigger reads); decoding it here checks that format.
        """

        name = queue + POISON_SUFFIX if poison else queue
        if isinstance(self.queue, FakeJobQueue):
            return self.queue.bodies(name)

        def read() -> list[dict[str, Any]]:
            if self.backend == "local":
                rows = self._sqlite("SELECT body FROM job WHERE queue = ? ORDER BY id", (name,))
                return [orjson.loads(body) for (body,) in rows]
            from tests.support.azure_backdoor import queue_peek

            return [
                orjson.loads(base64.b64decode(text, validate=True))
                for text in queue_peek(self.settings.azure, name)
            ]

        return await asyncio.to_thread(read)


def _memory_study_summary(index: FakeIndexStore, study_uid: str) -> dict[str, Any] | None:
    """What the adapters keep as a study summary, computed from the fake's instances."""
    study = StudyKey(study_uid, partition=DEFAULT_PARTITION_KEY)
    entries = sorted(
        (
            entry
            for key, entry in index.stored.items()
            if key.study_uid == study_uid and key.partition == study.partition
        ),
        key=lambda entry: entry[0].watermark,
    )
    if not entries:
        return None
    latest = entries[-1][1].attributes
    modalities = {i.attributes.series.get("Modality") for _, i in entries}
    return {
        "series": len({record.key.series_uid for record, _ in entries}),
        "instances": len(entries),
        "modalities": sorted(m for m in modalities if m),
        "latest": entries[-1][0].watermark,
        "patient_id": latest.normalized.get("PatientID"),
        "expires_at": (timestamp_of(index.expiries[study]) if study in index.expiries else None),
    }
