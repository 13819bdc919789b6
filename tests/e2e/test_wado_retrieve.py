"""Retrieve studies, series and instances (conformance statement, "Retrieve (WADO-RS)").

Transcoded answers are checked by decoding them: the pixels must equal what pydicom decodes
from the original file, and the header must describe the new encoding.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from pydicom.encaps import parse_basic_offsets
from pydicom.uid import generate_uid

from tests.support.factories import make_dataset
from tests.support.server import Server, start_server, stop_server
from tests.support.wado import (
    EXPLICIT_LE,
    J2K_LOSSLESS,
    Stored,
    part_syntax,
    parts,
    read,
    sample,
    store,
    store_sample,
)

# Sample files in every source syntax the conformance statement lists for transcoding (and
# JPEG-LS, which the installed decoder handles too). Implicit VR Little Endian (1.2.840.10008
# .1.2) is missing: STOW accepts explicit VR only, so no such file can be stored.
SOURCES = [
    pytest.param("CT_small.dcm", None, id="1.2.1-ct-signed"),
    pytest.param("SC_rgb_2frame.dcm", None, id="1.2.1-rgb-2frames"),
    pytest.param("MR_small_bigendian.dcm", None, id="1.2.2-mr"),
    pytest.param("OBXXXX1A_expb_2frame.dcm", None, id="1.2.2-palette-8bit-OW"),
    pytest.param("SC_rgb_expb_16bit_2frame.dcm", None, id="1.2.2-rgb16"),
    pytest.param("SC_rgb_jpeg_dcmtk.dcm", None, id="4.50-ybr-full"),
    pytest.param("examples_ybr_color.dcm", None, id="4.50-ybr422-30frames"),
    pytest.param("JPEG-LL.dcm", "1.2.840.10008.1.2.4.57", id="4.57"),
    pytest.param("JPGLosslessP14SV1_1s_1f_8b.dcm", None, id="4.70-8bit"),
    pytest.param("SC_rgb_jpeg_gdcm.dcm", None, id="4.70-rgb"),
    pytest.param("emri_small_jpeg_2k_lossless.dcm", None, id="4.90-10frames"),
    pytest.param("US1_J2KR.dcm", None, id="4.90-ybr-rct"),
    pytest.param("JPEG2000.dcm", None, id="4.91"),
    pytest.param("US1_J2KI.dcm", None, id="4.91-ybr-ict"),
    pytest.param("SC_rgb_rle_2frame.dcm", None, id="5-rgb"),
    pytest.param("emri_small_RLE.dcm", None, id="5-10frames"),
    pytest.param("emri_small_jpeg_ls_lossless.dcm", None, id="4.80"),
]


def get(client: httpx.Client, path: str, accept: str | None, **headers: str) -> httpx.Response:
    if accept is not None:
        headers["Accept"] = accept
    return client.get(path, headers=headers)


def assert_transcoded(stored: Stored, body: bytes, syntax: str) -> None:
    out = read(body)
    assert out.file_meta.TransferSyntaxUID == syntax
    assert out.SOPInstanceUID == stored.ds.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == stored.ds.SOPInstanceUID
    np.testing.assert_array_equal(out.pixel_array, stored.pixels())
    if int(stored.ds.get("SamplesPerPixel", 1)) == 3:
        assert out.PlanarConfiguration == 0
        if stored.ds.PhotometricInterpretation.startswith("YBR") and stored.transfer_syntax in (
            "1.2.840.10008.1.2.4.50",
            "1.2.840.10008.1.2.4.91",
        ):
            assert out.PhotometricInterpretation == "RGB"
    if syntax == J2K_LOSSLESS and stored.transfer_syntax != syntax:
        frames = int(out.get("NumberOfFrames", 1) or 1)
        offsets = parse_basic_offsets(out.PixelData)
        assert len(offsets) == frames and offsets[0] == 0
        assert "ExtendedOffsetTable" not in out


@pytest.mark.parametrize(("name", "relabel"), SOURCES)
@pytest.mark.parametrize("syntax", [EXPLICIT_LE, J2K_LOSSLESS])
def test_retrieve_instance_transcodes_each_source_syntax_with_equal_pixels(
    client: httpx.Client, name: str, relabel: str | None, syntax: str
) -> None:
    stored = store_sample(client, name, transfer_syntax=relabel)
    response = get(client, stored.instance, f"application/dicom; transfer-syntax={syntax}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == f"application/dicom; transfer-syntax={syntax}"
    assert_transcoded(stored, response.content, syntax)


def test_retrieve_instance_transcoded_big_endian_header_values_become_little_endian(
    client: httpx.Client,
) -> None:
    stored = store_sample(client, "OBXXXX1A_expb.dcm")
    response = get(client, stored.instance, "application/dicom")
    out = read(response.content)
    little = sample("OBXXXX1A.dcm")
    assert out.file_meta.TransferSyntaxUID == EXPLICIT_LE
    assert out.RedPaletteColorLookupTableData == little.RedPaletteColorLookupTableData
    assert out.RedPaletteColorLookupTableDescriptor == little.RedPaletteColorLookupTableDescriptor


def test_retrieve_jpeg_baseline_as_explicit_le_says_rgb_and_marks_lossy(
    client: httpx.Client,
) -> None:
    stored = store_sample(client, "examples_ybr_color.dcm")
    response = get(client, stored.instance, "application/dicom")
    out = read(response.content)
    assert out.PhotometricInterpretation == "RGB"
    assert out.LossyImageCompression == "01"
    assert len(out.PixelData) == 30 * 240 * 320 * 3


@pytest.mark.parametrize(
    "accept",
    [
        "application/dicom; transfer-syntax=*",
        'application/dicom; transfer-syntax="*"',
        "*/*",
        None,
    ],
)
def test_retrieve_instance_as_stored_returns_the_stored_bytes(
    client: httpx.Client, accept: str | None
) -> None:
    stored = store_sample(client, "emri_small_jpeg_2k_lossless.dcm")
    response = get(client, stored.instance, accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == f"application/dicom; transfer-syntax={J2K_LOSSLESS}"
    assert response.content == stored.data


@pytest.mark.parametrize(
    ("accept", "syntax"),
    [
        ("application/dicom", EXPLICIT_LE),
        ("application/dicom; transfer-syntax=1.2.840.10008.1.2.1", EXPLICIT_LE),
        ('application/dicom; transfer-syntax="1.2.840.10008.1.2.4.90"', J2K_LOSSLESS),
        ('multipart/related; type="application/dicom"', EXPLICIT_LE),
        ("multipart/related; type=application/dicom; transfer-syntax=*", "1.2.840.10008.1.2.5"),
        ('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90',
         J2K_LOSSLESS),
    ],
)  # fmt: skip
def test_retrieve_instance_accept_variants_choose_the_syntax(
    client: httpx.Client, accept: str, syntax: str
) -> None:
    stored = store_sample(client, "SC_rgb_rle_2frame.dcm")
    response = get(client, stored.instance, accept)
    assert response.status_code == 200, response.text
    if accept.startswith("multipart"):
        [(headers, body)] = parts(response)
        assert part_syntax(headers) == syntax
    else:
        body = response.content
    assert read(body).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read(body).pixel_array, stored.pixels())


@pytest.mark.parametrize(
    "accept",
    [
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50",
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.5",
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2',
        "image/jpeg",
        "application/dicom+json",
        'multipart/related; type="application/octet-stream"',
        "*/*; transfer-syntax=1.2.840.10008.1.2.4.50",
        "application/dicom; q=0",
    ],
)
def test_retrieve_instance_unsupported_accept_is_406(client: httpx.Client, accept: str) -> None:
    stored = store(client, make_dataset())
    response = get(client, stored.instance, accept)
    assert response.status_code == 406
    assert "transfer-syntax" in response.json()["message"]


@pytest.mark.parametrize(
    "headers",
    [
        ["image/png, application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90; q=0.5"],
        ["image/png", "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90"],
        [
            "application/dicom; transfer-syntax=1.2.840.10008.1.2.1; q=0.2,"
            " application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90; q=0.9"
        ],
        ["APPLICATION/DICOM; Transfer-Syntax=1.2.840.10008.1.2.4.90"],
    ],
)
def test_retrieve_instance_negotiates_across_ranges_and_q_values(
    client: httpx.Client, headers: list[str]
) -> None:
    stored = store(client, make_dataset())
    response = client.get(stored.instance, headers=[("Accept", value) for value in headers])
    assert response.status_code == 200, response.text
    assert read(response.content).file_meta.TransferSyntaxUID == J2K_LOSSLESS


def test_retrieve_study_multipart_mixes_stored_and_transcoded_parts(
    client: httpx.Client,
) -> None:
    study, series = generate_uid(), generate_uid()
    stored = []
    for name in ("CT_small.dcm", "emri_small_jpeg_2k_lossless.dcm", "SC_rgb_jpeg_dcmtk.dcm"):
        ds = sample(name)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        stored.append(store(client, ds))
    response = get(client, stored[0].study, "multipart/related; type=application/dicom")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        'multipart/related; type="application/dicom"; boundary='
    )
    received = parts(response)
    assert len(received) == 3
    assert received[0][1] == stored[0].data  # already Explicit VR LE: sent as stored
    for (headers, body), original in zip(received, stored, strict=True):
        assert part_syntax(headers) == EXPLICIT_LE
        out = read(body)
        assert out.file_meta.TransferSyntaxUID == EXPLICIT_LE
        np.testing.assert_array_equal(out.pixel_array, original.pixels())


@pytest.mark.parametrize("level", ["study", "series"])
def test_retrieve_series_and_study_as_stored_keep_each_syntax(
    client: httpx.Client, level: str
) -> None:
    study, series = generate_uid(), generate_uid()
    stored = []
    for name in ("MR_small_bigendian.dcm", "JPEG2000.dcm"):
        ds = sample(name)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        stored.append(store(client, ds))
    path = stored[0].study if level == "study" else stored[0].series
    response = get(client, path, 'multipart/related; type="application/dicom"; transfer-syntax=*')
    assert response.status_code == 200
    received = parts(response)
    assert [body for _, body in received] == [s.data for s in stored]
    assert [part_syntax(h) for h, _ in received] == [s.transfer_syntax for s in stored]
    assert [h["content-length"] for h, _ in received] == [str(len(s.data)) for s in stored]


def test_retrieve_study_as_jpeg2000_transcodes_every_instance(client: httpx.Client) -> None:
    study = generate_uid()
    stored = []
    for name in ("CT_small.dcm", "SC_rgb_rle_2frame.dcm"):
        ds = sample(name)
        ds.StudyInstanceUID = study
        stored.append(store(client, ds))
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90'
    response = get(client, stored[0].study, accept)
    assert response.status_code == 200
    for (_, body), original in zip(parts(response), stored, strict=True):
        assert_transcoded(original, body, J2K_LOSSLESS)


@pytest.mark.parametrize("accept", ["application/dicom", "application/dicom; transfer-syntax=*"])
def test_retrieve_study_single_part_is_406(client: httpx.Client, accept: str) -> None:
    stored = store(client, make_dataset())
    assert get(client, stored.study, accept).status_code == 406


def test_retrieve_instance_without_pixel_data_transcodes_the_encoding(
    client: httpx.Client,
) -> None:
    ds = make_dataset()
    del ds.PixelData
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit"):
        delattr(ds, keyword)
    stored = store(client, ds)
    response = get(
        client, stored.instance, "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90"
    )
    assert response.status_code == 200
    out = read(response.content)
    assert out.file_meta.TransferSyntaxUID == J2K_LOSSLESS
    assert out.PatientName == ds.PatientName


@pytest.mark.parametrize(
    "path",
    [
        "/v2/studies/1.2.3_4",
        "/v2/studies/1.2.3/series/not_a_uid",
        "/v2/studies/1.2.3/series/1.2.4/instances/" + "1" * 65,
    ],
)
def test_retrieve_malformed_uid_is_400(client: httpx.Client, path: str) -> None:
    response = client.get(path, headers={"Accept": "*/*"})
    assert response.status_code == 400
    assert "UID" in response.json()["message"]


def test_retrieve_unknown_resources_are_404(client: httpx.Client) -> None:
    stored = store(client, make_dataset())
    unknown = generate_uid()
    for path in (
        f"/v2/studies/{unknown}",
        f"{stored.study}/series/{unknown}",
        f"{stored.series}/instances/{unknown}",
    ):
        response = client.get(path, headers={"Accept": "*/*"})
        assert response.status_code == 404, path
        assert unknown in response.json()["message"]


@pytest.mark.parametrize("value", ["true", "false", "True"])
def test_retrieve_original_version_header_is_accepted(client: httpx.Client, value: str) -> None:
    stored = store(client, make_dataset())
    response = get(
        client,
        stored.instance,
        'multipart/related; type="application/dicom"; transfer-syntax=*',
        **{"msdicom-request-original": value},
    )
    assert response.status_code == 200
    assert parts(response)[0][1] == stored.data


def test_retrieve_original_version_header_with_bad_value_is_400(client: httpx.Client) -> None:
    stored = store(client, make_dataset())
    response = get(client, stored.instance, "*/*", **{"msdicom-request-original": "yes"})
    assert response.status_code == 400
    assert "msdicom-request-original" in response.json()["message"]


def test_retrieve_v1_serves_the_same_instance(client: httpx.Client) -> None:
    stored = store(client, make_dataset())
    response = get(client, stored.instance.replace("/v2/", "/v1/"), "application/dicom")
    assert response.status_code == 200
    assert response.content == stored.data


# --- the transcoding size limit ------------------------------------------------------------


@pytest.fixture(scope="module")
def small_limit_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    running = start_server(tmp_path_factory.mktemp("limit"), DICOM_MAX_TRANSCODE_BYTES="20000")
    yield running  # type: ignore[misc]
    stop_server(running)


def test_files_over_the_transcode_limit_are_406_but_served_as_stored(
    small_limit_server: Server,
) -> None:
    with small_limit_server.client() as client:
        stored = store_sample(client, "emri_small_jpeg_2k_lossless.dcm")  # 40 KB
        transcoded = get(client, stored.instance, "application/dicom")
        assert transcoded.status_code == 406
        assert "20000" in transcoded.json()["message"]
        study = get(client, stored.study, "multipart/related; type=application/dicom")
        assert study.status_code == 406
        frames = get(
            client,
            stored.instance + "/frames/1",
            "multipart/related; type=application/octet-stream",
        )
        assert frames.status_code == 406
        assert get(client, stored.instance + "/rendered", "image/jpeg").status_code == 406
        as_stored = get(client, stored.instance, "application/dicom; transfer-syntax=*")
        assert as_stored.status_code == 200 and as_stored.content == stored.data
        native = get(
            client,
            stored.instance + "/frames/2",
            "multipart/related; type=application/octet-stream; transfer-syntax=*",
        )
        assert native.status_code == 200


@pytest.mark.parametrize(
    "accept",
    [
        "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.90",
        'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.90',
    ],
)
def test_retrieve_pixels_that_cannot_be_transcoded_is_406_before_any_body(
    client: httpx.Client, accept: str
) -> None:
    # 16-bit signed samples in an image under 32 pixels: no JPEG 2000 encoder here takes them.
    stored = store(client, make_dataset(PixelRepresentation=1))
    response = get(client, stored.instance, accept)
    assert response.status_code == 406
    assert "JPEG 2000" in response.json()["message"]
