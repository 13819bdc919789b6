"""Every ``dicomweb`` command signs in with ``--azure`` against a server that requires Entra ID
tokens, without a real tenant: a fake credential stands in for DefaultAzureCredential and
hands out tokens signed by the test run's issuer (``tests.support.entra``), so the server's
own auth (signature, audience, issuer, role) is what accepts them."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from dicomweb_cli.__main__ import main
from tests.support.entra import Issuer, auth_settings, write_jwks
from tests.support.factories import make_dataset, to_bytes
from tests.support.server import Server, start_server, stop_server


@dataclass
class Token:
    token: str
    expires_on: int


class TenantCredential:
    """What DefaultAzureCredential does for the CLI: a token for the scope asked, here signed
    by the test's issuer with the DicomDataOwner role. It records the scopes asked for."""

    def __init__(self, issuer: Issuer) -> None:
        self.issuer = issuer
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Token:
        self.scopes.append(scopes)
        return Token(self.issuer.token(["DicomDataOwner"]), int(time.time()) + 600)


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer(
        key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rogue=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, issuer: Issuer) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("cli-auth")
    write_jwks(tmp / "jwks.json", issuer.key)
    server = start_server(tmp, **auth_settings(tmp / "jwks.json"))
    try:
        yield server
    finally:
        stop_server(server)


def test_every_command_signs_in_with_the_services_scope(
    secured: Server, issuer: Issuer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given: a file to upload, and the fake credential in place of DefaultAzureCredential
    ds = make_dataset()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.dcm").write_bytes(to_bytes(ds))
    credential = TenantCredential(issuer)
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    signed_in = ["--url", secured.url, "--azure"]
    commands = [
        ["upload", str(tmp_path / "in"), "--journal", str(tmp_path / "journal"), "--json"],
        ["search", "instances", "--study", study, "--json"],
        ["download", study, series, sop, "--out", str(tmp_path / "out"), "--json"],
        ["changefeed", "--json"],
    ]
    # when
    outputs = []
    for command in commands:
        code = main([*command, *signed_in], credential=credential)
        outputs.append((code, capsys.readouterr().out))
    # then: the server accepted the tokens for each, and each asked for {url}/.default
    assert [code for code, _ in outputs] == [0, 0, 0, 0], outputs
    assert json.loads(outputs[0][1])["stored"] == 1
    assert json.loads(outputs[1][1])[0]["00080018"]["Value"] == [sop]
    assert json.loads(outputs[2][1])["downloaded"] == 1
    assert (tmp_path / "out" / study / series / f"{sop}.dcm").exists()
    assert json.loads(outputs[3][1].splitlines()[-1])["SopInstanceUid"] == sop
    assert set(credential.scopes) == {(f"{secured.url}/.default",)}


def test_without_a_token_each_command_fails_with_a_hint(
    secured: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ds = make_dataset()
    (tmp_path / "a.dcm").write_bytes(to_bytes(ds))
    commands = [
        ["upload", str(tmp_path), "--journal", str(tmp_path / "journal"), "--retries", "1"],
        ["search", "studies"],
        ["download", str(ds.StudyInstanceUID), "--out", str(tmp_path / "out")],
        ["changefeed"],
    ]
    for command in commands:
        assert main([*command, "--url", secured.url]) == 1, command
        err = capsys.readouterr().err
        assert "401" in err and "hint: the service wants a bearer token" in err, err


def test_a_credential_that_cannot_sign_in_stops_before_any_work(
    secured: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    class NoSignIn:
        def get_token(self, *scopes: str, **kwargs: Any) -> Token:
            raise RuntimeError("DefaultAzureCredential failed to retrieve a token")

    code = main(["changefeed", "--url", secured.url, "--azure"], credential=NoSignIn())
    err = capsys.readouterr().err
    assert code == 1 and f"no Entra ID token for {secured.url}/.default" in err
