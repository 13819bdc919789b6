"""Check with strace that every acknowledged STOW instance is on disk before its answer.

Usage::

    python benchmarks/durability_trace.py [--requests 5] [--parts 2] [--keep-trace PATH]

Why a system-call trace: a power cut cannot be staged on a shared machine, but the order of
the calls that make a store durable can be watched from outside. The script starts the local
host (``python -m functions_host``, direct engine, one worker, a temporary DATA_DIR) under
``strace -f``, sends a few STOW requests one after the other, and reads the trace back. For
every instance a response acknowledged, it checks that, before the response's first bytes
were sent on the socket:

- the file's data was synced, under its staged name before the rename or under its final
  name after it (the local writer renames first: the fresh name means nothing until the
  commit);
- the final name's directory was synced after the rename (the name itself);
- the index's COMMIT (SQLite's writes to ``index.sqlite-wal``) came after both, so no crash
  can leave a committed row naming lost data;
- the WAL was synced (``fsync``/``fdatasync``) after the COMMIT.

It prints one line per instance and the verdict; the exit status is 0 only if every instance
passed. Run it with ``DICOM_DURABLE_WRITES=false`` to see the check fail. Needs ``strace``
(``apt-get install -y strace``); requests go one at a time so that the next answer sent after
an instance's rename is that instance's own.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.corpus import ct_instances  # noqa: E402
from benchmarks.stow import Multipart  # noqa: E402
from benchmarks.stow_compare import wait_until_up  # noqa: E402

PORT = 7093
SYSCALLS = (
    "fsync,fdatasync,rename,renameat,renameat2,link,linkat,write,writev,pwrite64,sendto,sendmsg"
)
_LINE = re.compile(r"^(?P<pid>\d+)\s+(?P<call>\w+)\((?P<args>.*)\)\s+=\s+(?P<ret>-?\d+)")
_FD_PATH = re.compile(r"^\d+<(?P<path>[^>]*)>")
_STRINGS = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Event:
    kind: str  # "sync", "place", "wal-write" or "respond"
    path: str = ""
    source: str = ""


def parse_trace(text: str) -> list[Event]:
    """The trace's syncs, renames and HTTP answers, in the order the calls completed."""
    pending: dict[str, str] = {}
    events: list[Event] = []
    for raw in text.splitlines():
        pid, _, rest = raw.partition(" ")
        rest = rest.lstrip()
        if rest.endswith("<unfinished ...>"):
            pending[pid] = rest[: -len("<unfinished ...>")].rstrip()
            continue
        resumed = re.match(r"^<\.\.\. \w+ resumed>(.*)$", rest)
        if resumed:
            rest = pending.pop(pid, "") + resumed.group(1)
        match = _LINE.match(f"{pid} {rest}")
        if match is None or int(match["ret"]) < 0:
            continue
        call, args = match["call"], match["args"]
        if call in {"fsync", "fdatasync"}:
            fd = _FD_PATH.match(args)
            if fd:
                events.append(Event("sync", fd["path"]))
        elif call in {"rename", "renameat", "renameat2", "link", "linkat"}:
            names = _STRINGS.findall(args)
            if len(names) >= 2:
                events.append(Event("place", names[1], names[0]))
        elif call in {"write", "pwrite64"} and args.split(",", 1)[0].endswith("-wal>"):
            events.append(Event("wal-write"))
        elif "TCP:" in args.split(",", 1)[0]:
            data = _STRINGS.search(args)
            if data and data.group(1).startswith("HTTP/1.1 "):
                events.append(Event("respond", data.group(1)[9:12]))
    return events


