"""``dicomweb changefeed``: the change feed from a sequence on, each entry once, in order.

It reads ``/v1/changefeed?offset={last sequence read}&limit=100`` page after page. That is the
feed's cursor: v1's ``offset`` is the last sequence already read, and the service promises
that an entry only becomes visible after every lower one, so a reader that goes on from the
last sequence it saw misses nothing and sees nothing twice, however long the feed. The v2
route does not page that way: its ``offset`` counts entries to skip inside a time window (at
most 10,000, each page reading all it skips), and a window that goes on from the last
timestamp read would miss an entry whose clock stepped back. Both versions return the same
entries; ``--offset N`` is therefore a sequence, the one the previous run printed last.

``--follow`` then polls ``/v1/changefeed/latest`` every ``--interval`` seconds and reads the
new pages when its sequence passes the last one read, until Ctrl-C (or SIGTERM) ends it.
While following, lost connections and 429, 502, 503 and 504 answers are waited out; any
other error ends the command.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

PAGE = 100
FEED_PATH = "/v1/changefeed"
LATEST_PATH = "/v1/changefeed/latest"
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
MAX_WAIT_SECONDS = 60.0

Entry = dict[str, Any]


class FeedError(Exception):
    """The feed cannot be read; ``status`` is the HTTP status when the server answered."""

    def __init__(self, message: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail  # the server's answer, when it gave one

    @property
    def transient(self) -> bool:
        return self.status is None or self.status in TRANSIENT_STATUSES


def _get(client: httpx.Client, path: str, params: dict[str, str]) -> httpx.Response:
    try:
        response = client.get(path, params=params, headers={"Accept": "application/json"})
    except httpx.TransportError as error:
        raise FeedError(f"{type(error).__name__}: {error}".rstrip(": ")) from error
    if response.status_code not in (200, 204):
        detail = " ".join(response.text[:500].split())
        raise FeedError(
            f"HTTP {response.status_code} {detail}".rstrip(), response.status_code, detail
        )
    return response


def _sequence(entry: Any) -> int:
    if not isinstance(entry, dict) or not isinstance(entry.get("Sequence"), int):
        raise FeedError(f"an entry without a Sequence: {str(entry)[:200]}")
    return int(entry["Sequence"])


def pages(client: httpx.Client, after: int, *, include_metadata: bool) -> Iterator[list[Entry]]:
    """Pages of the entries after sequence ``after``, in order, until the feed's end.

    An entry at or below the last sequence seen is dropped: whatever the server does, no
    entry is given twice and the order never goes back.
    """
    metadata = "true" if include_metadata else "false"
    while True:
        params = {"offset": str(after), "limit": str(PAGE), "includeMetadata": metadata}
        answer = _get(client, FEED_PATH, params)
        found = answer.json() if answer.status_code == 200 else []
        if not isinstance(found, list):
            raise FeedError("the change feed answer is not a list")
        page = []
        for entry in found:
            sequence = _sequence(entry)
            if sequence > after:
                page.append(entry)
                after = sequence
        if page:
            yield page
        if len(found) < PAGE or not page:
            return


def latest_sequence(client: httpx.Client) -> int | None:
    """The newest entry's sequence; None while the feed is empty (204)."""
    answer = _get(client, LATEST_PATH, {"includeMetadata": "false"})
    return _sequence(answer.json()) if answer.status_code == 200 else None


def read(
    client: httpx.Client,
    after: int,
    emit: Callable[[Sequence[Entry]], None],
    *,
    include_metadata: bool = False,
    follow: bool = False,
    interval: float = 2.0,
    warn: Callable[[str], None] = lambda message: None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Give every entry after ``after`` to ``emit``, a page at a time, and return the last
    sequence read; with ``follow``, go on forever (the caller stops it with an exception)."""
    last = after
    failures = 0
    while True:
        try:
            if not follow or failures or (latest_sequence(client) or 0) > last:
                for page in pages(client, last, include_metadata=include_metadata):
                    emit(page)
                    last = _sequence(page[-1])
            failures = 0
        except FeedError as error:
            if not follow or not error.transient:
                raise
            failures += 1
            wait = min(interval * 2.0**failures, MAX_WAIT_SECONDS)
            warn(f"{error}; trying again in {wait:.0f} s")
            sleep(wait)
            continue
        if not follow:
            return last
        sleep(interval)
