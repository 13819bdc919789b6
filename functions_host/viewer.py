"""``DICOM_VIEWER=true``: the local host serves the OHIF Viewer at ``/viewer``, same origin.

A newcomer's ``make run`` then shows stored studies in a browser with nothing else to install
or configure: the viewer (``functions_host.ohif``, installed on first use) reads this server's
``/v2`` from the page's own origin, so neither CORS nor sign-in is involved.

The viewer is the local host's, never the app's: ``function_app.py`` has no route for it, and
nothing here is deployed (``.funcignore`` leaves out ``functions_host/`` and ``tools/``). The
host answers ``/viewer`` and ``/viewer/...`` before routing to the functions, so with the
setting off, or in Azure, those paths reach the app's catch-all (``zz_unknown_route``) and
its JSON 404 as before. Off by default.

How files are served:
- only the installed folder, resolved and checked to stay inside it (``..``, encoded
  separators, dot files, symlinks leading out: 404);
- ``app-config.js`` is ``ohif-config.js`` of this package (the data source is this server).
  With ``DICOM_DATA_PARTITIONS=true`` it is served with its ``dataPartitions`` switch on, so
  the viewer asks for ``/v2/partitions/{name}/...``: the unpartitioned routes answer 400 then,
  as in Azure;
- a path whose last segment has no extension is a route of the viewer's own (``/viewer/``,
  ``/viewer/viewer?StudyInstanceUIDs=...``): the answer is ``index.html``, which the viewer's
  router reads; a missing file with an extension is a 404, never HTML in place of a script;
- content types from a fixed table (the system's MIME database varies between machines),
  ``X-Content-Type-Options: nosniff``;
- caching: files named with a content hash (``app.bundle.0f6159c501addfe9.js``) never change,
  so a browser keeps them a year; everything else, ``index.html`` and the config among them,
  is revalidated on every load (ETag, 304), so an upgrade or a config edit shows at once;
- GET and HEAD only (405 with ``Allow`` otherwise); ranges as Starlette's ``FileResponse``
  serves them.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import FileResponse

from functions_host import ohif

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIX = ohif.BASE_PATH.rstrip("/")  # "/viewer"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".jsonc": "application/json",
    ".map": "application/json",
    ".webapp": "application/x-web-app-manifest+json",
    ".wasm": "application/wasm",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".xml": "application/xml",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}
# webpack's [contenthash] in the viewer's file names: 16 hex digits.
_HASHED_NAME = re.compile(r"(?:^|\.)[0-9a-f]{16}\.[a-z0-9]+$")
_IMMUTABLE = "public, max-age=31536000, immutable"
_REVALIDATE = "no-cache"
# The line of ohif-config.js the host switches on with DICOM_DATA_PARTITIONS=true.
_PARTITIONS_OFF = "const dataPartitions = false;"
_PARTITIONS_ON = "const dataPartitions = true;"


def viewer_enabled(value: str | None) -> bool:
    """The ``DICOM_VIEWER`` setting, read as the app reads its booleans; anything else is
    refused, so a typo does not quietly leave the viewer off."""
    raw = (value or "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ValueError(f"DICOM_VIEWER must be true or false, got {value!r}")


def serves(path: str) -> bool:
    """Whether a request path is the viewer's: ``/viewer`` and everything under ``/viewer/``."""
    return path == PREFIX or path.startswith(PREFIX + "/")


