"""WADO-RS retrieve against in-memory fakes: what a client gets when files vanish or break.

- Every file of an answer is opened before the status line, so a delete after that point
  cannot shorten the answer, and one between listing and opening is seen by listing again.
- A read that still fails after the status line ends the multipart body without its closing
  boundary (and the exception reaches the host, which aborts the connection): a client can
  always tell it from a complete answer.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from io import BytesIO
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, RLELossless
from starlette.requests import Request
from starlette.responses import StreamingResponse

from dicom_core.bootstrap import Services
from dicom_core.domain.instance import parse_instance
from dicom_core.domain.model import InstanceKey, InstanceRecord
from dicom_core.errors import DicomWebError
from dicom_core.services.blob_cleanup import CLEANUP_QUEUE, BlobJanitor
from dicom_core.services.partitions import PartitionService
from dicom_core.services.retrieve import RetrieveService
from dicom_core.services.transcoding import TranscodingService
from dicom_core.storage.local.file_blobs import FileBlobStore
from dicom_core.storage.ports import BlobNotFound, StorageUnavailable
from dicom_core.web import wado
from dicom_core.web.multipart import MultipartError, MultipartParser, PartData, PartStart
from dicom_core.web.stored_body import ZERO_COPY, StoredFilesResponse
from tests.fakes.partitions import FakePartitionStore
from tests.support.factories import make_dataset, to_bytes

STUDY = "1.2.3"
SERIES = "1.2.3.4"
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def record(number: int) -> InstanceRecord:
    sop = f"1.2.3.4.{number}"
    return InstanceRecord(
        key=InstanceKey(STUDY, SERIES, sop, partition=1),
        watermark=number,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        blob_key=f"{STUDY}/{SERIES}/{sop}_{number}.dcm",
        file_size=len(content(number)),
        frames=None,
        created_at="2024-01-01T00:00:00Z",
    )


def content(number: int) -> bytes:
    return bytes([number]) * (3000 + number)


class FakeIndex:
    """The index's read side; ``stale`` lists instances once more after they are deleted."""

    def __init__(self, records: list[InstanceRecord]) -> None:
        self.records = {r.key: r for r in records}
        self.stale: list[InstanceRecord] | None = None

    async def list_instances(
        self,
        study_uid: str,
        series_uid: str | None = None,
        *,
        partition: int,
        original: bool = False,
    ) -> list[InstanceRecord]:
        if self.stale is not None:
            listed, self.stale = self.stale, None
            return listed
        return sorted(self.records.values(), key=lambda r: r.watermark)

    async def get_instance(
        self, key: InstanceKey, *, original: bool = False
    ) -> InstanceRecord | None:
        return self.records.get(key)


@dataclass
class MemoryReader:
    key: str
    data: bytes
    fail_after: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    async def read_stream(self, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), 1000):
            if self.fail_after is not None and start >= self.fail_after:
                raise OSError(f"disk error reading {self.key} at {start}")
            yield self.data[start : start + 1000]

    async def read_range(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]

    def local_fd(self) -> int | None:
        return None

    async def close(self) -> None:
        return None


@dataclass
class MemoryBlobs:
    """Blobs in a dict; an opened reader keeps the bytes it opened (as the real stores do)."""

    objects: dict[str, bytes] = field(default_factory=dict)
    fail_after: dict[str, int] = field(default_factory=dict)

    def read_stream(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        async def chunks() -> AsyncIterator[bytes]:
            if key not in self.objects:
                raise BlobNotFound(key)
            reader = MemoryReader(key, self.objects[key], self.fail_after.get(key))
            async for chunk in reader.read_stream():
                yield chunk

        return chunks()

    async def read_range(self, key: str, offset: int, length: int) -> bytes:
        if key not in self.objects:
            raise BlobNotFound(key)
        return self.objects[key][offset : offset + length]

    async def open_reader(self, key: str) -> MemoryReader:
        if key not in self.objects:
            raise BlobNotFound(key)
        return MemoryReader(key, self.objects[key], self.fail_after.get(key))

    async def open_readers(self, keys: Sequence[str]) -> list[MemoryReader]:
        return [await self.open_reader(key) for key in keys]


class AsStored:
    """Transcoding that is never needed: these tests ask for the files as stored."""

    def check(self, records: object, target: str) -> None:
        assert target == "*"

    def needs_transcoding(self, record: object, target: str) -> bool:
        return False


def services_for(index: FakeIndex, blobs: MemoryBlobs) -> Services:
    retrieve = RetrieveService(index, blobs)  # type: ignore[arg-type]
    return cast(
        Services,
        SimpleNamespace(retrieve=retrieve, transcoding=AsStored(), partitions=no_partitions()),
    )


def no_partitions() -> PartitionService:
    """Requests of an app with data partitions off: all in Microsoft.Default."""
    return PartitionService(FakePartitionStore(), enabled=False)


def study_request(accept: str = AS_STORED) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": f"/v2/studies/{STUDY}",
            "query_string": b"",
            "headers": [(b"accept", accept.encode())],
            "path_params": {"version": "2", "study": STUDY},
        }
    )


