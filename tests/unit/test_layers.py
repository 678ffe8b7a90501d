"""The dependency rules of the house style, checked by walking imports: only app and transports know
mcp, only the HTTP layer knows httpx2, only imaging knows Pillow, only codec knows pybase64;
adapters stay apart; and inside the package every import points down the layers."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "server" / "imagegate"
OWNERS = {
    "mcp": {"app.py", "transports.py"},
    "mcp_types": {"app.py", "transports.py"},
    "httpx2": {"providers/http.py"},
    "PIL": {"imaging.py"},
    "uvicorn": {"transports.py"},
    "pybase64": {"codec.py"},
    "redis": {"team/backend.py"},
}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add("." * node.level + node.module)
    return found


def test_third_party_stacks_are_imported_by_their_owner_only():
    bad = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        for name in imports(path):
            top = name.split(".")[0]
            if top in OWNERS and rel not in OWNERS[top]:
                bad.append(f"{rel} imports {name}")
    assert not bad, bad


def test_adapters_do_not_import_each_other():
    folder = PACKAGE / "providers"
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "http", "base", "websocket"}
    bad = [
        f"{p.name} imports {name}"
        for p in folder.glob("*.py")
        for name in imports(p)
        if name.lstrip(".").split(".")[0] in modules and p.stem != name.lstrip(".").split(".")[0]
    ]
    assert not bad, bad


def test_catalog_does_not_reach_up():
    bad = [
        f"{p.name} imports {name}"
        for p in (PACKAGE / "catalog").glob("*.py")
        for name in imports(p)
        if name.startswith("..") and name not in ("..errors",)
    ]
    assert not bad, bad


# The internal direction, lowest layer first: a module imports only from layers below its own, so
# the house cannot grow a back-stair (front ends -> service -> generation -> its parts -> adapters
# and storage -> the HTTP layer, the catalog and the error tree).
LAYERS: list[set[str]] = [
    {"__init__", "errors", "incoming", "framing", "catalog/spec", "team/__init__", "team/workers"},
    {"codec", "imaging", "catalog/sizes", "team/users", "team/backend"},
    {"catalog/routes", "team/tasks"},
    {"catalog/schema", "catalog/loader"},
    {"catalog/__init__"},
    {"providers/http", "addresses", "storage", "gallery", "settings", "importer", "team/limits"}
    | {"pricing", "ledger"},
    {"providers/websocket"},
    {"providers/base", "router"},
    {"providers/__init__", "validation", "listing"}
    | {f"providers/{p.stem}" for p in (PACKAGE / "providers").glob("*.py")}
    - {"providers/http", "providers/base", "providers/websocket"},
    {"inputs", "intake", "previewing", "local"},
    {"generation"},
    {"jobs", "results", "spend"},
    {"service"},
    {"app", "doctor", "bundle"},
    {"transports"},
    {"cli"},
    {"__main__"},
]


def _module(path: Path) -> str:
    """A module's name in LAYERS: its path below the package without .py ("catalog/__init__")."""
    return path.relative_to(PACKAGE).with_suffix("").as_posix()


def _internal_imports(path: Path) -> set[str]:
    """The package modules `path` imports, as names in LAYERS (a package is its "/__init__"; a name
    imported from a package's own __init__, such as __version__, is that __init__)."""
    folder = _module(path).split("/")[:-1]
    known = {name for layer in LAYERS for name in layer}

    def layer_name(target: str) -> str:
        for candidate in (target, f"{target}/__init__" if target else "__init__"):
            if candidate in known:
                return candidate
        return f"{target.rsplit('/', 1)[0]}/__init__" if "/" in target else "__init__"

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = folder[: len(folder) - (node.level - 1)]
            if node.module:
                found.add(layer_name("/".join([*base, *node.module.split(".")])))
            else:
                found |= {layer_name("/".join([*base, alias.name])) for alias in node.names}
    return found


def test_every_module_has_a_layer():
    modules = {_module(p) for p in PACKAGE.rglob("*.py")}
    placed = {name for layer in LAYERS for name in layer}
    assert modules == placed, (modules - placed, placed - modules)


def test_imports_point_down_the_layers_only():
    rank = {name: i for i, layer in enumerate(LAYERS) for name in layer}
    bad = [
        f"{_module(p)} imports {dep}"
        for p in PACKAGE.rglob("*.py")
        for dep in _internal_imports(p)
        if rank[dep] >= rank[_module(p)]
    ]
    assert not bad, bad
