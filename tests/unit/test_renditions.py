"""Unit tests for WADO-RS Accept negotiation and request parameters.

dicom_core.web.renditions (frames, rendered, metadata), dicom_core.web.wado
(study/series/instance) and dicom_core.web.wado_params.
"""

from __future__ import annotations

import pytest
from starlette.requests import Request

from dicom_core.errors import BadRequest, NotAcceptable
from dicom_core.web.renditions import (
    FrameRendition,
    negotiate_frames,
    negotiate_metadata,
    negotiate_rendered,
)
from dicom_core.web.wado import Rendition, negotiate_instances
from dicom_core.web.wado_params import frame_number, frame_numbers, original_version, quality

LE = "1.2.840.10008.1.2.1"
J2K = "1.2.840.10008.1.2.4.90"
JLS = "1.2.840.10008.1.2.4.80"
OCTET = "application/octet-stream"
OHIF_JLS = (
    "multipart/related; type=image/jls; q=1,"
    " multipart/related; type=application/octet-stream; transfer-syntax=*; q=0.5"
)


@pytest.mark.parametrize(
    ("accept", "frames", "stored", "expected"),
    [
        ([], 1, LE, FrameRendition(False, OCTET, None)),
        (["*/*"], 2, LE, FrameRendition(True, OCTET, None)),
        (["multipart/related; type=application/octet-stream; transfer-syntax=*"], 1, J2K,
         FrameRendition(True, OCTET, None)),
        (['multipart/related; type="application/octet-stream"'], 1, J2K,
         FrameRendition(True, OCTET, LE)),
        (["multipart/related"], 1, J2K, FrameRendition(True, OCTET, LE)),
        (['multipart/related; type="*/*"'], 1, J2K, FrameRendition(True, OCTET, None)),
        (['Multipart/Related; Type="Application/Octet-Stream"; Transfer-Syntax="*"'], 1, J2K,
         FrameRendition(True, OCTET, None)),
        (["application/octet-stream; transfer-syntax=*"], 1, J2K,
         FrameRendition(False, OCTET, None)),
        (["multipart/related; type=image/jp2"], 3, LE, FrameRendition(True, "image/jp2", J2K)),
        (["multipart/related; type=image/jp2; transfer-syntax=1.2.840.10008.1.2.4.91"], 1,
         "1.2.840.10008.1.2.4.91", FrameRendition(True, "image/jp2", None)),
        ([OHIF_JLS], 1, LE, FrameRendition(True, OCTET, None)),
        ([OHIF_JLS], 1, JLS, FrameRendition(True, "image/jls", None)),
        (["multipart/related; type=image/x-jls"], 1, JLS,
         FrameRendition(True, "image/x-jls", None)),
        (["multipart/related; type=image/jpeg"], 1, "1.2.840.10008.1.2.4.50",
         FrameRendition(True, "image/jpeg", None)),
        (["image/png", "multipart/related; type=image/jp2; q=0.3"], 1, LE,
         FrameRendition(True, "image/jp2", J2K)),
        (["multipart/related; type=application/octet-stream; q=0.2, multipart/related;"
          " type=image/jp2; q=0.8"], 1, LE, FrameRendition(True, "image/jp2", J2K)),
        (["application/octet-stream; transfer-syntax=*, multipart/related;"
          " type=application/octet-stream; transfer-syntax=*; q=0.5"], 2, LE,
         FrameRendition(True, OCTET, None)),
    ],
)  # fmt: skip
def test_negotiate_frames(
    accept: list[str], frames: int, stored: str, expected: FrameRendition
) -> None:
    assert negotiate_frames(accept, frame_count=frames, stored_syntax=stored) == expected


@pytest.mark.parametrize(
    "accept",
    [
        ["multipart/related; type=image/jls"],
        ["multipart/related; type=application/octet-stream; transfer-syntax=1.2.840.10008.1.2.2"],
        ["image/jp2"],
        ["application/dicom"],
        ["multipart/related; type=application/octet-stream; q=0"],
        ["multipart/related; type=image/jp2; transfer-syntax=1.2.840.10008.1.2.4.91"],
    ],
)
def test_negotiate_frames_refuses_what_is_not_offered(accept: list[str]) -> None:
    with pytest.raises(NotAcceptable):
        negotiate_frames(accept, frame_count=1, stored_syntax=LE)


