"""Retrieve frames (conformance statement, "Retrieve Frames"), including OHIF's request shapes."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from pydicom.encaps import encapsulate, generate_frames
from pydicom.pixels import get_decoder, pixel_array

from tests.support.factories import make_dataset
from tests.support.wado import (
    EXPLICIT_LE,
    J2K_LOSSLESS,
    Stored,
    native_frame,
    original_frame,
    part_syntax,
    parts,
    read,
    store,
    store_sample,
)

ANY = "multipart/related; type=application/octet-stream; transfer-syntax=*"
DECODED = 'multipart/related; type="application/octet-stream"'
JP2 = 'multipart/related; type="image/jp2"'


def frames(
    client: httpx.Client, stored: Stored, numbers: str, accept: str | None
) -> httpx.Response:
    headers = {"Accept": accept} if accept is not None else {}
    return client.get(f"{stored.instance}/frames/{numbers}", headers=headers)


def stored_fragments(stored: Stored) -> list[bytes]:
    ds = read(stored.data)
    count = int(ds.get("NumberOfFrames", 1) or 1)
    return list(generate_frames(ds.PixelData, number_of_frames=count))


def decode_j2k(codestream: bytes, stored: Stored) -> np.ndarray:
    ds = stored.ds
    samples = int(ds.get("SamplesPerPixel", 1))
    array, _ = get_decoder(J2K_LOSSLESS).as_array(
        encapsulate([codestream]),
        index=0,
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        samples_per_pixel=samples,
        bits_allocated=int(ds.BitsAllocated),
        bits_stored=int(ds.BitsStored),
        pixel_representation=int(ds.PixelRepresentation),
        photometric_interpretation="RGB" if samples == 3 else ds.PhotometricInterpretation,
        planar_configuration=0,
        number_of_frames=1,
        pixel_keyword="PixelData",
    )
    return array


def test_native_frames_as_stored_are_the_stored_bytes(client: httpx.Client) -> None:
    stored = store(client, make_dataset(frames=4, rows=8, columns=8))
    response = frames(client, stored, "3,1", ANY)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(
        'multipart/related; type="application/octet-stream"; boundary='
    )
    received = parts(response)
    frame_bytes = 8 * 8 * 2
    pixel_data = read(stored.data).PixelData
    assert [body for _, body in received] == [
        pixel_data[2 * frame_bytes : 3 * frame_bytes],
        pixel_data[:frame_bytes],
    ]
    for headers, body in received:
        assert headers["content-type"] == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
        assert headers["content-length"] == str(len(body))


def test_encapsulated_frames_as_stored_are_the_stored_fragments(client: httpx.Client) -> None:
    stored = store_sample(client, "emri_small_jpeg_2k_lossless.dcm")
    response = frames(client, stored, "2,10,2", ANY)
    assert response.status_code == 200
    fragments = stored_fragments(stored)
    received = parts(response)
    assert [body for _, body in received] == [fragments[1], fragments[9], fragments[1]]
    assert {part_syntax(h) for h, _ in received} == {J2K_LOSSLESS}


def test_multi_fragment_frame_as_stored_is_joined(client: httpx.Client) -> None:
    stored = store_sample(client, "US1_J2KR.dcm")  # one frame in three fragments
    [(_, body)] = parts(frames(client, stored, "1", ANY))
    assert body == stored_fragments(stored)[0]


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("CT_small.dcm", 1),
        ("MR_small_bigendian.dcm", 1),
        ("OBXXXX1A_expb_2frame.dcm", 2),
        ("SC_rgb_expb_16bit_2frame.dcm", 2),
        ("SC_rgb_jpeg_dcmtk.dcm", 1),
        ("examples_ybr_color.dcm", 17),
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", 1),
        ("emri_small_jpeg_2k_lossless.dcm", 7),
        ("US1_J2KI.dcm", 1),
        ("SC_rgb_rle_2frame.dcm", 2),
        ("emri_small_jpeg_ls_lossless.dcm", 4),
    ],
)
@pytest.mark.parametrize(
    "accept",
    [
        DECODED,
        'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1',
    ],
)
def test_frames_decoded_to_explicit_le_equal_the_original_pixels(
    client: httpx.Client, name: str, number: int, accept: str
) -> None:
    stored = store_sample(client, name)
    response = frames(client, stored, str(number), accept)
    assert response.status_code == 200, response.text
    [(headers, body)] = parts(response)
    assert headers["content-type"] == f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    np.testing.assert_array_equal(native_frame(body, stored.ds), original_frame(stored, number))


@pytest.mark.parametrize(
    ("name", "number"),
    [("CT_small.dcm", 1), ("SC_rgb_rle_2frame.dcm", 2), ("examples_ybr_color.dcm", 3),
     ("emri_small_jpeg_2k_lossless.dcm", 5)],
)  # fmt: skip
@pytest.mark.parametrize("accept", [JP2, JP2 + "; transfer-syntax=1.2.840.10008.1.2.4.90"])
def test_frames_as_jp2_decode_to_the_original_pixels(
    client: httpx.Client, name: str, number: int, accept: str
) -> None:
    stored = store_sample(client, name)
    response = frames(client, stored, str(number), accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith('multipart/related; type="image/jp2"')
    [(headers, body)] = parts(response)
    assert headers["content-type"] == f"image/jp2; transfer-syntax={J2K_LOSSLESS}"
    assert body[:4] == b"\xff\x4f\xff\x51"  # a JPEG 2000 codestream
    np.testing.assert_array_equal(decode_j2k(body, stored), original_frame(stored, number))


@pytest.mark.parametrize("accept", ["application/octet-stream; transfer-syntax=*", "*/*", None])
def test_single_frame_single_part_is_the_raw_frame(
    client: httpx.Client, accept: str | None
) -> None:
    stored = store_sample(client, "emri_small_jpeg_2k_lossless.dcm")
    response = frames(client, stored, "4", accept)
    assert response.status_code == 200
    assert response.headers["content-type"] == (
        f"application/octet-stream; transfer-syntax={J2K_LOSSLESS}"
    )
    assert response.content == stored_fragments(stored)[3]


def test_several_frames_with_wildcard_accept_are_multipart(client: httpx.Client) -> None:
    stored = store_sample(client, "emri_small_jpeg_2k_lossless.dcm")
    response = frames(client, stored, "1,2", "*/*")
    assert response.status_code == 200
    assert len(parts(response)) == 2


def test_several_frames_single_part_only_is_400(client: httpx.Client) -> None:
    stored = store(client, make_dataset(frames=3))
    response = frames(client, stored, "1,2", "application/octet-stream; transfer-syntax=*")
    assert response.status_code == 400
    assert "single" in response.json()["message"]


def test_many_large_frames_stream_in_order(client: httpx.Client) -> None:
    stored = store(client, make_dataset(frames=20, rows=512, columns=512))  # 10 MB of frames
    numbers = list(range(20, 0, -1))
    response = frames(client, stored, ",".join(map(str, numbers)), ANY)
    assert response.status_code == 200
    received = parts(response)
    pixel_data = read(stored.data).PixelData
    size = 512 * 512 * 2
    assert [body for _, body in received] == [
        pixel_data[(n - 1) * size : n * size] for n in numbers
    ]


# --- what OHIF (cornerstone's WADO-RS loader) sends and how it reads the answer ---------------


def cornerstone_extract(response: httpx.Response) -> tuple[str, bytes]:
    """Read the first part the way cornerstone's getPixelData does."""
    body = response.content
    if "multipart" not in response.headers["content-type"]:
        return response.headers["content-type"], body
    token = body.index(b"\r\n\r\n")
    lines = body[:token].decode("latin-1").split("\r\n")
    boundary = next(line for line in lines if line.startswith("--"))
    content_type = next(line[13:].strip() for line in lines if line.startswith("Content-Type:"))
    end = body.index(boundary.encode(), token + 4)
    return content_type, body[token + 4 : end - 2]


