"""The ``dicomweb`` command: ``dicomweb upload PATH...`` (``python -m dicomweb_cli`` too)."""

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
from dicomweb_cli.files import find_dicom_files
from dicomweb_cli.journal import DEFAULT_NAME, Journal
from dicomweb_cli.progress import UploadProgress, print_summary
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
    upload.add_argument(
        "paths", metavar="PATH", nargs="+", type=Path, help="files and folders (recursive)"
    )
    upload.add_argument(
        "--url",
        default=os.environ.get(URL_VARIABLE, DEFAULT_URL),
        help=f"the service (default ${URL_VARIABLE} or {DEFAULT_URL}); /v2/studies is added",
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
    upload.add_argument("--token", help=f"bearer token (default ${TOKEN_VARIABLE})")
    upload.add_argument(
        "--azure", action="store_true", help="get a token from Entra ID (DefaultAzureCredential)"
    )
    upload.add_argument(
        "--json", action="store_true", help="no progress; print one JSON summary on stdout"
    )
    return top


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
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
