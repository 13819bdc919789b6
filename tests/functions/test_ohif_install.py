"""Installing the viewer (functions_host/ohif.py) from a small fake of the npm tarball: the
integrity is checked, nothing leaves the cache, and the build is rewritten for /viewer/."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from functions_host import ohif

INDEX = (
    '<html><head><script>window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json"><link href="//cdn.example/x.css">'
    '<script defer src="/app.bundle.0f6159c501addfe9.js"></script></head></html>'
)
RUNTIME = '(() => {\r\n__webpack_require__.p = "/";\r\n})();\n'
FILES = {
    "package/package.json": '{"name": "@ohif/app"}',
    "package/LICENSE": "MIT",
    "package/dist/index.html": INDEX,
    "package/dist/app-config.js": "window.config = {dataSources: ['https://demo']};",
    "package/dist/app.bundle.0f6159c501addfe9.js": "var a = 1;\n" + RUNTIME,
    "package/dist/compute.bundle.0fc3a3ee85296cf2.js": RUNTIME,
    "package/dist/12.bundle.b4688cdbdd856b75.js": "var chunk = 'no runtime here';",
    "package/dist/app.bundle.css": "@font-face{src:url(/a34f9d1faa5f3315.woff2)}",
    "package/dist/manifest.json": '{"icons": [{"src": "/assets/icon.png"}]}',
    "package/dist/assets/manifest.webapp": '{"icons": {"60": "/assets/firefox.png"}}',
    "package/dist/assets/browserconfig.xml": '<tile><logo src="/assets/tile.png"/></tile>',
    "package/dist/assets/yandex-browser-manifest.json": '{"logo": "/assets/y.png"}',
}


def tarball(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cache, and no npm: nothing here may reach the registry."""
    folder = tmp_path / "cache"
    monkeypatch.setattr(ohif, "CACHE", folder)
    monkeypatch.setattr(ohif.shutil, "which", lambda name: None)
    return folder


def cached(cache: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> Path:
    """The fake tarball in the cache, pinned as the package's integrity."""
    cache.mkdir(parents=True, exist_ok=True)
    path = tarball(cache / f"ohif-app-{ohif.VERSION}.tgz", files)
    monkeypatch.setattr(ohif, "INTEGRITY", integrity(path))
    return path


def test_the_build_is_rewritten_for_viewer_and_marked_installed(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached(cache, monkeypatch, FILES)
    assert not ohif.is_installed()

    dist = ohif.ensure_installed()

    assert dist == ohif.installed_directory() and ohif.is_installed()
    html = (dist / "index.html").read_text()
    assert 'window.PUBLIC_URL="/viewer/"' in html
    assert 'href="/viewer/manifest.json"' in html
    assert 'src="/viewer/app.bundle.0f6159c501addfe9.js"' in html
    assert 'href="//cdn.example/x.css"' in html  # another origin's URL is left alone
    for bundle in ("app.bundle.0f6159c501addfe9.js", "compute.bundle.0fc3a3ee85296cf2.js"):
        # Only the public path changed; the bundle's other bytes, CRLFs too, are kept.
        assert (dist / bundle).read_bytes() == FILES[f"package/dist/{bundle}"].replace(
            '"/";', '"/viewer/";'
        ).encode()
    assert (dist / "app.bundle.css").read_text() == (
        "@font-face{src:url(/viewer/a34f9d1faa5f3315.woff2)}"
    )
    assert json.loads((dist / "manifest.json").read_text()) == {
        "icons": [{"src": "/viewer/assets/icon.png"}]
    }
    assert "/viewer/assets/tile.png" in (dist / "assets" / "browserconfig.xml").read_text()
    assert not (dist / "app-config.js").exists()  # the demo server's configuration
    assert (dist / "LICENSE").read_text() == "MIT"
    assert not (dist.parent / "package").exists()  # only dist/ was kept
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith("viewer-")) == [dist.name]


def test_an_installed_viewer_is_not_installed_again(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cached(cache, monkeypatch, FILES)
    dist = ohif.ensure_installed()
    path.unlink()  # a second install would need it
    assert ohif.ensure_installed() == dist


def test_a_tarball_that_is_not_the_pinned_one_is_refused(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = cached(cache, monkeypatch, FILES)
    monkeypatch.setattr(ohif, "INTEGRITY", "sha512-" + base64.b64encode(b"x" * 64).decode())
    # The cached copy fails verification, is dropped, and npm (missing here) would fetch it.
    with pytest.raises(ohif.ViewerInstallError, match="npm is needed"):
        ohif.ensure_installed()
    assert not path.exists()
    assert not ohif.is_installed()


def test_a_tarball_member_leaving_the_folder_is_refused(
    cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cached(cache, monkeypatch, {**FILES, "package/dist/../../../escaped.txt": "x"})
    with pytest.raises(ohif.ViewerInstallError, match="cannot be unpacked"):
        ohif.ensure_installed()
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not ohif.is_installed()


def test_a_build_the_edits_do_not_fit_is_refused_and_nothing_is_installed(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    changed = {**FILES, "package/dist/app.bundle.0f6159c501addfe9.js": "var a = 1;"}
    cached(cache, monkeypatch, changed)
    with pytest.raises(ohif.ViewerInstallError, match="public path"):
        ohif.ensure_installed()
    assert not ohif.installed_directory().exists()
    assert [p.name for p in cache.iterdir() if p.is_dir()] == []  # no staging left behind
