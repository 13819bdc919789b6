"""Export over HTTP (Azure's "Export DICOM files"), on both backends: to a container of the
session's Azurite (by connection string and by a SAS URI) and to a directory below
``DICOM_EXPORT_LOCAL_ROOT``; each exported file byte for byte what the server stores, the
operation's counts, the error log, 400s naming what is wrong, and an export killed midway
that completes after a restart without losing an instance."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from tests.support.factories import make_dataset, to_bytes
from tests.support.operations import wait_done
from tests.support.server import Server, azure_environment, start_server, stop_server

if TYPE_CHECKING:
    from azure.storage.blob import BlobServiceClient

    from tools.emulators.launcher import Emulators

DICOM = {"Accept": "application/dicom; transfer-syntax=*"}
META = {"Accept": "application/dicom+json"}


# Azurite's loopback endpoint beside Azure Storage's hosts (the default is the latter alone).
AZURITE_HOSTS = "127.0.0.1,*.blob.core.windows.net"


@pytest.fixture(scope="module")
def export_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("export-root")


@pytest.fixture(scope="module")
def export_server(
    backend: str,
    export_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Server]:
    """A server that may export below ``export_root``, three instances per batch."""
    env = azure_environment(request.getfixturevalue("emulators")) if backend == "azure" else {}
    running = start_server(
        tmp_path_factory.mktemp(f"export-{backend}"),
        DICOM_EXPORT_LOCAL_ROOT=str(export_root),
        DICOM_EXPORT_BATCH_SIZE="3",
        DICOM_EXPORT_BLOB_HOSTS=AZURITE_HOSTS,
        **env,
    )
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture()
def exporter(export_server: Server) -> Iterator[httpx.Client]:
    with export_server.client() as http:
        yield http


@pytest.fixture(scope="module")
def blob_service(emulators: Emulators) -> Iterator[BlobServiceClient]:
    from azure.storage.blob import BlobServiceClient

    with BlobServiceClient.from_connection_string(emulators.storage_connection()) as service:
        yield service


@pytest.fixture()
def container(blob_service: BlobServiceClient) -> Iterator[str]:
    """A new container of Azurite's default account, to export into."""
    name = f"export-{uuid.uuid4().hex[:12]}"
    blob_service.create_container(name)
    yield name
    blob_service.delete_container(name)


def store(client: httpx.Client, datasets: list[Dataset]) -> dict[str, bytes]:
    """Store instances; returns each one's stored bytes (as WADO serves them) by its path
    below ``results/``."""
    stored = {}
    for ds in datasets:
        response = client.post(
            "/v2/studies",
            content=to_bytes(ds),
            headers={"Content-Type": "application/dicom", **META},
        )
        assert response.status_code == 200, response.text
        path = f"{ds.StudyInstanceUID}/{ds.SeriesInstanceUID}/{ds.SOPInstanceUID}"
        got = client.get(
            f"/v2/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}",
            headers=DICOM,
        )
        assert got.status_code == 200
        stored[f"{path}.dcm"] = got.content
    return stored


def study(count: int, series: int = 1) -> list[Dataset]:
    uid, series_uids = generate_uid(), [generate_uid() for _ in range(series)]
    return [
        make_dataset(study_uid=uid, series_uid=series_uids[n % series], InstanceNumber=n + 1)
        for n in range(count)
    ]


def to_azurite(emulators: Emulators, container: str) -> dict[str, Any]:
    return {
        "type": "azureblob",
        "settings": {
            "connectionString": emulators.storage_connection(),
            "blobContainerName": container,
        },
    }


def export(
    client: httpx.Client, values: list[str], destination: dict[str, Any], version: str = "v2"
) -> httpx.Response:
    return client.post(
        f"/{version}/export",
        json={
            "source": {"type": "identifiers", "settings": {"values": values}},
            "destination": destination,
        },
    )


def exported_blobs(service: BlobServiceClient, container: str) -> dict[str, bytes]:
    client = service.get_container_client(container)
    return {
        blob.name: bytes(client.download_blob(blob.name).readall()) for blob in client.list_blobs()
    }


