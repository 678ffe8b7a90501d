"""The README's tool-argument tables, generated from the schemas the server advertises in `tools/list`.

    python -m tools.readme            # rewrite the block between the markers in README.md
    python -m tools.readme --check    # exit 1 if README.md's block is not what this would write

The schemas come from a service built with every shipped provider configured (placeholder keys, no
network, no user config file) and a wait budget, so every model, knob and the fifth tool,
`get_image_job`, appear. tests/app/test_readme.py fails when the README's block is stale.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imagegate.app import _tools
from imagegate.catalog import load_catalog
from imagegate.service import build_service

__all__ = ["README", "check", "render", "rewrite"]

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- tool-arguments:start -->"
END = "<!-- tool-arguments:end -->"
MAX_LISTED = 12  # longer enums (the model ids) are counted, not listed
SENTENCE_END = re.compile(r"(?<=\.)\s")


def advertised_tools() -> list[tuple[str, str, Mapping[str, Any]]]:
    """(name, description, input schema) of every tool, as `tools/list` shows them with all providers set."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text("")  # an empty file: a user's own config cannot change the tables
        env = {spec.key_env: "readme-key" for spec in load_catalog().providers.values() if spec.key_env}
        env |= {"IMAGEGATE_CONFIG": str(config), "IMAGEGATE_OUTPUT_DIR": tmp, "IMAGEGATE_WAIT_BUDGET": "50"}
        service = build_service(env)
        return [(tool.name, tool.description or "", tool.input_schema) for tool in _tools(service)]


def _type(prop: Mapping[str, Any]) -> str:
    kind = str(prop.get("type", ""))
    return f"array of {prop['items'].get('type', '')}" if kind == "array" and "items" in prop else kind


def _span(low: Any, high: Any, unit: str = "") -> str:
    if low is not None and high is not None:
        return f"{low}–{high}{unit}"
    return f"≥ {low}{unit}" if low is not None else f"≤ {high}{unit}" if high is not None else ""


def _values(prop: Mapping[str, Any]) -> str:
    """What the schema allows, compactly: the enum, a range, a length or an item count."""
    if "enum" in prop:
        enum = prop["enum"]
        if len(enum) > MAX_LISTED:
            return f"one of {len(enum)} ids"
        return ", ".join(f"`{value}`" for value in enum)
    if prop.get("type") == "array":
        return _span(prop.get("minItems"), prop.get("maxItems"), " items")
    if prop.get("type") == "string":
        if (prop.get("minLength"), prop.get("maxLength")) == (1, None):
            return "non-empty"
        return _span(prop.get("minLength"), prop.get("maxLength"), " chars")
    return _span(prop.get("minimum"), prop.get("maximum"))


def _meaning(prop: Mapping[str, Any]) -> str:
    """The first sentence of the description's first line (the rest lists per-model detail)."""
    first_line = str(prop.get("description", "")).split("\n", 1)[0]
    return SENTENCE_END.split(first_line, 1)[0].replace("|", "\\|")


def table(name: str, description: str, schema: Mapping[str, Any]) -> str:
    """One tool: its name and description, then a row per argument, required ones first as advertised."""
    required = set(schema.get("required", []))
    rows = [f"**`{name}`**: {description}", "", "| argument | type | values | meaning |", "|---|---|---|---|"]
    for arg, prop in schema.get("properties", {}).items():
        label = f"`{arg}` (required)" if arg in required else f"`{arg}`"
        rows.append(f"| {label} | {_type(prop)} | {_values(prop)} | {_meaning(prop)} |")
    return "\n".join(rows)


def render() -> str:
    """The whole block, markers included."""
    tables = "\n\n".join(table(*tool) for tool in advertised_tools())
    return f"{START}\n{tables}\n{END}"


def current(text: str) -> str:
    """The block as README.md has it now, markers included."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md has no {START} … {END} block")
    return text[start : end + len(END)]


def rewrite(path: Path = README) -> bool:
    """Replace the block in `path`; return whether anything changed."""
    text = path.read_text(encoding="utf-8")
    new = text.replace(current(text), render())
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def check(path: Path = README) -> bool:
    """Whether the block in `path` is what render() writes."""
    return current(path.read_text(encoding="utf-8")) == render()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.readme", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if the block is stale")
    args = parser.parse_args(argv)
    if args.check:
        if not check():
            sys.exit("README.md's tool-argument tables are stale: run python -m tools.readme")
        return
    print("README.md updated" if rewrite() else "README.md already up to date")


if __name__ == "__main__":
    main()
