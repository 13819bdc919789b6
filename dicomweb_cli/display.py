"""What a person sees: the upload's progress bar (files, bytes, rate, ETA) and summary, and
the search's table.

The bar and the summary go to stderr, so that stdout stays free for ``--json`` and for
pipes; ``--json`` turns the bar off altogether. The table is the search's output: stdout.
"""

from __future__ import annotations

from types import TracebackType

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

MAX_LISTED = 20


class UploadProgress:
    """One bar: files done of all (its label), bytes sent, rate and time left."""

    def __init__(self, files: int, size: int, *, quiet: bool) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=quiet,
        )
        self._task: TaskID = self._progress.add_task("files", total=size)
        self._files = files
        self._done = 0
        self._update_description()

    def _update_description(self) -> None:
        self._progress.update(self._task, description=f"{self._done}/{self._files} files")

    def advance(self, files: int, size: int) -> None:
        self._done += files
        self._progress.update(self._task, advance=size)
        self._update_description()

    def __enter__(self) -> UploadProgress:
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
