"""Retrieve rendered images (conformance statement, "Retrieve rendered image")."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from tests.support.factories import make_dataset, to_bytes
from tests.support.wado import Stored, store, store_sample


def image(response: httpx.Response) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(response.content)))


def rendered(
    client: httpx.Client, stored: Stored, suffix: str = "/rendered", **params: str
) -> httpx.Response:
    accept = params.pop("accept", None)
    headers = {"Accept": accept} if accept else {}
    return client.get(stored.instance + suffix, params=params, headers=headers)


def gradient(**attributes: object) -> Dataset:
    """A 64 x 64 MONOCHROME2 ramp from 0 (left) to 4095 (right) and these attributes."""
    ds = make_dataset(rows=64, columns=64, **attributes)
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (64, 1))
    ds.PixelData = ramp.tobytes()
    return ds


@pytest.mark.parametrize(
    "accept", [None, "image/jpeg", "image/*", "*/*", "image/png;q=0.1, image/jpeg"]
)
def test_rendered_defaults_to_jpeg(client: httpx.Client, accept: str | None) -> None:
    stored = store(client, gradient())
    response = rendered(client, stored, **({"accept": accept} if accept else {}))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.content[:2] == b"\xff\xd8"
    assert image(response).shape == (64, 64)


def test_rendered_png_is_lossless_and_spans_the_full_range(client: httpx.Client) -> None:
    stored = store(client, gradient())
    response = rendered(client, stored, accept="image/png")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    pixels = image(response)
    assert pixels[0, 0] == 0 and pixels[0, -1] == 255  # no window: min-max of the frame
    assert np.all(np.diff(pixels[0].astype(int)) >= 0)


def test_rendered_applies_rescale_and_window(client: httpx.Client) -> None:
    # stored 0..4095 -> HU -1024..3071; window 0 +- 50 HU: left black, right white
    stored = store(
        client,
        gradient(RescaleIntercept=-1024, RescaleSlope=1, WindowCenter=0, WindowWidth=100),
    )
    pixels = image(rendered(client, stored, accept="image/png"))
    assert pixels[0, 0] == 0 and pixels[0, -1] == 255
    column = int(np.argmax(pixels[0] > 0))
    hu = np.linspace(0, 4095, 64)[column] - 1024
    assert -50 <= hu <= 50


def test_rendered_monochrome1_is_inverted(client: httpx.Client) -> None:
    stored = store(client, gradient(PhotometricInterpretation="MONOCHROME1"))
    pixels = image(rendered(client, stored, accept="image/png"))
    assert pixels[0, 0] == 255 and pixels[0, -1] == 0


@pytest.mark.parametrize(
    "name", ["OBXXXX1A.dcm", "US1_J2KR.dcm", "examples_ybr_color.dcm", "color-pl.dcm"]
)
def test_rendered_colour_images_are_rgb(client: httpx.Client, name: str) -> None:
    stored = store_sample(client, name)
    response = rendered(client, stored, accept="image/png")
    assert response.status_code == 200
    pixels = image(response)
    assert pixels.shape == (int(stored.ds.Rows), int(stored.ds.Columns), 3)
    assert pixels.std() > 10


def test_rendered_rgb_matches_the_original_pixels(client: httpx.Client) -> None:
    stored = store_sample(client, "SC_rgb_rle_2frame.dcm")
    response = rendered(client, stored, "/frames/2/rendered", accept="image/png")
    np.testing.assert_array_equal(image(response), stored.pixels()[1])


def test_rendered_frame_renders_that_frame(client: httpx.Client) -> None:
    ds = make_dataset(rows=32, columns=32, frames=3)
    values = np.stack([np.full((32, 32), v, dtype=np.uint16) for v in (0, 2000, 4000)])
    values[:, 0, 0] = 0  # a dark pixel in every frame
    values[:, -1, -1] = 4000  # and a bright one
    ds.PixelData = values.tobytes()
    stored = store(client, ds)
    middle = image(rendered(client, stored, "/frames/2/rendered", accept="image/png"))
    first = image(rendered(client, stored, accept="image/png"))
    assert 100 < middle[10, 10] < 155
    assert first[10, 10] == 0


def test_rendered_quality_changes_the_jpeg(client: httpx.Client) -> None:
    stored = store_sample(client, "CT_small.dcm")
    best = rendered(client, stored)
    worst = rendered(client, stored, quality="1")
    assert best.status_code == worst.status_code == 200
    assert len(worst.content) < len(best.content)


@pytest.mark.parametrize("quality", ["0", "101", "abc", "-5", "50.5", "", "9" * 5000])
def test_rendered_bad_quality_is_400(client: httpx.Client, quality: str) -> None:
    stored = store(client, gradient())
    response = rendered(client, stored, quality=quality)
    assert response.status_code == 400
    assert "quality" in response.json()["message"]


@pytest.mark.parametrize("accept", ["application/dicom", "image/gif", "image/jpeg; q=0"])
def test_rendered_other_media_types_are_406(client: httpx.Client, accept: str) -> None:
    stored = store(client, gradient())
    assert rendered(client, stored, accept=accept).status_code == 406


def test_rendered_without_pixel_data_is_404(client: httpx.Client) -> None:
    ds = make_dataset()
    del ds.PixelData
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit"):
        delattr(ds, keyword)
    stored = store(client, ds)
    response = rendered(client, stored)
    assert response.status_code == 404
    assert "pixel data" in response.json()["message"]


@pytest.mark.parametrize(("frame", "status"), [("3", 404), ("0", 400), ("1,2", 400), ("x", 400)])
def test_rendered_bad_frame_numbers(client: httpx.Client, frame: str, status: int) -> None:
    stored = store(client, make_dataset(frames=2))
    assert rendered(client, stored, f"/frames/{frame}/rendered").status_code == status


def test_rendered_after_an_upsert_shows_the_new_version(client: httpx.Client) -> None:
    ds = gradient()
    stored = store(client, ds)
    before = image(rendered(client, stored, accept="image/png"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    response = client.put(
        "/v2/studies",
        content=to_bytes(ds),
        headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json"},
    )
    assert response.status_code == 200
    after = image(rendered(client, stored, accept="image/png"))
    np.testing.assert_array_equal(after, 255 - before)


def test_a_12_bit_jpeg_extended_frame_renders(client: httpx.Client) -> None:
    """pydicom's JPEG-lossy.dcm: the OHIF probe's render was a 406, as pylibjpeg-libjpeg and
    Pillow both refuse it; libjpeg-turbo, the fallback, reads it as OHIF does."""
    stored = store_sample(client, "JPEG-lossy.dcm")
    response = client.get(f"{stored.instance}/rendered", headers={"Accept": "image/png"})
    assert response.status_code == 200, response.text
    pixels = np.asarray(Image.open(io.BytesIO(response.content)))
    assert pixels.shape == (int(stored.ds.Rows), int(stored.ds.Columns))
    assert len(np.unique(pixels)) > 16  # an image, not a blank
