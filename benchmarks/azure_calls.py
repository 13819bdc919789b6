"""Cosmos DB requests and Blob Storage transactions per operation, on the azure backend.

Usage::

    python benchmarks/azure_calls.py [--repeat 10] [--rows 512] [--delete-delay 1]
        [--verbose] [--workdir DIR]

Azure bills Cosmos DB by request units and Blob Storage (and queues) by transactions, so what
an operation costs there is the requests the server sends for it. This script counts them:

* it starts Azurite and the Cosmos DB test server as ``make run-azure`` does
  (``tools/emulators/launcher.py``), puts a counting reverse proxy in front of each (Cosmos,
  Blob, Queue; the Cosmos one speaks HTTPS with the test server's own certificate, which the
  SDK accepts on loopback), and starts our server (``python -m functions_host``, one worker,
  the direct engine of ``make run``) with connection settings that point at the proxies. The
  server runs unchanged: what is counted is every HTTP request its SDK clients really send,
  retries, query plans and per-range queries included;
* it then runs each operation ``--repeat`` times on fresh data (STOW of one instance, of ten
  instances in one request, of one large instance; QIDO of studies, series and instances,
  the first time and again; a frame, a rendered frame, metadata of an instance, series and
  study, a 304 revalidation, an instance retrieve, deletes of an instance, a series and a
  study), checks every answer (status and content) and prints the calls per operation by
  kind, with the bytes sent and received and the sizes of the documents written;
* calls that happen after a delete's answer (the ``blob-cleanup`` queue deletes the files
  after ``DICOM_AZURE_BLOB_DELETE_DELAY_SECONDS``, 600 s in Azure, ``--delete-delay`` here)
  are waited for and shown as "later". Queue polls that find nothing are the Functions
  host's, not an operation's: they are left out.

Warm-up: the first call of each kind in a fresh process also reads the account, creates (or
finds) the database, containers, blob container and queues and reads partition key ranges. A
startup round (two STOWs, one read of each kind, one delete) runs first; its calls, these
one-time calls included, are printed apart and counted in no operation.

Request units are estimated, not measured: the Cosmos DB test server charges nothing. The
estimate (``estimate_ru``) applies Microsoft's published figures to the measured sizes:
reads and writes by document size (learn.microsoft.com, "Understand request unit
consumption": a point read of 1 KB is 1 RU, a write of 1 KB about 5 RU, both growing slowly
with size), queries at an assumed 2.5 RU per page plus the read cost of the bytes returned,
a transactional batch as the sum of its operations. docs/azure-backend.md ("Cost per
operation") explains the model and the figures. The script never asserts on time or counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx
import pydicom
from aiohttp import ClientSession, TCPConnector, web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.corpus import ct_instances
from benchmarks.stow import Multipart
from tools.emulators.launcher import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    COSMOS_KEY,
    NODE_MODULES,
    Emulators,
)

ROOT = Path(__file__).resolve().parent.parent
FRAMES_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
INSTANCE_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DICOM_JSON = "application/dicom+json"
VERBOSE_LINES = 24
# Headers that belong to one hop of a connection, not to the request the proxy passes on.
_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
     "upgrade", "content-length"}
)  # fmt: skip


# --------------------------------------------------------------------------- what was called


@dataclass(frozen=True)
class Written:
    """One document a write created, replaced or deleted (or a batch read)."""

    op: str
    kind: str
    size: int
    """Bytes of its JSON (for a delete: as last written or read)."""
    terms: int
    """Index terms the container's indexing policy makes of it (``IndexingPolicy``)."""


@dataclass
class Call:
    """One HTTP request the server sent to Cosmos DB, Blob Storage or a queue."""

    service: str
    """``cosmos``, ``blob`` or ``queue``."""
    kind: str
    target: str
    """The container (Cosmos, Blob) or queue the request addressed."""
    status: int
    sent: int
    """Request body bytes."""
    received: int
    """Response body bytes."""
    at: float = 0.0
    detail: str = ""
    rows: int = 0
    """Documents a query page returned."""
    writes: list[Written] = field(default_factory=list)
    """Every document a write or batch sent (or deleted)."""
    ru: float = 0.0
    """Estimated request units (Cosmos only)."""
    background: bool = False
    """A call no operation caused (an empty queue poll of the Functions host)."""


def document_kind(container: str, doc_id: str) -> str:
    """What a document is, from its id (``dicom_core/storage/azure/cosmos_schema``)."""
    if doc_id == "study":
        return "study"
    if doc_id.startswith("p|"):  # a pending change, and then its feed entry
        return "feed" if container == "system" else "pendingchange"
    if container == "system" and doc_id == "head":
        return "feedhead"
    prefixes = {
        "i|": "instance",
        "r|": "reservation",
        "s|": "series",
        "m|": "metapart",
        "t|": "querytag",
        "o|": "operation",
        "w|": "workitem",
        "x|": "xval",
    }
    for prefix, kind in prefixes.items():
        if doc_id.startswith(prefix):
            return kind
    if container == "system" and "|" not in doc_id:
        return "counter"
    return "other"


