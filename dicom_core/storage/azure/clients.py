"""SDK clients and credentials, built from ``AzureSettings`` the way the Functions host does it.

Storage (blobs and queues) uses the ``AzureWebJobsStorage`` connection, so the queue-triggered
functions and our adapters read the same account:

- ``AzureWebJobsStorage`` holding a connection string: keys, for Azurite
  (``UseDevelopmentStorage=true`` or explicit endpoints) and key-based accounts;
- identity-based: ``AzureWebJobsStorage__accountName`` (or ``__blobServiceUri`` and
  ``__queueServiceUri``), with ``__credential=managedidentity`` and ``__clientId`` for a
  user-assigned identity. No secret in app settings.

Cosmos DB likewise: ``DICOM_COSMOS_CONNECTION`` (``AccountEndpoint=...;AccountKey=...;``) for
the emulator and key-based accounts, or ``COSMOS__accountEndpoint`` with ``COSMOS__credential``
and ``COSMOS__clientId``.

Async SDK clients bind to the event loop they first run on, so they are created lazily, inside
the loop that uses them, and closed with their adapter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from azure.core.credentials_async import AsyncTokenCredential
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueServiceClient

from dicom_core.settings import AzureSettings, SettingsError

# Per-request retries inside the storage SDK stay short: RetryPolicy (retry.py) retries whole
# operations within the configured budget, and a dead emulator must become a 503 in seconds,
# not after the SDK's default of three exponential waits starting at 15 s.
# The read timeout is DICOM_AZURE_TIMEOUT_SECONDS (AzureSettings.timeout_seconds).
CONNECTION_TIMEOUT = 5
# Options of the SDKs' own ExponentialRetry: two retries, half a second apart (base 0 makes
# every wait the initial one; the SDK annotates these as int but computes with floats).
_SDK_RETRY: dict[str, Any] = {
    "initial_backoff": 0.5,
    "increment_base": 0,
    "random_jitter_range": 0.2,
    "retry_total": 2,
}
# Transfers are streamed in pieces, so memory stays bounded whatever the file size: uploads
# above 1 MiB go as staged 1 MiB blocks (several in flight, each retried on its own), downloads
# in 4 MiB ranges. Upload pieces stay at 1 MiB because aiohttp warns (and may stall the event
# loop) on larger in-memory request bodies.
_BLOB_TRANSFER: dict[str, Any] = {
    "max_single_put_size": 1 << 20,
    "max_block_size": 1 << 20,
    "max_single_get_size": 4 << 20,
    "max_chunk_get_size": 4 << 20,
}


def quiet_sdk_logging() -> None:
    """The SDKs log every HTTP request at INFO; keep that out of the app's INFO log.

    Only when nobody configured the ``azure`` loggers: an explicit level wins.
    """
    sdk = logging.getLogger("azure")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.WARNING)


def parse_connection_string(text: str) -> dict[str, str]:
    """``Key=Value;Key=Value`` into a dict with lower-cased keys (values may contain '=')."""
    parts: dict[str, str] = {}
    for piece in text.split(";"):
        if not piece.strip():
            continue
        name, sep, value = piece.partition("=")
        if not sep:
            raise SettingsError(f"malformed connection string part {name.strip()!r}")
        parts[name.strip().lower()] = value.strip()
    return parts


def is_loopback(url: str) -> bool:
    from urllib.parse import urlparse

    host = (urlparse(url).hostname or "").lower()
    return host in {"127.0.0.1", "localhost", "::1"} or host.startswith("127.")


def identity_credential(kind: str | None, client_id: str | None) -> AsyncTokenCredential:
    """Managed identity when the settings say so (fast, no probing), else the default chain."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    if (kind or "").lower() == "managedidentity":
        return (
            ManagedIdentityCredential(client_id=client_id)
            if client_id
            else (ManagedIdentityCredential())
        )
    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()


