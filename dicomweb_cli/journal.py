"""The upload journal: which files a previous run stored, so that a resumed run skips them.

One JSON line per file, appended and flushed after each STOW answer, so that an interrupted
run (Ctrl-C, a lost connection, a reboot) loses at most the requests in flight. A file is
recognised by its path, size and modification time: a file edited since is sent again. Lines
cut short by a crash are ignored.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import IO

from dicomweb_cli.files import DicomFile

DEFAULT_NAME = ".dicomweb-upload.journal"


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._done: set[str] = set()
        self._stream: IO[str] | None = None
        # Batches finish concurrently and record from worker threads (fsync blocks).
        self._lock = threading.Lock()
        if path.exists():
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    try:
                        entry = json.loads(line)
                        self._done.add(f"{entry['path']}\0{entry['size']}\0{entry['mtime_ns']}")
                    except (ValueError, KeyError, TypeError):
                        continue

    def __contains__(self, file: DicomFile) -> bool:
        return file.key in self._done

    def __len__(self) -> int:
        return len(self._done)

    def record(self, entries: list[tuple[DicomFile, str | None, str]]) -> None:
        """Remember ``(file, SOP Instance UID, outcome)`` for files the server now has."""
        if not entries:
            return
        with self._lock:
            self._append(entries)

    def _append(self, entries: list[tuple[DicomFile, str | None, str]]) -> None:
        if self._stream is None:
            self._stream = self.path.open("a", encoding="utf-8")
        for file, sop_uid, outcome in entries:
            line = {
                "path": str(file.path),
                "size": file.size,
                "mtime_ns": file.mtime_ns,
                "sop_instance_uid": sop_uid,
                "outcome": outcome,
            }
            self._stream.write(json.dumps(line) + "\n")
            self._done.add(file.key)
        self._stream.flush()
        os.fsync(self._stream.fileno())

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
