"""``dicomweb download STUDY [SERIES [INSTANCE]] --out DIR``: WADO-RS into files.

One retrieve asks for ``multipart/related; type="application/dicom"; transfer-syntax=*``:
every instance as stored, nothing transcoded (PS3.18 8.7.3.5.2 and 10.4.1). The answer is read
part by part and each part is written to disk as it arrives, so neither a study nor a large
instance is ever held in memory.

Naming: each part goes into a temporary file in ``DIR`` first; once it is complete, its Study,
Series and SOP Instance UIDs are read from its own DICOM header (pydicom, header only) and it
is renamed to ``DIR/{study}/{series}/{sop}.dcm``. The UIDs come from the file rather than from
the order of a metadata answer because nothing in PS3.18 ties the parts' order to any other
request's, and a name read from the bytes it names cannot be wrong. The rename also means a
file under its final name is always complete: an interrupted download leaves no truncated
``.dcm``. Each UID is checked (:mod:`dicomweb_cli.uids`) and must lie inside what was asked
for before it becomes part of a path: an answer cannot write outside ``DIR``.

The multipart reader is aiohttp's ``MultipartReader``: a maintained, streaming reader of any
``multipart/*`` body, and aiohttp is pinned already (the app's Azure SDKs use it). httpx,
which the other commands use, writes no multipart/related and reads none; the server's own
streaming reader (``dicom_core.web.multipart``) is out of bounds for the client.

Before the retrieve, one QIDO request counts the instances (NumberOfStudyRelatedInstances or
NumberOfSeriesRelatedInstances), for the progress bar; the retrieve's Content-Length gives its
bytes. A QIDO failure only leaves the count unknown: the retrieve decides what exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pydicom
from pydicom.errors import InvalidDicomError

from dicomweb_cli.uids import uid_problem

ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
CHUNK_BYTES = 1 << 20
#: aiohttp's read buffer (its default, 64 KiB, pauses reading from the socket too often).
BUFFER_BYTES = 1 << 20
NUMBER_OF_STUDY_RELATED_INSTANCES = "00201208"
NUMBER_OF_SERIES_RELATED_INSTANCES = "00201209"
UID_TAGS = (0x0020000D, 0x0020000E, 0x00080018)
TEMPORARY_PREFIX = ".dicomweb-download-"


class DownloadError(Exception):
    """The download cannot go on; ``status`` is the HTTP status when the server refused."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Scope:
    """What to download: a study, a series of it, or one instance of that series."""

    study: str
    series: str | None = None
    instance: str | None = None

    def problem(self) -> str | None:
        """Why a UID given cannot be used, or None: checked before any request or path."""
        for name, value in (("study", self.study), ("series", self.series)):
            problem = uid_problem(value) if value is not None else None
            if problem:
                return f"the {name} UID {problem}"
        if self.instance is not None:
            problem = uid_problem(self.instance)
            if problem:
                return f"the instance UID {problem}"
        if self.instance is not None and self.series is None:
            return "an instance needs its series"
        return None

    @property
    def path(self) -> str:
        """The WADO-RS path under the DICOMweb root (PS3.18 10.4.1)."""
        path = f"/studies/{self.study}"
        if self.series is not None:
            path += f"/series/{self.series}"
            if self.instance is not None:
                path += f"/instances/{self.instance}"
        return path

    def holds(self, study: str, series: str, instance: str) -> bool:
        return (
            study == self.study
            and self.series in (None, series)
            and self.instance in (None, instance)
        )


@dataclass
class DownloadSummary:
    """What a run did; ``to_json`` is what ``--json`` prints."""

    url: str
    scope: Scope
    out: Path
    expected: int | None = None
    files: list[Path] = field(default_factory=list)
    bytes_received: int = 0
    seconds: float = 0.0
    error: str | None = None
    status: int | None = None
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and not self.interrupted

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "study": self.scope.study,
            "series": self.scope.series,
            "instance": self.scope.instance,
            "out": str(self.out),
            "expected": self.expected,
            "downloaded": len(self.files),
            "files": [str(path.relative_to(self.out)) for path in self.files],
            "bytes_received": self.bytes_received,
            "seconds": round(self.seconds, 3),
            "status": self.status,
            "error": self.error,
            "interrupted": self.interrupted,
        }


Progress = Callable[[int, int], None]
"""Called with (instances, bytes) as parts arrive."""
Totals = Callable[[int | None, int | None], None]
"""Called with (instances, bytes) once they are known."""


def read_uids(path: Path) -> tuple[str, str, str] | None:
    """(study, series, SOP instance) UIDs from the header of a downloaded file, or None.
    pydicom's warnings about odd values are silenced: the UIDs are checked just after."""
    try:
        # Values are read lazily: the warnings come when they are used, so both are in here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(
                path, stop_before_pixels=True, specific_tags=list(UID_TAGS), force=True
            )
            values = [str(dataset[tag].value).strip() if tag in dataset else "" for tag in UID_TAGS]
    except (InvalidDicomError, OSError):
        return None
    except Exception:  # a damaged header raises whatever its parser met
        return None
    if not all(values):
        return None
    return values[0], values[1], values[2]


