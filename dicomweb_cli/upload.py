"""``dicomweb upload``: store folders of DICOM files with concurrent, bounded STOW requests.

Files are grouped into batches of at most ``batch_bytes`` (a larger file goes alone), and
``concurrency`` batches are in flight at once. The batch size also shrinks so that each
connection has several batches to send (:func:`batch_bytes_for`): with fewer, the last
requests would run alone while the other connections idle. A batch answered 429 or 503, or lost to a
connection error, is sent again after an exponential backoff (or the server's Retry-After).
Every file the server has (stored now, or already) is written to the journal as soon as its
batch is answered, so a second run sends only what the first did not finish.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from dicomweb_cli import answers
from dicomweb_cli.auth import AuthError
from dicomweb_cli.files import DicomFile, dataset_sop_instance_uid, sop_instance_uid
from dicomweb_cli.journal import Journal
from dicomweb_cli.multipart import FileChangedError, MultipartRelated

RETRY_STATUSES = frozenset({429, 503})
MAX_BACKOFF_SECONDS = 60.0


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_seconds: float = 0.5

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds to wait before attempt ``attempt + 1``: the server's Retry-After when it
        gives one, else an exponential backoff with jitter (so clients do not retry in step)."""
        if response is not None:
            after = retry_after_seconds(response.headers.get("Retry-After"))
            if after is not None:
                return min(after, MAX_BACKOFF_SECONDS)
        backoff: float = self.base_seconds * 2.0**attempt
        return min(backoff * (0.5 + random.random() / 2), MAX_BACKOFF_SECONDS)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class FileResult:
    file: DicomFile
    sop_uid: str | None
    outcome: answers.Outcome


@dataclass
class Summary:
    """What a run did; ``to_json`` is the machine-readable form ``--json`` prints."""

    url: str
    found: int = 0
    resumed: int = 0
    results: list[FileResult] = field(default_factory=list)
    bytes_sent: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    def _with(self, status: str) -> list[FileResult]:
        return [r for r in self.results if r.outcome.status == status]

    @property
    def failed(self) -> list[FileResult]:
        return self._with(answers.FAILED)

    @property
    def warnings(self) -> list[FileResult]:
        return [r for r in self._with(answers.STORED) if r.outcome.reason is not None]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted

    def to_json(self) -> dict[str, Any]:
        def detail(result: FileResult) -> dict[str, Any]:
            return {
                "path": str(result.file.path),
                "sop_instance_uid": result.sop_uid,
                "reason": result.outcome.reason,
                "comments": list(result.outcome.comments),
            }

        return {
            "url": self.url,
            "found": self.found,
            "skipped_from_journal": self.resumed,
            "stored": len(self._with(answers.STORED)),
            "already_present": len(self._with(answers.PRESENT)),
            "failed": len(self.failed),
            "warnings": [detail(r) for r in self.warnings],
            "failures": [detail(r) for r in self.failed],
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
        }


#: Batches per connection at least, where the files allow: the last wave of requests then
#: holds about 1/8 of a connection's work, and the others wait for it that much at most.
BATCHES_PER_CONNECTION = 8


def batch_bytes_for(total_bytes: int, concurrency: int, most: int) -> int:
    """The batch size for ``total_bytes`` of files over ``concurrency`` connections: at most
    ``most``, and small enough to give each connection ``BATCHES_PER_CONNECTION`` batches.

    Measured with benchmarks/cli_upload.py: 400 CT slices (210 MB) in 16 MB batches made 13
    requests, the last of which ran alone; in batches of 6.5 MB every connection stays busy
    to the end.
    """
    share = total_bytes // (max(1, concurrency) * BATCHES_PER_CONNECTION)
    return max(1, min(most, share))


