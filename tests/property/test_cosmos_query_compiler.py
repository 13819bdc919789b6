"""The Cosmos DB compiler agrees with the reference matcher on random data and random queries.

The same random indexes and queries as the SQLite compiler's test (``test_query_compiler``),
stored through the real ``CosmosIndexStore`` into the Cosmos DB server (so summaries, the
copies of study and series keys, "latest wins" and the matching keys are the adapter's own),
searched with the compiled Cosmos SQL, and compared, order included, with what
``dicom_core.query.matching`` selects from the plain-Python model.

What an example costs, and how that is kept down without checking less:

- Storing is the expensive part: about a dozen round trips per instance, up to 24 instances,
  so 0.1-0.7 s per index, where a query takes 10-60 ms. Each random index therefore answers
  ``QUERIES_PER_INDEX`` random queries: 8 where there were 4, for about a fifth more time,
  over as many indexes as before (``MAX_EXAMPLES``, fewer than the SQLite test's 150). The
  trade-off: the queries of one example share their data, so the compiler meets fewer
  distinct data sets than queries; more indexes would cost a store each.
- Each example stores into a fresh pair of containers (index and system), in one database for
  the whole run that is dropped at its end, whatever the examples did: every index starts
  empty, as with a database per example, and no database is left behind on the shared server.
- The examples run on one event loop, on a thread of its own, for the whole run. pytest-timeout
  raises its failure in the main thread, from a signal handler: with ``asyncio.run`` per
  example it surfaced inside the event loop, which ``asyncio.run`` then cancelled and closed
  while a TLS connection to the Cosmos DB server was still being set up or shut down, leaving
  its socket to the garbage collector (a ResourceWarning, an error here). Now the main thread
  only waits, and an interrupted example is cancelled on its loop, where the adapter's
  ``close`` finishes before the loop ends.

A run takes well under a minute because the test server parses queries in linear time
(``cosmos.js``, Fix 6). Its parser as shipped took about ten times longer per level of
parentheses, and one query in thirty that this test draws nests six levels or more (with the
query plan's rewrite): such runs took minutes, or failed at pytest-timeout's 300 s.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicom_core.query.conditions import QueryDescription
from dicom_core.settings import Settings
from dicom_core.storage.azure.factory import build_backend
from tests.property.test_query_compiler import Model, models, queries
from tests.support.index_rows import add_instance
from tests.support.server import BACKENDS

if TYPE_CHECKING:
    from tools.emulators.launcher import Emulators

pytestmark = pytest.mark.skipif(
    "azure" not in BACKENDS, reason="DICOM_TEST_BACKENDS excludes azure"
)

T = TypeVar("T")
Row = tuple[str, str | None, str | None]

MAX_EXAMPLES = 40
QUERIES_PER_INDEX = 8
CANCEL_SECONDS = 30.0
"""How long an interrupted example may take to close its connections."""

COSMOS_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class LoopThread:
    """An event loop running on a thread of its own until ``close``."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="cosmos-property-loop", daemon=True
        )
        self._thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the loop and wait for its result.

        If the wait is interrupted (pytest-timeout, Ctrl-C), ``work`` is cancelled and given
        ``CANCEL_SECONDS`` to run its ``finally`` blocks before the interruption goes on.
        """
        finished = threading.Event()

        async def guarded() -> T:
            try:
                return await work
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(guarded(), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            finished.wait(CANCEL_SECONDS)
            raise

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()


@pytest.fixture(scope="module")
def cosmos_run(emulators: Emulators) -> Iterator[tuple[LoopThread, dict[str, str]]]:
    """The run's event loop and the settings of its database (dropped at the end)."""
    from tests.support.azure_backdoor import cosmos_drop_database

    environment = emulators.environment(database=f"prop-{uuid.uuid4().hex[:12]}")
    loop = LoopThread()
    try:
        yield loop, environment
    finally:
        try:
            loop.close()
        finally:
            cosmos_drop_database(Settings.from_mapping(environment).azure)


async def _index_and_search(
    model: Model, searches: list[QueryDescription], environment: dict[str, str]
) -> list[list[Row]]:
    """Store ``model`` into containers of its own, then run ``searches`` on them."""
    fresh = uuid.uuid4().hex[:12]
    config = Settings.from_mapping(
        {
            **environment,
            "DICOM_COSMOS_INDEX_CONTAINER": f"index-{fresh}",
            "DICOM_COSMOS_SYSTEM_CONTAINER": f"system-{fresh}",
        }
    )
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
        return results
    finally:
        await backend.close()


@COSMOS_SETTINGS
@given(data=st.data())
def test_cosmos_search_agrees_with_reference_matcher(
    data: st.DataObject, cosmos_run: tuple[LoopThread, dict[str, str]]
) -> None:
    loop, environment = cosmos_run
    model = data.draw(models())
    searches = [data.draw(queries(model)) for _ in range(QUERIES_PER_INDEX)]
    found = loop.run(_index_and_search(model, searches, environment))
    for query, result in zip(searches, found, strict=True):
        assert result == model.search(query), query
