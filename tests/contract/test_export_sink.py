"""The ``ExportSinks`` port's contract, on its two adapters and the fake: a blob container on
Azurite (``blob``), a directory below ``DICOM_EXPORT_LOCAL_ROOT`` (``directory``), and
``tests.fakes.export`` (``memory``). The real sinks are opened through the composition root
(``bootstrap.ExportDestinations``), as the app opens them, and what they wrote is read back through
back doors: the Blob SDK, the file system, the fake's dict.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from dicom_core.bootstrap import ExportDestinations
from dicom_core.domain.export import (
    BlobDestination,
    DirectoryDestination,
    ExportDestination,
    error_log_path,
    result_path,
)
from dicom_core.domain.model import InstanceKey
from dicom_core.settings import Settings
from dicom_core.storage.local.export_directory import INCOMING, PARTIAL_SUFFIX
from dicom_core.storage.ports import ExportDestinationError, ExportSinks
from tests.fakes.export import FakeExportSinks
from tests.support.processes import dead_pid

if TYPE_CHECKING:
    from tools.emulators.launcher import Emulators

KEY = InstanceKey("1.2.3", "4.5.6", "7.8.9", partition=1)
# Azurite's loopback endpoint is an export host only when the setting says so.
AZURITE = Settings.from_mapping({"DICOM_EXPORT_BLOB_HOSTS": "127.0.0.1"})


@dataclass
class Destination:
    """A destination of one kind, its sinks, and a back door to what was written."""

    kind: str
    sinks: ExportSinks
    destination: ExportDestination
    missing: ExportDestination
    read: Callable[[str], bytes | None]
    """The bytes at a '/'-separated path of the destination, None if there are none."""


def blob_destination(emulators: Emulators) -> Iterator[Destination]:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    connection = emulators.storage_connection()
    container = f"export-{uuid.uuid4().hex[:12]}"
    service = BlobServiceClient.from_connection_string(connection)
    service.create_container(container)

    def read(path: str) -> bytes | None:
        try:
            return bytes(service.get_blob_client(container, path).download_blob().readall())
        except ResourceNotFoundError:
            return None

    try:
        yield Destination(
            "blob",
            ExportDestinations(AZURITE),
            BlobDestination(connection_string=connection, container_name=container),
            BlobDestination(connection_string=connection, container_name=f"{container}-none"),
            read,
        )
    finally:
        service.delete_container(container)
        service.close()


def directory_destination(tmp_path: Path) -> Destination:
    root = tmp_path / "root"
    target = root / "exports"
    target.mkdir(parents=True)

    def read(path: str) -> bytes | None:
        file = target.joinpath(*path.split("/"))
        return file.read_bytes() if file.is_file() else None

    return Destination(
        "directory",
        ExportDestinations(Settings.from_mapping({"DICOM_EXPORT_LOCAL_ROOT": str(root)})),
        DirectoryDestination(uri=target.as_uri(), path=str(target)),
        DirectoryDestination(uri=(root / "none").as_uri(), path=str(root / "none")),
        read,
    )


def memory_destination() -> Destination:
    fake = FakeExportSinks()
    missing = FakeExportSinks()
    missing.missing = True
    anywhere = DirectoryDestination(uri="file:///memory", path="/memory")

    class Sinks:
        def open(self, destination: ExportDestination, operation_id: str) -> Any:
            return (missing if destination.uri.endswith("none") else fake).open(  # type: ignore[union-attr]
                destination, operation_id
            )

    return Destination(
        "memory",
        Sinks(),
        anywhere,
        DirectoryDestination(uri="file:///none", path="/none"),
        fake.files.get,
    )


@pytest.fixture(params=["blob", "directory", "memory"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Destination]:
    if request.param == "blob":
        yield from blob_destination(request.getfixturevalue("emulators"))
    elif request.param == "directory":
        yield directory_destination(tmp_path)
    else:
        yield memory_destination()


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def operation() -> str:
    return uuid.uuid4().hex


async def test_prepare_creates_an_empty_error_log_where_error_href_says(
    target: Destination,
) -> None:
    op = operation()
    sink = target.sinks.open(target.destination, op)
    try:
        await sink.prepare()
        await sink.prepare()  # a repeated start keeps it
    finally:
        await sink.close()
    assert target.read(error_log_path(op)) == b""
    href = sink.error_href
    assert href.endswith(f"/{op}/errors.log")
    assert urlsplit(href).query == ""


async def test_an_instance_is_written_whole_and_a_repeat_replaces_it(
    target: Destination,
) -> None:
    op = operation()
    data = bytes(range(256)) * (3 * 4096 + 17)  # about 3 MiB: several blocks on Blob Storage
    sink = target.sinks.open(target.destination, op)
    try:
        await sink.prepare()
        await sink.write_instance(KEY, chunks_of(data, 1 << 20), len(data))
        assert target.read(result_path(op, KEY)) == data
        await sink.write_instance(KEY, chunks_of(b"again", 2), 5)
    finally:
        await sink.close()
    assert target.read(f"{op}/results/1.2.3/4.5.6/7.8.9.dcm") == b"again"


async def test_error_lines_are_appended(target: Destination) -> None:
    op = operation()
    sink = target.sinks.open(target.destination, op)
    try:
        await sink.prepare()
        await sink.append_errors(b'{"a": 1}\n')
        await sink.append_errors(b'{"b": 2}\n{"c": 3}\n')
    finally:
        await sink.close()
    assert target.read(error_log_path(op)) == b'{"a": 1}\n{"b": 2}\n{"c": 3}\n'


async def test_a_missing_destination_is_refused_when_prepared(target: Destination) -> None:
    sink = target.sinks.open(target.missing, operation())
    try:
        with pytest.raises(ExportDestinationError):
            await sink.prepare()
    finally:
        await sink.close()


# --- Blob Storage only ------------------------------------------------------------------


@pytest.fixture()
def blob_target(emulators: Emulators) -> Iterator[Destination]:
    yield from blob_destination(emulators)


async def test_a_container_uri_with_a_sas_is_written_with_the_sas_alone(
    blob_target: Destination, emulators: Emulators
) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from tools.emulators.launcher import AZURITE_ACCOUNT, AZURITE_KEY

    destination = blob_target.destination
    assert isinstance(destination, BlobDestination) and destination.container_name
    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        destination.container_name,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(add=True, create=True, write=True),  # no read
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    uri = (
        f"http://127.0.0.1:{emulators.blob_port}/{AZURITE_ACCOUNT}/"
        f"{destination.container_name}?{sas}"
    )
    with_sas = BlobDestination(container_uri=uri)
    assert with_sas.has_sas
    op = operation()
    sink = blob_target.sinks.open(with_sas, op)
    try:
        await sink.prepare()
        await sink.write_instance(KEY, chunks_of(b"dicom", 3), 5)
    finally:
        await sink.close()
    assert blob_target.read(result_path(op, KEY)) == b"dicom"
    assert sink.error_href == uri.split("?")[0] + f"/{op}/errors.log"


def test_a_host_not_allowed_is_refused_when_opened() -> None:
    """Before any request leaves: the default allows Azure Storage's hosts alone."""
    for uri in ("https://attacker.example/out", "http://127.0.0.1:10000/devstoreaccount1/out"):
        with pytest.raises(ExportDestinationError, match="DICOM_EXPORT_BLOB_HOSTS"):
            ExportDestinations(Settings()).open(BlobDestination(container_uri=uri), operation())


