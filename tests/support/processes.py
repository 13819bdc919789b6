"""Processes for tests of what a dead process leaves behind."""

from __future__ import annotations

import subprocess
import sys


def dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
