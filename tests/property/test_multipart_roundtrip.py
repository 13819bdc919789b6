"""Property tests: multipart bodies written by our helpers parse back exactly, however split.

Unit tests cover the cases we thought of; these search for the ones we did not, in particular
chunk boundaries that fall inside a delimiter and part bodies full of CR, LF, '-' and pieces of
the boundary, where an incremental parser is most likely to drop or invent bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dicom_core.web.multipart import (
    MAX_TRANSPORT_PADDING,
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


def real_delimiters(boundary: str, *, preamble: bool) -> re.Pattern[bytes]:
    """What RFC 2046 makes a delimiter: the bytes a part body (or preamble) must not hold.

    In a CRLF-framed body that is CRLF "--boundary", then transport padding and CRLF, or
    "--", padding and CRLF (the close delimiter). Before the first delimiter the framing is not
    known yet, so there a bare LF counts as a line break too.
    """
    line_break = rb"\r?\n" if preamble else rb"\r\n"
    start = rb"\n" if preamble else rb"\r\n"
    padding = rb"[ \t]{0,%d}" % MAX_TRANSPORT_PADDING
    dash_boundary = re.escape(b"--" + boundary.encode())
    return re.compile(start + dash_boundary + rb"(?:--)?" + padding + line_break)


def neutralise(data: bytes, boundary: str, *, preamble: bool = False) -> bytes:
    """Break every real delimiter in ``data`` so it is a legal part body (or preamble).

    ``data`` is checked as it will stand in the body: a part is followed by CRLF "--boundary",
    a preamble by CRLF and the first delimiter, and a preamble is preceded by the start of the
    body, which counts as a line break. An "x" after the line break of each real delimiter
    leaves the boundary text in place, which is exactly what the parser must pass through.
    """
    pattern = real_delimiters(boundary, preamble=preamble)
    lead = b"\n" if preamble else b""
    text = lead + data + b"\r\n"
    while (match := pattern.search(text)) is not None:
        cut = match.start() + (1 if preamble else 2)
        text = text[:cut] + b"x" + text[cut:]
    return text[len(lead) : -2]


PLANT_LEADS = [b"", b"x", b"\n", b"\r", b"\r\n", b" ", b"\n\r\n"]
PLANT_TAILS = [
    b"", b"x", b"-", b"-x", b"--x", b"-- x", b" --", b" \t--\r\n", b"\r", b"\rx", b"\n",
    b"\r\n", b"--\r\n", b"  \t\r\n", b"--\n", b"--  \n", b"b", b" \tx\r\n", b"\t",
]  # fmt: skip


@st.composite
def planted_boundaries(draw: st.DrawFn, boundary: str) -> bytes:
    """The boundary text with a line break or not before it, and near-miss tails after it."""
    lead = draw(st.sampled_from(PLANT_LEADS))
    tail = draw(st.sampled_from(PLANT_TAILS))
    return lead + b"--" + boundary.encode() + tail


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
    pieces = draw(
        st.lists(
            st.one_of(
                st.binary(max_size=12), st.sampled_from(tricky), planted_boundaries(boundary)
            ),
            max_size=12,
        )
    )
    return b"".join(pieces)


@st.composite
def planted_part_bodies(draw: st.DrawFn, boundary: str) -> bytes:
    """A part body that certainly holds the boundary text, between random fragments."""
    plants = draw(st.lists(planted_boundaries(boundary), min_size=1, max_size=4))
    pieces = [draw(chunk_fragments(boundary))]
    for plant in plants:
        pieces += [plant, draw(chunk_fragments(boundary))]
    return b"".join(pieces)


@st.composite
def messages(draw: st.DrawFn, *, planted: bool = False) -> Message:
    """A valid body built with part_header/closing_delimiter, with optional preamble/epilogue.

    With ``planted``, every part body holds the boundary text at least once.
    """
    boundary = draw(boundaries)
    bodies = planted_part_bodies(boundary) if planted else chunk_fragments(boundary)
    raw_parts = draw(st.lists(st.tuples(headers_strategy, bodies), min_size=1, max_size=4))
    pieces: list[bytes] = []
    preamble = draw(chunk_fragments(boundary))
    if preamble:
        # A preamble must not contain a delimiter, nor start with one (the body may begin with
        # "--boundary"), and must end with a line break so the first delimiter starts a line.
        pieces.append(neutralise(preamble, boundary, preamble=True) + b"\r\n")
    expected: list[Part] = []
    for index, (headers, raw_body) in enumerate(raw_parts):
        part_body = neutralise(raw_body, boundary)
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
@given(
    message=messages(planted=True),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_roundtrip_boundary_text_planted_in_parts_preserved(
    message: Message, cuts: list[int]
) -> None:
    # RFC 2046: the boundary text is data unless CRLF precedes it and padding plus CRLF (or
    # "--") follows it. Every part here holds it, without or with a CRLF before it.
    assert all(b"--" + message.boundary.encode() in body for _, body in message.parts)
    chunks = split_at(message.body, cuts)
    assert parse_chunks(message.boundary, chunks) == message.parts


@SETTINGS
@given(message=messages(planted=True))
def test_roundtrip_boundary_text_planted_one_byte_feeds_preserved(message: Message) -> None:
    chunks = [message.body[index : index + 1] for index in range(len(message.body))]
    assert parse_chunks(message.boundary, chunks) == message.parts


@SETTINGS
@given(message=messages(), data=st.data())
def test_roundtrip_strict_prefix_before_closing_delimiter_raises(
    message: Message, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(min_value=1, max_value=message.closing_end - 1), label="cut")
    split = data.draw(st.integers(min_value=0, max_value=cut), label="split")
    # A part may end in CRLF "--boundary--": cut right there, the prefix is itself a complete
    # body (RFC 2046 makes the final line break optional), so no parser could tell.
    close = re.escape(b"\r\n--" + message.boundary.encode() + b"--") + rb"[ \t]*\r?"
    assume(re.search(close + rb"\Z", message.body[:cut]) is None)
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
