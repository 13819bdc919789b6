"""Resident memory of a server under test, sampled while a block runs.

Tests that bound what a request may make the server allocate (a 1 GB STOW, a decompression
bomb) compare the peak with the memory before the block.
"""

from __future__ import annotations

import contextlib
import threading

import psutil


def tree_rss(pid: int) -> int:
    """Resident memory of the process and every process it started."""
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return int(total)


class PeakSampler:
    """Samples ``tree_rss(pid)`` every ``interval`` seconds while a ``with`` block runs."""

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.baseline = tree_rss(pid)
        self.peak = self.baseline
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, tree_rss(self.pid))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self.pid))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
