"""Entra ID bearer tokens and the two DICOM app roles, checked in the function path.

The check runs inside ``dicom_core.web`` (not in the local host, not in platform
Easy Auth) so a request gets the same answer from ``make run`` and from Azure. A token is
accepted when its signature verifies with one of the tenant's signing keys (fetched from
``DICOM_AUTH_JWKS_URL``, cached, refetched when an unknown key id shows up after a rotation),
its issuer and audience are the configured ones and it has not expired. Then the ``roles``
claim decides: ``DicomDataOwner`` may do everything, ``DicomDataReader`` may only read
(GET and HEAD: retrieve and search).

Answers follow RFC 6750: 401 with ``WWW-Authenticate: Bearer`` when the token is missing or
not valid, 403 when a valid token lacks the role.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from starlette.requests import Request
from starlette.responses import Response

from dicom_core.settings import OWNER_ROLE, READER_ROLE, AuthSettings
from dicom_core.web import responses

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD"})
# Asymmetric algorithms only: accepting HS* would let a public key be used as an HMAC secret.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
# The algorithms each key type can verify. A JWK without its own ``alg`` is limited to its
# family (and an EC key to its curve's one algorithm), so no key verifies a token made for
# another kind of key.
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
JWKS_SCHEMES = ("https", "file")
# An unknown key id triggers a refetch at most this often, so forged key ids cannot make the
# service hammer the identity provider.
MIN_REFRESH_SECONDS = 30.0
FETCH_TIMEOUT_SECONDS = 10.0


class SigningKeysUnavailable(Exception):
    """The signing keys could not be fetched; no token can be checked until they can."""


def _fetch_json(url: str) -> dict[str, Any]:
    """Read a JWKS document; urllib serves ``https://`` and ``file://`` (tests, local keys).

    The settings refuse any other scheme; a redirect away from ``https`` is refused here too,
    since keys read over plain HTTP could be anyone's.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in JWKS_SCHEMES:
        raise ValueError(f"the JWKS URL must be https:// or file://, not {scheme}://")
    with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_SECONDS) as answer:
        final = urllib.parse.urlsplit(answer.geturl()).scheme.lower()
        if final != scheme:
            raise ValueError(f"the JWKS URL redirected to a {final}:// address")
        document = json.loads(answer.read())
    if not isinstance(document, dict):
        raise ValueError("a JWKS document is a JSON object")
    return document


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One published public key and the algorithms it may verify.

    ``algorithms`` is the JWK's own ``alg`` when it declares one (RFC 7517 4.4: the key is
    meant for that algorithm only); otherwise every asymmetric algorithm of its key type.
    """

    jwk: jwt.PyJWK
    algorithms: frozenset[str]


def _signing_key(entry: Mapping[str, Any]) -> SigningKey | None:
    """The key an entry of a JWKS describes, or None when it cannot sign tokens for us.

    Symmetric (``oct``) and unknown key types are skipped: only asymmetric keys are ever
    trusted, so a leaked HMAC secret in the document cannot sign tokens.
    """
    if entry.get("use", "sig") != "sig":
        return None
    kty = entry.get("kty")
    declared = entry.get("alg")
    if kty == "RSA":
        family = RSA_ALGORITHMS
    elif kty == "EC" and entry.get("crv") in EC_ALGORITHMS:
        family = frozenset({EC_ALGORITHMS[str(entry.get("crv"))]})
    else:
        return None
    if declared is not None and declared not in family:
        return None  # an alg this key type cannot (or we will not) verify: never usable
    try:
        jwk = jwt.PyJWK.from_dict(dict(entry))
    except jwt.PyJWTError:
        return None
    return SigningKey(jwk, frozenset({declared}) if declared is not None else family)


class SigningKeys:
    """The issuer's public keys by key id, cached for ``ttl`` seconds."""

    def __init__(
        self,
        url: str,
        ttl: float,
        fetch: Callable[[str], dict[str, Any]] = _fetch_json,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self._ttl = ttl
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> SigningKey | None:
        now = self._clock()
        stale = self._fetched_at is None or now - self._fetched_at > self._ttl
        unknown = self._lookup(kid) is None
        may_refresh = self._fetched_at is None or now - self._fetched_at > MIN_REFRESH_SECONDS
        if stale or (unknown and may_refresh):
            await self._refresh()
        return self._lookup(kid)

    def _lookup(self, kid: str | None) -> SigningKey | None:
        if kid is None:
            # A token without a key id can only be checked when the issuer has one key. With
            # several, trying each (as some libraries do) would let one forged token cost a
            # verification per key; Entra always names its key, so such a token is refused.
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        if not isinstance(kid, str):
            return None
        return self._keys.get(kid)

    @property
    def count(self) -> int:
        """How many usable keys the cached document holds (for error messages)."""
        return len(self._keys)

    async def _refresh(self) -> None:
        async with self._lock:
            try:
                document = await asyncio.to_thread(self._fetch, self._url)
                keys: dict[str, SigningKey] = {}
                for entry in document.get("keys", []):
                    key = _signing_key(entry) if isinstance(entry, dict) else None
                    if key is not None:
                        keys[str(entry.get("kid", ""))] = key
            except Exception as exc:
                if self._keys:
                    # Keep serving with the keys we have; try again after the short interval.
                    log.warning("refreshing signing keys from %s failed: %s", self._url, exc)
                    self._fetched_at = self._clock() - self._ttl + MIN_REFRESH_SECONDS
                    return
                raise SigningKeysUnavailable(str(exc)) from exc
            self._keys = keys
            self._fetched_at = self._clock()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request, as the validated token says."""

    subject: str
    roles: frozenset[str]
    claims: Mapping[str, Any]

    def may(self, method: str) -> bool:
        if OWNER_ROLE in self.roles:
            return True
        return READER_ROLE in self.roles and method.upper() in READ_METHODS


def _challenge(status: int, message: str, error: str | None = None) -> Response:
    value = 'Bearer realm="dicom"'
    if error:
        description = message.replace('"', "'").replace("\\", "/")
        value += f', error="{error}", error_description="{description}"'
    return responses.error(status, message, {"WWW-Authenticate": value})


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    """Validates bearer tokens and applies the role rules; one per process (keys cached)."""

    def __init__(self, settings: AuthSettings, keys: SigningKeys | None = None) -> None:
        self._settings = settings
        assert settings.jwks_url is not None  # AuthSettings insists when auth is enabled
        self._keys = keys or SigningKeys(settings.jwks_url, settings.jwks_cache_seconds)

    async def authenticate(self, token: str) -> Principal:
        """The token's principal; raises ``jwt.PyJWTError`` when it is not valid."""
        header = jwt.get_unverified_header(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            # Checked before any key is looked up: "none" and HS* (a public key used as an
            # HMAC secret) never reach a verifier.
            raise jwt.InvalidAlgorithmError(f"the algorithm {algorithm!r} is not accepted")
        kid = header.get("kid")
        key = await self._keys.get(kid)
        if key is None:
            if kid is None and self._keys.count > 1:
                raise jwt.InvalidKeyError(
                    "the token names no signing key (kid) and the issuer has several"
                )
            raise jwt.InvalidSignatureError("the token is signed by an unknown key")
        if algorithm not in key.algorithms:
            allowed = ", ".join(sorted(key.algorithms))
            raise jwt.InvalidAlgorithmError(
                f"the token's algorithm {algorithm} does not match its signing key ({allowed})"
            )
        claims = jwt.decode(
            token,
            key.jwk.key,
            algorithms=[algorithm],
            audience=list(self._settings.audiences),
            issuer=list(self._settings.issuers),
            leeway=self._settings.leeway_seconds,
            options={"require": ["exp", "iss", "aud"]},
        )
        roles = claims.get("roles") or []
        if not isinstance(roles, list):
            roles = [roles]
        subject = str(claims.get("oid") or claims.get("sub") or "")
        return Principal(subject=subject, roles=frozenset(map(str, roles)), claims=claims)

    async def check(self, request: Request) -> Response | None:
        """None when the request may go on, else the 401/403/503 answer to send."""
        token = bearer_token(request)
        if token is None:
            return _challenge(401, "An Authorization: Bearer token is required.")
        try:
            principal = await self.authenticate(token)
        except SigningKeysUnavailable as exc:
            log.error("cannot fetch the token signing keys: %s", exc)
            return responses.error(
                503, "The token signing keys cannot be fetched.", {"Retry-After": "5"}
            )
        except jwt.ExpiredSignatureError:
            return _challenge(401, "The token has expired.", "invalid_token")
        except jwt.PyJWTError as exc:
            return _challenge(401, f"The token is not valid: {exc}", "invalid_token")
        request.state.principal = principal
        if not principal.may(request.method):
            needed = OWNER_ROLE if request.method.upper() not in READ_METHODS else READER_ROLE
            return _challenge(
                403,
                f"The token lacks the app role this request needs ({needed} or {OWNER_ROLE}).",
                "insufficient_scope",
            )
        return None


__all__ = [
    "Authenticator",
    "Principal",
    "SigningKey",
    "SigningKeys",
    "SigningKeysUnavailable",
    "bearer_token",
]
