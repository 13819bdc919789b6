"""How the local host serves the viewer's files (functions_host/viewer.py), on a small fake
build: what is served, with which type and caching, and what is refused."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from functions_host import ohif
from functions_host.viewer import ViewerFiles, render_config, serves, viewer_enabled

INDEX = b"<!doctype html><title>viewer</title>"
BUNDLE = "app.bundle.0f6159c501addfe9.js"


@pytest.fixture()
def build(tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_bytes(INDEX)
    (dist / BUNDLE).write_text("console.log('app');")
    (dist / "app.bundle.css").write_text("body{}")
    (dist / "0ddf166f7a343eda.wasm").write_bytes(b"\0asm")
    (dist / "assets" / "favicon-16x16.png").write_bytes(b"\x89PNG")
    (dist / "notes.unknownext").write_text("?")
    (dist / ".installed.json").write_text("{}")
    (tmp_path / "secret.txt").write_text("outside")
    (dist / "leak.txt").symlink_to(tmp_path / "secret.txt")
    return dist


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "ohif-config.js"
    path.write_text("window.config = {};")
    return path


@pytest.fixture()
async def client(build: Path, config: Path) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=ViewerFiles(build, config=config))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.mark.parametrize("path", ["/viewer", "/viewer/", "/viewer/viewer", "/viewer/local/"])
async def test_the_viewer_and_its_own_routes_answer_with_index_html(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path, params={"StudyInstanceUIDs": "1.2.3"})
    assert response.status_code == 200
    assert response.content == INDEX
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    ("path", "content_type", "cache"),
    [
        (f"/viewer/{BUNDLE}", "text/javascript; charset=utf-8", "immutable"),
        ("/viewer/0ddf166f7a343eda.wasm", "application/wasm", "immutable"),
        ("/viewer/app.bundle.css", "text/css; charset=utf-8", "no-cache"),
        ("/viewer/assets/favicon-16x16.png", "image/png", "no-cache"),
        ("/viewer/notes.unknownext", "application/octet-stream", "no-cache"),
    ],
)
async def test_files_have_their_type_and_hashed_names_are_cached_for_good(
    client: httpx.AsyncClient, path: str, content_type: str, cache: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert cache in response.headers["cache-control"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_app_config_is_this_servers_configuration(
    client: httpx.AsyncClient, config: Path
) -> None:
    response = await client.get("/viewer/app-config.js")
    assert response.status_code == 200
    assert response.text == config.read_text()
    assert response.headers["content-type"] == "text/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"


async def test_a_revalidation_with_the_etag_is_a_304(client: httpx.AsyncClient) -> None:
    first = await client.get("/viewer/app.bundle.css")
    again = await client.get(
        "/viewer/app.bundle.css", headers={"If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == first.headers["etag"]


async def test_head_answers_the_headers_alone(client: httpx.AsyncClient) -> None:
    response = await client.head(f"/viewer/{BUNDLE}")
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len("console.log('app');"))
    assert response.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/viewer/missing.js",  # a file, not a route: never index.html in its place
        "/viewer/%2e%2e/function_app.py",
        "/viewer/assets/..%2f..%2fsecret.txt",
        "/viewer/assets%2f..%2f..%2fsecret.txt",
        "/viewer/.installed.json",
        "/viewer/leak.txt",  # a symlink out of the folder
        "/viewer//etc/passwd",
        "/viewer/assets\\favicon-16x16.png",
        "/viewer/a%00.js",
    ],
)
async def test_paths_outside_the_build_or_missing_files_are_404(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.content == b""


@pytest.mark.parametrize(
    "path", ["/viewer/../secret.txt", "/viewer/assets/../index.html", "/viewer/./index.html"]
)
def test_dot_segments_as_a_client_may_send_them_unnormalized_are_refused(
    build: Path, path: str
) -> None:
    # httpx (like browsers) removes them before sending; curl --path-as-is does not.
    assert ViewerFiles(build).resolve(path) is None


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
async def test_only_get_and_head_are_allowed(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/viewer/")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_the_viewer_owns_viewer_and_below_only() -> None:
    assert serves("/viewer") and serves("/viewer/") and serves("/viewer/a/b")
    assert not serves("/viewers") and not serves("/v2/viewer") and not serves("/")


@pytest.mark.parametrize(
    ("value", "enabled"),
    [(None, False), ("", False), ("false", False), ("0", False), ("true", True), ("ON", True)],
)
def test_dicom_viewer_reads_like_the_apps_booleans(value: str | None, enabled: bool) -> None:
    assert viewer_enabled(value) is enabled


def test_dicom_viewer_refuses_what_is_not_a_boolean() -> None:
    with pytest.raises(ValueError, match="DICOM_VIEWER must be true or false"):
        viewer_enabled("maybe")


def test_a_folder_without_a_build_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no viewer installed"):
        ViewerFiles(tmp_path)


# -- data partitions: the config's switch ----------------------------------------------------

# Evaluates ohif-config.js as the page would, with the page's address given, and prints the
# data source's QIDO root and friendly name.
_EVALUATE_CONFIG = """
const [source, address] = process.argv.slice(1);
const url = new URL(address);
const window = { location: { origin: url.origin, search: url.search } };
new Function('window', source)(window);
const configuration = window.config.dataSources[0].configuration;
console.log(JSON.stringify([configuration.qidoRoot, configuration.wadoRoot]));
"""


def api_roots(config: bytes, address: str) -> list[str]:
    """The QIDO and WADO roots the config gives a page at ``address`` (run by Node.js)."""
    node = shutil.which("node")
    if node is None:  # make test installs it, for the emulators
        pytest.fail("needs Node.js, which make test installs")
    result = subprocess.run(
        [node, "-e", _EVALUATE_CONFIG, config.decode("utf-8"), address],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    roots: list[str] = json.loads(result.stdout)
    return roots


def test_the_viewer_reads_v2_while_partitions_are_off() -> None:
    config = render_config(ohif.CONFIG.read_text(), data_partitions=False)
    assert api_roots(config, "http://127.0.0.1:7071/viewer/") == ["http://127.0.0.1:7071/v2"] * 2
    # A partition named in the address is not asked for: the server would refuse it.
    assert api_roots(config, "http://h/viewer/?partition=research") == ["http://h/v2"] * 2


def test_with_partitions_the_viewer_reads_the_named_one_or_the_default() -> None:
    config = render_config(ohif.CONFIG.read_text(), data_partitions=True)
    assert api_roots(config, "http://h/viewer/") == ["http://h/v2/partitions/Microsoft.Default"] * 2
    assert (
        api_roots(config, "http://h/viewer/?partition=research")
        == ["http://h/v2/partitions/research"] * 2
    )
    # A name is one path segment, whatever it holds.
    assert (
        api_roots(config, "http://h/viewer/?partition=a%2Fb")
        == ["http://h/v2/partitions/a%2Fb"] * 2
    )


async def test_with_partitions_the_host_serves_the_config_switched_on(
    build: Path, config: Path
) -> None:
    config.write_text("const dataPartitions = false;\nwindow.config = {};")
    app = ViewerFiles(build, config=config, data_partitions=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.get("/viewer/app-config.js")
        assert response.status_code == 200
        assert response.text == "const dataPartitions = true;\nwindow.config = {};"
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        again = await http.get(
            "/viewer/app-config.js", headers={"If-None-Match": response.headers["etag"]}
        )
        assert again.status_code == 304 and again.content == b""
        head = await http.head("/viewer/app-config.js")
        assert head.headers["content-length"] == str(len(response.content))
        assert head.content == b""
        # An edit shows at once, with a new ETag.
        config.write_text("const dataPartitions = false;\nwindow.config = {a: 1};")
        edited = await http.get(
            "/viewer/app-config.js", headers={"If-None-Match": response.headers["etag"]}
        )
        assert edited.status_code == 200 and "{a: 1}" in edited.text
