"""The ``EventSink`` adapters against real components: the Storage queue sink on Azurite, the
Event Grid sink through the real ``azure-eventgrid`` SDK over real HTTP to a stand-in topic
endpoint (there is no Event Grid emulator). Both must deliver Azure's event JSON, field for
field, in either schema, and raise when the destination refuses."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent

from dicom_core.domain.change_feed import ChangeAction, ChangeFeedEntry
from dicom_core.domain.events import DicomEvent, EventSchema, delivered_event, dicom_event
from dicom_core.domain.model import InstanceKey
from dicom_core.settings import Settings
from dicom_core.storage.azure.event_sinks import EventGridSink, QueueEventSink, build_event_sink
from tests.support.events import EventQueueConsumer, topic_stand_in

if TYPE_CHECKING:
    from tools.emulators.launcher import Emulators

SOURCE = "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Web/sites/func-dicom"
HOST = "func-dicom.azurewebsites.net"


def events(count: int = 3) -> list[DicomEvent]:
    actions = [ChangeAction.CREATE, ChangeAction.UPDATE, ChangeAction.DELETE]
    return [
        dicom_event(
            ChangeFeedEntry(
                sequence=n + 1,
                timestamp=f"2026-05-06T07:08:09.{n:06d}Z",
                action=actions[n % 3],
                key=InstanceKey("1.2.840.1", "1.2.840.1.2", f"1.2.840.1.2.{n}", partition=1),
                watermark=n + 10,
                current_watermark=None,
            ),
            service_host=HOST,
        )
        for n in range(count)
    ]


def settings(**values: str) -> Settings:
    return Settings.from_mapping({"DICOM_EVENTS_SOURCE": SOURCE, **values})


@pytest.mark.parametrize("schema", list(EventSchema))
async def test_the_queue_sink_sends_each_event_as_a_message_in_order(
    emulators: Emulators, schema: EventSchema
) -> None:
    connection = emulators.storage_connection()
    queue = f"events-{uuid.uuid4().hex[:12]}"
    built = settings(
        DICOM_EVENTS="queue",
        DICOM_EVENTS_SCHEMA=schema.value,
        DICOM_EVENTS_QUEUE=queue,
        DICOM_EVENTS_QUEUE_CONNECTION="EVENTS_STORAGE",
        EVENTS_STORAGE=connection,
    )
    sink = build_event_sink(built)
    assert isinstance(sink, QueueEventSink)
    sent = events()
    try:
        await sink.send(sent)
    finally:
        await sink.close()
    received = EventQueueConsumer(connection, queue).drain()
    assert received == [delivered_event(e, schema, source=SOURCE) for e in sent]
    # The SDK's own consumer side reads them as events of that schema.
    if schema is EventSchema.EVENT_GRID:
        parsed: Any = EventGridEvent.from_dict(received[0])
        assert parsed.event_type == "Microsoft.HealthcareApis.DicomImageCreated"
        assert parsed.data["sequenceNumber"] == 1
    else:
        parsed = CloudEvent.from_dict(received[0])
        assert parsed.type == "Microsoft.HealthcareApis.DicomImageCreated"
        assert parsed.source == SOURCE and parsed.data["sequenceNumber"] == 1


@pytest.mark.parametrize("schema", list(EventSchema))
async def test_the_event_grid_sink_posts_azures_events_with_the_sdk(schema: EventSchema) -> None:
    sent = events()
    with topic_stand_in() as topic:
        sink = build_event_sink(
            settings(
                DICOM_EVENTS="eventgrid",
                DICOM_EVENTS_SCHEMA=schema.value,
                DICOM_EVENTS_TOPIC__topicEndpointUri=topic.url,
                DICOM_EVENTS_TOPIC_KEY="a-test-key",
            )
        )
        assert isinstance(sink, EventGridSink)
        try:
            await sink.send(sent)
        finally:
            await sink.close()
    [post] = topic.posts
    assert post.path == "/api/events?api-version=2018-01-01"
    assert post.headers["aeg-sas-key"] == "a-test-key"
    delivered = [delivered_event(e, schema, source=SOURCE) for e in sent]
    if schema is EventSchema.EVENT_GRID:
        assert post.headers["content-type"] == "application/json; charset=utf-8"
        # Event Grid stamps these two on what it delivers; a publisher does not send them.
        for event in delivered:
            del event["topic"], event["metadataVersion"]
    else:
        assert post.headers["content-type"] == "application/cloudevents-batch+json; charset=utf-8"
    assert [same_instant(e) for e in post.body] == [same_instant(e) for e in delivered]


def same_instant(event: dict[str, Any]) -> dict[str, Any]:
    """The event with its time as a datetime: the SDK writes the fraction of a second without
    trailing zeros (``.120Z`` for ``.120000Z``), the same instant."""
    field = "eventTime" if "eventTime" in event else "time"
    return {**event, field: datetime.fromisoformat(event[field].replace("Z", "+00:00"))}


async def test_the_event_grid_sink_raises_when_the_topic_refuses() -> None:
    with topic_stand_in() as topic:
        topic.status = 400
        sink = EventGridSink(
            settings(
                DICOM_EVENTS="eventgrid",
                DICOM_EVENTS_TOPIC__topicEndpointUri=topic.url,
                DICOM_EVENTS_TOPIC_KEY="a-test-key",
            ).events
        )
        try:
            with pytest.raises(HttpResponseError):
                await sink.send(events(1))
        finally:
            await sink.close()
