"""The storage ports' contract suites run unchanged on both backends (ids ``local``/``azure``)
and on the in-memory fakes of ``tests.fakes`` (id ``memory``), so the fakes the service unit
tests use cannot drift from what the adapters promise. ``memory`` needs no emulator and runs
whatever ``DICOM_TEST_BACKENDS`` says.

``stores`` builds the backend exactly as the app does (``bootstrap.build_backend``) on
fresh, private storage: a temporary directory for ``local``; for ``azure`` a Cosmos database,
a blob container and queue names of its own on the session's emulators. The ``Stores`` it
returns, with its back doors into what the adapters wrote, is ``tests.support.stores``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dicom_core.bootstrap import build_backend
from dicom_core.settings import Settings
from tests.fakes import memory_backend
from tests.support.server import BACKENDS
from tests.support.stores import MEMORY, Stores, StoresFactory


@pytest.fixture(params=[*BACKENDS, MEMORY])
async def make_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoresFactory]:
    """Build fresh stores of the test's backend; ``make_stores(DICOM_X="...")`` adds settings."""
    backend = str(request.param)
    made: list[Stores] = []
    # Settings for ``memory`` are the local ones (it reads only DICOM_STALE_CREATE_SECONDS).
    storage = "local" if backend == MEMORY else backend
    environment: dict[str, str] = {"DATA_DIR": str(tmp_path / "data"), "DICOM_STORAGE": storage}
    if backend == "azure":
        emulators = request.getfixturevalue("emulators")
        environment.update(emulators.environment(database=f"contract-{uuid.uuid4().hex[:12]}"))
        environment["DICOM_BLOB_CONTAINER"] = f"files-{uuid.uuid4().hex[:12]}"

    async def factory(**extra: str) -> Stores:
        settings = Settings.from_mapping({**environment, **extra})
        if backend == MEMORY:
            ports = memory_backend(stale_create_seconds=settings.reservation_lease_seconds)
        else:
            ports = build_backend(settings)
        stores = Stores(backend, settings, ports)
        made.append(stores)
        return stores

    yield factory
    for stores in made:
        await stores.close()


@pytest.fixture()
async def stores(make_stores: StoresFactory) -> Stores:
    return await make_stores()