def cornerstone_syntax(content_type: str) -> str:
    for parameter in content_type.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip() == "transfer-syntax":
            return value.strip().replace('"', "")
    return "1.2.840.10008.1.2"


@pytest.mark.parametrize(
    ("name", "accept", "syntax"),
    [
        ("CT_small.dcm", ANY, EXPLICIT_LE),
        ("emri_small_jpeg_2k_lossless.dcm", ANY, J2K_LOSSLESS),
        (
            "CT_small.dcm",
            "multipart/related; type=image/jls; transfer-syntax=1.2.840.10008.1.2.4.80; q=1,"
            " multipart/related; type=application/octet-stream; transfer-syntax=*; q=0.5",
            EXPLICIT_LE,
        ),
        (
            "emri_small_jpeg_ls_lossless.dcm",
            "multipart/related; type=image/jls; transfer-syntax=1.2.840.10008.1.2.4.80; q=1,"
            " multipart/related; type=application/octet-stream; transfer-syntax=*; q=0.5",
            "1.2.840.10008.1.2.4.80",
        ),
        (
            "CT_small.dcm",
            'multipart/related; type="image/jp2"; q=0.9,'
            " multipart/related; type=application/octet-stream; transfer-syntax=*; q=0.5",
            J2K_LOSSLESS,
        ),
        (
            "SC_rgb_jpeg_dcmtk.dcm",
            "multipart/related; type=image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50,"
            " multipart/related; type=application/octet-stream; transfer-syntax=*; q=0.1",
            "1.2.840.10008.1.2.4.50",
        ),
    ],
)
def test_ohif_frame_requests_are_served_and_parse_like_cornerstone(
    client: httpx.Client, name: str, accept: str, syntax: str
) -> None:
    stored = store_sample(client, name)
    metadata = client.get(stored.series + "/metadata", headers={"Accept": "application/json"})
    assert metadata.status_code == 200
    response = frames(client, stored, "1", accept)
    assert response.status_code == 200, response.text
    content_type, pixel_data = cornerstone_extract(response)
    assert cornerstone_syntax(content_type) == syntax
    if syntax == EXPLICIT_LE:
        np.testing.assert_array_equal(
            native_frame(pixel_data, stored.ds), original_frame(stored, 1)
        )
    elif syntax == stored.transfer_syntax:
        assert pixel_data == stored_fragments(stored)[0]
    else:
        np.testing.assert_array_equal(decode_j2k(pixel_data, stored), original_frame(stored, 1))


