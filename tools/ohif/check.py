"""Load a study from our server in the real OHIF viewer (headless Chromium) and screenshot it.

A manual end-to-end check, not part of `make test` (it downloads the ~50 MB OHIF build from
npm and needs Debian's chromium). It serves the prebuilt viewer from the `@ohif/app` npm
package next to a same-origin proxy to the DICOMweb API (so no CORS setup is needed), with a
data source configured the way OHIF is configured for the Azure DICOM service, then asks
Chromium to open the study list and a study and saves both screenshots.

    .venv/bin/python tools/ohif/check.py --server http://127.0.0.1:7071 --study 1.2.3 --out /tmp
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

OHIF_VERSION = "3.13.2"
CACHE = Path(__file__).resolve().parent / ".cache"

CONFIG = """window.config = {
  routerBasename: null,
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 2,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  defaultDataSourceName: 'dicomweb',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        friendlyName: 'DICOMweb on Azure Functions',
        name: 'azure-functions',
        wadoUriRoot: '/dicomweb',
        qidoRoot: '/dicomweb',
        wadoRoot: '/dicomweb',
        qidoSupportsIncludeField: false,
        supportsReject: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        staticWado: true,
        singlepart: 'bulkdata,video',
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
        omitQuotationForMultipartRequest: true,
      },
    },
  ],
};
"""


def ohif_dist() -> Path:
    """The viewer's prebuilt files, fetched once with `npm pack` into tools/ohif/.cache."""
    dist = CACHE / f"app-{OHIF_VERSION}" / "package" / "dist"
    if dist.exists():
        return dist
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(["npm", "pack", f"@ohif/app@{OHIF_VERSION}"], cwd=CACHE, check=True)
    with tarfile.open(CACHE / f"ohif-app-{OHIF_VERSION}.tgz") as archive:
        archive.extractall(CACHE / f"app-{OHIF_VERSION}", filter="data")
    return dist


def build_app(dist: Path, api: str) -> Starlette:
    client = httpx.AsyncClient(base_url=api, timeout=120)

    async def proxy(request: Request) -> Response:
        path = request.path_params["path"]
        upstream = client.build_request(
            request.method,
            f"/v2/{path}",
            params=list(request.query_params.multi_items()),
            headers={k: v for k, v in request.headers.items() if k.lower() in {"accept"}},
        )
        answer = await client.send(upstream, stream=True)
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers={
                k: v
                for k, v in answer.headers.items()
                if k.lower() in {"content-type", "etag", "content-length"}
            },
        )

    async def config(_: Request) -> Response:
        return Response(CONFIG, media_type="application/javascript")

    async def spa(_: Request) -> Response:
        return Response((dist / "index.html").read_text(), media_type="text/html")

    return Starlette(
        routes=[
            Route("/dicomweb/{path:path}", proxy, methods=["GET"]),
            Route("/app-config.js", config),
            Route("/viewer", spa),
            Route("/", spa),
            Mount("/", StaticFiles(directory=dist, html=True)),
        ]
    )


def screenshot(url: str, out: Path, budget_ms: int) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium not found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                "--window-size=1400,900",
                f"--virtual-time-budget={budget_ms}",
                f"--screenshot={out}",
                url,
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server", default="http://127.0.0.1:7071")
    parser.add_argument("--study", required=True, help="StudyInstanceUID to open")
    parser.add_argument("--port", type=int, default=3300)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--budget-ms", type=int, default=25000)
    args = parser.parse_args()

    app = build_app(ohif_dist(), args.server)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.1)
    base = f"http://127.0.0.1:{args.port}"
    args.out.mkdir(parents=True, exist_ok=True)
    screenshot(f"{base}/", args.out / "ohif-study-list.png", args.budget_ms)
    screenshot(
        f"{base}/viewer?StudyInstanceUIDs={args.study}",
        args.out / "ohif-viewer.png",
        args.budget_ms,
    )
    server.should_exit = True
    thread.join(timeout=10)
    print(f"screenshots in {args.out}: ohif-study-list.png, ohif-viewer.png")


if __name__ == "__main__":
    main()