def stored(count: int) -> tuple[FakeIndex, MemoryBlobs]:
    records = [record(n) for n in range(1, count + 1)]
    blobs = MemoryBlobs({r.blob_key: content(n) for n, r in enumerate(records, start=1)})
    return FakeIndex(records), blobs


async def drain(response: StreamingResponse) -> tuple[bytes, BaseException | None]:
    body = bytearray()
    try:
        async for chunk in response.body_iterator:
            body += chunk if isinstance(chunk, bytes) else chunk.encode()
    except Exception as exc:
        return bytes(body), exc
    return bytes(body), None


def parse(response: StreamingResponse, body: bytes) -> list[bytes]:
    """The parts of a complete multipart body; MultipartError if it was cut short."""
    boundary = response.headers["content-type"].split("boundary=")[1].strip('"')
    parser = MultipartParser(boundary.encode())
    events = [*parser.feed(body), *parser.close()]
    parts: list[bytes] = []
    for event in events:
        if isinstance(event, PartStart):
            parts.append(b"")
        elif isinstance(event, PartData):
            parts[-1] += event.data
    return parts


def run[T](make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())  # type: ignore[arg-type]


def test_retrieve_read_failing_mid_part_ends_body_without_closing_boundary() -> None:
    index, blobs = stored(3)
    blobs.fail_after[record(2).blob_key] = 2000  # the second part breaks after 2,000 bytes

    async def scenario() -> tuple[StreamingResponse, bytes, BaseException | None]:
        response = await wado.retrieve(study_request(), services_for(index, blobs))
        assert isinstance(response, StreamingResponse)
        body, error = await drain(response)
        return response, body, error

    response, body, error = run(scenario)
    assert response.status_code == 200
    assert isinstance(error, OSError)  # raised to the host, which aborts the connection
    assert int(response.headers["content-length"]) > len(body)
    boundary = response.headers["content-type"].split("boundary=")[1]
    assert f"--{boundary}--".encode() not in body
    assert content(1) in body and body.endswith(content(2)[:2000])
    with pytest.raises(MultipartError, match="before the closing boundary"):
        parse(response, body)


def test_retrieve_single_instance_read_failing_ends_short_of_content_length() -> None:
    index, blobs = stored(1)
    blobs.fail_after[record(1).blob_key] = 2000
    request = study_request("application/dicom; transfer-syntax=*")
    request.scope["path_params"].update(series=SERIES, instance=record(1).key.sop_uid)

    async def scenario() -> tuple[StreamingResponse, bytes, BaseException | None]:
        response = await wado.retrieve(request, services_for(index, blobs))
        assert isinstance(response, StreamingResponse)
        return (response, *await drain(response))

    response, body, error = run(scenario)
    assert response.status_code == 200
    assert isinstance(error, OSError)
    assert int(response.headers["content-length"]) == len(content(1)) > len(body)


def delete_once_started(
    request: Request, services: Services, index: FakeIndex, blobs: MemoryBlobs
) -> tuple[StreamingResponse, bytes, BaseException | None]:
    """Retrieve, delete the study once the answer has started, then read the whole body."""

    async def scenario() -> tuple[StreamingResponse, bytes, BaseException | None]:
        response = await wado.retrieve(request, services)
        assert isinstance(response, StreamingResponse)
        blobs.objects.clear()  # the study is deleted while the answer streams
        index.records.clear()
        return (response, *await drain(response))

    return run(scenario)


def test_retrieve_files_deleted_after_the_answer_started_are_still_sent_whole() -> None:
    index, blobs = stored(3)
    response, body, error = delete_once_started(
        study_request(), services_for(index, blobs), index, blobs
    )
    assert error is None
    assert parse(response, body) == [content(1), content(2), content(3)]
    assert int(response.headers["content-length"]) == len(body)


