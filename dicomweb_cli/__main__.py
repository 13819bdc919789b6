"""The ``dicomweb`` command: ``upload``, ``search``, ``download`` and ``changefeed``
(``python -m dicomweb_cli`` too).

Exit codes, the same for every command: 0 done; 1 failed (an HTTP error, a lost server, a
file the server refused, an instance not found); 2 a usage error found before any request
(a bad UID or option); 130 interrupted by Ctrl-C, except ``changefeed --follow``, for which
Ctrl-C (or SIGTERM) is the normal end: 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import httpx

from dicomweb_cli import changefeed
from dicomweb_cli.auth import (
    SCOPE_VARIABLE,
    TOKEN_VARIABLE,
    AuthError,
    Bearer,
    BearerAuth,
    TokenCredential,
    bearer_for,
    hint_for,
)
from dicomweb_cli.display import (
    FeedPrinter,
    TransferProgress,
    print_download_summary,
    print_summary,
    print_table,
)
from dicomweb_cli.files import find_dicom_files
from dicomweb_cli.journal import DEFAULT_NAME, Journal
from dicomweb_cli.search import LEVELS, UsageError, query_params, rows, search, search_path
from dicomweb_cli.service import dicom_root, partition_problem
from dicomweb_cli.upload import RetryPolicy, Summary, Uploader, batch_bytes_for, batches

if TYPE_CHECKING:
    # Imported when used, by run_download: aiohttp takes a tenth of a second of CPU to
    # import, which every upload would pay on a machine whose cores the server needs.
    from dicomweb_cli.download import DownloadSummary

DEFAULT_URL = "http://127.0.0.1:7071"
URL_VARIABLE = "DICOMWEB_URL"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="dicomweb", description="A DICOMweb client.")
    commands = top.add_subparsers(dest="command", required=True)
    upload = commands.add_parser(
        "upload",
        help="store DICOM files and folders (STOW-RS)",
        description=(
            "Store every DICOM file (found by content, not extension) under the PATHs, with "
            "concurrent multipart STOW requests; a second run resumes from the journal."
        ),
    )
    _connection_options(upload)
    upload.add_argument(
        "paths", metavar="PATH", nargs="+", type=Path, help="files and folders (recursive)"
    )
    upload.add_argument(
        "--concurrency", metavar="N", type=int, default=4, help="requests in flight (4)"
    )
    upload.add_argument(
        "--batch-mb",
        metavar="M",
        type=float,
        default=16.0,
        help="megabytes of files per request (16); a larger file goes alone",
    )
    upload.add_argument(
        "--journal",
        type=Path,
        default=Path(DEFAULT_NAME),
        help=f"where stored files are recorded, to resume (./{DEFAULT_NAME})",
    )
    upload.add_argument(
        "--retries",
        metavar="N",
        type=int,
        default=6,
        help="attempts per request, on 429, 503 and lost connections (6)",
    )
    upload.add_argument(
        "--limit", metavar="N", type=int, default=None, help="send at most N files, then stop"
    )
    upload.add_argument(
        "--json", action="store_true", help="no progress; print one JSON summary on stdout"
    )
    find = commands.add_parser(
        "search",
        help="search studies, series or instances (QIDO-RS)",
        description="Search with QIDO-RS and print a table, or the DICOM JSON with --json.",
    )
    _connection_options(find)
    find.add_argument("level", choices=LEVELS, help="what to list")
    find.add_argument("--study", metavar="UID", help="within this study")
    find.add_argument("--series", metavar="UID", help="within this series (with --study)")
    find.add_argument(
        "-q",
        "--query",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="a match, by keyword or tag (PatientName=doe, 00080060=CT, StudyDate=20240101-)",
    )
    find.add_argument("--fuzzy", action="store_true", help="fuzzy matching of person names")
    find.add_argument(
        "--include", metavar="FIELD", action="append", default=[], help="includefield (or all)"
    )
    find.add_argument("--limit", metavar="N", type=int, help="at most N matches")
    find.add_argument("--offset", metavar="N", type=int, help="skip the first N matches")
    find.add_argument("--json", action="store_true", help="print the DICOM JSON answer")
    fetch = commands.add_parser(
        "download",
        help="retrieve a study, series or instance into files (WADO-RS)",
        description=(
            "Retrieve every instance as stored (transfer-syntax=*) into "
            "OUT/{study}/{series}/{sop}.dcm, streamed part by part."
        ),
    )
    _connection_options(fetch)
    fetch.add_argument("study", metavar="STUDY", help="the Study Instance UID")
    fetch.add_argument("series", metavar="SERIES", nargs="?", help="a Series Instance UID")
    fetch.add_argument("instance", metavar="INSTANCE", nargs="?", help="a SOP Instance UID")
    fetch.add_argument("--out", metavar="DIR", type=Path, required=True, help="where to write")
    fetch.add_argument(
        "--json", action="store_true", help="no progress; print one JSON summary on stdout"
    )
    feed = commands.add_parser(
        "changefeed",
        help="read the change feed, each change once, in order (--follow for new ones)",
        description=(
            "Print the change feed's entries after a sequence: a table on a terminal, one "
            "JSON object per line otherwise. The last sequence read is printed on stderr."
        ),
    )
    _connection_options(feed, partition=False)
    feed.add_argument(
        "--offset",
        metavar="N",
        type=int,
        default=0,
        help="the last sequence already read: entries after it are printed (0: all)",
    )
    feed.add_argument(
        "--follow", action="store_true", help="keep polling for new entries until Ctrl-C"
    )
    feed.add_argument(
        "--interval",
        metavar="SECONDS",
        type=float,
        default=2.0,
        help="how often --follow asks for new entries (2)",
    )
    feed.add_argument(
        "--include-metadata",
        action="store_true",
        help="add each instance's current DICOM JSON (Metadata) to its entries",
    )
    feed.add_argument("--json", action="store_true", help="JSON lines, on a terminal too")
    return top


def _connection_options(command: argparse.ArgumentParser, *, partition: bool = True) -> None:
    command.add_argument(
        "--url",
        default=os.environ.get(URL_VARIABLE, DEFAULT_URL),
        help=f"the service (default ${URL_VARIABLE} or {DEFAULT_URL}); /v2/... is added",
    )
    if partition:
        command.add_argument(
            "--partition",
            metavar="NAME",
            help="a data partition of the Azure DICOM service (/v2/partitions/NAME/...)",
        )
    command.add_argument("--token", help=f"bearer token (default ${TOKEN_VARIABLE})")
    command.add_argument(
        "--azure",
        action="store_true",
        help="get a token from Entra ID (DefaultAzureCredential: az login, a managed identity)",
    )
    command.add_argument(
        "--scope",
        help=f"the token's scope with --azure (default ${SCOPE_VARIABLE} or {{url}}/.default)",
    )


def main(argv: Sequence[str] | None = None, *, credential: TokenCredential | None = None) -> int:
    """Run one command; ``credential`` stands in for DefaultAzureCredential with --azure."""
    arguments = parser().parse_args(argv)
    partition = getattr(arguments, "partition", None)
    problem = partition_problem(partition) if partition else None
    if problem:
        print(f"dicomweb {arguments.command}: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        bearer = bearer_for(
            arguments.url,
            token=arguments.token,
            azure=arguments.azure,
            scope=arguments.scope,
            credential=credential,
        )
    except Exception as error:  # azure-identity's own errors: no usable credential chain
        print(f"dicomweb {arguments.command}: Entra ID: {error}", file=sys.stderr)
        return EXIT_FAILED
    commands = {
        "upload": run_upload,
        "search": run_search,
        "download": run_download,
        "changefeed": run_changefeed,
    }
    try:
        if bearer is not None:
            # Fail before any work if no token can be had (not signed in, wrong scope).
            bearer.token()
        return commands[arguments.command](arguments, bearer)
    except AuthError as error:
        print(f"dicomweb {arguments.command}: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if bearer is not None:
            bearer.close()


def _http_failure(command: str, status: int, text: str, bearer: Bearer | None) -> None:
    detail = " ".join(text[:500].split())
    print(f"dicomweb {command}: HTTP {status} {detail}".rstrip(), file=sys.stderr)
    hint = hint_for(status, bearer)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def run_search(arguments: argparse.Namespace, bearer: Bearer | None) -> int:
    try:
        path = search_path(arguments.level, arguments.study, arguments.series)
        params = query_params(
            arguments.query,
            fuzzy=arguments.fuzzy,
            include=arguments.include,
            limit=arguments.limit,
            offset=arguments.offset,
        )
    except UsageError as error:
        print(f"dicomweb search: {error}", file=sys.stderr)
        return EXIT_USAGE
    root = dicom_root(arguments.url, arguments.partition)
    auth = BearerAuth(bearer) if bearer is not None else None
    with httpx.Client(base_url=root, auth=auth, timeout=60.0) as client:
        try:
            matches, response = search(client, path, params)
        except httpx.HTTPStatusError as error:
            _http_failure("search", error.response.status_code, error.response.text, bearer)
            return EXIT_FAILED
        except httpx.TransportError as error:
            print(f"dicomweb search: {type(error).__name__}: {error}", file=sys.stderr)
            return EXIT_FAILED
    for warning in response.headers.get_list("Warning"):
        print(f"warning: {warning}", file=sys.stderr)
    if arguments.json:
        print(json.dumps(matches, indent=2))
    else:
        print_table(arguments.level, rows(arguments.level, matches))
    return 0


def run_upload(arguments: argparse.Namespace, bearer: Bearer | None) -> int:
    if arguments.concurrency < 1 or arguments.batch_mb <= 0 or arguments.retries < 1:
        print("dicomweb: --concurrency, --batch-mb and --retries must be positive", file=sys.stderr)
        return EXIT_USAGE
    summary = Summary(arguments.url)
    try:
        asyncio.run(upload(arguments, bearer, summary))
    except KeyboardInterrupt:
        # What was answered is in the journal already; the requests in flight are lost.
        summary.interrupted = True
    if arguments.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print_summary(summary)
        for status in (401, 403):
            refused = any(
                comment.startswith(f"HTTP {status}")
                for result in summary.failed
                for comment in result.outcome.comments
            )
            if refused:
                print(f"hint: {hint_for(status, bearer)}", file=sys.stderr)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return 0 if summary.ok else EXIT_FAILED


async def upload(arguments: argparse.Namespace, bearer: Bearer | None, summary: Summary) -> None:
    """Upload into ``summary``, which holds what was done even if the run is interrupted."""
    journal = Journal(arguments.journal)
    found = list(find_dicom_files(arguments.paths))
    todo = [file for file in found if file not in journal]
    summary.found = len(found)
    summary.resumed = len(found) - len(todo)
    if arguments.limit is not None:
        todo = todo[: max(0, arguments.limit)]
    size = batch_bytes_for(
        sum(f.size for f in todo), arguments.concurrency, int(arguments.batch_mb * 1024 * 1024)
    )
    groups = batches(todo, size)
    progress = TransferProgress(
        "files", len(todo), sum(f.size for f in todo), quiet=arguments.json or not todo
    )
    timeout = httpx.Timeout(300.0, connect=10.0)
    limits = httpx.Limits(max_connections=arguments.concurrency)
    auth = BearerAuth(bearer) if bearer is not None else None
    async with httpx.AsyncClient(auth=auth, timeout=timeout, limits=limits) as client:
        uploader = Uploader(
            client,
            dicom_root(arguments.url, arguments.partition),
            journal,
            concurrency=arguments.concurrency,
            retry=RetryPolicy(attempts=arguments.retries),
            progress=progress.advance,
            summary=summary,
        )
        with progress:
            try:
                await uploader.run(groups)
            finally:
                journal.close()


def run_download(arguments: argparse.Namespace, bearer: Bearer | None) -> int:
    from dicomweb_cli.download import DownloadSummary, Scope

    scope = Scope(arguments.study, arguments.series, arguments.instance)
    problem = scope.problem()
    if problem:
        print(f"dicomweb download: {problem}", file=sys.stderr)
        return EXIT_USAGE
    summary = DownloadSummary(arguments.url, scope, arguments.out.resolve())
    try:
        asyncio.run(download(arguments, bearer, summary))
    except KeyboardInterrupt:
        summary.interrupted = True
    if arguments.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print_download_summary(summary)
        hint = hint_for(summary.status, bearer) if summary.status else ""
        if hint:
            print(f"hint: {hint}", file=sys.stderr)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return 0 if summary.ok else EXIT_FAILED


async def download(
    arguments: argparse.Namespace, bearer: Bearer | None, summary: DownloadSummary
) -> None:
    from dicomweb_cli.download import Downloader, client_session

    progress = TransferProgress("instances", None, None, quiet=arguments.json)
    async with client_session() as session:
        downloader = Downloader(
            session,
            dicom_root(arguments.url, arguments.partition),
            summary.scope,
            summary.out,
            summary,
            headers=bearer.headers if bearer is not None else dict,
            progress=progress.advance,
            totals=lambda items, size: progress.set_totals(items=items, size=size),
        )
        with progress:
            await downloader.run()


def run_changefeed(arguments: argparse.Namespace, bearer: Bearer | None) -> int:
    if arguments.offset < 0 or arguments.interval <= 0:
        print("dicomweb changefeed: --offset must be >= 0, --interval > 0", file=sys.stderr)
        return EXIT_USAGE
    printer = FeedPrinter(json_lines=arguments.json)
    auth = BearerAuth(bearer) if bearer is not None else None
    last = arguments.offset

    def emit(entries: Sequence[dict[str, Any]]) -> None:
        nonlocal last
        # A stop that comes while a page is printed waits for the page and its sequence, so
        # the "last sequence" reported is always that of the last entry printed.
        with _STOP.deferred():
            printer(entries)
            last = entries[-1]["Sequence"]

    def warn(message: str) -> None:
        print(f"dicomweb changefeed: {message}", file=sys.stderr, flush=True)

    if arguments.follow:
        # A service manager stops a follower with SIGTERM: that is its Ctrl-C.
        signal.signal(signal.SIGTERM, _STOP.interrupt)
        signal.signal(signal.SIGINT, _STOP.interrupt)
    with httpx.Client(base_url=arguments.url, auth=auth, timeout=60.0) as client:
        try:
            changefeed.read(
                client,
                arguments.offset,
                emit,
                include_metadata=arguments.include_metadata,
                follow=arguments.follow,
                interval=arguments.interval,
                warn=warn,
            )
        except KeyboardInterrupt:
            print(f"last sequence: {last}", file=sys.stderr)
            return 0 if arguments.follow else EXIT_INTERRUPTED
        except BrokenPipeError:
            # The reader went away (| head): what it took was printed; nothing to report.
            _silence_stdout()
            return 0
        except changefeed.FeedError as error:
            if error.status is not None:
                _http_failure("changefeed", error.status, error.detail, bearer)
            else:
                print(f"dicomweb changefeed: {error}", file=sys.stderr)
            print(f"last sequence: {last}", file=sys.stderr)
            return EXIT_FAILED
    print(f"last sequence: {last} (--offset {last} goes on from here)", file=sys.stderr)
    return 0


class _Stopper:
    """SIGTERM and Ctrl-C for a follower: KeyboardInterrupt at once, except while a page is
    being printed (``deferred``), when it comes right after the page."""

    def __init__(self) -> None:
        self._inside = False
        self._pending = False

    def interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self._inside:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._inside = True
        try:
            yield
        finally:
            self._inside = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt


_STOP = _Stopper()


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
