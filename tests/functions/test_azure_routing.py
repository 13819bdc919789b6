"""Every request of the conformance statement and the tutorials reaches its function under
the Functions host's routing rules, replayed over the metadata the runtime itself produces.

The host registers routes in function-name order and takes the first template-and-method
match (``dicom_core.web.routing``). A function is named here by the ``web`` handler its body
runs, not by its own name, so renaming a function keeps this test true, unless the new name
changes what the host reaches first: then it fails, naming the request.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dicom_core.web.routing import RouteTable
from functions_host.serve import http_routes
from functions_host.worker import IndexedFunction

ROOT = Path(__file__).resolve().parents[2]
ST, SE, IN = "1.2.840.113619.2.1", "1.2.840.113619.2.1.2", "1.2.840.113619.2.1.2.3"
STUDY = f"/v2/studies/{ST}"
SERIES = f"{STUDY}/series/{SE}"
INSTANCE = f"{SERIES}/instances/{IN}"
WORKITEM = "/v2/workitems/1.2.3.4"

# (method, URL, the web handler that must answer). From the conformance statement's tables
# (STOW, WADO, QIDO, delete, UPS), extended-query-tags.md, and the tutorials' URLs.
REQUESTS = [
    ("POST", "/v2/studies", "stow.store_instances"),
    ("PUT", "/v2/studies", "stow.store_instances"),
    ("POST", STUDY, "stow.store_instances"),
    ("PUT", STUDY, "stow.store_instances"),
    ("POST", "/v1/studies", "stow.store_instances"),
    ("GET", STUDY, "wado.retrieve"),
    ("GET", f"{STUDY}/metadata", "metadata.retrieve_metadata"),
    ("GET", SERIES, "wado.retrieve"),
    ("GET", f"{SERIES}/metadata", "metadata.retrieve_metadata"),
    ("GET", INSTANCE, "wado.retrieve"),
    ("GET", f"{INSTANCE}/metadata", "metadata.retrieve_metadata"),
    ("GET", f"{INSTANCE}/rendered", "rendered.retrieve_rendered"),
    ("GET", f"{INSTANCE}/frames/1", "frames.retrieve_frames"),
    ("GET", f"{INSTANCE}/frames/4,5,6", "frames.retrieve_frames"),
    ("GET", f"{INSTANCE}/frames/1/rendered", "rendered.retrieve_rendered"),
    ("GET", f"/v2/studies{ST}/series/{SE}/metadata", "metadata.retrieve_metadata"),  # curl tutorial
    ("GET", "/v2/studies", "qido.search_for_studies"),
    ("GET", "/v2/studies?PatientName=DOE&fuzzymatching=true", "qido.search_for_studies"),
    ("GET", "/v2/series", "qido.search_for_series"),
    ("GET", f"{STUDY}/series", "qido.search_for_series"),
    ("GET", "/v2/instances", "qido.search_for_instances"),
    ("GET", f"{STUDY}/instances", "qido.search_for_instances"),
    ("GET", f"{SERIES}/instances", "qido.search_for_instances"),
    ("DELETE", STUDY, "delete.delete"),
    ("DELETE", SERIES, "delete.delete"),
    ("DELETE", INSTANCE, "delete.delete"),
    ("POST", "/v2/workitems", "workitems.create"),
    ("POST", "/v2/workitems?1.2.3.4", "workitems.create"),
    ("POST", f"{WORKITEM}?1.2.3.9", "workitems.update"),
    ("GET", "/v2/workitems?PatientName=DOE", "workitems.search"),
    ("GET", WORKITEM, "workitems.retrieve"),
    ("PUT", f"{WORKITEM}/state", "workitems.change_state"),
    ("POST", f"{WORKITEM}/cancelrequest", "workitems.cancel_request"),
    ("POST", f"{WORKITEM}/subscribers/MYAE?deletionlock=true", "workitems.subscription"),
    (
        "POST",
        "/v2/workitems/1.2.840.10008.5.1.4.34.5/subscribers/MYAE/suspend",
        "workitems.subscription",
    ),
    ("DELETE", f"{WORKITEM}/subscribers/MYAE", "workitems.subscription"),
    ("GET", "/v2/subscribers/MYAE", "workitems.subscription"),
    ("POST", "/v2/extendedquerytags", "eqt.add_tags"),
    ("GET", "/v2/extendedquerytags", "eqt.list_tags"),
    ("GET", "/v2/extendedquerytags/00101001", "eqt.tag"),
    ("PATCH", "/v2/extendedquerytags/00101001", "eqt.tag"),
    ("DELETE", "/v2/extendedquerytags/00101001", "eqt.tag"),
    ("GET", "/v2/extendedquerytags/00101001/errors", "eqt.tag_errors"),
    ("GET", "/v2/operations/1d4b2a3c-9f8e-4c1b-a2d3-4e5f6a7b8c9d", "operations.operation"),
    ("POST", "/v2/studies/$bulkUpdate", "bulk_update.start_bulk_update"),
    ("POST", "/v2/studies/$BULKUPDATE", "bulk_update.start_bulk_update"),
    ("POST", "/v1/studies/$bulkUpdate", "bulk_update.start_bulk_update"),
    ("GET", "/v2/changefeed?offset=3", "change_feed.read_changes"),
    ("GET", "/v1/changefeed/latest", "change_feed.latest_change"),
    ("POST", "/v2/export", "export.start_export"),
    ("POST", "/v1/export", "export.start_export"),
]

# Azure's partitioned routes (with DICOM_DATA_PARTITIONS on): the same requests of the
# transactions it partitions, under /partitions/{name}, reach the same handlers. Not the curl
# tutorial's quirk path, nor the workitem subscriptions, which Azure has no partitioned form of.
_PARTITIONED = ("stow.", "wado.", "metadata.", "rendered.", "frames.", "qido.", "delete.")
_PARTITIONED += ("bulk_update.", "export.", "workitems.")
REQUESTS += [
    (method, url.replace("/v2/", "/v2/partitions/Site-A_1/", 1), handler)
    for method, url, handler in list(REQUESTS)
    if handler.startswith(_PARTITIONED)
    and handler != "workitems.subscription"
    and url.startswith("/v2/")
    and "studies1" not in url
]
REQUESTS += [
    ("GET", "/v2/partitions", "partitions.list_partitions"),
    ("GET", "/v1/partitions", "partitions.list_partitions"),
    ("GET", "/v2/partitions/Microsoft.Default/studies", "qido.search_for_studies"),
    ("GET", "/v2/partitions/site-a/changefeed?offset=3", "change_feed.read_changes"),
    ("GET", "/v1/partitions/site-a/changefeed/latest", "change_feed.latest_change"),
]

# One wrong method and one unknown URL per family: both reach the catch-all, which answers
# 405 (with Allow) for the first and 404 for the second.
WRONG_METHODS = [
    ("PATCH", "/v2/studies"),
    ("POST", f"{SERIES}/metadata"),
    ("PUT", f"{INSTANCE}/frames/1"),
    ("DELETE", "/v2/series"),
    ("PATCH", INSTANCE),
    ("DELETE", "/v2/workitems"),
    ("PUT", "/v2/extendedquerytags"),
    ("DELETE", "/v2/operations/1d4b2a3c-9f8e-4c1b-a2d3-4e5f6a7b8c9d"),
    ("POST", "/v2/changefeed"),
    ("GET", "/v2/export"),
    ("DELETE", "/v2/partitions"),
    ("PATCH", "/v2/partitions/site-a/studies"),
    ("DELETE", "/v2/partitions/site-a/workitems/1.2.3.4"),
]
UNKNOWN = [
    ("POST", "/studies"),
    ("GET", f"{INSTANCE}/frames"),
    ("GET", f"{INSTANCE}/bulkdata/1"),
    ("GET", "/v2/patients"),
    ("DELETE", f"{INSTANCE}/extra"),
    ("GET", f"{WORKITEM}/history"),
    ("GET", "/v2/extendedquerytags/00101001/errors/1"),
    ("GET", "/v2/operations"),
    ("GET", "/v2/partitions/site-a"),
    ("GET", "/v2/partitions/site-a/patients"),
    ("GET", "/v2/partitions/site-a/subscribers/MYAE"),
    ("POST", "/v2/partitions/site-a/workitems/1.2.3.4/subscribers/MYAE"),
    ("GET", "/"),
]
CATCH_ALL = "unknown_route"


@pytest.fixture(scope="module")
def table() -> RouteTable:
    """The host's routes, from the runtime's own FunctionsMetadataResponse."""
    printed = subprocess.run(
        [sys.executable, "-m", "functions_host.metadata"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    functions = tuple(
        IndexedFunction(name=f["name"], function_id=f["name"], bindings=tuple(f["bindings"]))
        for f in json.loads(printed)
    )
    return http_routes(functions, route_prefix="")


def web_names(tree: ast.Module) -> set[str]:
    """The names function_app.py imports from ``dicom_core`` (``jobs``) and ``dicom_core.web``."""
    names: set[str] = set()
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or node.module is None:
            continue
        if node.module == "dicom_core" or node.module.startswith("dicom_core.web"):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


@pytest.fixture(scope="module")
def handlers() -> dict[str, str]:
    """Function name -> the handler its body runs.

    Each body is one call into ``dicom_core.web``, or ``dicom_core.jobs`` for a queue: for
    ``handle(req, services, qido.search_for_series)`` the handler is
    ``qido.search_for_series``, for any other call the function it calls."""
    tree = ast.parse((ROOT / "function_app.py").read_text())
    web = web_names(tree)
    found: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
            calls = [
                n for n in ast.walk(node) if isinstance(n, ast.Call) and root_name(n.func) in web
            ]
            assert len(calls) == 1, f"{node.name} should make exactly one web call"
            [call] = calls
            handler = call.args[2] if ast.unparse(call.func) == "handle" else call.func
            assert root_name(handler) in web, f"{node.name}: {ast.unparse(handler)} is not web's"
            found[node.name] = ast.unparse(handler)
    return found


def reached(table: RouteTable, handlers: dict[str, str], method: str, url: str) -> str:
    path = url.split("?", 1)[0]
    resolved = table.resolve(method, path)
    assert resolved is not None, f"{method} {url}: no function, the host would answer 404"
    return handlers[resolved[0].function]


@pytest.mark.parametrize(("method", "url", "handler"), REQUESTS)
def test_each_documented_request_reaches_its_function(
    table: RouteTable, handlers: dict[str, str], method: str, url: str, handler: str
) -> None:
    assert reached(table, handlers, method, url) == handler, f"{method} {url}"


@pytest.mark.parametrize(("method", "url"), WRONG_METHODS)
def test_a_wrong_method_reaches_the_catch_all_which_can_name_the_allowed_ones(
    table: RouteTable, handlers: dict[str, str], method: str, url: str
) -> None:
    assert reached(table, handlers, method, url) == CATCH_ALL
    allowed = table.allowed_methods(url)
    assert allowed and method not in allowed


@pytest.mark.parametrize(("method", "url"), UNKNOWN)
def test_an_unknown_url_reaches_the_catch_all_with_nothing_allowed(
    table: RouteTable, handlers: dict[str, str], method: str, url: str
) -> None:
    assert reached(table, handlers, method, url) == CATCH_ALL
    assert table.allowed_methods(url) == frozenset()


def test_every_http_function_is_reached_by_some_request(
    table: RouteTable, handlers: dict[str, str]
) -> None:
    """A function no documented request reaches is dead in Azure: the order hides it."""
    reached_functions = {
        resolved[0].function
        for method, url, _ in REQUESTS
        if (resolved := table.resolve(method, url.split("?", 1)[0])) is not None
    }
    unreached = {route.function for route in table.routes} - reached_functions
    assert unreached == {name for name, call in handlers.items() if call == CATCH_ALL}