class ViewerFiles:
    """An ASGI app serving the installed viewer under ``/viewer`` (module docstring)."""

    def __init__(
        self, root: Path, *, config: Path = ohif.CONFIG, data_partitions: bool = False
    ) -> None:
        self._root = root.resolve()
        if not (self._root / "index.html").is_file():
            raise RuntimeError(f"no viewer installed in {root} (python -m functions_host.ohif)")
        self._config = config.resolve()
        self._overrides = {"app-config.js": self._config}
        self._data_partitions = data_partitions
        # The switched config and its ETag, for the (mtime, size) of the file it was read at.
        self._rendered: tuple[tuple[int, int], bytes, str] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = str(scope["method"]).upper()
        if method not in ("GET", "HEAD"):
            await _empty(send, 405, [(b"allow", b"GET, HEAD")])
            return
        found = self.resolve(str(scope["path"]))
        if found is None:
            await _empty(send, 404)
            return
        path, stat_result = found
        if path == self._config and self._data_partitions:
            await self._send_partitioned_config(scope, send, stat_result)
            return
        headers = {
            "cache-control": _IMMUTABLE if _HASHED_NAME.search(path.name) else _REVALIDATE,
            "x-content-type-options": "nosniff",
        }
        response = FileResponse(
            path, headers=headers, media_type=content_type(path.name), stat_result=stat_result
        )
        if _not_modified(Headers(scope=scope), response.headers["etag"]):
            kept = [
                (name.encode("latin-1"), value.encode("latin-1"))
                for name, value in response.headers.items()
                if name in ("etag", "cache-control", "last-modified")
            ]
            await _empty(send, 304, kept, length=False)
            return
        await response(scope, receive, send)

    async def _send_partitioned_config(
        self, scope: Scope, send: Send, stat_result: os.stat_result
    ) -> None:
        """The config with its partitions switch on, with an ETag of its content. It is read
        again only when the file changed (an edit shows at once, as for the other files)."""
        version = (stat_result.st_mtime_ns, stat_result.st_size)
        if self._rendered is None or self._rendered[0] != version:
            text = await asyncio.to_thread(self._config.read_text, encoding="utf-8")
            body = render_config(text, data_partitions=True)
            self._rendered = version, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        _, body, etag = self._rendered
        headers = [
            (b"etag", etag.encode("ascii")),
            (b"cache-control", _REVALIDATE.encode("ascii")),
        ]
        if _not_modified(Headers(scope=scope), etag):
            await _empty(send, 304, headers, length=False)
            return
        headers += [
            (b"content-type", content_type("app-config.js").encode("ascii")),
            (b"x-content-type-options", b"nosniff"),
            (b"content-length", str(len(body)).encode("ascii")),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        head_only = str(scope["method"]).upper() == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head_only else body})

    def resolve(self, request_path: str) -> tuple[Path, os.stat_result] | None:
        """The file a request path names, or None (a 404). ``request_path`` is ASGI's, so
        percent-escapes are already decoded: ``%2F`` arrives as ``/`` and is checked here."""
        if not serves(request_path):
            return None
        segments = request_path[len(PREFIX) :].split("/")[1:]
        if segments and segments[-1] == "":
            segments.pop()  # "/viewer/" and "/viewer/viewer/": a route, not a folder
        if any(_refused(segment) for segment in segments):
            return None
        if not segments:
            return self._file(self._root / "index.html", inside=self._root)
        if len(segments) == 1 and segments[0] in self._overrides:
            return self._file(self._overrides[segments[0]], inside=None)
        found = self._file(self._root.joinpath(*segments), inside=self._root)
        if found is not None:
            return found
        if "." not in segments[-1]:  # a route of the viewer's own
            return self._file(self._root / "index.html", inside=self._root)
        return None

    def _file(self, candidate: Path, *, inside: Path | None) -> tuple[Path, os.stat_result] | None:
        """The regular file at ``candidate``, if it is one and, resolved, inside ``inside``."""
        try:
            resolved = candidate.resolve(strict=True)
            if inside is not None and not resolved.is_relative_to(inside):
                return None  # a symlink leading out of the folder
            stat_result = resolved.stat()
        except (OSError, ValueError):
            return None
        return (resolved, stat_result) if stat.S_ISREG(stat_result.st_mode) else None


def render_config(text: str, *, data_partitions: bool) -> bytes:
    """``ohif-config.js`` as served: its ``dataPartitions`` switch set to the setting."""
    if data_partitions:
        text = text.replace(_PARTITIONS_OFF, _PARTITIONS_ON, 1)
    return text.encode("utf-8")


def content_type(name: str) -> str:
    """From the table alone: every kind of file the build has is in it."""
    return _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def _refused(segment: str) -> bool:
    """Empty segments (``//``), dot files and ``.``/``..``, and separators or NUL inside one."""
    return segment == "" or segment.startswith(".") or any(c in segment for c in "\\\0")


def _not_modified(request: Headers, etag: str) -> bool:
    tags = request.get("if-none-match")
    if tags is None:
        return False
    return any(tag.strip().removeprefix("W/") in (etag, "*") for tag in tags.split(","))


async def _empty(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    length: bool = True,
) -> None:
    head = list(headers or [])
    if length:
        head.append((b"content-length", b"0"))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
