"""The export port: where an export writes its files and its error log.

An export copies stored instances, byte for byte, to a destination the request names
(``dicom_core.domain.export``): a Blob Storage container (the azure adapter, whichever storage
backend the app runs on) or a directory of this machine (the local adapter, confined to the
directory ``DICOM_EXPORT_LOCAL_ROOT`` names). ``ExportSinks`` opens the sink of a destination
for one operation; the layout inside it (``{operation}/results/...``, ``{operation}/errors.log``)
is the domain's, so both adapters write the same tree.

A step of the operation may run again after a crash, so every write may repeat: an instance
written again replaces what the first attempt wrote, and error lines appended again appear
twice (as Azure's log says they may).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from dicom_core.domain.export import ExportDestination
from dicom_core.domain.model import InstanceKey


class ExportDestinationError(Exception):
    """The destination cannot be written (a missing container or directory, credentials
    refused, a directory outside the allowed root): a 400 when an export starts, the
    operation's failure later. The message names the destination, never a secret."""


class ExportSink(Protocol):
    """One operation's files in one destination."""

    @property
    def error_href(self) -> str:
        """Where the error log is, as the operation reports it (``errorHref``): a URL
        without any shared access signature, or a ``file://`` URI."""
        ...

    async def prepare(self) -> None:
        """Check that the destination exists and can be written, and create the (empty)
        error log if there is none yet; ``ExportDestinationError`` if not."""
        ...

    async def write_instance(
        self, key: InstanceKey, chunks: AsyncIterator[bytes], size: int
    ) -> None:
        """Write one instance's ``size`` bytes, streamed, under its result path, replacing
        whatever is there. Raises on failure (``ExportDestinationError`` when the
        destination refuses); nothing half-written is left under the final name where the
        destination can avoid it."""
        ...

    async def append_errors(self, lines: bytes) -> None:
        """Append lines to the error log."""
        ...

    async def close(self) -> None: ...


class ExportSinks(Protocol):
    """Opens the sink of a destination; the composition root picks the adapter."""

    def open(self, destination: ExportDestination, operation_id: str) -> ExportSink:
        """The sink; ``ExportDestinationError`` when this app can never write there."""
        ...
