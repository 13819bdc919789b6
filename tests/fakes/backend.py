"""Every port faked, as one object: the fakes by their own types, and as a ``Backend``."""

from __future__ import annotations

from dataclasses import dataclass, field

from dicom_core.storage.ports import Backend
from tests.fakes.blobs import FakeBlobStore
from tests.fakes.cursors import FakeCursorStore
from tests.fakes.external_metadata import FakeExternalMetadataStore
from tests.fakes.index import FakeIndexStore
from tests.fakes.operations import FakeOperationStore
from tests.fakes.partitions import FakePartitionStore
from tests.fakes.query_tags import FakeQueryTagStore
from tests.fakes.queue import FakeJobQueue
from tests.fakes.workitems import FakeWorkitemStore


@dataclass
class Fakes:
    """A test reaches into the fakes through these fields; services get ``backend()``."""

    index: FakeIndexStore = field(default_factory=FakeIndexStore)
    blobs: FakeBlobStore = field(default_factory=FakeBlobStore)
    queue: FakeJobQueue = field(default_factory=FakeJobQueue)
    workitems: FakeWorkitemStore = field(default_factory=FakeWorkitemStore)
    query_tags: FakeQueryTagStore = field(default_factory=FakeQueryTagStore)
    external_metadata: FakeExternalMetadataStore = field(default_factory=FakeExternalMetadataStore)
    cursors: FakeCursorStore = field(default_factory=FakeCursorStore)
    partitions: FakePartitionStore = field(default_factory=FakePartitionStore)
    operations: FakeOperationStore | None = None
    """Made on first use, sending to ``queue``."""

    def __post_init__(self) -> None:
        if self.operations is None:
            self.operations = FakeOperationStore(self.queue)

    def backend(self, *, blob_delete_delay_seconds: float = 0) -> Backend:
        """No writer (services take the two-step store); no delete delay unless asked."""
        return Backend(
            index=self.index,
            blobs=self.blobs,
            queue=self.queue,
            workitems=self.workitems,
            query_tags=self.query_tags,
            external_metadata=self.external_metadata,
            change_feed=self.index.feed,
            cursors=self.cursors,
            operations=self.operations or FakeOperationStore(self.queue),
            partitions=self.partitions,
            writer=None,
            blob_delete_delay_seconds=blob_delete_delay_seconds,
        )


def memory_backend(*, stale_create_seconds: float = 3600) -> Backend:
    """A fresh ``Backend`` of fakes (the contract suites' ``memory`` backend)."""
    return Fakes(index=FakeIndexStore(stale_create_seconds=stale_create_seconds)).backend()
