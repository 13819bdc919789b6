"""WADO-RS through a real client library: dicomweb-client's retrieve calls, defaults included.

Its defaults are request shapes of their own (frames ask for ``multipart/related;
type="*/*"``), so they are worth checking as sent, not as the conformance statement lists.
"""

from __future__ import annotations

import warnings

import httpx
import numpy as np
from dicomweb_client.api import DICOMwebClient

from tests.support.server import Server
from tests.support.wado import EXPLICIT_LE, J2K_LOSSLESS, original_frame, store_sample


def test_dicomweb_client_retrieve_calls(server: Server, client: httpx.Client) -> None:
    stored = store_sample(client, "emri_small_jpeg_2k_lossless.dcm")
    ds = stored.ds
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    dicomweb = DICOMwebClient(url=f"{server.url}/v2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [instance] = dicomweb.retrieve_study(uids[0])
        assert instance.file_meta.TransferSyntaxUID == EXPLICIT_LE
        np.testing.assert_array_equal(instance.pixel_array, stored.pixels())

        as_stored = dicomweb.retrieve_instance(*uids, media_types=(("application/dicom", "*"),))
        assert as_stored.file_meta.TransferSyntaxUID == J2K_LOSSLESS

        [metadata] = dicomweb.retrieve_series_metadata(*uids[:2])
        assert metadata["00080018"]["Value"] == [uids[2]]

        frames = dicomweb.retrieve_instance_frames(*uids, frame_numbers=[2, 9])
        decoded = dicomweb.retrieve_instance_frames(
            *uids, frame_numbers=[9], media_types=(("application/octet-stream", EXPLICIT_LE),)
        )
        rendered = dicomweb.retrieve_instance_rendered(*uids, media_types=("image/png",))
    assert [len(frame) > 0 for frame in frames] == [True, True]
    assert frames[0][:4] == b"\xff\x4f\xff\x51"
    pixels = np.frombuffer(decoded[0], dtype="<u2").reshape(64, 64)
    np.testing.assert_array_equal(pixels, original_frame(stored, 9))
    assert rendered[:4] == b"\x89PNG"