def test_transcoded_instances_deleted_after_the_answer_started_are_still_sent_whole(
    tmp_path: Any,
) -> None:
    """Transcoding reads each instance's frames through the file opened before the status
    line, so a delete cannot take the second or third instance away mid-answer."""
    index, blobs = FakeIndex([]), MemoryBlobs()
    for number in range(1, 4):
        ds = make_dataset(
            study_uid=STUDY,
            series_uid=SERIES,
            rows=8,
            columns=8,
            frames=2,
        )
        ds.compress(RLELossless)
        path = tmp_path / f"{number}.dcm"
        path.write_bytes(to_bytes(ds))
        parsed = parse_instance(path, partition=1)
        assert parsed.frames is not None  # the frame-range path, read with read_range
        stored_record = replace(
            record(number),
            key=parsed.key,
            transfer_syntax_uid=parsed.transfer_syntax_uid,
            blob_key=f"{STUDY}/{SERIES}/{parsed.key.sop_uid}.dcm",
            file_size=parsed.file_size,
            frames=parsed.frames,
        )
        index.records[parsed.key] = stored_record
        blobs.objects[stored_record.blob_key] = path.read_bytes()
    transcoding = TranscodingService(
        blobs,  # type: ignore[arg-type]
        max_transcode_bytes=1 << 30,
        max_decoded_bytes=1 << 30,
    )
    services = cast(
        Services,
        SimpleNamespace(
            retrieve=RetrieveService(index, blobs),  # type: ignore[arg-type]
            transcoding=transcoding,
            partitions=no_partitions(),
        ),
    )
    accept = (
        f'multipart/related; type="application/dicom"; transfer-syntax={ExplicitVRLittleEndian}'
    )

    response, body, error = delete_once_started(study_request(accept), services, index, blobs)
    assert error is None
    parts = parse(response, body)
    assert len(parts) == 3
    for part in parts:
        ds = dcmread(BytesIO(part))
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.NumberOfFrames == 2 and len(ds.PixelData) == 2 * 8 * 8 * 2


def test_retrieve_file_deleted_between_listing_and_opening_lists_again() -> None:
    index, blobs = stored(3)
    index.stale = sorted(index.records.values(), key=lambda r: r.watermark)
    del index.records[record(2).key]  # deleted after the listing: index first, then the file
    del blobs.objects[record(2).blob_key]

    async def scenario() -> tuple[StreamingResponse, bytes, BaseException | None]:
        response = await wado.retrieve(study_request(), services_for(index, blobs))
        assert isinstance(response, StreamingResponse)
        return (response, *await drain(response))

    response, body, error = run(scenario)
    assert error is None
    assert parse(response, body) == [content(1), content(3)]


def test_retrieve_whole_study_deleted_between_listing_and_opening_is_404() -> None:
    index, blobs = stored(2)
    index.stale = sorted(index.records.values(), key=lambda r: r.watermark)
    index.records.clear()
    blobs.objects.clear()
    with pytest.raises(DicomWebError) as raised:
        run(lambda: wado.retrieve(study_request(), services_for(index, blobs)))
    assert raised.value.status == 404


def test_retrieve_file_missing_while_still_indexed_is_blob_not_found() -> None:
    index, blobs = stored(2)
    del blobs.objects[record(2).blob_key]  # the index still points at it: really missing
    with pytest.raises(BlobNotFound):  # the web layer's 424
        run(lambda: wado.retrieve(study_request(), services_for(index, blobs)))


# -- the stores and the janitor ---------------------------------------------------------------


def test_local_reader_reads_a_file_unlinked_after_opening(tmp_path: Any) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    source = tmp_path / "source"
    data = bytes(range(256)) * 5000
    source.write_bytes(data)

    async def scenario() -> bytes:
        await store.put_file("a/b/c.dcm", source)
        reader = await store.open_reader("a/b/c.dcm")
        assert await store.delete("a/b/c.dcm")
        try:
            return b"".join([chunk async for chunk in reader.read_stream(chunk_size=4096)])
        finally:
            await reader.close()

    assert run(scenario) == data
    assert not (tmp_path / "blobs" / "a").exists()


def test_local_reader_of_a_missing_file_is_blob_not_found(tmp_path: Any) -> None:
    store = FileBlobStore(tmp_path / "blobs")
    with pytest.raises(BlobNotFound):
        run(lambda: store.open_reader("a/b/missing.dcm"))


