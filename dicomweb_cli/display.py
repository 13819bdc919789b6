"""What a person sees: the progress bars of upload and download (items, bytes, rate, ETA)
and their summaries, the search's table and the change feed's rows.

Bars and summaries go to stderr, so that stdout stays free for ``--json`` and for pipes;
``--json`` turns the bar off altogether. Tables and feed entries are output: stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from dicomweb_cli.search import COLUMNS
from dicomweb_cli.upload import Summary

if TYPE_CHECKING:
    from dicomweb_cli.download import DownloadSummary

MAX_LISTED = 20


class TransferProgress:
    """One bar: items done of all (its label), bytes moved, rate and time left.

    Upload knows both totals before it starts; download learns the instance count from a
    QIDO answer and the byte count from the retrieve's Content-Length (:meth:`set_totals`).
    An unknown total leaves the bar without an end, as rich shows it.
    """

    def __init__(self, noun: str, items: int | None, size: int | None, *, quiet: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=quiet,
        )
        self._task: TaskID = self._progress.add_task(noun, total=size)
        self._noun = noun
        self._items = items
        self._done = 0
        self._update_description()

    def _update_description(self) -> None:
        of = f"/{self._items}" if self._items is not None else ""
        self._progress.update(self._task, description=f"{self._done}{of} {self._noun}")

    def set_totals(self, *, items: int | None = None, size: int | None = None) -> None:
        if items is not None:
            self._items = items
        if size is not None:
            self._progress.update(self._task, total=size)
        self._update_description()

    def advance(self, items: int, size: int) -> None:
        self._done += items
        self._progress.update(self._task, advance=size)
        if items:
            self._update_description()

    def __enter__(self) -> TransferProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._progress.stop()


def print_summary(summary: Summary) -> None:
    data = summary.to_json()
    console = Console(stderr=True)
    console.print(
        f"{data['found']} DICOM files found, {data['skipped_from_journal']} done before "
        f"(journal); stored {data['stored']}, already present {data['already_present']}, "
        f"warnings {len(data['warnings'])}, failed {data['failed']} "
        f"in {data['seconds']:.1f} s",
        highlight=False,
        soft_wrap=True,
    )
    for title, items in (("warning", data["warnings"]), ("failed", data["failures"])):
        for item in items[:MAX_LISTED]:
            reason = f" reason {item['reason']}" if item["reason"] is not None else ""
            comments = "; ".join(item["comments"])
            line = f"  {title}: {item['path']}{reason} {comments}".rstrip()
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        if len(items) > MAX_LISTED:
            console.print(f"  ... and {len(items) - MAX_LISTED} more ({title})")
    if summary.interrupted:
        console.print("interrupted: run the same command again to resume")


def print_download_summary(summary: DownloadSummary) -> None:
    data = summary.to_json()
    of = f" of {data['expected']}" if data["expected"] is not None else ""
    console = Console(stderr=True)
    console.print(
        f"downloaded {data['downloaded']}{of} instances "
        f"({data['bytes_received'] / 1e6:.1f} MB) into {data['out']} in {data['seconds']:.1f} s",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if summary.error:
        console.print(f"failed: {summary.error}", markup=False, highlight=False, soft_wrap=True)
    if summary.interrupted:
        console.print("interrupted: the instances written so far are complete files")


def print_table(level: str, cells: list[list[str]]) -> None:
    """A table on a terminal; tab-separated lines, headings first, into a pipe or file (so
    that cut, sort and awk read it, and UIDs are never wrapped)."""
    headings = [heading for heading, _ in COLUMNS[level]]
    console = Console()
    if not console.is_terminal:
        for row in [headings, *cells]:
            print("\t".join(value.replace("\t", " ") for value in row))
        return
    table = Table(title=f"{len(cells)} {level}")
    for heading in headings:
        # UIDs are copied whole: they keep to one line, and the other columns make room.
        table.add_column(heading, no_wrap=heading.endswith("UID"))
    for row in cells:
        # Text, not str: a value such as "[x]" is data, not rich markup.
        table.add_row(*(Text(value) for value in row))
    console.print(table)


#: The change feed table's columns: (entry key, least width); the last one is not padded.
FEED_COLUMNS = [
    ("Sequence", 9),
    ("Timestamp", 27),
    ("Action", 6),
    ("State", 8),
    ("StudyInstanceUid", 16),
    ("SeriesInstanceUid", 17),
    ("SopInstanceUid", 0),
]


class FeedPrinter:
    """Change feed entries on stdout as they come: one JSON object per line into a pipe or
    with ``--json`` (for jq and programs), else a table whose heading is printed once and
    whose rows follow page after page. UIDs are never cut: their columns widen to the
    longest seen, and a narrow terminal wraps the line. Each page is flushed at once, so a
    follower's reader sees entries as they happen."""

    def __init__(self, *, json_lines: bool, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self.json_lines = json_lines or not self._stream.isatty()
        self._headed = False
        self._widths = dict(FEED_COLUMNS)

    def __call__(self, entries: Sequence[Mapping[str, Any]]) -> None:
        if self.json_lines:
            lines = [json.dumps(entry, separators=(",", ":")) for entry in entries]
        else:
            for entry in entries:
                for key, _ in FEED_COLUMNS[:-1]:
                    self._widths[key] = max(self._widths[key], len(str(entry.get(key, ""))))
            lines = [] if self._headed else [self._row({key: key for key, _ in FEED_COLUMNS})]
            self._headed = True
            lines.extend(self._row(entry) for entry in entries)
        self._stream.write("".join(line + "\n" for line in lines))
        self._stream.flush()

    def _row(self, entry: Mapping[str, Any]) -> str:
        cells = []
        for key, _ in FEED_COLUMNS:
            value, width = str(entry.get(key, "")), self._widths[key]
            cells.append(value.rjust(width) if key == "Sequence" else value.ljust(width))
        return "  ".join(cells).rstrip()