def check_instance(events: list[Event], sop_uid: str) -> tuple[bool, str]:
    """Was ``sop_uid``'s file, directory and index synced before its answer was sent?"""
    final = re.compile(rf"/{re.escape(sop_uid)}_[0-9a-f]+\.dcm$")
    placed = next(
        (i for i, e in enumerate(events) if e.kind == "place" and final.search(e.path)), None
    )
    if placed is None:
        return False, "no rename or link into place was traced"
    place = events[placed]
    answer = next((i for i in range(placed, len(events)) if events[i].kind == "respond"), None)
    if answer is None:
        return False, "no answer traced after the rename"
    # Everything since the previous answer belongs to this request (they go one at a time).
    start = max((i for i in range(placed) if events[i].kind == "respond"), default=-1) + 1
    before = events[start:placed]
    window = events[placed + 1 : answer]

    def synced(path: str, among: list[Event]) -> int | None:
        return next((i for i, e in enumerate(among) if e.kind == "sync" and e.path == path), None)

    data_sync = synced(place.path, window)
    if synced(place.source, before) is None and data_sync is None:
        return False, f"{place.path}: data not synced before the answer"
    directory = os.path.dirname(place.path)
    dir_sync = synced(directory, window)
    if dir_sync is None:
        return False, f"directory {directory} not synced between rename and answer"
    last_sync = max(dir_sync, data_sync if data_sync is not None else -1)
    wal_writes = [i for i, e in enumerate(window) if e.kind == "wal-write"]
    if not wal_writes:
        return False, "no COMMIT (write to the index WAL) traced before the answer"
    if wal_writes[0] < last_sync:
        return False, "the index was written before the file and its directory were synced"
    if not any(e.kind == "sync" and e.path.endswith("-wal") for e in window[wal_writes[-1] :]):
        return False, "index WAL not synced after the COMMIT and before the answer"
    return True, "file, directory, then COMMIT and WAL synced before the answer"


def stow(root: str, instances: list[bytes]) -> list[str]:
    """One STOW request; returns the SOP Instance UIDs its answer acknowledges."""
    multipart = Multipart()
    body = b"".join(
        f"--{multipart.boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + data
        + b"\r\n"
        for data in instances
    )
    body += f"--{multipart.boundary}--\r\n".encode()
    request = urllib.request.Request(
        f"{root}/studies",
        data=body,
        method="POST",
        headers={"Content-Type": multipart.content_type, "Accept": "application/dicom+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    referenced = answer.get("00081199", {}).get("Value", [])
    return [str(item["00081155"]["Value"][0]) for item in referenced]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--parts", type=int, default=2, help="instances per request")
    parser.add_argument("--keep-trace", type=Path, help="copy the raw trace here")
    args = parser.parse_args()
    if shutil.which("strace") is None:
        print("strace is not installed (apt-get install -y strace)", file=sys.stderr)
        return 2

    corpus = ct_instances(args.requests * args.parts, rows=64, cols=64)
    with tempfile.TemporaryDirectory(prefix="durability-trace-") as scratch:
        data_dir = Path(scratch) / "data"
        trace_file = Path(scratch) / "trace.txt"
        env = {
            **os.environ,
            "DICOM_HOST_ENGINE": "direct",
            "DICOM_LOCAL_WORKERS": "1",
            "DATA_DIR": str(data_dir),
            "PORT": str(PORT),
            "DICOM_LOG_LEVEL": "WARNING",
        }
        command = ["strace", "-f", "-qq", "-yy", "-s", "24", "-e", f"trace={SYSCALLS}"]
        command += ["-e", "signal=none", "-o", str(trace_file), sys.executable, "-m"]
        command += ["functions_host"]
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        acknowledged: list[str] = []
        try:
            root = f"http://127.0.0.1:{PORT}/v2"
            wait_until_up(f"{root}/studies", timeout=90)
            for _ in range(args.requests):
                batch = [next(corpus) for _ in range(args.parts)]
                acknowledged += stow(root, batch)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        text = trace_file.read_text(errors="replace")
        if args.keep_trace:
            args.keep_trace.write_text(text)

    events = parse_trace(text)
    durable = os.environ.get("DICOM_DURABLE_WRITES", "true")
    print(f"DICOM_DURABLE_WRITES={durable}; {len(acknowledged)} instances acknowledged")
    failures = 0
    for sop_uid in acknowledged:
        ok, reason = check_instance(events, sop_uid)
        failures += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {sop_uid}: {reason}")
    verdict = "PASS" if acknowledged and not failures else "FAIL"
    passed = len(acknowledged) - failures
    print(f"verdict: {verdict} ({passed}/{len(acknowledged)} durable before their answer)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
