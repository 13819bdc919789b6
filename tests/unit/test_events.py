"""DICOM events: their shape (Azure's, field for field) and the publisher that drives them
from the change feed, at least once, checked with the in-memory fakes and injected faults."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from dicom_core.domain.change_feed import ChangeAction, ChangeFeedEntry
from dicom_core.domain.events import (
    PARTITION_NAME,
    EventSchema,
    delivered_event,
    dicom_event,
)
from dicom_core.domain.model import InstanceKey
from dicom_core.jobs.events import EVENTS_CURSOR, EventPublisher, events_schedule
from dicom_core.jobs.handlers import publish_events
from dicom_core.settings import (
    EVENTS_SCHEDULE_OFF,
    EVENTS_SCHEDULE_ON,
    EventSettings,
    SettingsError,
)
from tests.fakes.change_feed import FakeChangeFeedStore
from tests.fakes.cursors import FakeCursorStore
from tests.fakes.events import FakeEventSink, SinkFailure

HOST = "dicom.example.org"
KEY = InstanceKey("1.2.3", "1.2.3.4", "1.2.3.4.5", partition=1)


def entry(action: ChangeAction = ChangeAction.CREATE, sequence: int = 7) -> ChangeFeedEntry:
    return ChangeFeedEntry(
        sequence=sequence,
        timestamp="2026-03-04T05:06:07.123456Z",
        action=action,
        key=KEY,
        watermark=11,
        current_watermark=11,
    )


# -- the events ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "event_type"),
    [
        (ChangeAction.CREATE, "Microsoft.HealthcareApis.DicomImageCreated"),
        (ChangeAction.UPDATE, "Microsoft.HealthcareApis.DicomImageUpdated"),
        (ChangeAction.DELETE, "Microsoft.HealthcareApis.DicomImageDeleted"),
    ],
)
def test_each_feed_action_maps_to_azures_event_type(action: ChangeAction, event_type: str) -> None:
    assert dicom_event(entry(action), service_host=HOST).type == event_type


def test_an_event_grid_event_has_azures_fields_and_values() -> None:
    event = dicom_event(entry(), service_host=HOST)
    body = delivered_event(event, EventSchema.EVENT_GRID, source="/subscriptions/s/x")
    assert body == {
        "id": event.id,
        "topic": "/subscriptions/s/x",
        "subject": f"{HOST}/v1/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5",
        "data": {
            "partitionName": "Microsoft.Default",
            "imageStudyInstanceUid": "1.2.3",
            "imageSeriesInstanceUid": "1.2.3.4",
            "imageSopInstanceUid": "1.2.3.4.5",
            "serviceHostName": HOST,
            "sequenceNumber": 7,
        },
        "eventType": "Microsoft.HealthcareApis.DicomImageCreated",
        "dataVersion": "1",
        "metadataVersion": "1",
        "eventTime": "2026-03-04T05:06:07.123456Z",
    }
    assert uuid.UUID(event.id).version == 5


def test_a_cloud_event_has_azures_fields_and_values() -> None:
    event = dicom_event(entry(ChangeAction.DELETE), service_host=HOST)
    body = delivered_event(event, EventSchema.CLOUD_EVENTS, source="/subscriptions/s/x")
    assert body == {
        "source": "/subscriptions/s/x",
        "subject": f"{HOST}/v1/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5",
        "type": "Microsoft.HealthcareApis.DicomImageDeleted",
        "time": "2026-03-04T05:06:07.123456Z",
        "id": event.id,
        "data": event.data,
        "specversion": "1.0",
    }


def test_an_events_id_is_the_same_for_a_repeat_and_differs_between_changes() -> None:
    first = dicom_event(entry(), service_host=HOST)
    assert dicom_event(entry(), service_host="elsewhere").id == first.id
    others = [
        entry(sequence=8),
        entry(ChangeAction.DELETE),
        dataclasses.replace(entry(), timestamp="2026-03-04T05:06:07.123457Z"),
        dataclasses.replace(entry(), key=InstanceKey("1.2.3", "1.2.3.4", "1.2.3.4.6", partition=1)),
    ]
    ids = {dicom_event(other, service_host=HOST).id for other in others}
    assert first.id not in ids and len(ids) == len(others)


def test_the_partition_is_the_default_one_in_the_data() -> None:
    assert PARTITION_NAME == "Microsoft.Default"
    assert dicom_event(entry(), service_host=HOST).data["partitionName"] == PARTITION_NAME


# -- the publisher ---------------------------------------------------------------------------


def feed_of(count: int) -> FakeChangeFeedStore:
    feed = FakeChangeFeedStore()
    for n in range(count):
        key = InstanceKey("1.2.3", "1.2.3.4", f"1.2.3.4.{n % 3}", partition=1)
        action = [ChangeAction.CREATE, ChangeAction.UPDATE, ChangeAction.DELETE][n % 3]
        feed.record(action, key, n + 1)
    return feed


def publisher(
    feed: FakeChangeFeedStore,
    cursors: FakeCursorStore,
    sink: FakeEventSink,
    *,
    batch_size: int = 2,
    run_seconds: float = 60,
) -> EventPublisher:
    return EventPublisher(
        feed, cursors, sink, service_host=HOST, batch_size=batch_size, run_seconds=run_seconds
    )


def sequences(sink: FakeEventSink) -> list[int]:
    return [event.sequence for event in sink.delivered]


async def test_a_run_publishes_every_change_in_order_page_by_page() -> None:
    feed, cursors, sink = feed_of(5), FakeCursorStore(), FakeEventSink()
    assert await publisher(feed, cursors, sink).publish() == 5
    assert sequences(sink) == [1, 2, 3, 4, 5]
    assert sink.sends == 3  # pages of 2, 2 and 1
    assert [e.type.rsplit(".", 1)[1] for e in sink.delivered[:3]] == [
        "DicomImageCreated",
        "DicomImageUpdated",
        "DicomImageDeleted",
    ]
    assert cursors.positions[EVENTS_CURSOR] == 5


async def test_with_partitions_on_each_event_names_its_partition_and_its_url() -> None:
    feed, cursors, sink = FakeChangeFeedStore(), FakeCursorStore(), FakeEventSink()
    feed.record(ChangeAction.CREATE, InstanceKey("1.2", "1.2.3", "1.2.3.4", partition=1), 1)
    feed.record(ChangeAction.CREATE, InstanceKey("1.2", "1.2.3", "1.2.3.4", partition=7), 2)

    async def names(keys: set[int]) -> dict[int, str]:
        return {key: {1: "Microsoft.Default", 7: "site-a"}[key] for key in keys}

    job = EventPublisher(feed, cursors, sink, service_host=HOST, names=names)
    assert await job.publish() == 2
    assert [(e.partition, e.subject) for e in sink.delivered] == [
        (
            "Microsoft.Default",
            f"{HOST}/v1/partitions/Microsoft.Default/studies/1.2/series/1.2.3/instances/1.2.3.4",
        ),
        ("site-a", f"{HOST}/v1/partitions/site-a/studies/1.2/series/1.2.3/instances/1.2.3.4"),
    ]


async def test_a_run_publishes_only_what_came_after_the_last_one() -> None:
    feed, cursors, sink = feed_of(3), FakeCursorStore(), FakeEventSink()
    job = publisher(feed, cursors, sink)
    await job.publish()
    assert await job.publish() == 0
    feed.record(ChangeAction.CREATE, KEY, 99)
    assert await job.publish() == 1
    assert sequences(sink) == [1, 2, 3, 4]


async def test_a_failed_send_repeats_its_page_and_loses_nothing() -> None:
    # given: the destination refuses the 4th event (the second of the second page)
    feed, cursors, sink = feed_of(5), FakeCursorStore(), FakeEventSink(fail_after=3)
    job = publisher(feed, cursors, sink)
    # when
    with pytest.raises(SinkFailure):
        await job.publish()
    # then: the cursor stands after the first page; the next run sends the second page again
    assert cursors.positions[EVENTS_CURSOR] == 2
    assert await job.publish() == 3
    assert sequences(sink) == [1, 2, 3, 3, 4, 5]
    assert sorted(set(sequences(sink))) == [e.sequence for e in feed.entries]


class CrashingCursors(FakeCursorStore):
    """A process that dies after publishing a page and before moving the cursor."""

    def __init__(self, crash_at_move: int) -> None:
        super().__init__()
        self.moves = 0
        self.crash_at_move = crash_at_move

    async def advance_cursor(self, name: str, expected: int, position: int) -> bool:
        self.moves += 1
        if self.moves == self.crash_at_move:
            raise SystemExit("killed between publishing and advancing")
        return await super().advance_cursor(name, expected, position)


async def test_a_crash_between_publishing_and_advancing_repeats_and_never_loses() -> None:
    feed, cursors, sink = feed_of(6), CrashingCursors(crash_at_move=2), FakeEventSink()
    with pytest.raises(SystemExit):
        await publisher(feed, cursors, sink).publish()
    assert sequences(sink) == [1, 2, 3, 4]
    # A new process, on the same stores, starts where the cursor says.
    await publisher(feed, cursors, sink).publish()
    assert sequences(sink) == [1, 2, 3, 4, 3, 4, 5, 6]
    repeated = [e for e in sink.delivered if e.sequence == 3]
    assert repeated[0] == repeated[1]  # a repeat is the same event, id included


async def test_a_publisher_that_lost_the_race_stops_without_moving_the_cursor_back() -> None:
    feed, cursors, sink = feed_of(4), FakeCursorStore(), FakeEventSink()

    class Racing(FakeCursorStore):
        """Another publisher moves the cursor to 3 while this one sends its first page."""

        async def read_cursor(self, name: str) -> int:
            position = await cursors.read_cursor(name)
            cursors.positions[name] = 3
            return position

        async def advance_cursor(self, name: str, expected: int, position: int) -> bool:
            return await cursors.advance_cursor(name, expected, position)

    assert await publisher(feed, Racing(), sink).publish() == 0
    assert cursors.positions[EVENTS_CURSOR] == 3
    assert sequences(sink) == [1, 2]  # sent, so repeated by the winner: at least once


async def test_a_run_out_of_time_leaves_the_rest_to_the_next_run() -> None:
    feed, cursors, sink = feed_of(5), FakeCursorStore(), FakeEventSink()
    job = publisher(feed, cursors, sink, run_seconds=0)
    assert await job.publish() == 2
    assert await job.publish() == 2
    assert await job.publish() == 1
    assert sequences(sink) == [1, 2, 3, 4, 5]


class Source:
    def __init__(self, events: EventPublisher | None) -> None:
        self.events = events
        self.janitor = self.reindex = self.bulk_update = None

    async def get(self) -> Source:
        return self


async def test_the_timer_handler_publishes_and_does_nothing_while_events_are_off() -> None:
    feed, cursors, sink = feed_of(2), FakeCursorStore(), FakeEventSink()
    await publish_events(Source(publisher(feed, cursors, sink)))  # type: ignore[arg-type]
    assert sequences(sink) == [1, 2]
    await publish_events(Source(None))  # type: ignore[arg-type]


# -- settings and schedule -------------------------------------------------------------------


def test_events_are_off_by_default_and_tick_once_a_day() -> None:
    settings = EventSettings.from_mapping({})
    assert not settings.enabled
    assert settings.schedule == EVENTS_SCHEDULE_OFF == "0 0 0 * * *"
    assert events_schedule({}) == EVENTS_SCHEDULE_OFF


def test_events_on_tick_every_ten_seconds_unless_the_schedule_is_set() -> None:
    on = {"DICOM_EVENTS": "queue", "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    assert events_schedule(on) == EVENTS_SCHEDULE_ON == "*/10 * * * * *"
    assert events_schedule({**on, "DICOM_EVENTS_SCHEDULE": "* * * * * *"}) == "* * * * * *"
    # A setting the app cannot read still gives the timer a schedule (each run reports it).
    assert events_schedule({"DICOM_EVENTS": "kafka"}) == EVENTS_SCHEDULE_ON


def test_event_settings_name_the_service_and_the_queue_connection() -> None:
    settings = EventSettings.from_mapping(
        {
            "DICOM_EVENTS": "queue",
            "DICOM_EVENTS_QUEUE_CONNECTION": "EVENTS",
            "EVENTS__queueServiceUri": "https://st.queue.core.windows.net",
            "EVENTS__credential": "managedidentity",
            "WEBSITE_HOSTNAME": "func-dicom.azurewebsites.net",
        }
    )
    assert settings.queue_connection.queue_service_uri == "https://st.queue.core.windows.net"
    assert settings.queue_connection.storage_credential == "managedidentity"
    assert settings.queue_connection.storage_connection is None
    assert settings.service_host == "func-dicom.azurewebsites.net"
    assert settings.source == "/dicomweb/func-dicom.azurewebsites.net"
    assert EventSettings.from_mapping({"PORT": "8080"}).service_host == "localhost:8080"


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"DICOM_EVENTS": "kafka"}, "DICOM_EVENTS"),
        ({"DICOM_EVENTS_SCHEMA": "xml"}, "DICOM_EVENTS_SCHEMA"),
        ({"DICOM_EVENTS": "eventgrid"}, "DICOM_EVENTS_TOPIC__topicEndpointUri"),
        ({"DICOM_EVENTS": "queue"}, "AzureWebJobsStorage"),
        ({"DICOM_EVENTS_BATCH_SIZE": "0"}, "DICOM_EVENTS_BATCH_SIZE"),
    ],
)
def test_event_settings_that_cannot_work_are_refused_by_name(
    values: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        EventSettings.from_mapping(values)
