"""A stored file changed behind the server's back (a broken disk, a stray writer): every
retrieve of it is a 424 naming the damage before the answer starts, never a 200 with fewer
bytes than the instance has. A probe saw the instance and its frames answered 200, short.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from tests.support.factories import make_dataset
from tests.support.server import Server, start_server, stop_server
from tests.support.wado import store

INSTANCE = "application/dicom; transfer-syntax=*"
FRAME = "application/octet-stream; transfer-syntax=*"


@pytest.fixture()
def stored(tmp_path: Path) -> Iterator[tuple[Server, Dataset, Path]]:
    server = start_server(tmp_path)
    try:
        ds = make_dataset(rows=128, columns=128)
        with server.client() as client:
            store(client, ds)
        [path] = server.stored_files()
        assert isinstance(path, Path)
        yield server, ds, path
    finally:
        stop_server(server)


def url(ds: Dataset, suffix: str = "") -> str:
    return (
        f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}{suffix}"
    )


@pytest.mark.parametrize("keep", [1000, 20000])
def test_a_truncated_file_is_a_424_for_every_retrieve_of_it(
    stored: tuple[Server, Dataset, Path], keep: int
) -> None:
    server, ds, path = stored
    with open(path, "r+b") as file:
        file.truncate(keep)
    multipart = "multipart/related; type=application/dicom; transfer-syntax=*"
    with server.client() as client:
        for path_, accept in [
            (url(ds), INSTANCE),
            (url(ds), multipart),
            (f"/v2/studies/{ds.StudyInstanceUID}", multipart),
            (url(ds, "/frames/1"), FRAME),
            (url(ds, "/frames/1"), "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"),
            (url(ds, "/rendered"), "image/png"),
        ]:
            response = client.get(path_, headers={"Accept": accept})
            assert response.status_code == 424, (path_, accept, response.status_code)
            assert "damaged" in response.json()["message"], response.text
        # The metadata is the index's, not the file's: still served.
        assert client.get(url(ds, "/metadata")).status_code == 200
    assert "indexed file damaged" in (server.data_dir.parent / "server.log").read_text()


def test_a_file_grown_behind_the_servers_back_is_a_424_too(
    stored: tuple[Server, Dataset, Path],
) -> None:
    server, ds, path = stored
    with open(path, "ab") as file:
        file.write(b"trailing bytes nobody stored")
    with server.client() as client:
        response = client.get(url(ds), headers={"Accept": INSTANCE})
    assert response.status_code == 424