def test_an_export_to_azurite_holds_every_requested_instance_byte_for_byte(
    exporter: httpx.Client,
    emulators: Emulators,
    blob_service: BlobServiceClient,
    container: str,
) -> None:
    # given: a study of 5 instances in 2 series, a series of another study, one instance
    whole = study(5, series=2)
    partial = study(4, series=2)
    single = study(1)
    stored = store(exporter, whole + partial + single)
    series_uid = partial[0].SeriesInstanceUID
    wanted = {
        path: data
        for path, data in stored.items()
        if not path.startswith(partial[0].StudyInstanceUID) or f"/{series_uid}/" in path
    }
    assert len(wanted) == 5 + 2 + 1
    missing = generate_uid()
    values = [
        whole[0].StudyInstanceUID,
        f"{partial[0].StudyInstanceUID}/{series_uid}",
        f"{single[0].StudyInstanceUID}/{single[0].SeriesInstanceUID}/{single[0].SOPInstanceUID}",
        missing,
    ]

    # when
    response = export(exporter, values, to_azurite(emulators, container))

    # then: 202 with the operation; Azure's results once done
    assert response.status_code == 202, response.text
    reference = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", reference["id"])
    assert reference["href"].endswith(f"/v2/operations/{reference['id']}")
    assert response.headers["location"] == reference["href"]
    operation, percents = wait_done(exporter, reference["href"])
    op = reference["id"]
    assert (operation["type"], operation["status"]) == ("export", "Completed")
    assert operation["percentComplete"] == 100 and percents == sorted(percents)
    container_url = blob_service.get_container_client(container).url.rstrip("/")
    assert operation["results"] == {
        "errorHref": f"{container_url}/{op}/errors.log",
        "exported": 8,
        "skipped": 1,
    }
    blobs = exported_blobs(blob_service, container)
    assert blobs.pop(f"{op}/errors.log").count(b"\n") == 1
    assert blobs == {f"{op}/results/{path}": data for path, data in wanted.items()}
    log = exported_blobs(blob_service, container)[f"{op}/errors.log"]
    entry = json.loads(log)
    assert (entry["Identifier"], entry["Error"]) == (
        missing,
        "The specified study cannot be found.",
    )
    assert set(entry) == {"Timestamp", "Identifier", "Error"}


def test_a_container_uri_with_a_sas_takes_the_export_on_v1(
    exporter: httpx.Client,
    emulators: Emulators,
    blob_service: BlobServiceClient,
    container: str,
) -> None:
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    from tools.emulators.launcher import AZURITE_ACCOUNT, AZURITE_KEY

    datasets = study(2)
    stored = store(exporter, datasets)
    sas = generate_container_sas(
        AZURITE_ACCOUNT,
        container,
        account_key=AZURITE_KEY,
        permission=ContainerSasPermissions(add=True, create=True, write=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    uri = f"{blob_service.get_container_client(container).url.rstrip('/')}?{sas}"
    response = export(
        exporter,
        [datasets[0].StudyInstanceUID],
        {"type": "azureblob", "settings": {"blobContainerUri": uri}},
        version="v1",
    )
    assert response.status_code == 202, response.text
    assert "/v1/operations/" in response.json()["href"]
    operation, _ = wait_done(exporter, response.json()["href"])
    assert (operation["results"]["exported"], operation["results"]["skipped"]) == (2, 0)
    assert "sig=" not in operation["results"]["errorHref"]
    op = response.json()["id"]
    blobs = exported_blobs(blob_service, container)
    assert blobs == {
        f"{op}/errors.log": b"",
        **{f"{op}/results/{path}": data for path, data in stored.items()},
    }


def test_a_file_destination_below_the_allowed_root_gets_the_same_tree(
    exporter: httpx.Client, export_root: Path
) -> None:
    target = export_root / f"laptop {uuid.uuid4().hex[:6]}"
    target.mkdir()
    datasets = study(4, series=2)
    stored = store(exporter, datasets)
    response = export(
        exporter,
        [datasets[0].StudyInstanceUID],
        {"type": "file", "settings": {"uri": target.as_uri()}},
    )
    assert response.status_code == 202, response.text
    operation, _ = wait_done(exporter, response.json()["href"])
    op = response.json()["id"]
    assert operation["results"] == {
        "errorHref": (target / op / "errors.log").as_uri(),
        "exported": 4,
        "skipped": 0,
    }
    files = {
        p.relative_to(target / op / "results").as_posix(): p.read_bytes()
        for p in (target / op / "results").rglob("*")
        if p.is_file()
    }
    assert files == stored
    assert (target / op / "errors.log").read_bytes() == b""


BLOB = {"type": "azureblob", "settings": {"connectionString": "UseDevelopmentStorage=true"}}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"destination": BLOB}, "source"),
        (
            {"source": {"type": "identifiers", "settings": {"values": []}}, "destination": BLOB},
            "values",
        ),
        (
            {
                "source": {"type": "identifiers", "settings": {"values": ["1.2/not a uid"]}},
                "destination": BLOB,
            },
            "1.2/not a uid",
        ),
        (
            {
                "source": {"type": "identifiers", "settings": {"values": ["1.2"]}},
                "destination": BLOB,
            },
            "blobContainerName",
        ),
        (
            {
                "source": {"type": "identifiers", "settings": {"values": ["1.2"]}},
                "destination": {"type": "gcs", "settings": {}},
            },
            "gcs",
        ),
    ],
)
def test_bad_requests_get_a_400_naming_the_problem(
    client: httpx.Client, body: dict[str, Any], named: str
) -> None:
    response = client.post("/v2/export", json=body)
    assert response.status_code == 400, response.text
    assert named.lower() in response.json()["message"].lower()


