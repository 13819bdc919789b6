"""Unit tests of the token checks that HTTP tests cannot reach cheaply: key caching, settings."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from dicom_core.settings import AuthSettings, CorsSettings, SettingsError
from dicom_core.web.auth import (
    Authenticator,
    Principal,
    SigningKeys,
    SigningKeysUnavailable,
)


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


AUDIENCE = "api://dicom-unit"
ISSUER = "https://login.example/tenant/v2.0"


def auth_settings(url: str = "https://login.example/keys") -> AuthSettings:
    return AuthSettings.from_mapping(
        {
            "DICOM_AUTH_ENABLED": "true",
            "DICOM_AUTH_AUDIENCE": AUDIENCE,
            "DICOM_AUTH_ISSUER": ISSUER,
            "DICOM_AUTH_JWKS_URL": url,
        }
    )


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, **extra: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    else:
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return {**public, "use": "sig", **extra}


def authenticator(*entries: dict[str, Any]) -> Authenticator:
    document = {"keys": list(entries)}
    keys = SigningKeys("https://login.example/keys", ttl=3600, fetch=lambda url: document)
    return Authenticator(auth_settings(), keys)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"aud": AUDIENCE, "iss": ISSUER, "exp": now + 600, "roles": ["DicomDataOwner"]}
    return {key: value for key, value in {**base, **overrides}.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token PyJWT would refuse to make: unsigned, or HMAC-signed with a public key."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(digest)}"


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_authenticate_accepts_rs256_token_of_a_key_with_matching_alg() -> None:
    gate = authenticator(public_jwk(RSA_KEY, kid="k1", alg="RS256"))
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    principal = await gate.authenticate(token)
    assert principal.roles == frozenset({"DicomDataOwner"})


async def test_authenticate_refuses_alg_none() -> None:
    gate = authenticator(public_jwk(RSA_KEY, kid="k1"))
    token = hand_made({"alg": "none", "typ": "JWT", "kid": "k1"}, claims(), None)
    with pytest.raises(jwt.InvalidAlgorithmError, match="'none' is not accepted"):
        await gate.authenticate(token)


@pytest.mark.parametrize("form", ["pem", "der", "jwk-json"])
async def test_authenticate_refuses_hs256_signed_with_the_public_key(form: str) -> None:
    # given: the classic key confusion, the published RSA key used as an HMAC secret
    public = RSA_KEY.public_key()
    secrets = {
        "pem": public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk-json": json.dumps(public_jwk(RSA_KEY, kid="k1")).encode(),
    }
    gate = authenticator(public_jwk(RSA_KEY, kid="k1"))
    token = hand_made({"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims(), secrets[form])
    # when / then
    with pytest.raises(jwt.InvalidAlgorithmError, match="'HS256' is not accepted"):
        await gate.authenticate(token)


async def test_authenticate_refuses_token_without_exp() -> None:
    gate = authenticator(public_jwk(RSA_KEY, kid="k1"))
    token = jwt.encode(claims(exp=None), RSA_KEY, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(jwt.MissingRequiredClaimError, match="exp"):
        await gate.authenticate(token)


async def test_authenticate_refuses_token_without_kid_when_the_issuer_has_several_keys() -> None:
    gate = authenticator(
        public_jwk(OTHER_RSA_KEY, kid="k0"), public_jwk(RSA_KEY, kid="k1", alg="RS256")
    )
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256")
    with pytest.raises(jwt.InvalidKeyError, match="names no signing key"):
        await gate.authenticate(token)


async def test_authenticate_accepts_token_without_kid_when_the_issuer_has_one_key() -> None:
    gate = authenticator(public_jwk(RSA_KEY, kid="k1"))
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256")
    assert (await gate.authenticate(token)).subject == ""


async def test_authenticate_refuses_alg_other_than_the_jwk_declares() -> None:
    # given: the key is published for RS256 only; the token is a valid RS512 signature
    gate = authenticator(public_jwk(RSA_KEY, kid="k1", alg="RS256"))
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS512", headers={"kid": "k1"})
    # when / then
    with pytest.raises(jwt.InvalidAlgorithmError, match="RS512 does not match"):
        await gate.authenticate(token)


async def test_authenticate_without_jwk_alg_allows_the_key_types_family_only() -> None:
    rsa_gate = authenticator(public_jwk(RSA_KEY, kid="k1"))
    ps256 = jwt.encode(claims(), RSA_KEY, algorithm="PS256", headers={"kid": "k1"})
    assert (await rsa_gate.authenticate(ps256)).roles == frozenset({"DicomDataOwner"})
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_gate = authenticator(public_jwk(ec_key, kid="e1"))
    es256 = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "e1"})
    assert (await ec_gate.authenticate(es256)).roles == frozenset({"DicomDataOwner"})
    # an RS256 header naming the EC key never reaches a verifier
    forged = hand_made({"alg": "RS256", "kid": "e1"}, claims(), b"x")
    with pytest.raises(jwt.InvalidAlgorithmError, match="does not match"):
        await ec_gate.authenticate(forged)


async def test_signing_keys_skip_symmetric_keys_and_keys_with_foreign_alg() -> None:
    document = {
        "keys": [
            {"kty": "oct", "k": b64(b"shared-secret"), "kid": "sym"},
            {**public_jwk(RSA_KEY), "kid": "hs", "alg": "HS256"},
            public_jwk(RSA_KEY, kid="ok"),
        ]
    }
    keys = SigningKeys("https://login.example/keys", ttl=3600, fetch=lambda url: document)
    assert await keys.get("ok") is not None
    assert await keys.get("sym") is None
    assert await keys.get("hs") is None


@pytest.mark.parametrize(
    "url",
    ["http://login.example/keys", "ftp://login.example/keys", "keys.json", "/etc/keys.json"],
)
def test_auth_settings_refuse_a_jwks_url_that_is_not_https_or_file(url: str) -> None:
    with pytest.raises(SettingsError, match=r"DICOM_AUTH_JWKS_URL must be an https://"):
        auth_settings(url)


@pytest.mark.parametrize("url", ["https://login.example/keys", "file:///srv/keys.json"])
def test_auth_settings_accept_https_and_file_jwks_urls(url: str) -> None:
    assert auth_settings(url).jwks_url == url