class IndexingPolicy:
    """The containers' indexing policies as Bicep deploys them (``infra/app/``
    ``cosmos-containers.json``, held equal to ``cosmos_schema`` by ``tests/infra``).

    Counts the index terms a document makes: each scalar value whose path the most specific
    matching included or excluded path admits (as Cosmos decides), plus one per composite
    index whose paths the document all has. System properties (``_rid``, ``_ts``...) are
    left out.
    """

    def __init__(self, specs: Sequence[dict[str, Any]]) -> None:
        self._rules: dict[str, list[tuple[tuple[str, ...], bool, bool]]] = {}
        self._composites: dict[str, list[list[tuple[str, ...]]]] = {}
        for spec in specs:
            policy = spec["indexingPolicy"]
            rules = []
            for included, key in ((True, "includedPaths"), (False, "excludedPaths")):
                for entry in policy.get(key, []):
                    parts = tuple(p.strip('"') for p in entry["path"].strip("/").split("/"))
                    rules.append((parts[:-1], parts[-1] == "*", included))
            self._rules[spec["name"]] = rules
            self._composites[spec["name"]] = [
                [tuple(p["path"].strip("/").split("/")) for p in composite]
                for composite in policy.get("compositeIndexes", [])
            ]

    @classmethod
    def from_bicep(cls) -> IndexingPolicy:
        return cls(json.loads((ROOT / "infra" / "app" / "cosmos-containers.json").read_text()))

    def _indexed(self, container: str, leaf: tuple[str, ...]) -> bool:
        best: tuple[int, bool] = (-1, False)
        for prefix, subtree, included in self._rules[container]:
            matches = leaf[: len(prefix)] == prefix and (subtree or len(leaf) == len(prefix))
            if matches and len(prefix) > best[0]:
                best = (len(prefix), included)
        return best[1]

    def indexed_terms(self, container: str, doc: Any) -> int:
        if not isinstance(doc, dict) or container not in self._rules:
            return 0
        visible = {k: v for k, v in doc.items() if not k.startswith("_")}
        terms = sum(1 for leaf in _leaves(visible, ()) if self._indexed(container, leaf))
        for composite in self._composites[container]:
            if all(_lookup(visible, path) is not None for path in composite):
                terms += 1
        return terms


def _leaves(value: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, (*path, "[]"))
    else:
        yield path


