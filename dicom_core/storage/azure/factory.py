"""Builds the azure backend from the settings (``dicom_core.bootstrap`` picks it for
``DICOM_STORAGE=azure``).

Cosmos DB holds the index, the workitems, the extended query tags and external metadata: the
four Cosmos stores run on one ``CosmosSession`` (one client, one set of containers, one retry
policy). Blob Storage holds the files and Storage queues carry the jobs.
"""

from __future__ import annotations

from dicom_core.settings import Settings
from dicom_core.storage.azure.blob_store import AzureBlobStore
from dicom_core.storage.azure.clients import CosmosClients, StorageClients
from dicom_core.storage.azure.cosmos_change_feed import CosmosChangeFeedStore
from dicom_core.storage.azure.cosmos_cursors import CosmosCursorStore
from dicom_core.storage.azure.cosmos_eqt import CosmosQueryTagStore
from dicom_core.storage.azure.cosmos_external_metadata import CosmosExternalMetadataStore
from dicom_core.storage.azure.cosmos_index import CosmosIndexStore
from dicom_core.storage.azure.cosmos_partitions import CosmosPartitionStore
from dicom_core.storage.azure.cosmos_session import CosmosSession
from dicom_core.storage.azure.cosmos_workitems import CosmosWorkitemStore
from dicom_core.storage.azure.storage_queue import StorageJobQueue
from dicom_core.storage.ports import Backend


def _create_resources(settings: Settings, uses_keys: bool) -> bool:
    """Create missing databases, containers and queues? By default only with keys.

    With an identity (in Azure) the app has data-plane rights only and Bicep declares every
    resource; with keys (the emulators, a development account) the app sets itself up.
    """
    explicit = settings.azure.create_resources
    return uses_keys if explicit is None else explicit


def build_backend(settings: Settings) -> Backend:
    azure = settings.azure
    azure.check()
    cosmos = CosmosClients(azure)
    blob_clients, queue_clients = StorageClients(azure), StorageClients(azure)
    session = CosmosSession(
        cosmos, azure, create_resources=_create_resources(settings, cosmos.uses_keys())
    )
    index = CosmosIndexStore(
        session,
        stale_create_seconds=settings.reservation_lease_seconds,
        unrenewed_lease_seconds=settings.stale_create_seconds,
    )
    queue = build_job_queue(settings, queue_clients)
    query_tags = CosmosQueryTagStore(session, queue)
    return Backend(
        index=index,
        blobs=AzureBlobStore(
            blob_clients,
            azure,
            create_resources=_create_resources(settings, blob_clients.uses_keys()),
        ),
        queue=queue,
        workitems=CosmosWorkitemStore(session),
        # Reindex continuations go through the Storage queues (an outbox on the operation).
        query_tags=query_tags,
        external_metadata=CosmosExternalMetadataStore(session),
        change_feed=CosmosChangeFeedStore(session),
        cursors=CosmosCursorStore(session),
        operations=query_tags,
        partitions=CosmosPartitionStore(session),
        # Index and files are separate services: the two-step protocol of the index.
        writer=None,
        # Blob Storage cannot keep a deleted blob readable for a reader already streaming it.
        blob_delete_delay_seconds=azure.blob_delete_delay_seconds,
    )


def build_job_queue(settings: Settings, clients: StorageClients | None = None) -> StorageJobQueue:
    """The queue alone (the local host's queue pollers need no index or blob clients)."""
    azure = settings.azure
    azure.check()
    clients = clients or StorageClients(azure)
    return StorageJobQueue(
        clients, azure, create_resources=_create_resources(settings, clients.uses_keys())
    )
