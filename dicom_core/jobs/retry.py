"""The retry and poison rule of every queue-triggered job, read from host.json.

The Functions host retries a failed queue message until ``extensions.queues.maxDequeueCount``
deliveries, then moves it to ``<queue>-poison``. The job handlers must know which delivery is
the last one (a reindex marks its operation Failed then), and the local host must apply the
same count; both read it here, from the same host.json, so they cannot disagree.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The host's default when host.json does not set maxDequeueCount.
DEFAULT_MAX_DEQUEUE_COUNT = 5


@dataclass(frozen=True, slots=True)
class RetryRule:
    """How often a message is delivered before it is poison."""

    max_dequeue_count: int = DEFAULT_MAX_DEQUEUE_COUNT

    def is_final(self, dequeue_count: int) -> bool:
        """Whether delivery number ``dequeue_count`` (1-based) is the last one: if it fails,
        the message goes to the poison queue."""
        return dequeue_count >= self.max_dequeue_count

    @classmethod
    def from_host_json(cls, host_json: Mapping[str, Any]) -> RetryRule:
        queues = host_json.get("extensions", {}).get("queues", {})
        return cls(int(queues.get("maxDequeueCount", DEFAULT_MAX_DEQUEUE_COUNT)))

    @classmethod
    def from_app_dir(cls, app_dir: Path) -> RetryRule:
        """The rule of the app in ``app_dir`` (its host.json; the host's default without one)."""
        try:
            host_json = json.loads((app_dir / "host.json").read_text())
        except (OSError, ValueError):
            return cls()
        return cls.from_host_json(host_json if isinstance(host_json, dict) else {})