def batches(files: Iterable[DicomFile], batch_bytes: int) -> list[list[DicomFile]]:
    """Consecutive files grouped up to ``batch_bytes`` each; a larger file is a batch alone."""
    grouped: list[list[DicomFile]] = []
    current: list[DicomFile] = []
    size = 0
    for file in files:
        if current and size + file.size > batch_bytes:
            grouped.append(current)
            current, size = [], 0
        current.append(file)
        size += file.size
    if current:
        grouped.append(current)
    return grouped


Progress = Callable[[int, int], None]
"""Called with (files, bytes) as batches are answered."""


class Uploader:
    def __init__(
        self,
        client: httpx.AsyncClient,
        root: str,
        journal: Journal,
        *,
        concurrency: int = 4,
        retry: RetryPolicy | None = None,
        progress: Progress | None = None,
        summary: Summary | None = None,
    ) -> None:
        self._client = client
        # ``root`` is the DICOMweb root (service.dicom_root): {url}/v2, or a partition's.
        self._stow_url = root.rstrip("/") + "/studies"
        self._journal = journal
        self._concurrency = max(1, concurrency)
        self._retry = retry or RetryPolicy()
        self._progress = progress or (lambda files, size: None)
        self.summary = summary or Summary(root)

    async def run(self, groups: Sequence[list[DicomFile]]) -> Summary:
        started = time.monotonic()
        queue: asyncio.Queue[list[DicomFile]] = asyncio.Queue()
        for group in groups:
            queue.put_nowait(group)

        async def worker() -> None:
            while not queue.empty():
                await self._send(queue.get_nowait())

        try:
            async with asyncio.TaskGroup() as tasks:
                for _ in range(min(self._concurrency, len(groups))):
                    tasks.create_task(worker())
        finally:
            self.summary.seconds = time.monotonic() - started
        return self.summary

    async def _send(self, group: list[DicomFile]) -> None:
        uids = await asyncio.to_thread(lambda: [sop_instance_uid(f.path) for f in group])
        body = MultipartRelated([f.path for f in group], [f.size for f in group])
        headers = {
            "Content-Type": body.content_type,
            "Content-Length": str(body.content_length),
            "Accept": "application/dicom+json",
        }
        problem = ""
        response: httpx.Response | None = None
        for attempt in range(self._retry.attempts):
            response = None
            try:
                response = await self._client.post(self._stow_url, content=body, headers=headers)
            except (FileChangedError, AuthError) as error:
                problem = str(error)
                break
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}".rstrip(": ")
            else:
                if response.status_code not in RETRY_STATUSES:
                    break
                problem = f"HTTP {response.status_code}"
            if attempt + 1 < self._retry.attempts:
                await asyncio.sleep(self._retry.delay(attempt, response))
        results = await asyncio.to_thread(self._results, group, uids, response, problem)
        await asyncio.to_thread(
            self._journal.record,
            [(r.file, r.sop_uid, r.outcome.status) for r in results if r.outcome.done],
        )
        self.summary.results.extend(results)
        if response is not None:
            self.summary.bytes_sent += body.content_length
        self._progress(len(group), sum(f.size for f in group))

    @staticmethod
    def _results(
        group: list[DicomFile],
        uids: list[str | None],
        response: httpx.Response | None,
        problem: str,
    ) -> list[FileResult]:
        if response is not None and response.status_code in (200, 202, 409):
            try:
                answer = response.json()
            except ValueError:
                answer = {}
            found = answers.outcomes(answer, uids)
            unnamed = [i for i, o in enumerate(found) if o.comments == (answers.NOT_NAMED,)]
            if unnamed:
                # A file whose meta group names another instance than its dataset does (the
                # answer names the dataset's): read that one and map the answer again.
                uids = list(uids)
                for index in unnamed:
                    uids[index] = dataset_sop_instance_uid(group[index].path) or uids[index]
                found = answers.outcomes(answer, uids)
        else:
            if response is not None:
                problem = f"HTTP {response.status_code}: {response.text[:500]}".strip()
            found = [answers.Outcome(answers.FAILED, None, (problem,)) for _ in group]
        return [FileResult(f, u, o) for f, u, o in zip(group, uids, found, strict=True)]