def test_a_missing_container_is_a_400_naming_it_and_starts_nothing(
    exporter: httpx.Client, emulators: Emulators
) -> None:
    name = f"absent-{uuid.uuid4().hex[:12]}"
    response = export(exporter, ["1.2.3"], to_azurite(emulators, name))
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert name in message and "does not exist" in message
    assert "AccountKey" not in message


@pytest.mark.parametrize(
    "uri",
    [
        "https://attacker.example/container",  # would be signed with the app's identity
        "https://evil.blob.core.windows.net.attacker.example/container",
        "https://127.0.0.1:10000/devstoreaccount1/container",  # not allowed by default
    ],
)
def test_a_blob_destination_on_a_host_not_allowed_is_refused_before_any_request(
    client: httpx.Client, uri: str
) -> None:
    """The default allows Azure Storage's hosts alone: the app's token never leaves for a
    host the caller picked, and the server probes nothing on the caller's behalf."""
    response = export(
        client, ["1.2.3"], {"type": "azureblob", "settings": {"blobContainerUri": uri}}
    )
    assert response.status_code == 400, response.text
    assert "DICOM_EXPORT_BLOB_HOSTS" in response.json()["message"]


def test_an_allowed_host_is_still_reached_over_https_only(exporter: httpx.Client) -> None:
    uri = "http://account.blob.core.windows.net/container?sv=2024&sig=x"
    response = export(
        exporter, ["1.2.3"], {"type": "azureblob", "settings": {"blobContainerUri": uri}}
    )
    assert response.status_code == 400, response.text
    assert "https" in response.json()["message"]
    assert "sig=" not in response.text


def test_file_destinations_need_the_root_setting(client: httpx.Client, tmp_path: Path) -> None:
    response = export(client, ["1.2.3"], {"type": "file", "settings": {"uri": tmp_path.as_uri()}})
    assert response.status_code == 400
    assert "DICOM_EXPORT_LOCAL_ROOT" in response.json()["message"]


def test_a_directory_outside_the_root_is_a_400(exporter: httpx.Client, tmp_path: Path) -> None:
    response = export(exporter, ["1.2.3"], {"type": "file", "settings": {"uri": tmp_path.as_uri()}})
    assert response.status_code == 400
    assert "outside" in response.json()["message"]


def test_export_takes_json_only(client: httpx.Client) -> None:
    response = client.post("/v2/export", content=b"<x/>", headers={"Content-Type": "text/xml"})
    assert response.status_code == 415
    assert client.get("/v2/export").status_code == 405


def test_a_killed_export_completes_after_a_restart_without_losing_an_instance(
    tmp_path: Path,
    backend: str,
    emulators: Emulators,
    blob_service: BlobServiceClient,
    container: str,
) -> None:
    """kill -9 mid-export: the restarted server resumes from the last checkpoint, and the
    container ends with every instance byte for byte and the counts exact (a repeated batch
    rewrites its files but is counted once)."""
    env = azure_environment(emulators) if backend == "azure" else {}
    server = start_server(
        tmp_path, DICOM_EXPORT_BATCH_SIZE="2", DICOM_EXPORT_BLOB_HOSTS=AZURITE_HOSTS, **env
    )
    stored: dict[str, bytes] = {}
    studies: list[str] = []
    try:
        with server.client() as client:
            for _ in range(30):
                datasets = study(2)
                stored.update(store(client, datasets))
                studies.append(datasets[0].StudyInstanceUID)
            response = export(client, studies, to_azurite(emulators, container))
            assert response.status_code == 202, response.text
            op = response.json()["id"]
            deadline = time.monotonic() + 60
            while client.get(f"/v2/operations/{op}").json()["percentComplete"] < 10:
                assert time.monotonic() < deadline
                time.sleep(0.02)
            server.process.kill()
            server.process.wait()
    finally:
        if server.process.poll() is None:
            stop_server(server)
    at_kill = [n for n in exported_blobs(blob_service, container) if "/results/" in n]
    assert 0 < len(at_kill) < len(stored), "the kill fell outside the export; make it longer"

    (tmp_path / "again").mkdir()
    restarted = start_server(
        tmp_path / "again",
        DATA_DIR=str(server.data_dir),
        DICOM_EXPORT_BLOB_HOSTS=AZURITE_HOSTS,
        **env,
    )
    try:
        with restarted.client() as client:
            operation, _ = wait_done(client, f"/v2/operations/{op}", timeout=120)
    finally:
        stop_server(restarted)
    assert operation["status"] == "Completed"
    assert (operation["results"]["exported"], operation["results"]["skipped"]) == (60, 0)
    blobs = exported_blobs(blob_service, container)
    assert blobs.pop(f"{op}/errors.log") == b""
    assert blobs == {f"{op}/results/{path}": data for path, data in stored.items()}
