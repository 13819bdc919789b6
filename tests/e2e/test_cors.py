"""CORS over HTTP: what a browser page on another origin (the OHIF viewer) sees."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.factories import make_dataset, to_bytes
from tests.support.server import Server, start_server, stop_server

VIEWER = "http://viewer.example:3000"
PREFLIGHT = {
    "Origin": VIEWER,
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "accept, authorization, content-type",
}


@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        tmp_path_factory.mktemp("cors"),
        DICOM_CORS_ORIGINS=f"{VIEWER}, https://other.example",
        DICOM_CORS_MAX_AGE="600",
    )
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def stored(cors_server: Server) -> str:
    ds = make_dataset()
    with cors_server.client() as client:
        response = client.post(
            "/v2/studies", content=to_bytes(ds), headers={"Content-Type": "application/dicom"}
        )
    assert response.status_code == 200, response.text
    return str(ds.StudyInstanceUID)


@pytest.mark.parametrize(
    "path",
    ["/v2/studies", "/v2/studies/1.2.3/series/4.5/instances/6.7/frames/1", "/nowhere"],
)
def test_cors_preflight_for_any_route_allows_viewer_headers(cors_server: Server, path: str) -> None:
    with cors_server.client() as client:
        response = client.options(path, headers=PREFLIGHT)
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == VIEWER
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"accept", "authorization", "content-type"} <= allowed
    assert "GET" in response.headers["Access-Control-Allow-Methods"]
    assert response.headers["Access-Control-Max-Age"] == "600"


def test_cors_qido_and_wado_answers_carry_allow_origin(cors_server: Server, stored: str) -> None:
    with cors_server.client() as client:
        qido = client.get(
            "/v2/studies", headers={"Origin": VIEWER, "Accept": "application/dicom+json"}
        )
        wado = client.get(
            f"/v2/studies/{stored}/metadata",
            headers={"Origin": VIEWER, "Accept": "application/dicom+json"},
        )
        retrieve = client.get(
            f"/v2/studies/{stored}",
            headers={"Origin": VIEWER, "Accept": 'multipart/related; type="application/dicom"'},
        )
    for response in (qido, wado, retrieve):
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == VIEWER
        assert "origin" in response.headers["Vary"].lower()
        assert "Content-Location" in response.headers["Access-Control-Expose-Headers"]
    assert retrieve.content  # the streamed multipart body still arrives whole


def test_cors_errors_and_404s_carry_allow_origin(cors_server: Server) -> None:
    with cors_server.client() as client:
        missing_study = client.get("/v2/studies/1.2.3/metadata", headers={"Origin": VIEWER})
        unknown = client.get("/studies", headers={"Origin": VIEWER})
    assert (missing_study.status_code, unknown.status_code) == (404, 404)
    assert missing_study.headers["Access-Control-Allow-Origin"] == VIEWER
    assert unknown.headers["Access-Control-Allow-Origin"] == VIEWER


def test_cors_other_origin_gets_no_allow_origin(cors_server: Server) -> None:
    with cors_server.client() as client:
        actual = client.get("/v2/studies", headers={"Origin": "https://evil.example"})
        preflight = client.options(
            "/v2/studies", headers={**PREFLIGHT, "Origin": "https://evil.example"}
        )
    assert "Access-Control-Allow-Origin" not in actual.headers
    assert preflight.status_code == 403
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_off_when_no_origin_is_configured(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        with server.client() as client:
            actual = client.get("/v2/studies", headers={"Origin": VIEWER})
            preflight = client.options("/v2/studies", headers=PREFLIGHT)
    finally:
        stop_server(server)
    assert "Access-Control-Allow-Origin" not in actual.headers
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_with_auth_preflight_needs_no_token_and_401_is_readable(tmp_path: Path) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text('{"keys": []}')
    server = start_server(
        tmp_path,
        DICOM_CORS_ORIGINS="*",
        DICOM_AUTH_ENABLED="true",
        DICOM_AUTH_AUDIENCE="api://dicom",
        DICOM_AUTH_ISSUER="https://issuer.example/",
        DICOM_AUTH_JWKS_URL=jwks.as_uri(),
    )
    try:
        with server.client() as client:
            preflight = client.options("/v2/studies", headers=PREFLIGHT)
            actual = client.get("/v2/studies", headers={"Origin": VIEWER})
    finally:
        stop_server(server)
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert actual.status_code == 401
    assert actual.headers["Access-Control-Allow-Origin"] == "*"
    assert "WWW-Authenticate" in actual.headers["Access-Control-Expose-Headers"]


def test_cors_plain_request_without_origin_is_unchanged(cors_server: Server) -> None:
    response = httpx.get(cors_server.url + "/v2/studies")
    assert "Access-Control-Allow-Origin" not in response.headers
