"""``dicomweb changefeed`` without a server: paging by sequence, following, errors, output."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from dicomweb_cli import changefeed
from dicomweb_cli.display import FeedPrinter


def entry(sequence: int) -> dict[str, Any]:
    return {
        "Sequence": sequence,
        "StudyInstanceUid": "1.2",
        "SeriesInstanceUid": "1.2.3",
        "SopInstanceUid": f"1.2.3.{sequence}",
        "Action": "create",
        "Timestamp": "2026-01-02T03:04:05.000006Z",
        "State": "current",
    }


class Feed:
    """A change feed served as the v1 route serves it: entries after ``offset``, at most
    ``limit``; ``latest`` answers the newest. ``entries`` may grow while a reader follows."""

    def __init__(self, count: int) -> None:
        self.entries = [entry(n) for n in range(1, count + 1)]
        self.requests: list[httpx.URL] = []
        self.failures: list[int] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request.url)
        if self.failures:
            return httpx.Response(self.failures.pop(0), text="not now")
        if request.url.path == "/v1/changefeed/latest":
            if not self.entries:
                return httpx.Response(204)
            return httpx.Response(200, json=self.entries[-1])
        assert request.url.path == "/v1/changefeed"
        offset, limit = int(request.url.params["offset"]), int(request.url.params["limit"])
        assert limit == 100 and request.url.params["includeMetadata"] == "false"
        return httpx.Response(200, json=[e for e in self.entries if e["Sequence"] > offset][:limit])


def client(feed: Feed) -> httpx.Client:
    return httpx.Client(base_url="http://server", transport=httpx.MockTransport(feed))


def test_the_feed_is_read_in_pages_of_100_after_the_offset_each_entry_once() -> None:
    feed = Feed(250)
    seen: list[int] = []
    last = changefeed.read(client(feed), 20, lambda page: seen.extend(e["Sequence"] for e in page))
    assert seen == list(range(21, 251)) and last == 250
    offsets = [int(url.params["offset"]) for url in feed.requests]
    assert offsets == [20, 120, 220]  # the last page was short: the end, no extra request


def test_entries_at_or_below_the_last_sequence_are_never_given_again() -> None:
    feed = Feed(5)
    feed.entries = [entry(3), entry(2), entry(3), entry(5), entry(4)]
    seen: list[int] = []
    changefeed.read(client(feed), 0, lambda page: seen.extend(e["Sequence"] for e in page))
    assert seen == [3, 5]


@dataclass
class Clock:
    """A ``sleep`` that stores an entry on its second call and stops the follower later."""

    feed: Feed
    slept: list[float]
    stop_after: int = 4

    def __call__(self, seconds: float) -> None:
        self.slept.append(seconds)
        if len(self.slept) == 2:
            self.feed.entries.append(entry(len(self.feed.entries) + 1))
        if len(self.slept) >= self.stop_after:
            raise KeyboardInterrupt


def test_following_reads_what_is_stored_later_and_waits_out_a_busy_server() -> None:
    feed = Feed(3)
    seen: list[int] = []
    warnings: list[str] = []
    clock = Clock(feed, [], stop_after=6)

    def emit(page: Sequence[dict[str, Any]]) -> None:
        seen.extend(e["Sequence"] for e in page)
        if seen[-1] == 4:
            feed.failures = [503, 429]

    with pytest.raises(KeyboardInterrupt):
        changefeed.read(
            client(feed), 0, emit, follow=True, interval=1.0, warn=warnings.append, sleep=clock
        )
    assert seen == [1, 2, 3, 4]
    assert clock.slept[:2] == [1.0, 1.0] and clock.slept[3:5] == [2.0, 4.0]
    assert ["503" in warnings[0], "429" in warnings[1]] == [True, True]


def test_an_error_that_waiting_cannot_fix_ends_the_read() -> None:
    feed = Feed(3)
    feed.failures = [400]
    with pytest.raises(changefeed.FeedError) as raised:
        changefeed.read(client(feed), 0, lambda page: None, follow=True, sleep=lambda s: None)
    assert raised.value.status == 400 and not raised.value.transient


def test_entries_print_as_json_lines_into_a_pipe_and_as_a_table_on_a_terminal() -> None:
    piped = io.StringIO()
    FeedPrinter(json_lines=False, stream=piped)([entry(1), entry(2)])
    assert [json.loads(line)["Sequence"] for line in piped.getvalue().splitlines()] == [1, 2]

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    printer = FeedPrinter(json_lines=False, stream=screen)
    printer([entry(9)])
    printer([entry(10)])
    lines = screen.getvalue().splitlines()
    assert lines[0].split() == [
        "Sequence",
        "Timestamp",
        "Action",
        "State",
        "StudyInstanceUid",
        "SeriesInstanceUid",
        "SopInstanceUid",
    ]
    assert len(lines) == 3 and lines[2].split()[0] == "10" and lines[2].endswith("1.2.3.10")
    assert lines[1].index("create") == lines[2].index("create")  # columns line up


def test_a_stop_while_a_page_is_printed_waits_for_the_page_and_its_sequence() -> None:
    """CI caught a follower stopped with SIGTERM between printing an entry and noting its
    sequence: it reported the sequence before. The stop now comes after the page."""
    import signal

    from dicomweb_cli.__main__ import _Stopper

    stop = _Stopper()
    noted: list[int] = []
    with pytest.raises(KeyboardInterrupt), stop.deferred():
        stop.interrupt(signal.SIGTERM, None)  # arrives mid-page: held
        noted.append(390)  # the page's sequence is still noted
    assert noted == [390]
    with pytest.raises(KeyboardInterrupt):
        stop.interrupt(signal.SIGTERM, None)  # between pages: at once
