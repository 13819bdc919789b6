"""In-memory fakes of the storage ports, for testing services without a server or emulator.

One module per port, each small enough to be read at a glance: dicts and lists behind the
port's methods (cosmicpython's ``FakeRepository``). They are not a third backend. The contract
suites in ``tests/contract`` run against them as well as against the real adapters (backend id
``memory``), so a fake cannot drift from what the adapters promise. Where a contract needs
a query engine (QIDO search), the fake does not reimplement one: ``FakeIndexStore.search``
answers from matches a test prepares, and the contract tests that search skip on ``memory``.
"""

from __future__ import annotations

from tests.fakes.backend import Fakes, memory_backend
from tests.fakes.blobs import FakeBlobStore
from tests.fakes.cursors import FakeCursorStore
from tests.fakes.external_metadata import FakeExternalMetadataStore
from tests.fakes.index import FakeIndexStore
from tests.fakes.partitions import FakePartitionStore
from tests.fakes.queue import FakeJobQueue
from tests.fakes.workitems import FakeWorkitemStore

__all__ = [
    "FakeBlobStore",
    "FakeCursorStore",
    "Fakes",
    "FakeExternalMetadataStore",
    "FakeIndexStore",
    "FakeJobQueue",
    "FakePartitionStore",
    "FakeWorkitemStore",
    "memory_backend",
]
