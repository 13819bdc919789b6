"""The protocol's message classes, generated from ``rpc.proto`` when first needed.

The Python runtime does not ship the classes its caller must pass in at worker init (Azure's
proxy worker brings its own). The host generates them with grpcio-tools' protoc into a folder
of the virtual environment, named after the proto file's hash, so an edited proto is
regenerated and nothing generated is ever committed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path
from types import ModuleType

PROTO = Path(__file__).with_name("rpc.proto")
_MODULE = "rpc_pb2"


def _generated_dir() -> Path:
    digest = hashlib.sha256(PROTO.read_bytes()).hexdigest()[:16]
    return Path(sys.prefix) / "functions_host_protos" / digest


def _generate(out: Path) -> None:
    """protoc into a fresh folder, then one rename: worker processes starting together never
    import a half-written module."""
    import grpc_tools
    from grpc_tools import protoc

    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=out.parent))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    code = protoc.main(
        [
            "protoc",
            f"-I{PROTO.parent}",
            f"-I{well_known}",
            f"--python_out={scratch}",
            str(PROTO),
        ]
    )
    if code != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise RuntimeError(f"protoc could not compile {PROTO} (exit {code})")
    try:
        scratch.rename(out)
    except OSError:  # another process got there first: its copy is the same
        shutil.rmtree(scratch, ignore_errors=True)


def load() -> ModuleType:
    """The generated module: every message class of ``rpc.proto`` as an attribute, which is
    the ``protos`` namespace the runtime expects in a request's properties."""
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    out = _generated_dir()
    path = out / f"{_MODULE}.py"
    if not path.exists():
        _generate(out)
    spec = importlib.util.spec_from_file_location(_MODULE, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE] = module
    spec.loader.exec_module(module)
    return module
