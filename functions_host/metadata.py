"""``python -m functions_host.metadata``: the app's functions as the runtime indexes them.

Prints, as JSON, what the runtime answers the host's FunctionsMetadataRequest with for the
app in the working directory: each function's name and bindings (function.json's shape).
This is what the Functions host builds its routes and triggers from in Azure, so routing can
be checked against it without serving anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

from functions_host.worker import RuntimeWorker, app_directory


async def _metadata(app_dir: Path) -> list[dict[str, object]]:
    worker = RuntimeWorker(app_dir, function_timeout=60)
    await worker.start()
    try:
        return [{"name": f.name, "bindings": list(f.bindings)} for f in worker.functions]
    finally:
        await worker.stop()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app_dir = app_directory()
    sys.path.insert(0, str(app_dir))
    # The runtime's server logs to stdout at start; the JSON alone goes there.
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:
        found = asyncio.run(_metadata(app_dir))
    finally:
        sys.stdout = real_stdout
    json.dump(found, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
