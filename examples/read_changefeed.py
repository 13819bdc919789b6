"""Read a DICOMweb server's change feed from a sequence on, in pages, each change once.

    python examples/read_changefeed.py --url http://127.0.0.1:7071 [--offset 0] [--follow]

Prints one line per entry (sequence, action, state, SOP Instance UID) and, at the end, the
last sequence read: pass it as ``--offset`` next time to go on where this run stopped. With
``--follow`` it keeps polling for new entries. Uses only the standard library, so it runs
anywhere Python does; add an ``Authorization: Bearer`` header with ``--token`` for a
deployment with Entra ID sign-in.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

PAGE = 100


def pages(url: str, offset: int, token: str | None) -> Iterator[list[dict[str, Any]]]:
    """Pages of entries after ``offset``, by sequence, until one comes back empty."""
    while True:
        query = urllib.parse.urlencode(
            {"offset": offset, "limit": PAGE, "includeMetadata": "false"}
        )
        request = urllib.request.Request(f"{url}/v1/changefeed?{query}")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request) as response:
            page: list[dict[str, Any]] = json.load(response)
        if not page:
            return
        yield page
        offset = page[-1]["Sequence"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:7071")
    parser.add_argument("--offset", type=int, default=0, help="last sequence already read")
    parser.add_argument("--follow", action="store_true", help="keep polling for new entries")
    parser.add_argument("--token", help="an Entra ID access token for the service")
    args = parser.parse_args()
    offset = args.offset
    while True:
        for page in pages(args.url.rstrip("/"), offset, args.token):
            for entry in page:
                print(entry["Sequence"], entry["Action"], entry["State"], entry["SopInstanceUid"])
            offset = page[-1]["Sequence"]
        if not args.follow:
            print(f"last sequence: {offset}", file=sys.stderr)
            return 0
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
