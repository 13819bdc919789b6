"""Compressed pixel data cannot make the server allocate what the header did not declare,
and a frame that does not decode is a 406 when it can be, a visibly cut multipart otherwise.

The bomb is a real JPEG (pydicom's JPGLosslessP14SV1_1s_1f_8b.dcm, 8-bit lossless) in a 16x16
instance, its start-of-frame patched to claim 30000x30000: decoding it took about 50 s and
4 GB before this check existed. Every rendering and
transcoding route must refuse it from the codestream header alone, with small memory growth
(no time assertion: the harness measures that).
"""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels import get_encoder

from tests.support.factories import make_dataset, to_bytes
from tests.support.memory import PeakSampler
from tests.support.server import Server, backend_server
from tests.support.wado import STORE_HEADERS, Stored, parts, sample, store

MIB = 1024**2
EXPLICIT_LE = "1.2.840.10008.1.2.1"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
FRAMES_LE = f'multipart/related; type="application/octet-stream"; transfer-syntax={EXPLICIT_LE}'
INSTANCE_LE = f"application/dicom; transfer-syntax={EXPLICIT_LE}"
INSTANCE_J2K = f"application/dicom; transfer-syntax={J2K_LOSSLESS}"
MULTIPART_LE = f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT_LE}'


@pytest.fixture(scope="module")
def bomb_server(
    backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Server]:
    """A server of its own, so its memory reflects these requests only."""
    with backend_server("pixel-bombs", backend, tmp_path_factory, request) as running:
        yield running


@pytest.fixture()
def http(bomb_server: Server) -> Iterator[httpx.Client]:
    with bomb_server.client() as client:
        yield client


def patch_sof(codestream: bytes, rows: int, columns: int) -> bytes:
    """The JPEG ``codestream`` with its start-of-frame claiming ``rows`` x ``columns``."""
    position = 2
    while True:
        marker = codestream[position + 1]
        (length,) = struct.unpack_from(">H", codestream, position + 2)
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            start = position + 5  # marker, length, precision
            return codestream[:start] + struct.pack(">HH", rows, columns) + codestream[start + 4 :]
        position += 2 + length


def jpeg_bomb(*, rows: int = 16, columns: int = 16) -> Dataset:
    """A real JPEG frame whose SOF claims 30000x30000, in an instance of ``rows`` x ``columns``."""
    ds = sample("JPGLosslessP14SV1_1s_1f_8b.dcm")
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = encapsulate([patch_sof(frame, 30000, 30000)])
    ds.Rows, ds.Columns = rows, columns
    return ds


