"""Unit tests of the token checks that HTTP tests cannot reach cheaply: key caching, settings."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from dicom_core.settings import AuthSettings, CorsSettings, SettingsError
from dicom_core.web.auth import Principal, SigningKeys, SigningKeysUnavailable


def jwks(kid: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": kid, "use": "sig"}]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_signing_keys_are_cached_until_ttl() -> None:
    fetches: list[str] = []
    document = jwks("a")

    def fetch(url: str) -> dict[str, Any]:
        fetches.append(url)
        return document

    clock = FakeClock()
    keys = SigningKeys("file:///keys.json", ttl=3600, fetch=fetch, clock=clock)
    assert await keys.get("a") is not None
    clock.now += 100
    assert await keys.get("a") is not None
    assert len(fetches) == 1
    clock.now += 3600
    await keys.get("a")
    assert len(fetches) == 2


async def test_signing_keys_unknown_kid_refetches_at_most_every_30_seconds() -> None:
    documents = [jwks("old"), jwks("new")]
    fetches: list[int] = []

    def fetch(url: str) -> dict[str, Any]:
        fetches.append(1)
        return documents[min(len(fetches), 2) - 1]

    clock = FakeClock()
    keys = SigningKeys("file:///keys.json", ttl=3600, fetch=fetch, clock=clock)
    assert await keys.get("old") is not None
    assert await keys.get("new") is None  # too soon after the first fetch
    clock.now += 31
    assert await keys.get("new") is not None  # rotated keys are picked up
    assert len(fetches) == 2


async def test_signing_keys_unreachable_raises() -> None:
    def fetch(url: str) -> dict[str, Any]:
        raise OSError("no route")

    keys = SigningKeys("https://login.example/keys", ttl=60, fetch=fetch)
    with pytest.raises(SigningKeysUnavailable):
        await keys.get("a")


def test_principal_roles_decide_methods() -> None:
    owner = Principal("o", frozenset({"DicomDataOwner"}), {})
    reader = Principal("r", frozenset({"DicomDataReader"}), {})
    nobody = Principal("n", frozenset(), {})
    assert all(owner.may(m) for m in ("GET", "POST", "PUT", "DELETE", "PATCH"))
    assert reader.may("GET") and reader.may("HEAD")
    assert not any(reader.may(m) for m in ("POST", "PUT", "DELETE", "PATCH"))
    assert not nobody.may("GET")


def test_auth_settings_enabled_needs_audience_issuer_and_keys() -> None:
    with pytest.raises(SettingsError, match="DICOM_AUTH_AUDIENCE"):
        AuthSettings.from_mapping({"DICOM_AUTH_ENABLED": "true"})
    settings = AuthSettings.from_mapping(
        {
            "DICOM_AUTH_ENABLED": "true",
            "DICOM_AUTH_AUDIENCE": "api://dicom, 0000-client-id",
            "DICOM_AUTH_ISSUER": "https://sts.windows.net/t/",
            "DICOM_AUTH_JWKS_URL": "file:///tmp/keys.json",
        }
    )
    assert settings.audiences == ("api://dicom", "0000-client-id")
    assert not AuthSettings.from_mapping({}).enabled


def test_cors_settings_parse_lists_and_refuse_credentials_with_any_origin() -> None:
    settings = CorsSettings.from_mapping(
        {"DICOM_CORS_ORIGINS": "https://Viewer.example/, http://localhost:3000"}
    )
    assert settings.origins == ("https://viewer.example", "http://localhost:3000")
    assert not CorsSettings.from_mapping({}).enabled
    with pytest.raises(SettingsError):
        CorsSettings.from_mapping(
            {"DICOM_CORS_ORIGINS": "*", "DICOM_CORS_ALLOW_CREDENTIALS": "true"}
        )
