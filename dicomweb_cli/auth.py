"""The Authorization header of every request: a bearer token given (``--token``,
``DICOMWEB_TOKEN``), or one from Entra ID (``--azure``), as a deployed service requires.

With ``--azure`` a ``DefaultAzureCredential`` (az login, environment credentials, a managed
identity) is asked for the scope ``{Service URL}/.default``, the tutorials' scope, which works
when the API's Application ID URI is the service URL; ``--scope`` (``DICOMWEB_SCOPE``) names
another, such as ``api://<client-id>/.default``. Entra ID is used only when asked for: a
https URL alone does not say the server is an Azure one, and a credential chain that finds no
sign-in fails slowly and confusingly. A 401 answer instead prints a hint (:func:`hint_for`).

Tokens last about an hour and an upload or ``changefeed --follow`` may run longer, so the
header is built per request from a token that is fetched again five minutes before it
expires. The credential is an argument (:class:`Bearer`), so tests hand in a fake one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Generator
from typing import Any, Protocol

import httpx

TOKEN_VARIABLE = "DICOMWEB_TOKEN"
SCOPE_VARIABLE = "DICOMWEB_SCOPE"
#: Fetch a new token this long before the current one expires.
REFRESH_MARGIN_SECONDS = 300


class AccessToken(Protocol):
    """What azure-core's ``AccessToken`` offers: the token and its expiry (epoch seconds)."""

    @property
    def token(self) -> str: ...

    @property
    def expires_on(self) -> int: ...


class TokenCredential(Protocol):
    """azure-core's synchronous ``TokenCredential``, as ``DefaultAzureCredential`` is one."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken: ...


class AuthError(Exception):
    """No token could be had (not signed in, no identity, a refused credential)."""


def default_scope(url: str) -> str:
    """The tutorials' scope: ``{Service URL}/.default``."""
    return f"{url.rstrip('/')}/.default"


class Bearer:
    """The ``Authorization`` header: a fixed token, or a credential's token for ``scope``,
    fetched on first use and again shortly before it expires (safe from several threads)."""

    def __init__(
        self,
        *,
        token: str | None = None,
        credential: TokenCredential | None = None,
        scope: str = "",
        owns_credential: bool = False,
    ) -> None:
        if (token is None) == (credential is None):
            raise ValueError("a Bearer has a token or a credential, not both or neither")
        self.scope = scope
        self._token = token
        self._expires_on = float("inf") if token is not None else 0.0
        self._credential = credential
        self._owns_credential = owns_credential
        self._lock = threading.Lock()

    def token(self) -> str:
        with self._lock:
            if self._credential is not None and (
                self._token is None or time.time() > self._expires_on - REFRESH_MARGIN_SECONDS
            ):
                try:
                    access = self._credential.get_token(self.scope)
                except Exception as error:  # azure-identity raises its own kinds, and more
                    raise AuthError(f"no Entra ID token for {self.scope}: {error}") from error
                self._token, self._expires_on = str(access.token), float(access.expires_on)
            assert self._token is not None
            return self._token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def close(self) -> None:
        """Close the credential if this object made it (``DefaultAzureCredential``)."""
        close = getattr(self._credential, "close", None)
        if self._owns_credential and callable(close):
            close()


class BearerAuth(httpx.Auth):
    """httpx's hook for :class:`Bearer`: each request gets a current header."""

    def __init__(self, bearer: Bearer) -> None:
        self._bearer = bearer

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        request.headers.update(self._bearer.headers())
        yield request


def bearer_for(
    url: str,
    *,
    token: str | None,
    azure: bool,
    scope: str | None = None,
    credential: TokenCredential | None = None,
) -> Bearer | None:
    """The bearer the options ask for, or None for anonymous requests. ``credential``
    replaces ``DefaultAzureCredential`` (tests; a program embedding the client)."""
    token = token or os.environ.get(TOKEN_VARIABLE) or None
    if token is not None:
        return Bearer(token=token)
    if not azure:
        return None
    scope = scope or os.environ.get(SCOPE_VARIABLE) or default_scope(url)
    if credential is not None:
        return Bearer(credential=credential, scope=scope)
    # Imported here: only --azure needs azure-identity (and its import takes a while).
    from azure.identity import DefaultAzureCredential

    return Bearer(credential=DefaultAzureCredential(), scope=scope, owns_credential=True)


def hint_for(status: int, bearer: Bearer | None) -> str:
    """What to try after a 401 or 403 answer, or an empty string."""
    if status == 401 and bearer is None:
        return "the service wants a bearer token: sign in with --azure (Entra ID) or pass --token"
    if status == 401:
        return "the service refused the token (expired, or for another audience: see --scope)"
    if status == 403:
        return "the token's identity lacks the DICOM role this request needs"
    return ""
