"""The bearer tokens every ``dicomweb`` command sends: a fixed one, or Entra ID's through a
credential (a fake one here), kept until shortly before it expires."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dicomweb_cli.auth import AuthError, Bearer, BearerAuth, bearer_for, default_scope


@dataclass
class Token:
    token: str
    expires_on: int


class FakeCredential:
    """Hands out numbered tokens that live ``lifetime`` seconds, and records the scopes."""

    def __init__(self, lifetime: int = 3600, fail: bool = False) -> None:
        self.scopes: list[tuple[str, ...]] = []
        self.lifetime = lifetime
        self.fail = fail

    def get_token(self, *scopes: str, **kwargs: Any) -> Token:
        if self.fail:
            raise RuntimeError("DefaultAzureCredential failed to retrieve a token")
        self.scopes.append(scopes)
        return Token(f"token-{len(self.scopes)}", int(time.time()) + self.lifetime)


def test_a_credential_token_is_kept_until_shortly_before_it_expires() -> None:
    lasting = FakeCredential()
    bearer = Bearer(credential=lasting, scope="https://dicom.example/.default")
    assert bearer.headers() == bearer.headers() == {"Authorization": "Bearer token-1"}
    assert lasting.scopes == [("https://dicom.example/.default",)]
    expiring = FakeCredential(lifetime=120)  # inside the five-minute margin: fetched each time
    bearer = Bearer(credential=expiring, scope="s")
    assert [bearer.token(), bearer.token()] == ["token-1", "token-2"]
    with pytest.raises(AuthError, match="no Entra ID token for s"):
        Bearer(credential=FakeCredential(fail=True), scope="s").token()


def test_options_pick_the_token_and_the_scope(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DICOMWEB_TOKEN", raising=False)
    monkeypatch.delenv("DICOMWEB_SCOPE", raising=False)
    fake = FakeCredential()
    assert bearer_for("https://h", token=None, azure=False, credential=fake) is None
    given = bearer_for("https://h", token="abc", azure=True, credential=fake)
    assert given is not None and given.token() == "abc" and fake.scopes == []
    chosen = bearer_for("https://h/", token=None, azure=True, credential=fake)
    assert chosen is not None and chosen.scope == default_scope("https://h") == "https://h/.default"
    monkeypatch.setenv("DICOMWEB_SCOPE", "api://app/.default")
    chosen = bearer_for("https://h", token=None, azure=True, credential=fake)
    assert chosen is not None and chosen.scope == "api://app/.default"


def test_every_request_carries_a_current_header() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(204)

    bearer = Bearer(credential=FakeCredential(lifetime=60), scope="s")
    transport = httpx.MockTransport(handler)
    with httpx.Client(transport=transport, auth=BearerAuth(bearer)) as http:
        http.get("http://server/a")
        http.get("http://server/b")
    assert seen == ["Bearer token-1", "Bearer token-2"]