@pytest.mark.parametrize(
    "accept",
    [
        "multipart/related; type=image/jls",
        'multipart/related; type="application/octet-stream";'
        " transfer-syntax=1.2.840.10008.1.2.4.50",
        "multipart/related; type=image/jp2; transfer-syntax=1.2.840.10008.1.2.4.91",
        "image/png",
        "application/dicom",
        "image/jp2",
        "multipart/related; type=application/octet-stream; q=0",
    ],
)
def test_unsupported_frame_media_types_are_406(client: httpx.Client, accept: str) -> None:
    stored = store(client, make_dataset())
    response = frames(client, stored, "1", accept)
    assert response.status_code == 406
    assert "frames" in response.json()["message"]


# --- bad frame numbers and missing resources ----------------------------------------------


@pytest.mark.parametrize(
    "numbers", ["0", "-1", "a", "1,,2", "1,x", "1.5", ",", "%20", "9" * 5000, "1" + "0" * 9]
)
def test_malformed_frame_numbers_are_400(client: httpx.Client, numbers: str) -> None:
    stored = store(client, make_dataset(frames=2))
    response = frames(client, stored, numbers, ANY)
    assert response.status_code == 400
    assert "rame" in response.json()["message"]


def test_frame_beyond_the_last_is_404(client: httpx.Client) -> None:
    stored = store(client, make_dataset(frames=2))
    response = frames(client, stored, "1,3", ANY)
    assert response.status_code == 404
    assert "Frame 3" in response.json()["message"]


