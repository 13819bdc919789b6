"""The Cosmos DB compiler agrees with the reference matcher on random data and random queries.

The same random indexes and queries as the SQLite compiler's test (``test_query_compiler``),
stored through the real ``CosmosIndexStore`` into the Cosmos DB server (so summaries, the
copies of study and series keys, "latest wins" and the matching keys are the adapter's own),
searched with the compiled Cosmos SQL, and compared, order included, with what
``dicom_core.query.matching`` selects from the plain-Python model.

Each example writes a fresh database, so fewer examples run than for SQLite; several queries
run on each random index to make up for it.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicom_core.query.conditions import QueryDescription
from dicom_core.settings import Settings
from dicom_core.storage.azure.factory import build_backend
from tests.conftest import BACKENDS
from tests.fixtures.index_rows import add_instance
from tests.property.test_query_compiler import Model, models, queries

if TYPE_CHECKING:
    from tools.emulators.launcher import Emulators

pytestmark = pytest.mark.skipif(
    "azure" not in BACKENDS, reason="DICOM_TEST_BACKENDS excludes azure"
)

COSMOS_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


async def _index_and_search(
    model: Model, searches: list[QueryDescription], environment: dict[str, str]
) -> list[list[tuple[str, str | None, str | None]]]:
    database = f"prop-{uuid.uuid4().hex[:12]}"
    config = Settings.from_mapping({**environment, "DICOM_COSMOS_DATABASE": database})
    backend = build_backend(config)
    index = backend.index
    try:
        for i in model.instances:
            i.watermark = await add_instance(
                index, i.study_uid, i.series_uid, i.sop_uid, study=i.study, series=i.series
            )
        results = []
        for query in searches:
            found = await index.search(query)
            results.append([(m.study_uid, m.series_uid, m.sop_uid) for m in found])
        client = await index._clients.client()  # type: ignore[attr-defined]
        await client.delete_database(database)
        return results
    finally:
        await backend.close()


@COSMOS_SETTINGS
@given(data=st.data())
def test_cosmos_search_agrees_with_reference_matcher(
    data: st.DataObject, emulators: Emulators
) -> None:
    model = data.draw(models())
    searches = [data.draw(queries(model)) for _ in range(4)]
    environment = emulators.environment()
    found = asyncio.run(_index_and_search(model, searches, environment))
    for query, result in zip(searches, found, strict=True):
        assert result == model.search(query), query
