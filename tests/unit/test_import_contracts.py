"""The import-linter contracts of pyproject.toml hold, and each one can fail.

``make test`` runs ``lint-imports``; this test runs the same contracts through import-linter's
own contract classes on the real import graph, then on copies of it with one import injected
that a contract forbids (an upward arrow, a cycle, an adapter reached past its port, an SDK
where it does not belong). Each injection must break exactly the contracts named, so a
contract that silently passes whatever the code does (a typo in a module name, a layer
listed in the wrong order) fails here.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter.api import read_configuration
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract
from importlinter.domain.contract import Contract

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
CONTRACT_TYPES: dict[str, type[Contract]] = {
    "layers": LayersContract,
    "forbidden": ForbiddenContract,
    "acyclic_siblings": AcyclicSiblingsContract,
}


@cache
def configuration() -> dict[str, Any]:
    return read_configuration(str(PYPROJECT))


@cache
def real_graph() -> grimp.ImportGraph:
    session = configuration()["session_options"]
    externals = str(session.get("include_external_packages")).lower() == "true"
    return grimp.build_graph(
        *session["root_packages"], include_external_packages=externals, cache_dir=None
    )


def broken_contracts(graph: grimp.ImportGraph) -> set[str]:
    """The ids of the contracts ``graph`` breaks."""
    config = configuration()
    broken = set()
    for options in config["contracts_options"]:
        contract = CONTRACT_TYPES[options["type"]](
            name=options["name"],
            session_options=config["session_options"],
            contract_options=options,
        )
        # A contract may change the graph it checks (import-linter copies it for each too).
        if not contract.check(copy.deepcopy(graph), verbose=False).kept:
            broken.add(options["id"])
    return broken


def test_the_code_keeps_every_contract() -> None:
    assert broken_contracts(real_graph()) == set()


@pytest.mark.parametrize(
    ("importer", "imported", "breaks"),
    [
        # domain is the bottom layer; query builds on it, so this is also a cycle.
        ("dicom_core.domain.model", "dicom_core.query.conditions", {"layers", "no-cycles"}),
        # An adapter reaching up into a service (what sqlite_eqt did before the ports moved).
        (
            "dicom_core.storage.local.sqlite_eqt",
            "dicom_core.services.extended_query_tags",
            {"layers", "no-cycles"},
        ),
        # Up to the top: web and bootstrap reach every adapter, so through them the ports and
        # the services would reach the adapters and the Azure SDKs as well (indirect imports
        # count).
        (
            "dicom_core.storage.ports.index",
            "dicom_core.web.context",
            {"layers", "no-cycles", "ports-only", "azure-sdk"},
        ),
        (
            "dicom_core.services.search",
            "dicom_core.bootstrap",
            {"layers", "no-cycles", "ports-only", "azure-sdk"},
        ),
        # The two adapters are independent of each other (and the local one has no SDK).
        (
            "dicom_core.storage.local.sqlite_index",
            "dicom_core.storage.azure.cosmos_index",
            {"layers", "azure-sdk"},
        ),
        # A service past its port, to an adapter: downward, but not through the port.
        ("dicom_core.services.search", "dicom_core.storage.local.sqlite_index", {"ports-only"}),
        ("dicom_core.services.store", "azure", {"azure-sdk"}),
        ("dicom_core.storage.local.sqlite_db", "azure", {"azure-sdk"}),
        ("dicom_core.web.context", "functions_host.serve", {"app-not-host"}),
        # The command-line client is shipped to users: HTTP only, no server code.
        ("dicomweb_cli.answers", "dicom_core.domain.instance", {"client-apart"}),
        # Inside one package: parser builds on conditions, so this closes a circle.
        ("dicom_core.query.conditions", "dicom_core.query.parser", {"no-cycles"}),
    ],
)
def test_an_injected_import_breaks_its_contracts(
    importer: str, imported: str, breaks: set[str]
) -> None:
    graph = copy.deepcopy(real_graph())
    assert not graph.direct_import_exists(importer=importer, imported=imported)
    graph.add_import(importer=importer, imported=imported)
    assert broken_contracts(graph) == breaks