def test_a_connection_string_that_is_not_one_is_refused_when_opened() -> None:
    with pytest.raises(ExportDestinationError) as refused:
        ExportDestinations(Settings()).open(
            BlobDestination(connection_string="AccountKey=c2VjcmV0", container_name="out"),
            operation(),
        )
    assert "c2VjcmV0" not in str(refused.value)


# --- Directories only ---------------------------------------------------------------------


def directory(path: Path) -> DirectoryDestination:
    return DirectoryDestination(uri=path.as_uri(), path=str(path))


def test_file_destinations_are_off_without_a_root(tmp_path: Path) -> None:
    with pytest.raises(ExportDestinationError, match="DICOM_EXPORT_LOCAL_ROOT"):
        ExportDestinations(Settings()).open(directory(tmp_path), operation())


@pytest.mark.parametrize("where", ["outside", "dotdot", "link"])
def test_a_directory_outside_the_root_is_refused(tmp_path: Path, where: str) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    path = {
        "outside": str(tmp_path / "elsewhere"),
        "dotdot": f"{root}/../elsewhere",
        "link": str(root / "link"),
    }[where]
    sinks = ExportDestinations(Settings.from_mapping({"DICOM_EXPORT_LOCAL_ROOT": str(root)}))
    with pytest.raises(ExportDestinationError, match="outside"):
        sinks.open(DirectoryDestination(uri=f"file://{path}", path=path), operation())


async def test_a_write_cut_short_leaves_no_file_behind(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    sinks = ExportDestinations(Settings.from_mapping({"DICOM_EXPORT_LOCAL_ROOT": str(root)}))
    op = operation()
    sink = sinks.open(directory(root), op)
    await sink.prepare()

    async def broken() -> AsyncIterator[bytes]:
        yield b"half"
        raise OSError("the source went away")

    with pytest.raises(OSError, match="went away"):
        await sink.write_instance(KEY, broken(), 8)
    with pytest.raises(OSError, match="4 of 8"):
        await sink.write_instance(KEY, chunks_of(b"half", 4), 8)
    written = sorted(p.name for p in (root / op).rglob("*") if p.is_file())
    assert written == ["errors.log"]


async def test_a_batch_removes_the_partial_files_killed_writers_left(tmp_path: Path) -> None:
    """A worker killed mid-write leaves its partial file in the operation's .incoming; the
    next batch's first write removes it (a live writer's stays)."""
    root = tmp_path / "root"
    root.mkdir()
    sinks = ExportDestinations(Settings.from_mapping({"DICOM_EXPORT_LOCAL_ROOT": str(root)}))
    op = operation()
    incoming = root / op / INCOMING
    incoming.mkdir(parents=True)
    host = socket.gethostname()
    dead = incoming / f"{host}.{dead_pid()}.{'a' * 32}{PARTIAL_SUFFIX}"
    live = incoming / f"{host}.{os.getppid()}.{'b' * 32}{PARTIAL_SUFFIX}"
    for path in (dead, live):
        path.write_bytes(b"half an instance")
    sink = sinks.open(directory(root), op)
    await sink.prepare()
    await sink.write_instance(KEY, chunks_of(b"DICOM" * 10, 7), 50)
    assert [p.name for p in incoming.iterdir()] == [live.name]
    written = sorted(p.name for p in (root / op).rglob("*") if p.is_file())
    assert written == sorted(["errors.log", f"{KEY.sop_uid}.dcm", live.name])
