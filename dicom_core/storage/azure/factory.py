"""Builds the azure adapters from the settings (called by ``dicom_core.bootstrap``)."""

from __future__ import annotations

from dicom_core.settings import Settings
from dicom_core.storage.azure.blob_store import AzureBlobStore
from dicom_core.storage.azure.clients import CosmosClients, StorageClients
from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
from dicom_core.storage.azure.storage_queue import StorageJobQueue


def _create_resources(settings: Settings, uses_keys: bool) -> bool:
    """Create missing databases, containers and queues? By default only with keys.

    With an identity (in Azure) the app has data-plane rights only and Bicep declares every
    resource; with keys (the emulators, a development account) the app sets itself up.
    """
    explicit = settings.azure.create_resources
    return uses_keys if explicit is None else explicit


def build_azure_storage(
    settings: Settings,
) -> tuple[CosmosIndexStore, AzureBlobStore, StorageJobQueue]:
    azure = settings.azure
    azure.check()
    cosmos = CosmosClients(azure)
    blob_clients, queue_clients = StorageClients(azure), StorageClients(azure)
    return (
        CosmosIndexStore(
            cosmos,
            azure,
            stale_create_seconds=settings.stale_create_seconds,
            create_resources=_create_resources(settings, cosmos.uses_keys()),
        ),
        AzureBlobStore(
            blob_clients,
            azure,
            create_resources=_create_resources(settings, blob_clients.uses_keys()),
        ),
        build_azure_job_queue(settings, queue_clients),
    )


def build_azure_job_queue(
    settings: Settings, clients: StorageClients | None = None
) -> StorageJobQueue:
    azure = settings.azure
    azure.check()
    clients = clients or StorageClients(azure)
    return StorageJobQueue(
        clients, azure, create_resources=_create_resources(settings, clients.uses_keys())
    )
