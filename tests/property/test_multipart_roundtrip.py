"""Property tests: multipart bodies written by our helpers parse back exactly, however split.

Unit tests cover the cases we thought of; these search for the ones we did not, in particular
chunk boundaries that fall inside a delimiter and part bodies full of CR, LF, '-' and pieces of
the boundary, where an incremental parser is most likely to drop or invent bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dicom_core.web.multipart import (
    Event,
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    closing_delimiter,
    part_header,
)

Part = tuple[dict[str, str], bytes]

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

BCHARS = "0123456789abcdefXYZ'()+_,-./:=? "


@dataclass(frozen=True)
class Message:
    """A multipart body together with what parsing it must produce."""

    boundary: str
    body: bytes
    parts: list[Part]
    closing_end: int  # offset just past "--boundary--"; only the trailing CRLF may be cut


def strip_delimiters(data: bytes, boundary: str) -> bytes:
    """Remove every real delimiter from ``data`` so it is a legal part body or preamble.

    Shortening each occurrence by one dash terminates and keeps the near-miss in the data,
    which is exactly the kind of content the parser must pass through untouched.
    """
    delimiter = b"\n--" + boundary.encode()
    while delimiter in data:
        data = data.replace(delimiter, b"\n-" + boundary.encode())
    return data


boundaries = st.one_of(
    st.just("------------------------d74496d66958873e"),
    st.text(alphabet=BCHARS, min_size=1, max_size=70).filter(lambda b: not b.endswith(" ")),
)

header_names = st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,15}", fullmatch=True)
header_values = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\n"),
    max_size=30,
).map(lambda value: value.strip(" \t"))
headers_strategy = st.dictionaries(header_names, header_values, max_size=4)


@st.composite
def chunk_fragments(draw: st.DrawFn, boundary: str) -> bytes:
    """Bytes biased towards line breaks, dashes and prefixes of the delimiter."""
    delimiter = b"\r\n--" + boundary.encode()
    tricky = [b"\r", b"\n", b"-", b"--", b"\r\n", b"\r\n--", b"\n--", b" ", b"\t"]
    tricky += [delimiter[:cut] for cut in range(1, len(delimiter))]
    tricky += [b"--" + boundary.encode(), b"--" + boundary.encode() + b"--"]
    pieces = draw(st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(tricky)), max_size=12))
    return b"".join(pieces)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """A valid body built with part_header/closing_delimiter, with optional preamble/epilogue."""
    boundary = draw(boundaries)
    raw_parts = draw(
        st.lists(st.tuples(headers_strategy, chunk_fragments(boundary)), min_size=1, max_size=4)
    )
    pieces: list[bytes] = []
    preamble = draw(chunk_fragments(boundary))
    if preamble:
        # A preamble must not contain a delimiter, nor start with one (the body may begin with
        # "--boundary"), and must end with a line break so the first delimiter starts a line.
        pieces.append(strip_delimiters(b"\n" + preamble, boundary)[1:] + b"\r\n")
    expected: list[Part] = []
    for index, (headers, raw_body) in enumerate(raw_parts):
        part_body = strip_delimiters(raw_body, boundary)
        pieces.append(part_header(boundary, headers, first=index == 0))
        pieces.append(part_body)
        expected.append(({name.lower(): value for name, value in headers.items()}, part_body))
    pieces.append(closing_delimiter(boundary))
    body = b"".join(pieces)
    closing_end = len(body) - 2
    body += draw(st.binary(max_size=20))  # epilogue: anything goes
    return Message(boundary=boundary, body=body, parts=expected, closing_end=closing_end)


def collect(events: list[Event]) -> list[Part]:
    """Fold events into parts, asserting they arrive as PartStart, PartData*, PartEnd."""
    parts: list[Part] = []
    current: tuple[dict[str, str], list[bytes]] | None = None
    for event in events:
        if isinstance(event, PartStart):
            assert current is None
            current = (event.headers, [])
        elif isinstance(event, PartData):
            assert current is not None
            assert event.data
            current[1].append(event.data)
        else:
            assert isinstance(event, PartEnd)
            assert current is not None
            parts.append((current[0], b"".join(current[1])))
            current = None
    assert current is None
    return parts


def parse_chunks(boundary: str, chunks: list[bytes]) -> list[Part]:
    """Feed ``chunks`` one by one, close, and return the parts."""
    parser = MultipartParser(boundary.encode())
    events: list[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    events.extend(parser.close())
    return collect(events)


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split ``data`` at the given offsets (clamped, sorted, duplicates give empty chunks)."""
    offsets = sorted(min(cut, len(data)) for cut in cuts)
    bounds = [0, *offsets, len(data)]
    return [data[start:end] for start, end in pairwise(bounds)]


@SETTINGS
@given(message=messages(), cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8))
def test_roundtrip_random_split_points_preserve_parts(message: Message, cuts: list[int]) -> None:
    chunks = split_at(message.body, cuts)
    assert parse_chunks(message.boundary, chunks) == message.parts


@SETTINGS
@given(message=messages())
def test_roundtrip_one_byte_feeds_preserve_parts(message: Message) -> None:
    chunks = [message.body[index : index + 1] for index in range(len(message.body))]
    assert parse_chunks(message.boundary, chunks) == message.parts


@SETTINGS
@given(message=messages(), data=st.data())
def test_roundtrip_strict_prefix_before_closing_delimiter_raises(
    message: Message, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(min_value=1, max_value=message.closing_end - 1), label="cut")
    split = data.draw(st.integers(min_value=0, max_value=cut), label="split")
    parser = MultipartParser(message.boundary.encode())
    try:
        parser.feed(message.body[:split])
        parser.feed(message.body[split:cut])
        parser.close()
    except MultipartError:
        return
    raise AssertionError(f"prefix of {cut} bytes was accepted")


@SETTINGS
@given(message=messages(), data=st.data())
def test_roundtrip_prefix_missing_only_final_crlf_preserves_parts(
    message: Message, data: st.DataObject
) -> None:
    # RFC 2046 makes the line break after "--boundary--" optional, so cutting there is not
    # truncation: the parts must come back unchanged.
    cut = data.draw(st.integers(min_value=message.closing_end, max_value=len(message.body)))
    assert parse_chunks(message.boundary, [message.body[:cut]]) == message.parts