def _lookup(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = doc
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


# The published RU of a point read and of a write by document size (KB), for session
# consistency and default indexing (learn.microsoft.com/azure/cosmos-db/
# understand-request-unit-consumption, "Document size").
READ_RU = [(1, 1.00), (2, 1.04), (4, 1.14), (8, 1.33), (16, 1.67), (32, 2.19), (64, 4.76),
           (128, 9.95), (256, 20.28), (512, 40.95), (1024, 145.90), (2048, 291.80)]  # fmt: skip
WRITE_RU = [(1, 4.95), (2, 6.29), (4, 6.67), (8, 7.04), (16, 9.52), (32, 11.23), (64, 22.67),
            (128, 48.19), (256, 98.29), (512, 184.57), (1024, 625.0), (2048, 1250.0)]  # fmt: skip
QUERY_PAGE_RU = 2.5
"""Our assumption for one query page over the index (Microsoft publishes no per-query figure:
it depends on the index lookups and the documents loaded); the bytes returned add their read
cost on top."""


def _interpolate(table: Sequence[tuple[float, float]], size: int) -> float:
    kb = size / 1024
    if kb <= table[0][0]:
        return table[0][1]
    for (k0, v0), (k1, v1) in zip(table, table[1:], strict=False):
        if kb <= k1:
            return v0 + (v1 - v0) * (kb - k0) / (k1 - k0)
    (k0, v0), (k1, v1) = table[-2], table[-1]
    return v1 + (v1 - v0) * (kb - k1) / (k1 - k0)


def read_ru(size: int) -> float:
    return _interpolate(READ_RU, size)


def write_ru(size: int) -> float:
    return _interpolate(WRITE_RU, size)


def estimate_ru(call: Call) -> float:
    """The request units ``call`` would be charged on Azure, estimated from its sizes."""
    if call.service != "cosmos" or call.status >= 400 and call.status != 404:
        return 0.0
    if call.kind == "point read":
        return read_ru(call.received) if call.status == 200 else 1.0
    if call.kind.startswith("query") and call.kind != "query plan":
        extra = read_ru(call.received) - 1.0 if call.received > 1024 else 0.0
        return QUERY_PAGE_RU + extra
    if call.kind in {"create", "replace", "upsert", "patch", "delete", "batch"}:
        if call.kind == "patch":
            return write_ru(call.received)
        return sum(read_ru(w.size) if w.op == "read" else write_ru(w.size) for w in call.writes)
    return 0.0  # metadata reads and query plans: gateway requests with no documented charge


class Recorder:
    """Every call the proxies saw, in order; thread-safe (proxies run in their own loop)."""

    def __init__(self, policy: IndexingPolicy) -> None:
        self._lock = threading.Lock()
        self.calls: list[Call] = []
        self.policy = policy
        # Last seen size and index terms of each Cosmos document (container, partition key,
        # id), to estimate what deleting it costs.
        self.sizes: dict[tuple[str, str, str], tuple[int, int]] = {}

    def add(self, call: Call) -> None:
        call.ru = estimate_ru(call)
        with self._lock:
            self.calls.append(call)

    def mark(self) -> int:
        with self._lock:
            return len(self.calls)

    def since(self, mark: int) -> list[Call]:
        with self._lock:
            return [c for c in self.calls[mark:] if not c.background]

    def last_at(self) -> float:
        with self._lock:
            found = [c.at for c in self.calls if not c.background]
        return found[-1] if found else 0.0


# --------------------------------------------------------------------------- classification


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def classify_cosmos(
    recorder: Recorder,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    answer: bytes,
) -> Call:
    segments = [unquote(s) for s in path.strip("/").split("/") if s]
    container = segments[3] if len(segments) >= 4 and segments[2] == "colls" else ""
    call = Call("cosmos", "metadata", container, status, len(body), len(answer))
    lowered = {k.lower(): v for k, v in headers.items()}
    partition = lowered.get("x-ms-documentdb-partitionkey", "")
    if len(segments) < 5 or segments[4] != "docs":
        call.detail = f"{method} /{'/'.join(segments)}"
        return call

    def written(op: str, doc_id: str, doc: Any = None, size: int | None = None) -> Written:
        """A document written (or deleted) now, remembered for a later delete of it."""
        key = (container, partition, doc_id)
        kind = document_kind(container, doc_id)
        if op == "delete":
            known = recorder.sizes.pop(key, None)
            return Written(op, kind, *(known or (1024, 0)))
        if op in {"read", "patch"} and doc is None:
            known = recorder.sizes.get(key)
            return Written(op, kind, *(known or (size or 1024, 0)))
        terms = recorder.policy.indexed_terms(container, doc) if isinstance(doc, dict) else 0
        entry = Written(op, kind, size if size is not None else _size(doc), terms)
        recorder.sizes[key] = (entry.size, entry.terms)
        return entry

    if len(segments) >= 6:
        doc_id = segments[5]
        call.detail = doc_id
        if method == "GET":
            call.kind = "point read"
            if status == 200:
                doc = _json(answer)
                terms = recorder.policy.indexed_terms(container, doc)
                recorder.sizes[(container, partition, doc_id)] = (len(answer), terms)
        elif method == "PUT":
            call.kind = "replace"
            call.writes = [written("replace", doc_id, _json(body), len(body))]
        elif method == "PATCH":
            call.kind = "patch"
            call.writes = [written("patch", doc_id, _json(answer), len(answer))]
        elif method == "DELETE":
            call.kind = "delete"
            call.writes = [written("delete", doc_id)]
        return call
    # POST on docs: a query, a query plan, a batch, or a create/upsert.
    if lowered.get("x-ms-cosmos-is-query-plan-request", "").lower() == "true":
        call.kind = "query plan"
        call.detail = str((_json(body) or {}).get("query", ""))
        return call
    if lowered.get("x-ms-documentdb-isquery", "").lower() == "true":
        if status == 400:
            call.kind = "query refused (needs plan)"
        elif partition:
            call.kind = "query (one partition)"
        elif "x-ms-documentdb-partitionkeyrangeid" in lowered:
            call.kind = "query (per range)"
        else:
            call.kind = "query (cross-partition)"
        call.detail = str((_json(body) or {}).get("query", ""))
        documents = (_json(answer) or {}).get("Documents") if status == 200 else None
        call.rows = len(documents) if isinstance(documents, list) else 0
        return call
    if lowered.get("x-ms-cosmos-is-batch-request", "").lower() == "true":
        call.kind = "batch"
        for op in _json(body) or []:
            name = str(op.get("operationType", "")).lower()
            resource = op.get("resourceBody")
            doc_id = str(op.get("id") or (resource or {}).get("id") or "")
            call.writes.append(written(name, doc_id, resource))
        call.detail = ", ".join(f"{w.op} {w.kind}" for w in call.writes)
        return call
    upsert = lowered.get("x-ms-documentdb-is-upsert", "").lower() == "true"
    call.kind = "upsert" if upsert else "create"
    resource = _json(body) or {}
    call.detail = str(resource.get("id", ""))
    call.writes = [written(call.kind, call.detail, resource, len(body))]
    return call


def classify_storage(
    service: str,
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
    status: int,
    answer: bytes,
) -> Call:
    segments = [s for s in path.strip("/").split("/") if s]
    target = segments[1] if len(segments) >= 2 else ""
    params = {k.lower(): v[0] for k, v in parse_qs(query).items()}
    lowered = {k.lower() for k in headers}
    call = Call(service, "other", target, status, len(body), len(answer))
    call.detail = unquote("/".join(segments[2:]))
    if service == "blob":
        comp, restype = params.get("comp"), params.get("restype")
        if restype == "container":
            call.kind = {"PUT": "create container", "GET": "list"}.get(method, "container")
        elif method == "PUT":
            call.kind = {"block": "put block", "blocklist": "put block list"}.get(
                comp or "", "put blob"
            )
        elif method == "GET":
            ranged = "range" in lowered or "x-ms-range" in lowered
            call.kind = "get range" if ranged else "get blob"
        elif method == "HEAD":
            call.kind = "properties"
        elif method == "DELETE":
            call.kind = "delete"
        return call
    if len(segments) >= 3 and segments[2] == "messages":
        if method == "POST":
            call.kind = "put message"
        elif method == "GET":
            has = b"<QueueMessage>" in answer
            call.kind = "get messages" if has else "poll (empty)"
            call.background = not has
        elif method == "DELETE":
            call.kind = "delete message"
        elif method == "PUT":
            call.kind = "update message"
    elif method == "PUT" and len(segments) == 2:
        call.kind = "create queue"
    return call


# --------------------------------------------------------------------------- the proxies


class CountingProxies:
    """Reverse proxies in front of Cosmos, Blob and Queue, run in a thread of their own."""

    def __init__(self, recorder: Recorder, emulators: Emulators) -> None:
        self._recorder = recorder
        self._upstreams = {
            "cosmos": f"https://127.0.0.1:{emulators.cosmos_port}",
            "blob": f"http://127.0.0.1:{emulators.blob_port}",
            "queue": f"http://127.0.0.1:{emulators.queue_port}",
        }
        self.ports: dict[str, int] = {}
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="counting-proxies", daemon=True)

    def start(self) -> CountingProxies:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"the counting proxies did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        session = ClientSession(connector=TCPConnector(ssl=False), auto_decompress=False)
        runners = []
        try:
            for service, upstream in self._upstreams.items():
                app = web.Application(client_max_size=1 << 31)
                app.router.add_route("*", "/{tail:.*}", self._handler(session, service, upstream))
                runner = web.AppRunner(app, access_log=None)
                await runner.setup()
                context = None
                if service == "cosmos":
                    # The test server's own self-signed pair: the SDK skips verification
                    # for 127.0.0.1, as it does for the server itself.
                    pair = NODE_MODULES / "@vercel" / "cosmosdb-server"
                    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                    context.load_cert_chain(pair / "cert.pem", pair / "key.pem")
                site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
                await site.start()
                server = site._server
                assert server is not None
                sockets = getattr(server, "sockets", None)  # an asyncio Server's, not typed so
                assert sockets
                self.ports[service] = sockets[0].getsockname()[1]
                runners.append(runner)
            self._ready.set()
            await self._stop.wait()
        finally:
            for runner in runners:
                await runner.cleanup()
            await session.close()

    def _handler(
        self, session: ClientSession, service: str, upstream: str
    ) -> Callable[[web.Request], Any]:
        recorder = self._recorder

        async def forward(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
            # aiohttp would add a Content-Type to a body-less PUT: Storage signs that header.
            skip = () if "Content-Type" in request.headers else ("Content-Type",)
            async with session.request(
                request.method,
                upstream + request.rel_url.raw_path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
                skip_auto_headers=skip,
            ) as answer:
                data = await answer.read()
                out_headers = [(k, v) for k, v in answer.headers.items()]
                status = answer.status
            path = request.rel_url.raw_path
            if service == "cosmos":
                call = classify_cosmos(
                    recorder, request.method, path, dict(request.headers), body, status, data
                )
            else:
                call = classify_storage(
                    service,
                    request.method,
                    path,
                    request.rel_url.raw_query_string,
                    dict(request.headers),
                    body,
                    status,
                    data,
                )
            call.at = time.monotonic()
            recorder.add(call)
            head = request.method == "HEAD"
            response = web.Response(status=status, body=None if head else data)
            for name, value in out_headers:
                if name.lower() not in _HOP_HEADERS:
                    response.headers.add(name, value)
            if head and "Content-Length" in answer.headers:
                response.headers["Content-Length"] = answer.headers["Content-Length"]
            return response

        return forward


# --------------------------------------------------------------------------- our server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OurServer:
    """``python -m functions_host`` on the azure backend, its storage behind the proxies."""

    def __init__(self, workdir: Path, ports: dict[str, int], delete_delay: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v2"
        base = "http://127.0.0.1"
        storage = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={base}:{ports['blob']}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint={base}:{ports['queue']}/{AZURITE_ACCOUNT};"
        )
        env = {
            **os.environ,
            "PORT": str(self.port),
            "DATA_DIR": str(workdir / "data"),
            "DICOM_STORAGE": "azure",
            "AzureWebJobsStorage": storage,
            "DICOM_COSMOS_CONNECTION": (
                f"AccountEndpoint=https://127.0.0.1:{ports['cosmos']}/;AccountKey={COSMOS_KEY};"
            ),
            "DICOM_COSMOS_DATABASE": "dicom",
            "DICOM_AZURE_BLOB_DELETE_DELAY_SECONDS": str(int(delete_delay)),
            "DICOM_HOST_ENGINE": "direct",
            "DICOM_LOCAL_WORKERS": "1",
            "DICOM_LOG_LEVEL": "WARNING",
        }
        self.log_path = workdir / "server.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "functions_host"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"our server exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("our server did not start")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --------------------------------------------------------------------------- the client side


@dataclass(frozen=True)
class Instance:
    study: str
    series: str
    sop: str
    data: bytes

    @property
    def path(self) -> str:
        return f"/studies/{self.study}/series/{self.series}/instances/{self.sop}"

    @property
    def pixels(self) -> bytes:
        return bytes(pydicom.dcmread(io.BytesIO(self.data)).PixelData)


def instances(
    count: int, *, rows: int, per_study: int, per_series: int | None = None
) -> list[Instance]:
    """``count`` CT instances, ``per_study`` to a study, in series of ``per_series``."""
    series_per_study = max(1, per_study // (per_series or per_study))
    made = []
    for data in ct_instances(
        count,
        rows=rows,
        cols=rows,
        series_per_study=series_per_study,
        instances_per_study=per_study,
    ):
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        made.append(Instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, data))
    return made


class Failure(Exception):
    """An answer that was not what the operation should give: nothing is counted."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def multipart_parts(response: httpx.Response) -> list[bytes]:
    """The bodies of a multipart/related answer."""
    content_type = response.headers.get("content-type", "")
    boundary = next(
        (p.split("=", 1)[1].strip('"') for p in content_type.split(";") if "boundary=" in p),
        None,
    )
    check(boundary is not None, f"no multipart boundary in {content_type!r}")
    parts = []
    for chunk in response.content.split(b"--" + str(boundary).encode())[1:]:
        if chunk.startswith(b"--"):
            break
        _, _, rest = chunk.partition(b"\r\n\r\n")
        parts.append(rest[:-2] if rest.endswith(b"\r\n") else rest)
    return parts


class Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=120)

    def stow(self, batch: Sequence[Instance], study: str | None = None) -> None:
        boundary = Multipart().boundary
        body = (
            b"".join(
                f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                + i.data
                + b"\r\n"
                for i in batch
            )
            + f"--{boundary}--\r\n".encode()
        )
        response = self.http.post(
            f"/studies/{study}" if study else "/studies",
            content=body,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
                "Accept": DICOM_JSON,
            },
        )
        check(response.status_code == 200, f"STOW answered {response.status_code}")
        answer = response.json()
        referenced = answer.get("00081199", {}).get("Value", [])
        check("00081198" not in answer, "STOW reported failed instances")
        stored = {item["00081155"]["Value"][0] for item in referenced}
        check(stored == {i.sop for i in batch}, "STOW did not reference every instance")

    def search(self, path: str, expected: Sequence[str], tag: str) -> None:
        response = self.http.get(path, headers={"Accept": DICOM_JSON})
        check(response.status_code == 200, f"QIDO {path} answered {response.status_code}")
        found = [item[tag]["Value"][0] for item in response.json()]
        check(found == list(expected), f"QIDO {path}: {len(found)} results, not the expected")

    def frame(self, instance: Instance) -> None:
        response = self.http.get(instance.path + "/frames/1", headers={"Accept": FRAMES_ACCEPT})
        check(response.status_code == 200, f"frame answered {response.status_code}")
        check(multipart_parts(response) == [instance.pixels], "frame bytes differ")

    def rendered(self, instance: Instance) -> None:
        response = self.http.get(
            instance.path + "/frames/1/rendered", headers={"Accept": "image/jpeg"}
        )
        check(response.status_code == 200, f"rendered answered {response.status_code}")
        check(response.content[:2] == b"\xff\xd8", "rendered frame is not a JPEG")

    def metadata(self, path: str, sops: Sequence[str]) -> str:
        response = self.http.get(path + "/metadata", headers={"Accept": DICOM_JSON})
        check(response.status_code == 200, f"metadata answered {response.status_code}")
        found = sorted(item["00080018"]["Value"][0] for item in response.json())
        check(found == sorted(sops), "metadata lists other instances")
        return response.headers["etag"]

    def revalidate(self, path: str, etag: str) -> None:
        response = self.http.get(
            path + "/metadata", headers={"Accept": DICOM_JSON, "If-None-Match": etag}
        )
        check(response.status_code == 304, f"revalidation answered {response.status_code}")

    def retrieve(self, instance: Instance) -> None:
        response = self.http.get(instance.path, headers={"Accept": INSTANCE_ACCEPT})
        check(response.status_code == 200, f"retrieve answered {response.status_code}")
        check(multipart_parts(response) == [instance.data], "retrieved bytes differ")

    def delete(self, path: str) -> None:
        response = self.http.delete(path)
        check(response.status_code == 204, f"delete answered {response.status_code}")

    def gone(self, path: str) -> None:
        response = self.http.get(path + "/metadata", headers={"Accept": DICOM_JSON})
        check(response.status_code == 404, f"deleted {path} answered {response.status_code}")


# --------------------------------------------------------------------------- measuring


@dataclass
class Measurement:
    name: str
    unit: str
    count: int
    """How many units the calls are divided by."""
    requests: int
    calls: list[Call]
    deferred: list[Call] = field(default_factory=list)
    note: str = ""


class Bench:
    def __init__(self, recorder: Recorder, client: Client, delete_delay: float) -> None:
        self.recorder = recorder
        self.client = client
        self.delete_delay = delete_delay
        self.results: list[Measurement] = []

    def settle(self, quiet: float = 0.3, limit: float = 5.0) -> None:
        """Wait until no counted call has arrived for ``quiet`` seconds."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if time.monotonic() - self.recorder.last_at() >= quiet:
                return
            time.sleep(0.05)

    def measure(
        self,
        name: str,
        unit: str,
        count: int,
        steps: Sequence[Callable[[], object]],
        *,
        deferred_deletes: int = 0,
        note: str = "",
    ) -> Measurement:
        """Run ``steps`` (one request each), counting the calls they cause.

        With ``deferred_deletes``, each step is followed by waiting for the file deletes the
        cleanup queue does later, which are counted apart.
        """
        self.settle()
        calls: list[Call] = []
        deferred: list[Call] = []
        for step in steps:
            mark = self.recorder.mark()
            step()
            self.settle()
            calls.extend(self.recorder.since(mark))
            if deferred_deletes:
                later = self.recorder.mark()
                self.wait_for_deletes(later, deferred_deletes)
                deferred.extend(self.recorder.since(later))
        result = Measurement(name, unit, count, len(steps), calls, deferred, note)
        self.results.append(result)
        print(f"  measured: {name}", flush=True)
        return result

    def wait_for_deletes(self, mark: int, expected: int) -> None:
        deadline = time.monotonic() + self.delete_delay + 30
        while time.monotonic() < deadline:
            done = sum(
                1 for c in self.recorder.since(mark) if c.service == "blob" and c.kind == "delete"
            )
            if done >= expected:
                self.settle(quiet=0.6)
                return
            time.sleep(0.1)
        raise Failure(f"the cleanup queue did not delete {expected} file(s) in time")


def scenarios(bench: Bench, repeat: int, rows: int) -> list[Call]:
    """Run every operation; returns the one-time startup calls of the process."""
    client = bench.client
    n = repeat
    print("making the corpus", flush=True)
    fresh = instances(n + 1, rows=rows, per_study=1)  # one-instance studies
    series = instances(n + 1, rows=rows, per_study=n + 1)  # one series of n + 1
    tens = [instances(10, rows=rows, per_study=10) for _ in range(max(1, n // 5))]
    large = instances(2, rows=1536, per_study=1)  # about 4.7 MB each: staged blocks
    small = 64
    del_instances = instances(n, rows=small, per_study=n)
    del_series = instances(3 * n, rows=small, per_study=3 * n, per_series=3)
    del_studies = instances(6 * n, rows=small, per_study=6, per_series=3)

    # -- startup: the first STOW and one read of each kind in a fresh process
    print("startup round (first calls of the process)", flush=True)
    mark = bench.recorder.mark()
    client.stow([fresh[0]])
    client.stow([series[0]])
    client.search("/studies?limit=1", [series[0].study], "0020000D")
    client.search(f"/studies/{series[0].study}/series", [series[0].series], "0020000E")
    client.metadata(series[0].path, [series[0].sop])
    client.frame(series[0])
    client.rendered(fresh[0])
    client.retrieve(series[0])
    client.delete(fresh[0].path)  # the first delete creates the cleanup queue
    bench.wait_for_deletes(mark, 1)
    bench.settle()
    startup = bench.recorder.since(mark)
    stored: list[Instance] = [series[0]]  # in store order, newest last

    def stow(batch: list[Instance]) -> None:
        client.stow(batch)
        stored.extend(batch)

    print("STOW", flush=True)
    bench.measure(
        "STOW 1 instance, new study",
        "instance",
        n,
        [partial(stow, [i]) for i in fresh[1:]],
    )
    bench.measure(
        "STOW 1 instance, existing series",
        "instance",
        n,
        [partial(stow, [i]) for i in series[1:]],
    )
    bench.measure(
        "STOW 10 instances in one request",
        "instance",
        10 * len(tens),
        [partial(stow, b) for b in tens],
        note=f"{len(tens)} requests of 10 instances, one new series each",
    )
    bench.measure(
        "STOW 1 large instance (4.7 MB)",
        "instance",
        len(large),
        [partial(stow, [i]) for i in large],
        note="uploaded in 1 MiB blocks",
    )
    for group in (del_instances, del_series, del_studies):
        for start in range(0, len(group), 10):
            stow(group[start : start + 10])

    # -- QIDO: expected answers from the store order (newest first)
    print("QIDO", flush=True)
    newest_studies = list(dict.fromkeys(i.study for i in reversed(stored)))
    newest_series = list(dict.fromkeys(i.series for i in reversed(stored)))
    newest_sops = [i.sop for i in reversed(stored)]
    target = series[0]
    in_series = [i.sop for i in reversed(series)]
    queries = [
        ("QIDO studies (limit 10)", "/studies?limit=10", newest_studies[:10], "0020000D"),
        ("QIDO series (limit 10)", "/series?limit=10", newest_series[:10], "0020000E"),
        ("QIDO instances (limit 10)", "/instances?limit=10", newest_sops[:10], "00080018"),
        (
            "QIDO series of a study",
            f"/studies/{target.study}/series",
            [target.series],
            "0020000E",
        ),
        (
            f"QIDO instances of a series ({len(in_series)})",
            f"/studies/{target.study}/series/{target.series}/instances",
            in_series,
            "00080018",
        ),
    ]
    for name, path, expected, tag in queries:
        # The server caches the summary attributes of the latest instances it returned, so
        # the first run of a query and its repetitions cost differently.
        for when, times in (("first", 1), ("again", n)):
            bench.measure(
                f"{name}, {when}",
                "request",
                times,
                [partial(client.search, path, expected, tag)] * times,
                note=f"{len(expected)} results a page",
            )

    print("WADO", flush=True)
    readable = series[1:]
    bench.measure(
        "frame (as stored)",
        "request",
        n,
        [partial(client.frame, i) for i in readable],
    )
    bench.measure(
        "rendered frame, first of its instance",
        "request",
        n,
        [partial(client.rendered, i) for i in readable],
    )
    bench.measure(
        "rendered frame, header cached",
        "request",
        n,
        [partial(client.rendered, i) for i in readable],
    )
    bench.measure(
        "metadata of an instance",
        "request",
        n,
        [partial(client.metadata, i.path, [i.sop]) for i in readable],
    )
    series_path = f"/studies/{target.study}/series/{target.series}"
    study_path = f"/studies/{target.study}"
    every_sop = [i.sop for i in series]
    bench.measure(
        f"metadata of a series ({len(series)} instances)",
        "request",
        n,
        [partial(client.metadata, series_path, every_sop)] * n,
    )
    bench.measure(
        f"metadata of a study ({len(series)} instances)",
        "request",
        n,
        [partial(client.metadata, study_path, every_sop)] * n,
    )
    for level, path, sops in (
        ("instance", readable[0].path, [readable[0].sop]),
        ("series", series_path, every_sop),
        ("study", study_path, every_sop),
    ):
        etag = client.metadata(path, sops)
        bench.measure(
            f"304 revalidation, {level} metadata",
            "request",
            n,
            [partial(client.revalidate, path, etag)] * n,
        )
    bench.measure(
        "retrieve an instance",
        "request",
        n,
        [partial(client.retrieve, i) for i in readable],
    )

    print("delete", flush=True)
    bench.measure(
        "delete an instance",
        "request",
        n,
        [partial(client.delete, i.path) for i in del_instances],
        deferred_deletes=1,
    )
    by_series: dict[str, list[Instance]] = defaultdict(list)
    for i in del_series:
        by_series[i.series].append(i)
    bench.measure(
        "delete a series (3 instances)",
        "request",
        len(by_series),
        [
            partial(client.delete, f"/studies/{s[0].study}/series/{s[0].series}")
            for s in by_series.values()
        ],
        deferred_deletes=3,
    )
    by_study: dict[str, list[Instance]] = defaultdict(list)
    for i in del_studies:
        by_study[i.study].append(i)
    bench.measure(
        "delete a study (2 series, 6 instances)",
        "request",
        len(by_study),
        [partial(client.delete, f"/studies/{s}") for s in by_study],
        deferred_deletes=6,
    )
    for path in (
        del_instances[0].path,
        f"/studies/{del_series[0].study}/series/{del_series[0].series}",
        f"/studies/{del_studies[0].study}",
    ):
        client.gone(path)
    return startup


# --------------------------------------------------------------------------- reporting


def _per(count: float, unit_count: int) -> str:
    value = count / unit_count
    return f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"


def _kinds(calls: Sequence[Call], unit_count: int) -> str:
    counts = Counter(c.kind for c in calls)
    return ", ".join(f"{kind} {_per(n, unit_count)}" for kind, n in counts.most_common()) or "-"


def _kb(value: float) -> str:
    return f"{value / 1024:.1f} KB"


def report_one(m: Measurement, verbose: bool) -> None:
    k = m.count
    print(f"\n{m.name}  ({m.requests} requests; figures per {m.unit}, over {k})")
    if m.note:
        print(f"  ({m.note})")
    for service in ("cosmos", "blob", "queue"):
        calls = [c for c in m.calls if c.service == service]
        label = {"cosmos": "Cosmos", "blob": "Blob", "queue": "Queue"}[service]
        print(f"  {label:<7}{_per(len(calls), k):>5}  {_kinds(calls, k)}")
        if service == "cosmos" and calls:
            sent = sum(c.sent for c in calls) / k
            received = sum(c.received for c in calls) / k
            ru = sum(c.ru for c in calls) / k
            print(f"  {'':<12} sent {_kb(sent)}, received {_kb(received)}; est. {ru:.1f} RU")
            writes = [w for c in calls for w in c.writes]
            if writes:
                grouped: dict[tuple[str, str], list[Written]] = defaultdict(list)
                for w in writes:
                    grouped[(w.op, w.kind)].append(w)
                parts = [
                    f"{op} {kind} {_per(len(ws), k)} x {sum(w.size for w in ws) / len(ws):.0f} B"
                    f" ({sum(w.terms for w in ws) / len(ws):.0f} terms)"
                    for (op, kind), ws in sorted(grouped.items(), key=lambda i: -len(i[1]))
                ]
                print(f"  {'':<12} documents: " + ", ".join(parts))
    if m.deferred:
        print(f"  later  {_per(len(m.deferred), k):>5}  {_kinds(m.deferred, k)}  (cleanup queue)")
    if verbose:
        per_request = max(1, len(m.calls) // max(1, m.requests))
        print("  calls of the first request:")
        for c in m.calls[: min(per_request, VERBOSE_LINES)]:
            detail = " ".join(c.detail.split())[:90]
            print(
                f"    {c.service:<6} {c.kind:<26} {c.target:<12} {c.status:>3}"
                f" {c.sent:>8} {c.received:>8}  {detail}"
            )


def report(results: Sequence[Measurement], startup: Sequence[Call], verbose: bool) -> None:
    print("\n=== calls per operation (every answer checked) ===")
    for m in results:
        report_one(m, verbose)
    print(
        "\n=== startup round: every call of a fresh process's first requests (two STOWs, one"
        " read of each kind, one delete), one-time calls included ==="
    )
    print(f"  Cosmos {_kinds([c for c in startup if c.service == 'cosmos'], 1)}")
    print(f"  Blob   {_kinds([c for c in startup if c.service == 'blob'], 1)}")
    print(f"  Queue  {_kinds([c for c in startup if c.service == 'queue'], 1)}")
    print("\n=== summary (per unit) ===")
    print(
        f"  {'operation':<42}{'unit':<10}{'Cosmos':>7}{'reads':>7}{'queries':>8}{'writes':>7}"
        f"{'est RU':>8}{'Blob':>6}{'Queue':>6}{'later':>6}"
    )
    for m in results:
        k = m.count
        cosmos = [c for c in m.calls if c.service == "cosmos"]
        reads = sum(1 for c in cosmos if c.kind == "point read")
        queries = sum(1 for c in cosmos if c.kind.startswith("query"))
        writes = sum(1 for c in cosmos if c.writes)
        ru = sum(c.ru for c in cosmos) / k
        blob = sum(1 for c in m.calls if c.service == "blob")
        queue = sum(1 for c in m.calls if c.service == "queue")
        print(
            f"  {m.name:<42}{m.unit:<10}{_per(len(cosmos), k):>7}{_per(reads, k):>7}"
            f"{_per(queries, k):>8}{_per(writes, k):>7}{ru:>8.1f}{_per(blob, k):>6}"
            f"{_per(queue, k):>6}{_per(len(m.deferred), k):>6}"
        )


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=10, help="requests per operation")
    parser.add_argument("--rows", type=int, default=512, help="rows (= columns) of CT slices")
    parser.add_argument(
        "--delete-delay",
        type=float,
        default=1,
        help="DICOM_AZURE_BLOB_DELETE_DELAY_SECONDS of the server (600 in Azure)",
    )
    parser.add_argument("--verbose", action="store_true", help="list the calls of each operation")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="azure-calls-"))
        )
        workdir.mkdir(parents=True, exist_ok=True)
        print("starting Azurite and the Cosmos DB test server", flush=True)
        emulators = Emulators(workdir / "emulators").start()
        stack.callback(emulators.stop)
        recorder = Recorder(IndexingPolicy.from_bicep())
        proxies = CountingProxies(recorder, emulators).start()
        stack.callback(proxies.stop)
        server = OurServer(workdir, proxies.ports, args.delete_delay)
        stack.callback(server.stop)
        client = Client(server.url)
        bench = Bench(recorder, client, args.delete_delay)
        try:
            startup = scenarios(bench, args.repeat, args.rows)
        except Failure as exc:
            print(f"\nan answer was wrong, so nothing is reported: {exc}", file=sys.stderr)
            print(server.log_path.read_text()[-3000:], file=sys.stderr)
            return 1
        report(bench.results, startup, args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
