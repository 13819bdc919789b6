"""Codestream header readers: generated valid headers read back; anything else is a
CodestreamError, never another exception."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st

from dicom_core.domain.codestreams import (
    JPEG_SOF_MARKERS,
    CodestreamError,
    CodestreamHeader,
    check_frame,
    read_jpeg,
    read_jpeg_2000,
    read_jpeg_ls,
    read_rle,
)

SYNTAXES = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.1",
]

dimension = st.integers(min_value=1, max_value=0xFFFF)
components = st.integers(min_value=1, max_value=4)
# Segments that may precede a start-of-frame: APPn, DQT, DHT, COM, DRI (any content).
before_sof = st.lists(
    st.tuples(
        st.sampled_from([*range(0xE0, 0xF0), 0xDB, 0xC4, 0xFE, 0xDD]),
        st.binary(max_size=80),
        st.integers(min_value=0, max_value=3),  # 0xFF fill bytes before the marker
    ),
    max_size=5,
)


def segment(marker: int, payload: bytes, fill: int = 0) -> bytes:
    return b"\xff" * fill + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def sof_payload(precision: int, rows: int, columns: int, count: int) -> bytes:
    spec = b"".join(bytes([i + 1, 0x11, 0]) for i in range(count))
    return struct.pack(">BHHB", precision, rows, columns, count) + spec


@st.composite
def jpeg_headers(draw: st.DrawFn, markers: list[int]) -> tuple[bytes, CodestreamHeader, int]:
    """A codestream, the header it declares, and where its start-of-frame segment ends."""
    rows, columns, count = draw(dimension), draw(dimension), draw(components)
    precision = draw(st.integers(min_value=2, max_value=16))
    marker = draw(st.sampled_from(markers))
    head = b"\xff\xd8" + b"".join(segment(m, p, f) for m, p, f in draw(before_sof))
    sof = segment(marker, sof_payload(precision, rows, columns, count))
    tail = segment(0xDA, b"\x01\x01\x00\x00\x3f\x00") + draw(st.binary(max_size=40))
    expected = CodestreamHeader(rows=rows, columns=columns, samples=count, precision=precision)
    return head + sof + tail, expected, len(head) + len(sof)


def siz(width: int, height: int, x0: int, y0: int, count: int, depth: int) -> bytes:
    body = struct.pack(">HIIIIIIIIH", 0, width, height, x0, y0, width, height, 0, 0, count)
    body += bytes([depth - 1, 1, 1]) * count
    return b"\xff\x4f\xff\x51" + struct.pack(">H", len(body) + 2) + body


@st.composite
def j2k_headers(draw: st.DrawFn) -> tuple[bytes, CodestreamHeader]:
    x0 = draw(st.integers(min_value=0, max_value=1000))
    y0 = draw(st.integers(min_value=0, max_value=1000))
    columns, rows = draw(dimension), draw(dimension)
    count = draw(st.integers(min_value=1, max_value=16))
    depth = draw(st.integers(min_value=1, max_value=38))
    stream = siz(x0 + columns, y0 + rows, x0, y0, count, depth) + draw(st.binary(max_size=40))
    expected = CodestreamHeader(rows=rows, columns=columns, samples=count, precision=depth)
    return stream, expected


def box(kind: bytes, payload: bytes, form: str = "exact") -> bytes:
    if form == "extended":
        return struct.pack(">I4sQ", 1, kind, len(payload) + 16) + payload
    if form == "to-end":
        return struct.pack(">I4s", 0, kind) + payload
    return struct.pack(">I4s", len(payload) + 8, kind) + payload


@st.composite
def jp2_files(draw: st.DrawFn) -> tuple[bytes, CodestreamHeader]:
    stream, expected = draw(j2k_headers())
    signature = box(b"jP  ", b"\r\n\x87\n")
    ftyp = box(b"ftyp", b"jp2 \x00\x00\x00\x00jp2 ")
    header = box(b"jp2h", box(b"ihdr", draw(st.binary(min_size=14, max_size=14))))
    extras = b"".join(box(b"xml ", payload) for payload in draw(st.lists(st.binary(), max_size=2)))
    form = draw(st.sampled_from(["exact", "extended", "to-end"]))
    return signature + ftyp + header + extras + box(b"jp2c", stream, form), expected


@st.composite
def rle_headers(draw: st.DrawFn) -> tuple[bytes, int]:
    count = draw(st.integers(min_value=1, max_value=15))
    sizes = draw(st.lists(st.integers(min_value=1, max_value=50), min_size=count, max_size=count))
    offsets, position = [], 64
    for size in sizes:
        offsets.append(position)
        position += size
    header = struct.pack("<16I", count, *offsets, *([0] * (15 - count)))
    return header + bytes(position - 64), count


@given(jpeg_headers(sorted(JPEG_SOF_MARKERS)))
def test_generated_jpeg_headers_read_back(case: tuple[bytes, CodestreamHeader, int]) -> None:
    data, expected, _ = case
    assert read_jpeg(data) == expected


@given(jpeg_headers([0xF7]))
def test_generated_jpeg_ls_headers_read_back(case: tuple[bytes, CodestreamHeader, int]) -> None:
    data, expected, _ = case
    assert read_jpeg_ls(data) == expected


@given(j2k_headers())
def test_generated_jpeg_2000_codestreams_read_back(case: tuple[bytes, CodestreamHeader]) -> None:
    data, expected = case
    assert read_jpeg_2000(data) == expected


@given(jp2_files())
def test_generated_jp2_files_read_back(case: tuple[bytes, CodestreamHeader]) -> None:
    data, expected = case
    assert read_jpeg_2000(data) == expected


@given(rle_headers())
def test_generated_rle_headers_read_back(case: tuple[bytes, int]) -> None:
    data, count = case
    assert read_rle(data).samples == count


def _refused_or_read(reader: object, data: bytes) -> None:
    assert callable(reader)
    try:
        result = reader(data)
    except CodestreamError as exc:
        assert str(exc)
    else:
        assert isinstance(result, CodestreamHeader)


@given(jpeg_headers(sorted(JPEG_SOF_MARKERS)), st.data())
def test_jpeg_cut_before_its_start_of_frame_ends_is_refused(
    case: tuple[bytes, CodestreamHeader, int], data: st.DataObject
) -> None:
    stream, _, sof_end = case
    cut = data.draw(st.integers(min_value=0, max_value=sof_end - 1))
    try:
        read_jpeg(stream[:cut])
    except CodestreamError as exc:
        assert "JPEG" in str(exc)
    else:
        raise AssertionError("a truncated start-of-frame was read")


@given(j2k_headers(), st.data())
def test_jpeg_2000_cut_inside_siz_is_refused(
    case: tuple[bytes, CodestreamHeader], data: st.DataObject
) -> None:
    stream, expected = case
    (length,) = struct.unpack_from(">H", stream, 4)
    cut = data.draw(st.integers(min_value=0, max_value=4 + length - 1))
    try:
        read_jpeg_2000(stream[:cut])
    except CodestreamError as exc:
        assert "JPEG 2000" in str(exc)
    else:
        raise AssertionError("a truncated SIZ was read")


@given(rle_headers(), st.data())
def test_rle_cut_inside_its_header_or_segments_is_refused(
    case: tuple[bytes, int], data: st.DataObject
) -> None:
    stream, count = case
    (last,) = struct.unpack_from("<I", stream, 4 * count)
    cut = data.draw(st.integers(min_value=0, max_value=last))
    try:
        read_rle(stream[:cut])
    except CodestreamError as exc:
        assert "RLE" in str(exc)
    else:
        raise AssertionError("a truncated RLE frame was read")


@given(st.binary(max_size=300))
def test_garbage_is_read_or_refused_by_every_reader(data: bytes) -> None:
    for reader in (read_jpeg, read_jpeg_ls, read_jpeg_2000, read_rle):
        _refused_or_read(reader, data)


@given(
    st.one_of(
        st.binary(max_size=300),
        st.builds(lambda p, s: b"\xff\xd8" + p + s, st.binary(max_size=40), st.binary()),
        st.builds(lambda s: b"\xff\x4f\xff\x51" + s, st.binary(max_size=80)),
        st.builds(
            lambda s: b"\x00\x00\x00\x0cjP  \r\n\x87\n" + s,
            st.binary(max_size=120),
        ),
    ),
    st.sampled_from(SYNTAXES),
    st.integers(min_value=1, max_value=0xFFFF),
    st.integers(min_value=1, max_value=4),
    st.sampled_from([1, 8, 16, 32]),
)
def test_check_frame_raises_only_codestream_errors(
    data: bytes, syntax: str, size: int, samples: int, bits: int
) -> None:
    try:
        check_frame(
            data, syntax, rows=size, columns=size, samples_per_pixel=samples, bits_allocated=bits
        )
    except CodestreamError as exc:
        assert str(exc)
