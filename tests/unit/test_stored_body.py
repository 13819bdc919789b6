"""``StoredFilesResponse``: which ASGI messages an answer of stored files sends, and when."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from dicom_core.storage.local.file_blobs import FileBlobStore, LocalBlobReader
from dicom_core.web.stored_body import ZERO_COPY, StoredFilesResponse, zero_copy_possible
from tests.fakes.blobs import FakeBlobReader


async def stored_readers(tmp_path: Path, sizes: dict[str, int]) -> list[LocalBlobReader]:
    """Files of these sizes stored under ``s/{name}.dcm`` on a local store, opened."""
    store = FileBlobStore(tmp_path / "blobs", durable=False)
    for name, size in sizes.items():
        source = tmp_path / f"{name}.part"
        source.write_bytes(os.urandom(size))
        await store.put_file(f"s/{name}.dcm", source)
    return list(await store.open_readers([f"s/{name}.dcm" for name in sizes]))


def test_zero_copy_needs_the_extension_and_local_files(tmp_path: Path) -> None:
    async def check() -> None:
        (local,) = await stored_readers(tmp_path, {"a": 10})
        offered: dict[str, Any] = {"extensions": {ZERO_COPY: {}}}
        assert zero_copy_possible(offered, [local])
        assert not zero_copy_possible({}, [local])
        assert not zero_copy_possible({"extensions": None}, [local])
        assert not zero_copy_possible(offered, [local, FakeBlobReader("s/b.dcm", b"y")])
        await local.close()
        assert not zero_copy_possible(offered, [local])  # closed: nothing to send from

    asyncio.run(check())


def test_files_go_by_descriptor_between_the_bytes_and_are_closed_after(tmp_path: Path) -> None:
    sent: list[dict[str, Any]] = []

    async def check() -> None:
        readers = await stored_readers(tmp_path, {"a": 1000, "b": 2000})
        fds = [reader.local_fd() for reader in readers]

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == ZERO_COPY:
                # The descriptor is open while the server is handed it.
                os.fstat(message["file"].fileno())
            sent.append(message)

        response = StoredFilesResponse(
            [b"<a>", readers[0], b"<b>", readers[1], b"<end>"],
            {"Content-Length": "3011"},
            "application/test",
        )
        await response({"type": "http"}, _no_receive, send)
        assert [reader.local_fd() for reader in readers] == [None, None]  # closed after
        assert [m["file"].fileno() for m in sent if m["type"] == ZERO_COPY] == fds

    asyncio.run(check())
    assert sent[0]["type"] == "http.response.start"
    assert (b"content-length", b"3011") in sent[0]["headers"]
    kinds = [(m["type"], m.get("body"), m.get("count"), m.get("more_body")) for m in sent[1:]]
    assert kinds == [
        ("http.response.body", b"<a>", None, True),
        (ZERO_COPY, None, 1000, True),
        ("http.response.body", b"<b>", None, True),
        (ZERO_COPY, None, 2000, True),
        ("http.response.body", b"<end>", None, False),
    ]
    assert all(m["offset"] == 0 for m in sent if m["type"] == ZERO_COPY)


def test_readers_are_closed_when_the_server_fails_mid_answer(tmp_path: Path) -> None:
    async def check() -> None:
        readers = await stored_readers(tmp_path, {"a": 10})

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == ZERO_COPY:
                raise OSError("the connection broke")

        response = StoredFilesResponse(readers, {"Content-Length": "10"})
        try:
            await response({"type": "http"}, _no_receive, send)
        except OSError:
            pass
        else:
            raise AssertionError("the failure was swallowed")
        assert readers[0].local_fd() is None

    asyncio.run(check())


async def _no_receive() -> dict[str, Any]:
    raise AssertionError("an answer of stored files reads no request body")
