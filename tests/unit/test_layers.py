"""The dependency rules of the house style, checked by walking imports: only app knows
mcp, only the HTTP layer knows httpx2, only imaging knows Pillow, only codec knows pybase64;
adapters stay apart."""

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
    modules = {p.stem for p in folder.glob("*.py")} - {"__init__", "http", "base"}
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
