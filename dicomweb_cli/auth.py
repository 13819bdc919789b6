"""The Authorization header: a bearer token given (``--token``, ``DICOMWEB_TOKEN``), or one
from Entra ID for the service's scope (``--azure``), as the deployed service requires."""

from __future__ import annotations

import os

TOKEN_VARIABLE = "DICOMWEB_TOKEN"


def auth_headers(url: str, token: str | None, azure: bool) -> dict[str, str]:
    token = token or os.environ.get(TOKEN_VARIABLE) or None
    if token is None and azure:
        token = azure_token(url)
    return {"Authorization": f"Bearer {token}"} if token else {}


def azure_token(url: str) -> str:
    """A token for ``{url}/.default`` from DefaultAzureCredential (az login, a managed
    identity, environment credentials). Imported here: only ``--azure`` needs it."""
    from azure.identity import DefaultAzureCredential

    credential = DefaultAzureCredential()
    try:
        return str(credential.get_token(f"{url.rstrip('/')}/.default").token)
    finally:
        credential.close()
