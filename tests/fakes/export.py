"""``FakeExportSinks``: export destinations as dicts of written files and error logs."""

from __future__ import annotations

from collections.abc import AsyncIterator

from dicom_core.domain.export import ExportDestination, error_log_path, result_path
from dicom_core.domain.model import InstanceKey
from dicom_core.storage.ports import ExportDestinationError


class FakeExportSink:
    """One operation's sink; what it writes lands in its ``FakeExportSinks``."""

    def __init__(self, sinks: FakeExportSinks, operation_id: str) -> None:
        self._sinks = sinks
        self._operation_id = operation_id

    @property
    def error_href(self) -> str:
        return f"memory://{error_log_path(self._operation_id)}"

    async def prepare(self) -> None:
        if self._sinks.missing:
            raise ExportDestinationError("The destination does not exist.")
        self._sinks.files.setdefault(error_log_path(self._operation_id), b"")

    async def write_instance(
        self, key: InstanceKey, chunks: AsyncIterator[bytes], size: int
    ) -> None:
        path = result_path(self._operation_id, key)
        if self._sinks.fail_writes_after is not None:
            if self._sinks.fail_writes_after <= 0:
                raise ExportDestinationError(f"writing {path}: the destination refused")
            self._sinks.fail_writes_after -= 1
        data = b"".join([chunk async for chunk in chunks])
        assert len(data) == size
        self._sinks.files[path] = data
        self._sinks.writes.append(path)

    async def append_errors(self, lines: bytes) -> None:
        path = error_log_path(self._operation_id)
        self._sinks.files[path] = self._sinks.files.get(path, b"") + lines

    async def close(self) -> None:
        self._sinks.open_sinks -= 1


class FakeExportSinks:
    """The ``ExportSinks`` port. ``missing`` makes every destination absent;
    ``fail_writes_after`` = n lets n more instance writes succeed, then refuses them."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.writes: list[str] = []
        self.opened: list[ExportDestination] = []
        self.open_sinks = 0
        self.missing = False
        self.fail_writes_after: int | None = None

    def open(self, destination: ExportDestination, operation_id: str) -> FakeExportSink:
        self.opened.append(destination)
        self.open_sinks += 1
        return FakeExportSink(self, operation_id)
