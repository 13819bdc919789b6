"""Unit tests for dicom_core.web.multipart.

They pin down the behaviour STOW-RS and WADO-RS rely on: which Content-Type headers are
understood, which bodies parse into which parts, and which inputs are rejected with a
MultipartError (a 400) rather than silently storing something truncated.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

import pytest

from dicom_core.web.multipart import (
    MAX_TRANSPORT_PADDING,
    ContentType,
    Event,
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    closing_delimiter,
    new_boundary,
    parse_content_type,
    part_header,
    sniff_boundary,
)

Part = tuple[dict[str, str], bytes]

CURL_BOUNDARY = "------------------------d74496d66958873e"
DICOM_BYTES = b"\x00" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00\xc4\x00\x00\x00\r\n-\n"

# Byte-for-byte what `curl --form "file1=@x.dcm;type=application/dicom"` sends.
CURL_BODY = (
    b"--" + CURL_BOUNDARY.encode() + b"\r\n"
    b'Content-Disposition: form-data; name="file1"; filename="x.dcm"\r\n'
    b"Content-Type: application/dicom\r\n"
    b"\r\n" + DICOM_BYTES + b"\r\n"
    b"--" + CURL_BOUNDARY.encode() + b"--\r\n"
)


def collect(events: Iterable[Event]) -> list[Part]:
    """Fold an event stream into parts, asserting the PartStart/PartData*/PartEnd order."""
    parts: list[Part] = []
    current: tuple[dict[str, str], list[bytes]] | None = None
    for event in events:
        if isinstance(event, PartStart):
            assert current is None, "PartStart inside a part"
            current = (event.headers, [])
        elif isinstance(event, PartData):
            assert current is not None, "PartData outside a part"
            assert len(event.data) >= 1
            current[1].append(event.data)
        else:
            assert isinstance(event, PartEnd)
            assert current is not None, "PartEnd outside a part"
            parts.append((current[0], b"".join(current[1])))
            current = None
    assert current is None, "part left open"
    return parts


def parse(body: bytes, boundary: str | bytes, chunk_size: int | None = None) -> list[Part]:
    """Parse ``body`` in one piece or in ``chunk_size`` pieces and return its parts."""
    raw_boundary = boundary.encode() if isinstance(boundary, str) else boundary
    parser = MultipartParser(raw_boundary)
    events: list[Event] = []
    step = chunk_size or max(len(body), 1)
    for start in range(0, len(body), step):
        events.extend(parser.feed(body[start : start + step]))
    events.extend(parser.close())
    return collect(events)


# --------------------------------------------------------------------------------------------
# parse_content_type
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "media_type", "params"),
    [
        (
            'multipart/related; type="application/dicom"',
            "multipart/related",
            {"type": "application/dicom"},
        ),
        (
            "multipart/related; type=application/dicom; boundary=ABCD1234",
            "multipart/related",
            {"type": "application/dicom", "boundary": "ABCD1234"},
        ),
        ("multipart/related; boundary=ABCD1234", "multipart/related", {"boundary": "ABCD1234"}),
        ("multipart/related", "multipart/related", {}),
        ("application/dicom", "application/dicom", {}),
        (
            'multipart/related; type="application/dicom"; '
            "boundary=------------------------d74496d66958873e",
            "multipart/related",
            {"type": "application/dicom", "boundary": "------------------------d74496d66958873e"},
        ),
        (
            'Multipart/Related;Type="application/dicom";Boundary="a b;c"',
            "multipart/related",
            {"type": "application/dicom", "boundary": "a b;c"},
        ),
    ],
)
def test_parse_content_type_listed_variants_parsed(
    header: str, media_type: str, params: dict[str, str]
) -> None:
    assert parse_content_type(header) == ContentType(media_type=media_type, params=params)


def test_parse_content_type_spaces_around_separators_tolerated() -> None:
    parsed = parse_content_type("  multipart/related ;  type = application/dicom ;boundary = x ")
    expected = {"type": "application/dicom", "boundary": "x"}
    assert parsed == ContentType("multipart/related", expected)


def test_parse_content_type_trailing_semicolon_ignored() -> None:
    parsed = parse_content_type("multipart/related; boundary=abc;")
    assert parsed.params == {"boundary": "abc"}


def test_parse_content_type_backslash_escapes_removed() -> None:
    parsed = parse_content_type(r'multipart/related; boundary="a\"b\\c"')
    assert parsed.params == {"boundary": 'a"b\\c'}


def test_parse_content_type_quoted_value_with_equals_kept_whole() -> None:
    parsed = parse_content_type('multipart/related; boundary="x=y"; type=application/dicom')
    assert parsed.params == {"boundary": "x=y", "type": "application/dicom"}


def test_parse_content_type_parameter_without_value_ignored() -> None:
    parsed = parse_content_type("multipart/related; charset; boundary=abc")
    assert parsed.params == {"boundary": "abc"}


def test_parse_content_type_boundary_case_preserved() -> None:
    assert parse_content_type("multipart/related; BOUNDARY=AbC").params == {"boundary": "AbC"}


@pytest.mark.parametrize(
    "header",
    ["", "   ", "garbage", "multipart/", "/related", "; boundary=x", "multi part/related", "a/b/c"],
)
def test_parse_content_type_missing_or_garbage_media_type_raises(header: str) -> None:
    with pytest.raises(MultipartError, match="Content-Type"):
        parse_content_type(header)


def test_parse_content_type_unterminated_quote_raises() -> None:
    with pytest.raises(MultipartError, match="Content-Type"):
        parse_content_type('multipart/related; boundary="abc')


# --------------------------------------------------------------------------------------------
# sniff_boundary
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"--abc123\r\nContent-Type: application/dicom\r\n", b"abc123"),
        (b"--abc123\nContent-Type: application/dicom\n", b"abc123"),
        (b"\r\n\r\n--abc123\r\n", b"abc123"),
        (b"--abc123  \t\r\n", b"abc123"),
        (CURL_BODY[:80], CURL_BOUNDARY.encode()),
        (b"--a b'()+_,-./:=?\r\n", b"a b'()+_,-./:=?"),
        (b"--" + b"x" * 70 + b"\r\n", b"x" * 70),
    ],
)
def test_sniff_boundary_multipart_head_returns_token(head: bytes, expected: bytes) -> None:
    assert sniff_boundary(head) == expected


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"\x00" * 132 + b"DICM",
        b"preamble\r\n--abc\r\n",
        b"-abc\r\n",
        b"--\r\n",
        b"--abc",
        b"--ab\x00c\r\n",
        b'--ab"c\r\n',
        b"--" + b"x" * 71 + b"\r\n",
    ],
)
def test_sniff_boundary_not_multipart_or_invalid_returns_none(head: bytes) -> None:
    assert sniff_boundary(head) is None


# --------------------------------------------------------------------------------------------
# MultipartParser: valid bodies
# --------------------------------------------------------------------------------------------


def test_parser_curl_form_body_yields_one_dicom_part() -> None:
    parts = parse(CURL_BODY, CURL_BOUNDARY)
    assert parts == [
        (
            {
                "content-disposition": 'form-data; name="file1"; filename="x.dcm"',
                "content-type": "application/dicom",
            },
            DICOM_BYTES,
        )
    ]


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 41, 42, 43, 64])
def test_parser_curl_form_body_in_small_chunks_yields_same_part(chunk_size: int) -> None:
    assert parse(CURL_BODY, CURL_BOUNDARY, chunk_size) == parse(CURL_BODY, CURL_BOUNDARY)


def test_parser_part_start_content_type_property_reads_header() -> None:
    parser = MultipartParser(CURL_BOUNDARY.encode())
    start = parser.feed(CURL_BODY)[0]
    assert isinstance(start, PartStart)
    assert start.content_type == "application/dicom"
    assert PartStart(headers={}).content_type is None


def test_parser_two_parts_yield_two_parts_in_order() -> None:
    body = (
        b"--b1\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n"
        b"--b1\r\nContent-Type: application/json\r\n\r\n{}\r\n"
        b"--b1--\r\n"
    )
    assert parse(body, "b1") == [
        ({"content-type": "application/dicom"}, b"first"),
        ({"content-type": "application/json"}, b"{}"),
    ]


def test_parser_preamble_and_epilogue_ignored() -> None:
    body = (
        b"This is a preamble.\r\n--not-the-boundary\r\n-b\r\n--\r\n"
        b"--b\r\n\r\npayload\r\n--b--\r\nThis is the epilogue.\r\n--b\r\n\r\nignored\r\n"
    )
    assert parse(body, "b") == [({}, b"payload")]


def test_parser_leading_crlf_before_first_delimiter_ignored() -> None:
    assert parse(b"\r\n\r\n--b\r\n\r\nx\r\n--b--", "b") == [({}, b"x")]


def test_parser_lf_only_line_endings_parsed() -> None:
    body = b"--b\nContent-Type: application/dicom\n\nfirst\n--b\n\nsecond\n--b--\n"
    assert parse(body, "b") == [({"content-type": "application/dicom"}, b"first"), ({}, b"second")]


def test_parser_transport_padding_after_boundary_ignored() -> None:
    body = b"--b \t \r\nA: 1\r\n\r\nx\r\n--b\t\r\n\r\ny\r\n--b--  \r\n"
    assert parse(body, "b") == [({"a": "1"}, b"x"), ({}, b"y")]


def test_parser_part_without_headers_has_empty_headers() -> None:
    assert parse(b"--b\r\n\r\nbody\r\n--b--\r\n", "b") == [({}, b"body")]


def test_parser_empty_part_body_yields_start_and_end_only() -> None:
    parser = MultipartParser(b"b")
    events = parser.feed(b"--b\r\nA: 1\r\n\r\n\r\n--b--\r\n") + parser.close()
    assert events == [PartStart(headers={"a": "1"}), PartEnd()]


def test_parser_missing_crlf_after_closing_delimiter_accepted() -> None:
    assert parse(b"--b\r\n\r\nbody\r\n--b--", "b") == [({}, b"body")]


def test_parser_empty_body_yields_no_events() -> None:
    parser = MultipartParser(b"b")
    assert parser.feed(b"") == []
    assert parser.close() == []


def test_parser_folded_header_lines_joined() -> None:
    body = b"--b\r\nX-Long: one\r\n  two\r\n\tthree\r\nA: 1\r\n\r\nx\r\n--b--\r\n"
    assert parse(body, "b") == [({"x-long": "one two three", "a": "1"}, b"x")]


def test_parser_header_names_lowercased_values_stripped_last_wins() -> None:
    body = (
        b"--b\r\nContent-TYPE:   text/plain  \r\ncontent-type:application/dicom\r\n\r\nx\r\n--b--"
    )
    assert parse(body, "b") == [({"content-type": "application/dicom"}, b"x")]


def test_parser_utf8_header_value_decoded() -> None:
    body = b'--b\r\nContent-Disposition: form-data; filename="\xc3\xa9.dcm"\r\n\r\nx\r\n--b--'
    headers = parse(body, "b")[0][0]
    assert headers == {"content-disposition": 'form-data; filename="\u00e9.dcm"'}


@pytest.mark.parametrize(
    "payload",
    [
        b"\r\n--boundar",
        b"\r\n--boundarx\r\n",
        b"data--boundary--more",
        b"x --boundary\r\n",
        b"\r--boundary\r\n",
        b"--boundary",
        b"\r\n-\r\n--\r\n--b\r\n",
        b"\r\n\r\n\r",
        b"\n\n\n",
        b"trailing CR\r",
        b"trailing CRLF\r\n",
        b"trailing LF-dash-dash\n--",
    ],
)
@pytest.mark.parametrize("chunk_size", [None, 1, 5])
def test_parser_near_boundary_body_text_preserved_exactly(
    payload: bytes, chunk_size: int | None
) -> None:
    body = part_header("boundary", {"A": "1"}) + payload + closing_delimiter("boundary")
    assert parse(body, "boundary", chunk_size) == [({"a": "1"}, payload)]


def test_parser_large_chunk_without_delimiter_passed_through_uncopied() -> None:
    parser = MultipartParser(b"b")
    parser.feed(b"--b\r\n\r\n")
    chunk = bytes(range(256)).replace(b"\n", b"").replace(b"\r", b"") * 4096
    events = parser.feed(chunk)
    assert len(events) == 1
    assert isinstance(events[0], PartData)
    assert events[0].data is chunk


def test_parser_bytearray_input_emits_bytes() -> None:
    parser = MultipartParser(b"b")
    events = parser.feed(cast(bytes, bytearray(b"--b\r\n\r\nabc")))
    assert [type(event.data) for event in events if isinstance(event, PartData)] == [bytes]


# --------------------------------------------------------------------------------------------
# MultipartParser: rejected bodies
# --------------------------------------------------------------------------------------------

TWO_PART_BODY = (
    b"--b\r\nContent-Type: application/dicom\r\n\r\nfirst\r\n"
    b"--b\r\nContent-Type: application/dicom\r\n\r\nsecond\r\n"
    b"--b--\r\n"
)


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (1, "not found"),
        (3, "not found"),  # "--b" without its line break is not yet a delimiter
        (4, "not found"),
        (5, "inside part headers"),
        (10, "inside part headers"),
        (39, "inside part headers"),
        (41, "before the closing boundary"),
        (44, "before the closing boundary"),
        (46, "before the closing boundary"),
        (47, "before the closing boundary"),
        (50, "before the closing boundary"),
        (52, "inside part headers"),
        (len(TWO_PART_BODY) - 7, "before the closing boundary"),
        (len(TWO_PART_BODY) - 4, "before the closing boundary"),
        (len(TWO_PART_BODY) - 3, "before the closing boundary"),
    ],
)
def test_parser_truncated_body_raises_on_close(cut: int, message: str) -> None:
    parser = MultipartParser(b"b")
    parser.feed(TWO_PART_BODY[:cut])
    with pytest.raises(MultipartError, match=message):
        parser.close()


def test_parser_truncated_body_all_cut_points_raise_on_close() -> None:
    closing_complete = len(TWO_PART_BODY) - 2  # the final CRLF is optional
    for cut in range(1, closing_complete):
        parser = MultipartParser(b"b")
        parser.feed(TWO_PART_BODY[:cut])
        with pytest.raises(MultipartError):
            parser.close()


def test_parser_wrong_boundary_raises_not_found() -> None:
    parser = MultipartParser(b"other")
    assert parser.feed(CURL_BODY) == []
    with pytest.raises(MultipartError, match='boundary "other" not found in the body'):
        parser.close()


def test_parser_oversized_headers_raise() -> None:
    parser = MultipartParser(b"b", max_header_bytes=100)
    with pytest.raises(MultipartError, match="part headers exceed 100 bytes"):
        parser.feed(b"--b\r\nX-Big: " + b"a" * 200 + b"\r\n\r\nx")


def test_parser_oversized_headers_in_small_feeds_raise_without_line_break() -> None:
    parser = MultipartParser(b"b", max_header_bytes=64)
    parser.feed(b"--b\r\n")
    with pytest.raises(MultipartError, match="part headers exceed 64 bytes"):
        for _ in range(100):
            parser.feed(b"aaaa")


def test_parser_headers_exactly_at_limit_accepted() -> None:
    header_block = b"A: " + b"x" * 10 + b"\r\n\r\n"  # 17 bytes including the blank line
    body = b"--b\r\n" + header_block + b"x\r\n--b--"
    parser = MultipartParser(b"b", max_header_bytes=len(header_block))
    assert collect(parser.feed(body) + parser.close()) == [({"a": "x" * 10}, b"x")]
    parser = MultipartParser(b"b", max_header_bytes=len(header_block) - 1)
    with pytest.raises(MultipartError, match="exceed"):
        parser.feed(body)


def test_parser_header_line_without_colon_raises() -> None:
    parser = MultipartParser(b"b")
    with pytest.raises(MultipartError, match="without ':'"):
        parser.feed(b"--b\r\nContent-Type application/dicom\r\n\r\nx\r\n--b--")


def test_parser_header_with_empty_name_raises() -> None:
    parser = MultipartParser(b"b")
    with pytest.raises(MultipartError, match="empty name"):
        parser.feed(b"--b\r\n: value\r\n\r\nx\r\n--b--")


def test_parser_continuation_without_previous_header_raises() -> None:
    parser = MultipartParser(b"b")
    with pytest.raises(MultipartError, match="continuation"):
        parser.feed(b"--b\r\n folded\r\n\r\nx\r\n--b--")


@pytest.mark.parametrize(
    "payload",
    [
        b"x\r\n--b-x",  # "--b" after CRLF, then neither "--" nor a line break
        b"x\r\n--bb\r\n",  # a longer boundary is another boundary
        b"x\r\n--bX\r\n--b--y",
        b"\r\n--b\rx\n",  # CR not followed by LF
        b"\r\n--b  --\r\n",  # "--" after padding does not close
        b"\r\n--b--x\r\n",  # text right after a close delimiter
        b"\r\n--b-- x",
        b"--b\r\n",  # no line break before it
        b"x--b--\r\n",
        b"\n--b\r\n",  # bare LF in a CRLF-framed body
        b"\n--b--\r\n",
        b"\r\n--b" + b" " * (MAX_TRANSPORT_PADDING + 1) + b"\r\n",  # padding beyond the cap
    ],
)
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_parser_boundary_text_inside_part_is_data(payload: bytes, chunk_size: int | None) -> None:
    # RFC 2046: only CRLF "--b" padding CRLF (or "--") delimits; everything else is content.
    body = b"--b\r\nA: 1\r\n\r\n" + payload + b"\r\n--b \t\r\n\r\nnext\r\n--b--\r\n"
    assert parse(body, "b", chunk_size) == [({"a": "1"}, payload), ({}, b"next")]


@pytest.mark.parametrize(
    "preamble",
    [b"--bX\r\n", b"--b-x\r\n", b"x\r\n--b  --\r\n", b"--b--x\r\n", b"--b\rx\r\n"],
)
def test_parser_boundary_text_in_preamble_is_skipped(preamble: bytes) -> None:
    body = preamble + b"--b\r\n\r\nx\r\n--b--"
    assert parse(body, "b", 1) == [({}, b"x")]


@pytest.mark.parametrize("ending", [b"", b" ", b"\t ", b"\r", b"  \r"])
def test_parser_close_delimiter_at_end_of_body_accepted(ending: bytes) -> None:
    assert parse(b"--b\r\n\r\nx\r\n--b--" + ending, "b", 1) == [({}, b"x")]


def test_parser_bare_lf_framing_fixed_by_first_delimiter() -> None:
    # An LF-framed body keeps working; in it, "\n--b" delimits and CRLF "--b" does too.
    body = b"--b\n\nfirst\r\n--b\n\nsecond\n--bx\n--b--"
    assert parse(body, "b") == [({}, b"first"), ({}, b"second\n--bx")]


def test_parser_boundary_text_only_part_never_closed_raises() -> None:
    parser = MultipartParser(b"b")
    parser.feed(b"--b\r\n\r\nx\r\n--b-x")
    with pytest.raises(MultipartError, match="before the closing boundary"):
        parser.close()


def test_parser_after_failure_further_calls_raise() -> None:
    parser = MultipartParser(b"b")
    with pytest.raises(MultipartError):
        parser.feed(b"--b\r\nno colon\r\n")
    with pytest.raises(MultipartError):
        parser.feed(b"more")
    with pytest.raises(MultipartError):
        parser.close()


def test_parser_feed_after_close_raises_runtime_error() -> None:
    parser = MultipartParser(b"b")
    parser.close()
    with pytest.raises(RuntimeError):
        parser.feed(b"--b")


@pytest.mark.parametrize("boundary", [b"", b"a\r\nb", b"x" * 257])
def test_parser_unusable_boundary_raises(boundary: bytes) -> None:
    with pytest.raises(MultipartError, match="invalid multipart boundary"):
        MultipartParser(boundary)


# --------------------------------------------------------------------------------------------
# Writer helpers
# --------------------------------------------------------------------------------------------


def test_new_boundary_random_values_are_valid_and_distinct() -> None:
    boundaries = {new_boundary() for _ in range(100)}
    assert len(boundaries) == 100
    for boundary in boundaries:
        assert sniff_boundary(b"--" + boundary.encode() + b"\r\n") == boundary.encode()


def test_part_header_first_part_has_no_leading_crlf() -> None:
    header = part_header("abc", {"Content-Type": "application/dicom", "X-A": "1"})
    assert header == b"--abc\r\nContent-Type: application/dicom\r\nX-A: 1\r\n\r\n"


def test_part_header_later_part_has_leading_crlf() -> None:
    assert part_header("abc", {}, first=False) == b"\r\n--abc\r\n\r\n"


def test_closing_delimiter_format_matches_rfc() -> None:
    assert closing_delimiter("abc") == b"\r\n--abc--\r\n"


@pytest.mark.parametrize(
    "headers",
    [{"X": "a\r\nInjected: 1"}, {"X": "a\n"}, {"Bad Name": "1"}, {"": "1"}, {"X:Y": "1"}],
)
def test_part_header_unsafe_header_raises_value_error(headers: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        part_header("abc", headers)


@pytest.mark.parametrize("boundary", ["", "a" * 71, "ends in space ", "bad\r\n", "caf\u00e9"])
def test_writer_invalid_boundary_raises_value_error(boundary: str) -> None:
    with pytest.raises(ValueError):
        part_header(boundary, {})
    with pytest.raises(ValueError):
        closing_delimiter(boundary)


def test_writer_output_parses_back_to_same_parts() -> None:
    boundary = new_boundary()
    body = (
        part_header(boundary, {"Content-Type": "application/dicom"})
        + DICOM_BYTES
        + part_header(boundary, {"Content-Type": "application/dicom"}, first=False)
        + b"second"
        + closing_delimiter(boundary)
    )
    assert parse(body, boundary) == [
        ({"content-type": "application/dicom"}, DICOM_BYTES),
        ({"content-type": "application/dicom"}, b"second"),
    ]
