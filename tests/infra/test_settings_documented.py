"""Every setting the app reads is in local.settings.json.example, documented, with the values
the deployment uses where the two must agree.

The names ``dicom_core/settings.py`` reads are recorded by handing ``Settings.from_mapping`` a
mapping that notes each key asked for, so a new setting cannot slip past the example whatever
helper reads it. Environment reads elsewhere (the local host in ``functions_host/``, the rest of
``dicom_core``, ``function_app.py``) are found in the source.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from dicom_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "local.settings.json.example"

# App settings only a deployment in Azure has: telemetry goes to Application Insights there.
AZURE_ONLY = {"APPLICATIONINSIGHTS_CONNECTION_STRING", "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"}
# Set by the Functions host for its worker (the app's directory) or by the platform (the app's
# host name), never by the user.
HOST_PROVIDED = {"AzureWebJobsScriptRoot", "WEBSITE_HOSTNAME"}


class RecordingMapping(Mapping[str, str]):
    """An empty mapping that remembers every key it was asked for."""

    def __init__(self) -> None:
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def settings_read() -> set[str]:
    values = RecordingMapping()
    Settings.from_mapping(values)
    return values.asked


def is_environ(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def environment_reads(path: Path) -> set[str]:
    """Names read with os.environ.get / os.environ[...] / os.getenv in one source file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        argument: ast.expr | None = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            if (node.func.attr == "get" and is_environ(node.func.value)) or (
                node.func.attr == "getenv"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "os"
            ):
                argument = node.args[0]
        elif isinstance(node, ast.Subscript) and is_environ(node.value):
            argument = node.slice
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            names.add(argument.value)
    return names


def parse_bicep(path: Path) -> dict[str, Any]:
    tree: dict[str, Any] = BicepParser().parse(text=path.read_text())
    return tree


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    values: dict[str, str] = json.loads(EXAMPLE.read_text())["Values"]
    return values


def settings_of(example: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in example.items() if not name.startswith("__comment")}


def test_the_recorder_sees_the_settings_module_read() -> None:
    read = settings_read()
    # A guard against a recorder that sees nothing, which would make the next test vacuous.
    assert {
        "DICOM_STORAGE",
        "AzureWebJobsStorage",
        "DICOM_AUTH_ENABLED",
        "DICOM_CORS_ORIGINS",
    } <= read


def test_every_setting_the_app_reads_is_in_the_example(example: dict[str, str]) -> None:
    read = settings_read()
    sources = [ROOT / "function_app.py"]
    for package in ("dicom_core", "functions_host"):
        sources += sorted((ROOT / package).rglob("*.py"))
    for path in sources:
        read |= environment_reads(path)
    missing = sorted(read - HOST_PROVIDED - set(settings_of(example)))
    assert missing == [], f"add these to local.settings.json.example, documented: {missing}"


def test_every_setting_in_the_example_is_documented(example: dict[str, str]) -> None:
    comments = " ".join(v for k, v in example.items() if k.startswith("__comment"))
    undocumented = [
        name
        for name in settings_of(example)
        if not re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", comments)
    ]
    assert undocumented == [], f"name these in a __comment_* entry: {undocumented}"


def test_the_example_carries_the_apps_settings_in_azure(example: dict[str, str]) -> None:
    """What api.bicep sets is documented here too (with local values)."""
    tree = parse_bicep(ROOT / "infra/app/api.bicep")
    app_settings = set(tree["resources"]["appSettings"]["config"]["properties"])
    missing = sorted(app_settings - AZURE_ONLY - set(settings_of(example)))
    assert missing == [], missing


def test_functions_host_settings_match_the_deployment(example: dict[str, str]) -> None:
    assert example["FUNCTIONS_WORKER_RUNTIME"] == "python"
    # The host refuses bodies above its limit (100 MB by default) before the app sees them, so
    # func start needs the limit the deployment sets from maxRequestBytes, equal to the app's.
    main = parse_bicep(ROOT / "infra/main.bicep")
    deployed = str(main["parameters"]["maxRequestBytes"]["default"])
    assert example["FUNCTIONS_REQUEST_BODY_SIZE_LIMIT"] == deployed
    assert example["DICOM_MAX_REQUEST_BYTES"] == deployed
    assert deployed == str(Settings().max_request_bytes)
