"""The ``dicomweb`` command: ``dicomweb upload PATH...`` and ``dicomweb search LEVEL``
(``python -m dicomweb_cli`` too)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from dicomweb_cli.auth import TOKEN_VARIABLE, auth_headers
from dicomweb_cli.display import UploadProgress, print_summary, print_table
from dicomweb_cli.files import find_dicom_files
from dicomweb_cli.journal import DEFAULT_NAME, Journal
from dicomweb_cli.search import LEVELS, UsageError, query_params, rows, search, search_path
from dicomweb_cli.upload import RetryPolicy, Summary, Uploader, batches

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
    return top


def _connection_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--url",
        default=os.environ.get(URL_VARIABLE, DEFAULT_URL),
        help=f"the service (default ${URL_VARIABLE} or {DEFAULT_URL}); /v2/... is added",
    )
    command.add_argument("--token", help=f"bearer token (default ${TOKEN_VARIABLE})")
    command.add_argument(
        "--azure", action="store_true", help="get a token from Entra ID (DefaultAzureCredential)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    if arguments.command == "search":
        return run_search(arguments)
    return run_upload(arguments)


def run_search(arguments: argparse.Namespace) -> int:
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
    headers = auth_headers(arguments.url, arguments.token, arguments.azure)
    with httpx.Client(base_url=arguments.url, headers=headers, timeout=60.0) as client:
        try:
            matches, response = search(client, path, params)
        except httpx.HTTPStatusError as error:
            detail = error.response.text[:500]
            print(f"dicomweb search: HTTP {error.response.status_code} {detail}", file=sys.stderr)
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


def run_upload(arguments: argparse.Namespace) -> int:
    if arguments.concurrency < 1 or arguments.batch_mb <= 0 or arguments.retries < 1:
        print("dicomweb: --concurrency, --batch-mb and --retries must be positive", file=sys.stderr)
        return EXIT_USAGE
    summary = Summary(arguments.url)
    try:
        asyncio.run(upload(arguments, summary))
    except KeyboardInterrupt:
        # What was answered is in the journal already; the requests in flight are lost.
        summary.interrupted = True
    if arguments.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        print_summary(summary)
    if summary.interrupted:
        return EXIT_INTERRUPTED
    return 0 if summary.ok else EXIT_FAILED


async def upload(arguments: argparse.Namespace, summary: Summary) -> None:
    """Upload into ``summary``, which holds what was done even if the run is interrupted."""
    journal = Journal(arguments.journal)
    found = list(find_dicom_files(arguments.paths))
    todo = [file for file in found if file not in journal]
    summary.found = len(found)
    summary.resumed = len(found) - len(todo)
    if arguments.limit is not None:
        todo = todo[: max(0, arguments.limit)]
    groups = batches(todo, int(arguments.batch_mb * 1024 * 1024))
    headers = auth_headers(arguments.url, arguments.token, arguments.azure)
    progress = UploadProgress(
        len(todo), sum(f.size for f in todo), quiet=arguments.json or not todo
    )
    timeout = httpx.Timeout(300.0, connect=10.0)
    limits = httpx.Limits(max_connections=arguments.concurrency)
    async with httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits) as client:
        uploader = Uploader(
            client,
            arguments.url,
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


if __name__ == "__main__":
    sys.exit(main())
