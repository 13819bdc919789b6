"""The OHIF Viewer that the local host serves at ``/viewer``: the prebuilt npm package, pinned.

``@ohif/app`` on npm (MIT) ships the viewer built: an ``index.html``, its bundles and assets
in ``dist/``, about 50 MB packed and 200 MB unpacked. ``npm pack`` fetches that one tarball,
without the package's dependency tree (the build needs none of it). The tarball must match
the integrity pinned here, whatever the registry says, and is unpacked under
``tools/ohif/.cache/`` (git-ignored, and outside the Azure package like everything in
``tools/`` and ``functions_host/``, see ``.funcignore``).

The build expects to be served at the root of its origin: ``window.PUBLIC_URL="/"`` and
absolute ``/...`` paths in ``index.html``, and webpack's public path, from which every chunk,
worker and WebAssembly codec is loaded, compiled into each bundle as ``"/"``. Serving it at
``/viewer/`` on this server's origin (the API keeps ``/``) needs both rewritten, which is done
once here, at install time, and checked: an edit that finds nothing to rewrite fails the
install rather than leaving a viewer that loads half its files from the wrong place. The
package's ``app-config.js``, which points at a public demo server, is removed; the host serves
``ohif-config.js`` from this package in its place (``functions_host.viewer``).

    python -m functions_host.ohif    # install unless installed (make viewer-files does this)
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "@ohif/app"
VERSION = "3.13.2"
# The registry's dist.integrity of @ohif/app 3.13.2 (Subresource Integrity form).
INTEGRITY = (
    "sha512-"
    "WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)
# Where the viewer is served: its PUBLIC_URL, and the path every bundle loads chunks from.
BASE_PATH = "/viewer/"
# Raise when the edits below change, so that an installed copy made by older code is redone.
EDITS_REVISION = 1

CACHE = Path(__file__).resolve().parent.parent / "tools" / "ohif" / ".cache"
# Served by the host as the viewer's app-config.js.
CONFIG = Path(__file__).resolve().parent / "ohif-config.js"
_MARKER = ".installed.json"

# index.html: the public URL, and the absolute paths of its links and scripts.
_PUBLIC_URL = re.compile(r'window\.PUBLIC_URL="/"')
_ROOT_REFERENCE = re.compile(r'\b(href|src)="/(?!/)')
# Every bundle's webpack runtime: where chunks, workers, codecs and assets are loaded from.
_WEBPACK_PUBLIC_PATH = re.compile(r'__webpack_require__\.p = "/";')
_APP_BUNDLE = re.compile(r"app\.bundle\.[0-9a-f]+\.js")
# Stylesheets: fonts at url(/...).
_CSS_ROOT_URL = re.compile(r"url\(/(?!/)")
# The web app manifests and tile configuration: icons at "/assets/...".
_MANIFESTS = (
    "manifest.json",
    "assets/manifest.webapp",
    "assets/browserconfig.xml",
    "assets/yandex-browser-manifest.json",
)
_ASSET_REFERENCE = re.compile(r'"/assets/')


class ViewerInstallError(RuntimeError):
    """The viewer could not be fetched, verified or prepared; the message says why."""


def installed_directory() -> Path:
    """Where the prepared viewer lives (it may not be installed yet: ``is_installed``)."""
    return CACHE / f"viewer-{VERSION}"


def is_installed() -> bool:
    marker = installed_directory() / _MARKER
    try:
        return bool(json.loads(marker.read_text()) == _marker_content())
    except (OSError, ValueError):
        return False


def ensure_installed() -> Path:
    """The prepared viewer's directory, fetched and prepared first unless it already is.

    Safe to call from several processes at once: one installs while the others wait.
    """
    target = installed_directory()
    if is_installed():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with _install_lock():
        if is_installed():
            return target
        tarball = _fetch()
        staging = Path(tempfile.mkdtemp(prefix=f"viewer-{VERSION}-", dir=CACHE))
        try:
            dist = unpack(tarball, staging)
            prepare(dist)
            (dist / _MARKER).write_text(json.dumps(_marker_content()))
            if target.exists():
                shutil.rmtree(target)
            dist.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def verify(tarball: Path) -> None:
    """Refuse a tarball whose SHA-512 is not the pinned one."""
    algorithm, _, expected = INTEGRITY.partition("-")
    digest = hashlib.new(algorithm)
    with tarball.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    actual = base64.b64encode(digest.digest()).decode()
    if actual != expected:
        raise ViewerInstallError(
            f"{tarball.name} has integrity {algorithm}-{actual}, not the pinned {INTEGRITY}"
        )


def unpack(tarball: Path, into: Path) -> Path:
    """The tarball's ``package/dist`` (and its license) unpacked into ``into``.

    tarfile's ``data`` filter refuses absolute paths, ``..``, links leaving the folder and
    device files, so a tarball cannot write outside ``into``.
    """
    try:
        with tarfile.open(tarball) as archive:
            members = [
                m
                for m in archive.getmembers()
                if m.name.startswith("package/dist/") or m.name == "package/LICENSE"
            ]
            archive.extractall(into, members=members, filter="data")
    except tarfile.TarError as exc:  # FilterError among them: a member leaving the folder
        raise ViewerInstallError(f"{tarball.name} cannot be unpacked: {exc}") from exc
    dist = into / "package" / "dist"
    if not (dist / "index.html").is_file():
        raise ViewerInstallError(f"{tarball.name} has no dist/index.html")
    if (into / "package" / "LICENSE").is_file():
        (into / "package" / "LICENSE").rename(dist / "LICENSE")
    return dist


def prepare(dist: Path) -> None:
    """Rewrite the build for ``BASE_PATH`` (module docstring), checking every edit took."""
    base = BASE_PATH
    if _edit(dist / "index.html", _PUBLIC_URL, f'window.PUBLIC_URL="{base}"') == 0:
        raise ViewerInstallError("index.html does not set window.PUBLIC_URL")
    if _edit(dist / "index.html", _ROOT_REFERENCE, rf'\1="{base}') == 0:
        raise ViewerInstallError("index.html references nothing at /")
    bundles = [
        bundle.name
        for bundle in sorted(dist.glob("*.js"))
        if _edit(bundle, _WEBPACK_PUBLIC_PATH, f'__webpack_require__.p = "{base}";')
    ]
    if not any(_APP_BUNDLE.fullmatch(name) for name in bundles):
        raise ViewerInstallError("no app bundle sets webpack's public path to /")
    if sum(_edit(sheet, _CSS_ROOT_URL, f"url({base}") for sheet in dist.glob("*.css")) == 0:
        raise ViewerInstallError("no stylesheet loads anything from /")
    for manifest in _MANIFESTS:
        if _edit(dist / manifest, _ASSET_REFERENCE, f'"{base}assets/') == 0:
            raise ViewerInstallError(f"{manifest} names no /assets/ file")
    # It points at a public demo server; the host serves ohif-config.js in its place.
    (dist / "app-config.js").unlink(missing_ok=True)


def _edit(path: Path, pattern: re.Pattern[str], replacement: str) -> int:
    """Replace ``pattern`` in a UTF-8 text file, every other byte kept (line ends too); how
    many places changed."""
    if not path.is_file():
        return 0
    text = path.read_text(encoding="utf-8", newline="")
    edited, count = pattern.subn(replacement, text)
    if count:
        path.write_text(edited, encoding="utf-8", newline="")
    return count


def _fetch() -> Path:
    """The package's verified tarball in the cache, fetched with ``npm pack`` unless there.

    A cached tarball that fails verification (a download cut short) is fetched again; a
    fetched one that fails it is removed and the install fails.
    """
    tarball = CACHE / f"ohif-app-{VERSION}.tgz"
    if tarball.is_file():
        try:
            verify(tarball)
            return tarball
        except ViewerInstallError:
            tarball.unlink()
    npm = shutil.which("npm")
    if npm is None:
        raise ViewerInstallError("npm is needed to fetch the OHIF Viewer (npm pack @ohif/app)")
    with tempfile.TemporaryDirectory(dir=CACHE) as download:
        result = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", download, "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ViewerInstallError(f"npm pack {PACKAGE}@{VERSION} failed:\n{result.stderr}")
        [packed] = json.loads(result.stdout)
        fetched = Path(download) / packed["filename"]
        verify(fetched)
        fetched.rename(tarball)
    return tarball


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    with (CACHE / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _marker_content() -> dict[str, object]:
    return {
        "package": PACKAGE,
        "version": VERSION,
        "integrity": INTEGRITY,
        "base": BASE_PATH,
        "edits": EDITS_REVISION,
    }


def main() -> None:
    try:
        print(f"OHIF Viewer {VERSION} in {ensure_installed()}")
    except ViewerInstallError as exc:
        raise SystemExit(str(exc)) from exc


if __name__ == "__main__":
    main()