def test_negotiate_frames_single_part_for_several_frames_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="single-part"):
        negotiate_frames(
            ["application/octet-stream; transfer-syntax=*"], frame_count=2, stored_syntax=LE
        )


@pytest.mark.parametrize(
    ("accept", "single", "expected"),
    [
        ([], True, Rendition(False, "*")),
        ([], False, Rendition(True, "*")),
        (["*/*"], True, Rendition(False, "*")),
        (["application/dicom"], True, Rendition(False, LE)),
        (["multipart/related; type=application/dicom"], False, Rendition(True, LE)),
        (['multipart/related; type="*/*"'], False, Rendition(True, "*")),
        (['multipart/related; type="application/dicom"; transfer-syntax=*'], False,
         Rendition(True, "*")),
        (["application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50, application/dicom;"
          " transfer-syntax=1.2.840.10008.1.2.4.90; q=0.5"], True, Rendition(False, J2K)),
    ],
)  # fmt: skip
def test_negotiate_instances(accept: list[str], single: bool, expected: Rendition) -> None:
    assert negotiate_instances(accept, single_instance=single) == expected


@pytest.mark.parametrize(
    ("accept", "single"),
    [
        (["application/dicom"], False),
        (["*/*; transfer-syntax=1.2.840.10008.1.2.4.50"], True),
        (["multipart/related; type=application/dicom; transfer-syntax=1.2.840.10008.1.2"], False),
    ],
)
def test_negotiate_instances_refuses(accept: list[str], single: bool) -> None:
    with pytest.raises(NotAcceptable):
        negotiate_instances(accept, single_instance=single)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [([], "image/jpeg"), (["*/*"], "image/jpeg"), (["image/*"], "image/jpeg"),
     (["image/png"], "image/png"), (["image/jpeg;q=0.4, image/png"], "image/png"),
     (["image/gif, image/png;q=0.1"], "image/png")],
)  # fmt: skip
def test_negotiate_rendered(accept: list[str], expected: str) -> None:
    assert negotiate_rendered(accept) == expected


def test_negotiate_rendered_and_metadata_refuse_other_types() -> None:
    with pytest.raises(NotAcceptable):
        negotiate_rendered(["application/dicom"])
    with pytest.raises(NotAcceptable):
        negotiate_metadata(["application/dicom"])
    negotiate_metadata(["application/dicom+json; q=0.9"])
    negotiate_metadata([])


@pytest.mark.parametrize(
    ("raw", "expected"), [("1", [1]), ("3,1,3", [3, 1, 3]), (" 2 , 4", [2, 4])]
)
def test_frame_numbers(raw: str, expected: list[int]) -> None:
    assert frame_numbers(raw) == expected


@pytest.mark.parametrize("raw", ["", "0", "-1", "1,", "a", "1.0", "²", "1;2"])
def test_frame_numbers_malformed(raw: str) -> None:
    with pytest.raises(BadRequest):
        frame_numbers(raw)


def test_frame_number_is_single() -> None:
    assert frame_number("7") == 7
    with pytest.raises(BadRequest, match="one frame"):
        frame_number("1,2")


def request(query: str = "", headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request({"type": "http", "query_string": query.encode(), "headers": raw})


def test_quality_parameter() -> None:
    assert quality(request()) == 100
    assert quality(request("quality=1")) == 1
    for bad in ("quality=0", "quality=101", "quality=x", "quality="):
        with pytest.raises(BadRequest, match="quality"):
            quality(request(bad))


def test_original_version_header() -> None:
    assert original_version(request()) is False
    assert original_version(request(headers={"msdicom-request-original": "TRUE"})) is True
    assert original_version(request(headers={"msdicom-request-original": "false"})) is False
    with pytest.raises(BadRequest):
        original_version(request(headers={"msdicom-request-original": "1"}))
