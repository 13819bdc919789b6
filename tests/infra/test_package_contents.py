"""What the Azure package holds: ``.funcignore`` decides it (Core Tools and azd read it when
they zip the app), and the local host with its viewer must never be in it.

The patterns are matched as ``.gitignore`` patterns, the syntax ``.funcignore`` uses, for the
forms this file has: a name or glob without a slash matches a file or folder at any depth,
and a trailing slash matches folders only.
"""

from __future__ import annotations

import fnmatch
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, rules: list[str]) -> bool:
    parts = path.split("/")
    for rule in rules:
        assert "/" not in rule.rstrip("/"), f"extend this test for nested patterns: {rule}"
        folders_only = rule.endswith("/")
        name = rule.rstrip("/")
        candidates = parts[:-1] if folders_only else parts
        if any(fnmatch.fnmatchcase(part, name) for part in candidates):
            return True
    return False


def packaged() -> list[str]:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    rules = patterns()
    return [path for path in tracked if not ignored(path, rules)]


def test_the_local_host_and_the_viewer_are_never_deployed() -> None:
    files = packaged()
    assert not [p for p in files if p.startswith(("functions_host/", "tools/"))]
    assert not [p for p in files if "ohif" in p.lower() or "viewer" in p.lower()]
    # The cache the viewer is installed in, were it ever tracked, is under tools/ too.
    assert ignored("tools/ohif/.cache/viewer-3.13.2/index.html", patterns())


def test_the_command_line_client_and_examples_stay_on_the_laptop() -> None:
    """The Functions app never imports them (an import contract says so for the client)."""
    files = packaged()
    assert not [p for p in files if p.startswith(("dicomweb_cli/", "examples/"))]


def test_the_app_itself_is_deployed() -> None:
    files = set(packaged())
    assert {"function_app.py", "host.json", "requirements.txt"} <= files
    assert any(p.startswith("dicom_core/web/") for p in files)
