"""The ``BlobStore`` contract, on both backends, checked through the port and a raw listing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dicom_core.errors import DependencyFailed
from dicom_core.storage.ports import BlobNotFound
from tests.support.stores import Stores


def staged(tmp_path: Path, data: bytes, name: str = "part") -> Path:
    path = tmp_path / f"{name}-{os.urandom(4).hex()}.part"
    path.write_bytes(data)
    return path


async def read_all(stores: Stores, key: str, chunk_size: int = 1 << 20) -> bytes:
    return b"".join([chunk async for chunk in stores.blobs.read_stream(key, chunk_size=chunk_size)])


async def test_put_consumes_the_staged_file_and_reads_back(stores: Stores, tmp_path: Path) -> None:
    data = os.urandom(70_000)
    source = staged(tmp_path, data)
    await stores.blobs.put_file("1.2/3.4/5.6_7.dcm", source)
    assert not source.exists()
    assert await stores.raw_blob_keys() == ["1.2/3.4/5.6_7.dcm"]
    assert await read_all(stores, "1.2/3.4/5.6_7.dcm") == data
    assert await stores.blobs.size("1.2/3.4/5.6_7.dcm") == len(data)


async def test_streams_come_in_chunks_no_larger_than_asked(stores: Stores, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    await stores.blobs.put_file("s/a.dcm", staged(tmp_path, data))
    chunks = [chunk async for chunk in stores.blobs.read_stream("s/a.dcm", chunk_size=65536)]
    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= 65536


async def test_a_large_file_is_uploaded_in_blocks(stores: Stores, tmp_path: Path) -> None:
    """Above 1 MiB the azure adapter stages blocks; the bytes must come back intact."""
    data = os.urandom(9 << 20)
    await stores.blobs.put_file("big/file.dcm", staged(tmp_path, data))
    assert await stores.blobs.size("big/file.dcm") == len(data)
    assert (
        await stores.blobs.read_range("big/file.dcm", (8 << 20) - 10, 20)
        == data[(8 << 20) - 10 : (8 << 20) + 10]
    )
    assert await read_all(stores, "big/file.dcm") == data


async def test_writes_are_create_only_unless_overwriting(stores: Stores, tmp_path: Path) -> None:
    await stores.blobs.put_file("k/x.dcm", staged(tmp_path, b"first"))
    second = staged(tmp_path, b"second")
    with pytest.raises(FileExistsError):
        await stores.blobs.put_file("k/x.dcm", second)
    assert second.exists()  # a refused write leaves its source for the caller to remove
    assert await read_all(stores, "k/x.dcm") == b"first"
    await stores.blobs.put_file("k/x.dcm", second, overwrite=True)
    assert await read_all(stores, "k/x.dcm") == b"second"


async def test_a_create_only_write_that_finds_its_own_bytes_succeeds_on_blob_storage(
    stores: Stores, tmp_path: Path
) -> None:
    """A probe stalled Azurite past the SDK's 60 s read timeout: the upload went through,
    its answer was lost, and the SDK's resend met the blob it had just written, so a new
    instance failed with 272. The same bytes under the key mean the write happened."""
    if stores.backend != "azure":
        pytest.skip("a local rename has no lost answer to retry")
    data = os.urandom(3 << 20)  # in blocks, as the retried uploads were
    await stores.blobs.put_file("k/mine.dcm", staged(tmp_path, data))
    again = staged(tmp_path, data)
    await stores.blobs.put_file("k/mine.dcm", again)
    assert not again.exists()  # consumed, as by any write that succeeded
    assert await read_all(stores, "k/mine.dcm") == data
    longer = staged(tmp_path, data + b"x")
    with pytest.raises(FileExistsError):
        await stores.blobs.put_file("k/mine.dcm", longer)
    assert longer.exists()


async def test_byte_ranges(stores: Stores, tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    await stores.blobs.put_file("r/f.dcm", staged(tmp_path, data))
    assert await stores.blobs.read_range("r/f.dcm", 0, 10) == data[:10]
    assert await stores.blobs.read_range("r/f.dcm", 1000, 333) == data[1000:1333]
    assert await stores.blobs.read_range("r/f.dcm", len(data) - 5, 50) == data[-5:]
    assert await stores.blobs.read_range("r/f.dcm", len(data) + 5, 50) == b""


async def test_missing_blobs(stores: Stores) -> None:
    with pytest.raises(BlobNotFound):
        await read_all(stores, "no/such.dcm")
    with pytest.raises(BlobNotFound):
        await stores.blobs.read_range("no/such.dcm", 0, 4)
    with pytest.raises(BlobNotFound):
        await stores.blobs.size("no/such.dcm")
    assert await stores.blobs.delete("no/such.dcm") is False


async def test_delete_removes_exactly_one(stores: Stores, tmp_path: Path) -> None:
    for name in ("d/1/a.dcm", "d/1/b.dcm", "d/2/c.dcm"):
        await stores.blobs.put_file(name, staged(tmp_path, name.encode()))
    assert await stores.blobs.delete("d/1/a.dcm") is True
    assert await stores.blobs.delete("d/1/a.dcm") is False
    assert await stores.raw_blob_keys() == ["d/1/b.dcm", "d/2/c.dcm"]


async def test_an_opened_reader_streams_the_object_as_opened(
    stores: Stores, tmp_path: Path
) -> None:
    """What a retrieve relies on: opening fails for a missing object (still a status code);
    once open, the bytes come back whole, and never another object's bytes."""
    with pytest.raises(BlobNotFound):
        await stores.blobs.open_reader("r/missing.dcm")
    data = os.urandom(300_000)
    await stores.blobs.put_file("r/a.dcm", staged(tmp_path, data))
    reader = await stores.blobs.open_reader("r/a.dcm")
    assert reader.key == "r/a.dcm" and reader.size == len(data)
    assert await reader.read_range(1000, 333) == data[1000:1333]
    assert await reader.read_range(len(data) - 5, 50) == data[-5:]
    await stores.blobs.put_file("r/a.dcm", staged(tmp_path, b"replaced"), overwrite=True)
    if stores.backend != "azure":
        assert await reader.read_range(0, 10) == data[:10]
        # The open descriptor (or the fake's bytes) still names the file as opened.
        chunks = [chunk async for chunk in reader.read_stream(chunk_size=65536)]
        assert b"".join(chunks) == data and max(map(len, chunks)) <= 65536
    else:
        # Pinned to the ETag seen at opening: other bytes are an error, never the answer.
        with pytest.raises(DependencyFailed, match="status 412"):
            _ = [chunk async for chunk in reader.read_stream()]
        with pytest.raises(DependencyFailed, match="status 412"):
            await reader.read_range(0, 10)
    await reader.close()


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


async def test_open_readers_opens_every_object_in_order_or_none(
    stores: Stores, tmp_path: Path
) -> None:
    """A retrieve opens all its files before the status line: all of them, in the order
    asked, or none, with nothing left open when one is missing."""
    contents = {f"o/{n}.dcm": os.urandom(1000 + n) for n in range(5)}
    for key, data in contents.items():
        await stores.blobs.put_file(key, staged(tmp_path, data))
    keys = list(reversed(contents))
    readers = await stores.blobs.open_readers(keys)
    assert [reader.key for reader in readers] == keys
    for reader in readers:
        assert reader.size == len(contents[reader.key])
        assert await reader.read_range(0, reader.size) == contents[reader.key]
        await reader.close()
    before = _open_descriptors()
    with pytest.raises(BlobNotFound, match="o/missing.dcm"):
        await stores.blobs.open_readers([*keys[:3], "o/missing.dcm", keys[3]])
    if stores.backend == "local":  # elsewhere readers hold no descriptor (sockets come and go)
        assert _open_descriptors() == before
    assert await stores.blobs.open_readers([]) == []