def j2k_instance(frames: list[np.ndarray], *, broken: int | None = None) -> Dataset:
    """A JPEG 2000 lossless multi-frame instance; frame ``broken`` (1-based) breaks off
    halfway, after a sound SIZ."""
    rows, columns = frames[0].shape
    ds = make_dataset(rows=rows, columns=columns, frames=len(frames), transfer_syntax=J2K_LOSSLESS)
    encoder = get_encoder(J2K_LOSSLESS)
    options = {
        "rows": rows,
        "columns": columns,
        "samples_per_pixel": 1,
        "bits_allocated": 16,
        "bits_stored": 12,
        "pixel_representation": 0,
        "photometric_interpretation": "MONOCHROME2",
        "number_of_frames": 1,
    }
    encoded = [bytes(encoder.encode(frame, **options)) for frame in frames]
    if broken is not None:
        encoded[broken - 1] = encoded[broken - 1][: len(encoded[broken - 1]) // 2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelData = encapsulate(encoded)
    ds["PixelData"].VR = "OB"
    return ds


def noise(rows: int, columns: int, count: int, seed: int = 7) -> list[np.ndarray]:
    generator = np.random.default_rng(seed)
    return [generator.integers(0, 4096, (rows, columns), dtype=np.uint16) for _ in range(count)]


def bomb_requests(stored: Stored) -> list[tuple[str, dict[str, str]]]:
    """Every route that decodes: rendered (instance and frame), transcoded frames, and
    whole-instance transcoding to each target, single part and multipart."""
    return [
        (f"{stored.instance}/rendered", {"Accept": "image/jpeg"}),
        (f"{stored.instance}/frames/1/rendered", {"Accept": "image/png"}),
        (f"{stored.instance}/frames/1", {"Accept": FRAMES_LE}),
        (f"{stored.instance}/frames/1", {"Accept": 'multipart/related; type="image/jp2"'}),
        (stored.instance, {"Accept": INSTANCE_LE}),
        (stored.instance, {"Accept": INSTANCE_J2K}),
        (stored.series, {"Accept": MULTIPART_LE}),
    ]


def test_a_sof_claiming_30000x30000_is_refused_with_406_and_small_memory(
    http: httpx.Client, bomb_server: Server
) -> None:
    stored = store(http, jpeg_bomb())
    with PeakSampler(bomb_server.process.pid) as sampler:
        answers = [http.get(path, headers=headers) for path, headers in bomb_requests(stored)]
    assert sampler.growth < 100 * MIB, f"server memory grew {sampler.growth / MIB:.0f} MB"
    for (path, _), response in zip(bomb_requests(stored), answers, strict=True):
        assert response.status_code == 406, (path, response.status_code, response.text[:200])
        assert "30000x30000" in response.json()["message"], response.text


def test_two_bombs_at_once_are_refused_with_small_memory(
    http: httpx.Client, bomb_server: Server
) -> None:
    stored = store(http, jpeg_bomb())
    requests = bomb_requests(stored)[:2]
    results: list[int] = []

    def fetch(path: str, headers: dict[str, str]) -> None:
        with bomb_server.client() as client:
            results.append(client.get(path, headers=headers).status_code)

    with PeakSampler(bomb_server.process.pid) as sampler:
        threads = [threading.Thread(target=fetch, args=request) for request in requests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == [406, 406]
    assert sampler.growth < 100 * MIB, f"server memory grew {sampler.growth / MIB:.0f} MB"


def test_declared_30000x30000_is_refused_by_the_decoded_size_limit(
    http: httpx.Client, bomb_server: Server
) -> None:
    # Header and codestream agree; 30000 x 30000 x 1 byte is over the 512 MiB default.
    stored = store(http, jpeg_bomb(rows=30000, columns=30000))
    with PeakSampler(bomb_server.process.pid) as sampler:
        answers = [http.get(path, headers=headers) for path, headers in bomb_requests(stored)]
    assert sampler.growth < 100 * MIB, f"server memory grew {sampler.growth / MIB:.0f} MB"
    for (path, _), response in zip(bomb_requests(stored), answers, strict=True):
        assert response.status_code == 406, (path, response.status_code, response.text[:200])
        message = response.json()["message"]
        assert "30000x30000" in message and "900000000 bytes" in message, message
        assert "limit of 536870912 bytes" in message, message


def test_frames_as_stored_are_still_served_from_a_bomb(http: httpx.Client) -> None:
    # No decoding, no allocation: the stored bytes go out as they are.
    stored = store(http, jpeg_bomb())
    response = http.get(
        f"{stored.instance}/frames/1",
        headers={"Accept": "multipart/related; type=application/octet-stream; transfer-syntax=*"},
    )
    assert response.status_code == 200
    ((_, payload),) = parts(response)
    assert payload.startswith(b"\xff\xd8")


def test_a_broken_second_frame_is_406_before_the_status_line(http: httpx.Client) -> None:
    stored = store(http, j2k_instance(noise(64, 64, 3), broken=2))
    requests = [
        (f"{stored.instance}/frames/2", {"Accept": FRAMES_LE}),
        (f"{stored.instance}/frames/1,2,3", {"Accept": FRAMES_LE}),
        (f"{stored.instance}/frames/2/rendered", {}),
        (stored.instance, {"Accept": INSTANCE_LE}),
        (stored.series, {"Accept": MULTIPART_LE}),
    ]
    for path, headers in requests:
        response = http.get(path, headers=headers)
        assert response.status_code == 406, (path, response.status_code, response.text[:200])
        assert "could not be decoded" in response.json()["message"], response.text
    # The sound frames still decode.
    assert http.get(f"{stored.instance}/frames/1", headers={"Accept": FRAMES_LE}).status_code == 200


def test_a_streamed_frame_answer_cut_by_a_broken_frame_has_no_closing_delimiter(
    http: httpx.Client,
) -> None:
    # 1024 x 1024 x 2 bytes x 5 frames: over the 8 MiB of a buffered answer, so it streams.
    stored = store(http, j2k_instance(noise(1024, 1024, 5), broken=3))
    response = http.get(f"{stored.instance}/frames/1,2,3,4,5", headers={"Accept": FRAMES_LE})
    assert response.status_code == 200
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
    body = response.content
    assert not body.rstrip().endswith(f"--{boundary}--".encode())
    assert f"--{boundary}--".encode() not in body
    assert body.count(f"--{boundary}\r\n".encode()) == 2  # frames 1 and 2, complete
    assert len(body) > 2 * 1024 * 1024 * 2


def test_a_multipart_retrieve_cut_by_a_broken_instance_has_no_closing_delimiter(
    http: httpx.Client,
) -> None:
    good = j2k_instance(noise(64, 64, 2))
    broken = j2k_instance(noise(64, 64, 2), broken=2)
    broken.StudyInstanceUID = good.StudyInstanceUID
    broken.SeriesInstanceUID = good.SeriesInstanceUID
    stored = store(http, good)
    store(http, broken)
    response = http.get(stored.series, headers={"Accept": MULTIPART_LE})
    assert response.status_code == 200  # the first instance was sound
    boundary = response.headers["content-type"].split("boundary=")[1].split(";")[0].strip('"')
    body = response.content
    assert f"--{boundary}--".encode() not in body
    assert body.count(f"--{boundary}\r\n".encode()) == 2  # the second part started, then ended


def deflate_bomb(inflated: int) -> bytes:
    """A Deflated Explicit VR Little Endian instance whose dataset inflates to more than
    ``inflated`` bytes (a private element of zeros), built a megabyte at a time: it is about
    a thousandth of that size on the wire."""
    ds = make_dataset()
    del ds.PixelData
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
    small = to_bytes(ds)
    handle = io.BytesIO(small)
    read_preamble(handle, False)
    _read_file_meta_info(handle)
    offset = handle.tell()
    dataset = zlib.decompress(small[offset:], -zlib.MAX_WBITS)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    header = struct.pack("<HH2sHI", 0x0029, 0x1010, b"OB", 0, inflated)
    out = [small[:offset], deflater.compress(dataset + header)]
    zeros = bytes(MIB)
    for _ in range(inflated // MIB):
        out.append(deflater.compress(zeros))
    out.append(deflater.flush())
    return b"".join(out)


def test_a_deflate_bomb_is_refused_at_store_with_small_memory(
    http: httpx.Client, bomb_server: Server
) -> None:
    """A probe's 1 MB upload inflated to 1 GiB took 2 GB of a worker (2 GiB killed it). The
    dataset is measured inflated before pydicom inflates it: past DICOM_MAX_DECODED_BYTES
    (512 MiB by default) the part fails with 43264, naming the limit."""
    bomb = deflate_bomb(600 * MIB)
    assert len(bomb) < 2 * MIB
    with PeakSampler(bomb_server.process.pid) as sampler:
        response = http.post("/v2/studies", content=bomb, headers=STORE_HEADERS)
    assert sampler.growth < 100 * MIB, f"server memory grew {sampler.growth / MIB:.0f} MB"
    assert response.status_code == 409, response.text
    (failed,) = response.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [43264]
    assert "inflates to more than 536870912 bytes" in response.text


def test_a_file_cut_inside_an_element_is_refused_not_stored(http: httpx.Client) -> None:
    """A careless client's file cut short before its Pixel Data (here inside a private value)
    is a failure naming the element, not a silent success."""
    ds = make_dataset()
    ds.add_new(0x00291010, "OB", bytes(20_000))
    del ds.PixelData
    whole = to_bytes(ds)
    response = http.post("/v2/studies", content=whole[:-5_000], headers=STORE_HEADERS)
    assert response.status_code == 409, response.text
    (failed,) = response.json()["00081198"]["Value"]
    assert failed["00081197"]["Value"] == [43264]
    assert "(0029,1010)" in response.text and "the file is incomplete" in response.text
    assert http.post("/v2/studies", content=whole, headers=STORE_HEADERS).status_code == 200
