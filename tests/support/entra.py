"""A stand-in for an Entra ID tenant: tokens signed with a key made for the test run, and the
JWKS file a server started with ``DICOM_AUTH_JWKS_URL=file://...`` reads its keys from."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "api://dicom-test"
ISSUER = "https://login.microsoftonline.com/00000000-0000-0000-0000-00000000cafe/v2.0"
KID = "test-key-1"


@dataclass
class Issuer:
    """Signs tokens the way Entra ID would, with a key only this test run knows."""

    key: rsa.RSAPrivateKey
    rogue: rsa.RSAPrivateKey

    def token(
        self,
        roles: list[str] | None = None,
        *,
        audience: str = AUDIENCE,
        issuer: str = ISSUER,
        expires_in: int = 600,
        rogue: bool = False,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload = {
            "aud": audience,
            "iss": issuer,
            "iat": now - 10,
            "nbf": now - 10,
            "exp": now + expires_in,
            "sub": "test-subject",
            "oid": "11111111-1111-1111-1111-111111111111",
            **claims,
        }
        if roles is not None:
            payload["roles"] = roles
        key = self.rogue if rogue else self.key
        return jwt.encode(payload, key, algorithm="RS256", headers={"kid": KID})


def write_jwks(path: Path, key: rsa.RSAPrivateKey) -> None:
    """The tenant's keys: ours, declared for RS256, and a second one, as Entra publishes several."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": KID, "use": "sig", "alg": "RS256"})
    spare = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(spare.public_key()))
    other.update({"kid": "test-key-0", "use": "sig"})
    path.write_text(json.dumps({"keys": [other, public]}))


def auth_settings(jwks: Path) -> dict[str, str]:
    """The server settings that turn auth on against this tenant's keys in ``jwks``."""
    return {
        "DICOM_AUTH_ENABLED": "true",
        "DICOM_AUTH_AUDIENCE": AUDIENCE,
        "DICOM_AUTH_ISSUER": ISSUER,
        "DICOM_AUTH_JWKS_URL": jwks.as_uri(),
    }
