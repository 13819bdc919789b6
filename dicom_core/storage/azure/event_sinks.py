"""The ``EventSink`` adapters: an Event Grid topic, or a Storage queue.

- ``EventGridSink`` publishes with the ``azure-eventgrid`` SDK (its async
  ``EventGridPublisherClient``), as ``EventGridEvent`` or ``CloudEvent`` objects: what goes over
  the wire is the SDK's own serialization. It signs in with the topic's access key when
  ``DICOM_EVENTS_TOPIC_KEY`` is set, otherwise with an identity (managed identity in Azure,
  where Bicep grants it "EventGrid Data Sender" on the topic). Event Grid stamps ``topic`` and
  ``metadataVersion`` on Event Grid schema events itself, so they are not sent.
- ``QueueEventSink`` sends each event as one message of a Storage queue, the event's JSON as a
  subscriber of that schema receives it, base64-encoded like every message the Functions queue
  trigger reads (and like Event Grid's own Storage queue handler writes them). Messages go one
  at a time, in the feed's order; Storage queues do not promise to hand them out in that order,
  so a consumer orders by ``sequenceNumber``. The queue is created when the app may create
  resources (with keys, as on Azurite, or ``DICOM_AZURE_CREATE_RESOURCES=true``); with an
  identity and no such right, it must exist (infra/ deploys the Event Grid form instead).

Both return only once every event is accepted, and raise otherwise: the publisher then sends
the whole page again (``dicom_core.jobs.events``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from azure.core.credentials import AzureKeyCredential
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent
from azure.eventgrid.aio import EventGridPublisherClient

from dicom_core.domain.events import (
    CLOUD_EVENTS_VERSION,
    DATA_VERSION,
    DicomEvent,
    EventSchema,
    delivered_event,
)
from dicom_core.settings import EventSettings, Settings
from dicom_core.storage.azure.clients import StorageClients, identity_credential
from dicom_core.storage.azure.storage_queue import StorageJobQueue
from dicom_core.storage.ports import EventSink

EVENTS_PER_REQUEST = 500
"""Events of one publish request. Event Grid takes at most 1 MB a request; an event of
64-character UIDs is under 1 KB of JSON, so 500 stay well below it."""


def _moment(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def sdk_event(event: DicomEvent, schema: EventSchema, *, source: str) -> Any:
    """The SDK object that publishes ``event`` in ``schema``."""
    if schema is EventSchema.CLOUD_EVENTS:
        return CloudEvent(
            source=source,
            type=event.type,
            specversion=CLOUD_EVENTS_VERSION,
            id=event.id,
            time=_moment(event.time),
            subject=event.subject,
            data=event.data,
        )
    return EventGridEvent(
        subject=event.subject,
        event_type=event.type,
        data=event.data,
        data_version=DATA_VERSION,
        id=event.id,
        event_time=_moment(event.time),
    )


class EventGridSink:
    """Events to an Event Grid topic (``DICOM_EVENTS=eventgrid``)."""

    def __init__(self, settings: EventSettings) -> None:
        assert settings.topic_endpoint, "EventSettings checks the endpoint"
        self._endpoint = settings.topic_endpoint
        self._settings = settings
        self._schema = EventSchema(settings.schema)
        self._client: EventGridPublisherClient | None = None
        self._credential: Any = None
        self._lock = asyncio.Lock()

    async def _publisher(self) -> EventGridPublisherClient:
        """The SDK client, made in the running loop (async clients bind to their loop)."""
        async with self._lock:
            if self._client is None:
                key = self._settings.topic_key
                self._credential = (
                    AzureKeyCredential(key)
                    if key
                    else identity_credential(
                        self._settings.topic_credential, self._settings.topic_client_id
                    )
                )
                self._client = EventGridPublisherClient(self._endpoint, self._credential)
            return self._client

    async def send(self, events: Sequence[DicomEvent]) -> None:
        client = await self._publisher()
        objects = [sdk_event(e, self._schema, source=self._settings.source) for e in events]
        for start in range(0, len(objects), EVENTS_PER_REQUEST):
            await client.send(objects[start : start + EVENTS_PER_REQUEST])

    async def close(self) -> None:
        async with self._lock:
            if self._client is not None:
                await self._client.close()
            if self._credential is not None and hasattr(self._credential, "close"):
                await self._credential.close()
            self._client = self._credential = None


class QueueEventSink:
    """Events to a Storage queue (``DICOM_EVENTS=queue``), one message each."""

    def __init__(self, settings: EventSettings, *, create_resources: bool | None = None) -> None:
        connection = settings.queue_connection
        clients = StorageClients(connection)
        create = clients.uses_keys() if create_resources is None else create_resources
        self._queue = StorageJobQueue(clients, connection, create_resources=create)
        self._name = settings.queue
        self._schema = EventSchema(settings.schema)
        self._source = settings.source

    async def send(self, events: Sequence[DicomEvent]) -> None:
        for event in events:
            await self._queue.send(
                self._name, delivered_event(event, self._schema, source=self._source)
            )

    async def close(self) -> None:
        await self._queue.close()


def build_event_sink(settings: Settings) -> EventSink:
    """The sink ``DICOM_EVENTS`` names (``bootstrap`` calls this only when events are on)."""
    events = settings.events
    if events.destination == "eventgrid":
        return EventGridSink(events)
    return QueueEventSink(events, create_resources=settings.azure.create_resources)