def test_local_readers_out_of_descriptors_are_a_503_with_none_left_open(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening an answer's files past the descriptor limit: StorageUnavailable (a 503
    before the status line), and the files already opened are closed again."""
    store = FileBlobStore(tmp_path / "blobs", durable=False)
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(b"x" * 100)
        run(lambda name=name: store.put_file(f"s/{name}.dcm", tmp_path / name))
    opened: list[int] = []
    real_open = os.open

    def open_two(path: Any, flags: int, *args: Any) -> int:
        if len(opened) == 2:
            raise OSError(errno.EMFILE, "Too many open files")
        opened.append(real_open(path, flags, *args))
        return opened[-1]

    monkeypatch.setattr(os, "open", open_two)
    with pytest.raises(StorageUnavailable, match="too many open files to read s/c.dcm"):
        run(lambda: store.open_readers(["s/a.dcm", "s/b.dcm", "s/c.dcm"]))
    monkeypatch.undo()
    for fd in opened:
        with pytest.raises(OSError, match="Bad file descriptor"):
            os.fstat(fd)


@dataclass
class RecordingQueue:
    sent: list[tuple[str, dict[str, Any], float]] = field(default_factory=list)
    broken: bool = False

    async def send(self, queue: str, body: dict[str, Any], *, delay_seconds: float = 0) -> None:
        if self.broken:
            raise ConnectionError("queue down")
        self.sent.append((queue, body, delay_seconds))


@dataclass
class RecordingBlobs:
    deleted: list[str] = field(default_factory=list)

    async def delete(self, key: str) -> bool:
        self.deleted.append(key)
        return True


def test_janitor_with_a_delay_queues_the_delete_instead_of_deleting() -> None:
    blobs, queue = RecordingBlobs(), RecordingQueue()
    janitor = BlobJanitor(blobs, queue, delay_seconds=600)  # type: ignore[arg-type]
    run(lambda: janitor.delete("s/e/i_1.dcm"))
    assert blobs.deleted == []
    assert queue.sent == [(CLEANUP_QUEUE, {"schema": 1, "blob": "s/e/i_1.dcm"}, 600)]


def test_janitor_with_a_delay_deletes_at_once_when_the_queue_fails() -> None:
    blobs, queue = RecordingBlobs(), RecordingQueue(broken=True)
    janitor = BlobJanitor(blobs, queue, delay_seconds=600)  # type: ignore[arg-type]
    run(lambda: janitor.delete("s/e/i_1.dcm"))
    assert blobs.deleted == ["s/e/i_1.dcm"]


def test_janitor_without_a_delay_deletes_at_once() -> None:
    blobs, queue = RecordingBlobs(), RecordingQueue()
    run(lambda: BlobJanitor(blobs, queue).delete("s/e/i_1.dcm"))  # type: ignore[arg-type]
    assert blobs.deleted == ["s/e/i_1.dcm"] and queue.sent == []


def test_a_server_offering_zero_copy_gets_local_files_by_descriptor(tmp_path: Any) -> None:
    """Where the host offers ASGI's zero-copy extension and the files are local, an answer
    as stored hands it the files (dicom_core.web.stored_body); otherwise it streams."""
    index, memory = stored(3)
    blobs = FileBlobStore(tmp_path / "blobs", durable=False)

    async def scenario() -> list[str]:
        for key, data in memory.objects.items():
            source = tmp_path / "part"
            source.write_bytes(data)
            await blobs.put_file(key, source)
        services = services_for(index, blobs)  # type: ignore[arg-type]
        kinds = []
        sent: list[dict[str, Any]] = []

        async def send(message: Any) -> None:
            sent.append(message)

        for offered in (True, False):
            request = study_request()
            if offered:
                request.scope["extensions"] = {ZERO_COPY: {}}
            response = await wado.retrieve(request, services)
            kinds.append(type(response).__name__)
            if isinstance(response, StoredFilesResponse):
                await response(request.scope, _nothing, send)
                files = [m for m in sent if m["type"] == ZERO_COPY]
                assert [m["count"] for m in files] == [len(content(n)) for n in (1, 2, 3)]
            else:
                await drain(response)  # type: ignore[arg-type]
        return kinds

    assert run(scenario) == ["StoredFilesResponse", "StreamingResponse"]


async def _nothing() -> dict[str, Any]:
    raise AssertionError("nothing is read")
