"""Accept negotiation: parsed media ranges, not string matching."""

from __future__ import annotations

import pytest

from dicom_core.errors import NotAcceptable
from dicom_core.web.negotiation import accepts, parse_accept
from dicom_core.web.wado import Rendition, negotiate_instances

EVLE = "1.2.840.10008.1.2.1"


def test_parse_accept_orders_by_q_and_reads_quoted_parameters() -> None:
    ranges = parse_accept(
        ['application/json;q=0.5, multipart/related; type="application/dicom"; q=0.9', "*/*;q=0.1"]
    )
    assert [r.media_type for r in ranges] == ["multipart/related", "application/json", "*/*"]
    assert ranges[0].params == {"type": "application/dicom"}


def test_accepts_handles_wildcards_and_missing_header() -> None:
    assert accepts([], "application/dicom+json")
    assert accepts(["application/*"], "application/dicom+json")
    assert not accepts(["application/xml"], "application/dicom+json")
    assert not accepts(["application/dicom+json;q=0"], "application/dicom+json")


@pytest.mark.parametrize(
    ("accept", "single", "expected"),
    [
        ([], True, Rendition(False, "*")),
        (["*/*"], False, Rendition(True, "*")),
        (["application/dicom; transfer-syntax=*"], True, Rendition(False, "*")),
        (["application/dicom"], True, Rendition(False, EVLE)),
        (['multipart/related; type="application/dicom"'], False, Rendition(True, EVLE)),
        (
            ["multipart/related; type=application/dicom; transfer-syntax=*"],
            False,
            Rendition(True, "*"),
        ),
        (
            ["application/dicom; transfer-syntax=1.2.3;q=1, application/dicom;q=0.5"],
            True,
            Rendition(False, EVLE),
        ),
    ],
)
def test_negotiate_instances_picks_the_best_supported_rendition(
    accept: list[str], single: bool, expected: Rendition
) -> None:
    assert negotiate_instances(accept, single_instance=single) == expected


@pytest.mark.parametrize(
    ("accept", "single"),
    [
        (["application/dicom"], False),
        (["application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"], True),
        (["image/png"], True),
    ],
)
def test_negotiate_instances_rejects_what_cannot_be_served(accept: list[str], single: bool) -> None:
    with pytest.raises(NotAcceptable):
        negotiate_instances(accept, single_instance=single)


@pytest.mark.parametrize("header", ['multipart/related; type="application/dicom', '"', ";"])
def test_a_header_of_which_nothing_can_be_read_is_a_406(header: str) -> None:
    """A probe's unterminated quote was taken for no Accept at all, and answered in a form the
    client never asked for. Not a 400: the conformance statement answers 406 to an Accept
    header it does not support."""
    with pytest.raises(NotAcceptable, match="names no media type that can be read"):
        parse_accept([header])


def test_an_unreadable_range_beside_readable_ones_is_skipped() -> None:
    assert [r.media_type for r in parse_accept(["application/dicom, ;"])] == ["application/dicom"]
    assert parse_accept([""]) == []