@pytest.mark.parametrize("accept", [ANY, DECODED])
def test_a_frame_list_longer_than_the_instance_is_400(client: httpx.Client, accept: str) -> None:
    """Repeats are served (their parts repeated), but never more parts than the instance has
    frames: an 8 KB URL of "1,1,1,..." would otherwise make one request send a frame
    thousands of times."""
    stored = store(client, make_dataset(frames=2))
    twice = frames(client, stored, "2,2", accept)
    assert twice.status_code == 200
    assert len(parts(twice)) == 2 and parts(twice)[0] == parts(twice)[1]
    response = frames(client, stored, ",".join(["1"] * 3900), accept)
    assert response.status_code == 400
    assert "names 3900 frames" in response.json()["message"]
    assert "has 2 frames" in response.json()["message"]


def test_frames_of_an_instance_without_pixel_data_are_404(client: httpx.Client) -> None:
    ds = make_dataset()
    del ds.PixelData
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit"):
        delattr(ds, keyword)
    stored = store(client, ds)
    response = frames(client, stored, "1", ANY)
    assert response.status_code == 404
    assert "pixel data" in response.json()["message"]


@pytest.mark.parametrize("accept", [ANY, DECODED, JP2])
def test_frames_of_an_instance_with_image_attributes_but_no_pixel_data_are_404(
    client: httpx.Client, accept: str
) -> None:
    """A probe's instance kept Rows and Columns without Pixel Data: its frame 1 answered 406
    with a Python attribute error, as if it existed and could not be read."""
    ds = make_dataset()
    del ds.PixelData
    stored = store(client, ds)
    response = frames(client, stored, "1", accept)
    assert response.status_code == 404, response.text
    assert "has no pixel data" in response.json()["message"]


def test_frames_of_unknown_instance_are_404(client: httpx.Client) -> None:
    stored = store(client, make_dataset())
    response = client.get(f"{stored.series}/instances/1.2.3.4/frames/1", headers={"Accept": ANY})
    assert response.status_code == 404


def test_frames_without_store_time_ranges_are_still_served(client: httpx.Client) -> None:
    # Subsampled YBR_FULL_422 native data: its length contradicts a full-size frame, so the
    # store keeps it without frame ranges (with a warning); frames come from a full parse.
    stored = store_sample(client, "SC_ybr_full_422_uncompressed.dcm")
    response = frames(client, stored, "1", DECODED)
    assert response.status_code == 200
    [(headers, body)] = parts(response)
    assert part_syntax(headers) == EXPLICIT_LE
    assert body == read(stored.data).PixelData  # 4:2:2 samples, as the attributes say
    # In JPEG 2000 the chroma is full size (YBR_FULL), as after any codec.
    as_jp2 = parts(frames(client, stored, "1", JP2))[0][1]
    upsampled = pixel_array(read(stored.data), as_rgb=False)
    np.testing.assert_array_equal(decode_j2k(as_jp2, stored), upsampled)


@pytest.mark.parametrize("accept", [ANY, DECODED, "application/octet-stream; transfer-syntax=*"])
def test_frames_of_a_deflated_instance_are_its_native_pixels(
    client: httpx.Client, accept: str
) -> None:
    """OHIF asked for the frames of a Deflated Explicit VR Little Endian instance with
    transfer-syntax=* and got 406 "ask for transfer-syntax=*". Inflated, its pixel data is
    native: Explicit VR Little Endian is the only form its frames exist in."""
    stored = store_sample(client, "image_dfl.dcm")
    assert stored.ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"
    response = frames(client, stored, "1", accept)
    assert response.status_code == 200, response.text
    if accept.startswith("multipart"):
        [(headers, body)] = parts(response)
        assert part_syntax(headers) == EXPLICIT_LE
    else:
        body = response.content
        assert "transfer-syntax=1.2.840.10008.1.2.1" in response.headers["content-type"]
    assert body == read(stored.data).PixelData
