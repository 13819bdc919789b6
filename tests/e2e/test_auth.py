"""Entra ID bearer tokens and DICOM app roles, over HTTP against a real server process.

The server reads its signing keys from a ``file://`` JWKS written here; tokens are signed with
an RSA key generated for the test run (``tests.support.entra``), so no key material lives in
the repository.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.entra import AUDIENCE, ISSUER, KID, Issuer, auth_settings, write_jwks
from tests.support.factories import make_dataset, to_bytes
from tests.support.server import ROOT, Server, start_server, stop_server


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer(
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rogue=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("auth")
    jwks = tmp / "jwks.json"
    write_jwks(jwks, issuer.key)
    server = start_server(tmp, **auth_settings(jwks))
    try:
        # One stored study, so that searches answer 200 (an empty result is 204).
        with server.client() as client:
            assert store(client, bearer(issuer.token(["DicomDataOwner"]))).status_code == 200
        yield server
    finally:
        stop_server(server)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def store(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    body = to_bytes(make_dataset())
    return client.post(
        "/v2/studies",
        content=body,
        headers={
            "Content-Type": "application/dicom",
            "Accept": "application/dicom+json",
            **headers,
        },
    )


def search(client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return client.get("/v2/studies", headers={"Accept": "application/dicom+json", **headers})


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no token", 401),
        ("expired", 401),
        ("wrong audience", 401),
        ("wrong issuer", 401),
        ("bad signature", 401),
        ("reader writing", 403),
        ("reader reading", 200),
        ("owner writing", 200),
        ("owner reading", 200),
        ("no role reading", 403),
    ],
)
def test_auth_matrix_answers_expected_status(
    secured: Server, issuer: Issuer, case: str, expected: int
) -> None:
    tokens = {
        "no token": None,
        "expired": issuer.token(["DicomDataOwner"], expires_in=-3600),
        "wrong audience": issuer.token(["DicomDataOwner"], audience="api://someone-else"),
        "wrong issuer": issuer.token(
            ["DicomDataOwner"], issuer="https://login.microsoftonline.com/other/v2.0"
        ),
        "bad signature": issuer.token(["DicomDataOwner"], rogue=True),
        "reader writing": issuer.token(["DicomDataReader"]),
        "reader reading": issuer.token(["DicomDataReader"]),
        "owner writing": issuer.token(["DicomDataOwner"]),
        "owner reading": issuer.token(["DicomDataOwner"]),
        "no role reading": issuer.token(),
    }
    headers = {} if tokens[case] is None else bearer(str(tokens[case]))
    writes = case in {"no token", "expired", "wrong audience", "wrong issuer", "bad signature"}
    writes = writes or case.endswith("writing")
    with secured.client() as client:
        response = store(client, headers) if writes else search(client, headers)
    assert response.status_code == expected, response.text
    if expected == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    if expected == 403:
        assert "insufficient_scope" in response.headers["WWW-Authenticate"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_token(alg: str, secret: bytes | None, payload: dict[str, Any]) -> str:
    """A token no honest library makes: unsigned (``none``) or HMAC-signed with ``secret``."""
    header = {"alg": alg, "typ": "JWT", "kid": KID}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(digest)}"


def owner_claims() -> dict[str, Any]:
    now = int(time.time())
    return {"aud": AUDIENCE, "iss": ISSUER, "exp": now + 600, "roles": ["DicomDataOwner"]}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("alg none", "'none' is not accepted"),
        ("HS256 with the public key", "'HS256' is not accepted"),
        ("missing exp", "exp"),
        ("no kid, several keys", "names no signing key"),
        ("alg other than the key declares", "RS512 does not match"),
    ],
)
def test_auth_forged_or_incomplete_token_answers_401_with_challenge(
    secured: Server, issuer: Issuer, case: str, reason: str
) -> None:
    # given: a token that must never authorise a write
    pem = issuer.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    no_exp = {k: v for k, v in owner_claims().items() if k != "exp"}
    tokens = {
        "alg none": lambda: forged_token("none", None, owner_claims()),
        "HS256 with the public key": lambda: forged_token("HS256", pem, owner_claims()),
        "missing exp": lambda: jwt.encode(no_exp, issuer.key, "RS256", headers={"kid": KID}),
        "no kid, several keys": lambda: jwt.encode(owner_claims(), issuer.key, "RS256"),
        "alg other than the key declares": lambda: jwt.encode(
            owner_claims(), issuer.key, "RS512", headers={"kid": KID}
        ),
    }
    # when
    with secured.client() as client:
        response = store(client, bearer(tokens[case]()))
    # then
    assert response.status_code == 401, response.text
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer") and 'error="invalid_token"' in challenge
    assert reason in challenge


def test_auth_reader_cannot_delete_but_owner_can(secured: Server, issuer: Issuer) -> None:
    ds = make_dataset()
    with secured.client() as client:
        stored = client.post(
            "/v2/studies",
            content=to_bytes(ds),
            headers={
                "Content-Type": "application/dicom",
                **bearer(issuer.token(["DicomDataOwner"])),
            },
        )
        assert stored.status_code == 200, stored.text
        path = f"/v2/studies/{ds.StudyInstanceUID}"
        reader = client.delete(path, headers=bearer(issuer.token(["DicomDataReader"])))
        owner = client.delete(path, headers=bearer(issuer.token(["DicomDataOwner"])))
    assert (reader.status_code, owner.status_code) == (403, 204)


def test_auth_unknown_path_needs_a_token_too(secured: Server, issuer: Issuer) -> None:
    with secured.client() as client:
        anonymous = client.get("/studies")
        reader = client.get("/studies", headers=bearer(issuer.token(["DicomDataReader"])))
    assert (anonymous.status_code, reader.status_code) == (401, 404)


def test_auth_malformed_header_answers_401(secured: Server) -> None:
    with secured.client() as client:
        basic = search(client, {"Authorization": "Basic dXNlcjpwYXNz"})
        garbage = search(client, {"Authorization": "Bearer not-a-jwt"})
    assert (basic.status_code, garbage.status_code) == (401, 401)
    assert 'error="invalid_token"' in garbage.headers["WWW-Authenticate"]


def test_auth_options_needs_no_token(secured: Server) -> None:
    with secured.client() as client:
        response = client.options("/v2/studies")
    assert response.status_code != 401


def registered_http_routes() -> list[tuple[str, str]]:
    """(method, concrete path) of every HTTP function, from a fresh copy of the route table."""
    spec = importlib.util.spec_from_file_location(
        "function_app_auth_copy", ROOT / "function_app.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    routes: list[tuple[str, str]] = []
    for function in module.app.get_functions():
        trigger: Any = function.get_trigger()
        if type(trigger).__name__ != "HttpTrigger":
            continue
        template = str(trigger.route)
        path = re.sub(r"\{version\}", "2", template)
        path = re.sub(r"\{\*[^}]*\}", "anything", path)
        path = re.sub(r"\{[^}]*\}", "1.2.3", path)
        for method in trigger.methods or ["GET"]:
            name = str(getattr(method, "value", method)).upper()
            if name != "OPTIONS":
                routes.append((name, "/" + path))
    return routes


def test_auth_every_registered_route_is_behind_the_gate(secured: Server) -> None:
    routes = registered_http_routes()
    assert len(routes) > 20
    with secured.client() as client:
        answers = {(m, p): client.request(m, p).status_code for m, p in routes}
    assert {key: status for key, status in answers.items() if status != 401} == {}
