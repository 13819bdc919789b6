"""The storage ports' contract suites run unchanged on both backends (ids ``local``/``azure``).

``stores`` builds the backend exactly as the app does (``bootstrap.build_backend``) on
fresh, private storage: a temporary directory for ``local``; for ``azure`` a Cosmos database,
a blob container and queue names of its own on the session's emulators. Each ``Stores`` also
opens back doors into what the adapters wrote (raw SQLite rows, raw Cosmos documents, raw blob
listings, raw queue messages), so a port is never tested only through itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from dicom_core.bootstrap import build_backend
from dicom_core.domain.model import InstanceKey
from dicom_core.settings import Settings
from dicom_core.storage.ports import (
    Backend,
    BlobStore,
    IndexStore,
    JobQueue,
    QueryTagStore,
    WorkitemStore,
)
from tests.conftest import BACKENDS

StoresFactory = Callable[..., Awaitable["Stores"]]


@dataclass
class Stores:
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
    def query_tags(self) -> QueryTagStore:
        return self.ports.query_tags

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
        from tests.azure_backdoor import cosmos_query

        return cosmos_query(self.settings.azure, sql, params, container=container)

    async def raw_instance_states(self, key: InstanceKey) -> list[tuple[str, int]]:
        """Every index entry of an identity as (``creating`` | ``created``, watermark)."""

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
        and the matching key (case-folded) of the latest instance's PatientID."""

        def read() -> dict[str, Any] | None:
            if self.backend == "local":
                rows = self._sqlite(
                    "SELECT num_series, num_instances, modalities, latest_watermark,"
                    " patient_id_fold FROM study WHERE study_uid = ?",
                    (study_uid,),
                )
                if not rows:
                    return None
                series, instances, modalities, latest, patient_id = rows[0]
                return {
                    "series": series,
                    "instances": instances,
                    "modalities": modalities.split("\\") if modalities else [],
                    "latest": latest,
                    "patient_id": patient_id,
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
            }

        return await asyncio.to_thread(read)

    async def raw_blob_keys(self) -> list[str]:
        """Every stored file, listed by the storage itself (not through the port)."""

        def read() -> list[str]:
            if self.backend == "local":
                root = self.settings.data_dir / "blobs"
                if not root.exists():
                    return []
                return sorted(
                    p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
                )
            from tests.azure_backdoor import blob_files

            return [f.key for f in blob_files(self.settings.azure)]

        return await asyncio.to_thread(read)

    async def raw_messages(self, queue: str, *, poison: bool = False) -> list[dict[str, Any]]:
        """Message bodies waiting in a queue (or its poison path), decoded from the wire format.

        On Storage queues the wire format is base64 of the JSON text (what the Functions queue
        trigger reads); decoding it here checks that format.
        """

        def read() -> list[dict[str, Any]]:
            name = f"{queue}-poison" if poison else queue
            if self.backend == "local":
                rows = self._sqlite("SELECT body FROM job WHERE queue = ? ORDER BY id", (name,))
                return [orjson.loads(body) for (body,) in rows]
            from tests.azure_backdoor import queue_peek

            return [
                orjson.loads(base64.b64decode(text, validate=True))
                for text in queue_peek(self.settings.azure, name)
            ]

        return await asyncio.to_thread(read)


@pytest.fixture(params=BACKENDS)
async def make_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoresFactory]:
    """Build fresh stores of the test's backend; ``make_stores(DICOM_X="...")`` adds settings."""
    backend = str(request.param)
    made: list[Stores] = []
    environment: dict[str, str] = {"DATA_DIR": str(tmp_path / "data"), "DICOM_STORAGE": backend}
    if backend == "azure":
        emulators = request.getfixturevalue("emulators")
        environment.update(emulators.environment(database=f"contract-{uuid.uuid4().hex[:12]}"))
        environment["DICOM_BLOB_CONTAINER"] = f"files-{uuid.uuid4().hex[:12]}"

    async def factory(**extra: str) -> Stores:
        settings = Settings.from_mapping({**environment, **extra})
        stores = Stores(backend, settings, build_backend(settings))
        made.append(stores)
        return stores

    yield factory
    for stores in made:
        await stores.close()


@pytest.fixture()
async def stores(make_stores: StoresFactory) -> Stores:
    return await make_stores()