class StorageClients:
    """Blob and queue service clients for the ``AzureWebJobsStorage`` connection."""

    def __init__(self, settings: AzureSettings) -> None:
        quiet_sdk_logging()
        self._settings = settings
        self._credential: AsyncTokenCredential | None = None
        self._blob: BlobServiceClient | None = None
        self._queue: QueueServiceClient | None = None

    def _token_credential(self) -> AsyncTokenCredential:
        if self._credential is None:
            self._credential = identity_credential(
                self._settings.storage_credential, self._settings.storage_client_id
            )
        return self._credential

    def _service_url(self, service: str) -> str:
        explicit = (
            self._settings.blob_service_uri
            if service == "blob"
            else self._settings.queue_service_uri
        )
        if explicit:
            return explicit
        if not self._settings.storage_account:
            raise SettingsError(
                f"AzureWebJobsStorage__{service}ServiceUri or AzureWebJobsStorage__accountName"
                " is needed for identity-based storage"
            )
        return f"https://{self._settings.storage_account}.{service}.core.windows.net"

    def _timeouts(self) -> dict[str, Any]:
        return {
            "connection_timeout": CONNECTION_TIMEOUT,
            "read_timeout": self._settings.timeout_seconds,
        }

    def uses_keys(self) -> bool:
        return self._settings.storage_connection is not None

    def blob_service(self) -> BlobServiceClient:
        if self._blob is None:
            options: dict[str, Any] = {
                **self._timeouts(),
                **_BLOB_TRANSFER,
                **_SDK_RETRY,
            }
            connection = self._settings.storage_connection
            if connection:
                self._blob = BlobServiceClient.from_connection_string(connection, **options)
            else:
                self._blob = BlobServiceClient(
                    self._service_url("blob"), credential=self._token_credential(), **options
                )
        return self._blob

    def queue_service(self) -> QueueServiceClient:
        if self._queue is None:
            options: dict[str, Any] = {
                **self._timeouts(),
                **_SDK_RETRY,
            }
            connection = self._settings.storage_connection
            if connection:
                self._queue = QueueServiceClient.from_connection_string(connection, **options)
            else:
                self._queue = QueueServiceClient(
                    self._service_url("queue"), credential=self._token_credential(), **options
                )
        return self._queue

    async def close(self) -> None:
        for client in (self._blob, self._queue, self._credential):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.close()
        self._blob = self._queue = None
        self._credential = None


class CosmosClients:
    """One Cosmos DB client, entered lazily in the running loop; reset after a failed start."""

    def __init__(self, settings: AzureSettings) -> None:
        quiet_sdk_logging()
        self._settings = settings
        self._client: Any = None
        self._credential: AsyncTokenCredential | None = None
        self._lock = asyncio.Lock()

    def uses_keys(self) -> bool:
        return self._settings.cosmos_connection is not None

    def _endpoint_and_credential(self) -> tuple[str, Any]:
        connection = self._settings.cosmos_connection
        if connection:
            parts = parse_connection_string(connection)
            endpoint, key = parts.get("accountendpoint"), parts.get("accountkey")
            if not endpoint or not key:
                raise SettingsError(
                    "DICOM_COSMOS_CONNECTION needs AccountEndpoint=...;AccountKey=...;"
                )
            return endpoint, key
        endpoint = self._settings.cosmos_endpoint
        if not endpoint:
            raise SettingsError("COSMOS__accountEndpoint is not set")
        if self._credential is None:
            self._credential = identity_credential(
                self._settings.cosmos_credential, self._settings.cosmos_client_id
            )
        return endpoint, self._credential

    async def client(self) -> Any:
        """The entered ``azure.cosmos.aio.CosmosClient`` (its start reads the account)."""
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                from azure.cosmos.aio import CosmosClient

                endpoint, credential = self._endpoint_and_credential()
                client = CosmosClient(
                    endpoint,
                    credential=credential,
                    # The SDK's own retries stay short; RetryPolicy owns the time budget.
                    retry_total=3,
                    retry_backoff_max=1,
                    retry_connect=1,
                    retry_read=1,
                    connection_timeout=CONNECTION_TIMEOUT,
                    # The SDK's default waits 65 s for each answer, and tries a timed-out
                    # read again: a frozen account held requests for minutes.
                    read_timeout=self._settings.timeout_seconds,
                    # The emulator speaks only to loopback clients; in Azure keep discovery on
                    # so the SDK follows the account's regions.
                    enable_endpoint_discovery=not is_loopback(endpoint),
                )
                try:
                    await client.__aenter__()
                except BaseException:
                    with contextlib.suppress(Exception):
                        await client.close()
                    raise
                self._client = client
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        if self._credential is not None:
            with contextlib.suppress(Exception):
                await self._credential.close()
            self._credential = None