async def expected_instances(
    session: aiohttp.ClientSession, root: str, scope: Scope, headers: dict[str, str]
) -> int | None:
    """How many instances the scope holds, from one QIDO request; None when it cannot say."""
    if scope.instance is not None:
        return 1
    if scope.series is None:
        url, tag = f"{root}/studies", NUMBER_OF_STUDY_RELATED_INSTANCES
        params = {"StudyInstanceUID": scope.study}
    else:
        url, tag = f"{root}/studies/{scope.study}/series", NUMBER_OF_SERIES_RELATED_INSTANCES
        params = {"SeriesInstanceUID": scope.series}
    params["includefield"] = tag
    try:
        async with session.get(
            url, params=params, headers={**headers, "Accept": "application/dicom+json"}
        ) as response:
            if response.status != 200:
                return None
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    try:
        return int(answer[0][tag]["Value"][0])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def client_session() -> aiohttp.ClientSession:
    """The HTTP client of a download: no limit on the whole (a study may take hours), but
    on connecting and on each read; proxies from the environment, as httpx takes them."""
    timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=300.0)
    return aiohttp.ClientSession(timeout=timeout, trust_env=True, read_bufsize=BUFFER_BYTES)


class Downloader:
    """One retrieve into ``out``; the summary records what was written, even if it fails."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        root: str,
        scope: Scope,
        out: Path,
        summary: DownloadSummary,
        *,
        headers: Callable[[], dict[str, str]] = dict,
        progress: Progress | None = None,
        totals: Totals | None = None,
    ) -> None:
        self._session = session
        self._root = root.rstrip("/")
        self._scope = scope
        self._out = out
        self._headers = headers
        self._progress = progress or (lambda items, size: None)
        self._totals = totals or (lambda items, size: None)
        self.summary = summary

    async def run(self) -> DownloadSummary:
        started = time.monotonic()
        try:
            await self._run()
        except DownloadError as error:
            self.summary.error, self.summary.status = str(error), error.status
        except (aiohttp.ClientError, TimeoutError) as error:
            detail = str(error) or "no answer in time"
            self.summary.error = f"{type(error).__name__}: {detail}"
        except ValueError as error:  # aiohttp's word for a malformed multipart body
            self.summary.error = f"the answer is not well-formed multipart: {error}"
        finally:
            self.summary.seconds = time.monotonic() - started
        return self.summary

    async def _run(self) -> None:
        expected = await expected_instances(self._session, self._root, self._scope, self._headers())
        self.summary.expected = expected
        self._totals(expected, None)
        url = self._root + self._scope.path
        headers = {**self._headers(), "Accept": ACCEPT}
        async with self._session.get(url, headers=headers) as response:
            if response.status != 200:
                text = (await response.text(errors="replace"))[:500]
                what = "not found" if response.status == 404 else "refused"
                raise DownloadError(
                    f"HTTP {response.status} ({what}): {' '.join(text.split())}".rstrip(": "),
                    response.status,
                )
            self.summary.status = response.status
            if not response.headers.get("Content-Type", "").startswith("multipart/related"):
                raise DownloadError(
                    f"the answer is {response.headers.get('Content-Type')!r}, not multipart"
                )
            self._totals(expected, response.content_length)
            self._out.mkdir(parents=True, exist_ok=True)
            reader = aiohttp.MultipartReader(response.headers, response.content)
            number = 0
            while (part := await reader.next()) is not None:
                number += 1
                if not isinstance(part, aiohttp.BodyPartReader):
                    raise DownloadError(f"part {number} is itself multipart, not an instance")
                await self._save(part, number)

    async def _save(self, part: aiohttp.BodyPartReader, number: int) -> None:
        descriptor, name = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=".part", dir=self._out)
        temporary = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as stream:
                while chunk := await part.read_chunk(CHUNK_BYTES):
                    await asyncio.to_thread(stream.write, chunk)
                    self.summary.bytes_received += len(chunk)
                    self._progress(0, len(chunk))
            final = await asyncio.to_thread(self._place, temporary, number)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        self.summary.files.append(final)
        self._progress(1, 0)

    def _place(self, temporary: Path, number: int) -> Path:
        """Name the downloaded part by the UIDs in its header, checked, and move it there."""
        uids = read_uids(temporary)
        if uids is None:
            raise DownloadError(f"part {number} is not a DICOM instance with its three UIDs")
        for name, value in zip(("study", "series", "SOP instance"), uids, strict=True):
            problem = uid_problem(value)
            if problem:
                raise DownloadError(f"part {number}: its {name} UID {problem}")
        if not self._scope.holds(*uids):
            raise DownloadError(f"part {number} is instance {'/'.join(uids)}, not one asked for")
        study, series, sop = uids
        final = self._out / study / series / f"{sop}.dcm"
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temporary, final)
        return final
