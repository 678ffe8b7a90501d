"""`imagegate bundle` builds the .mcpb bundle: manifest.json at the root, the package and
pyproject.toml (the host's uv installs from it), nothing .mcpbignore excludes; its own zip
writer packs the same files as the official `mcpb pack`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from imagegate.bundle import MCPB_DEFAULT_EXCLUDES, _ignored

ROOT = Path(__file__).resolve().parents[2]
MCPB = ROOT / ".tools" / "node_modules" / ".bin" / "mcpb"
REQUIRED = (
    "manifest.json",
    "pyproject.toml",
    "README.md",
    "server/imagegate/__init__.py",
    "server/imagegate/catalog/data/models.toml",
)
NEVER = ("tests/", "tools/", ".ci/", ".tools/", ".venv", ".git/", "__pycache__", ".pytest_cache")


def bundle(tmp_path: Path, *args: str) -> tuple[Path, subprocess.CompletedProcess[str]]:
    output = tmp_path / "imagegate.mcpb"
    done = subprocess.run(
        [sys.executable, "-m", "imagegate", "bundle", "--source", str(ROOT), "-o", str(output), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return output, done


def names(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as archive:
        return set(archive.namelist())


@pytest.mark.slow
def test_builtin_bundle_has_the_mcpb_layout(tmp_path):
    output, done = bundle(tmp_path, "--builtin")
    packed = names(output)
    assert set(REQUIRED) <= packed
    assert not [n for n in packed if any(part in n for part in NEVER)]
    assert ".mcpbignore" not in packed and ".gitignore" not in packed
    with zipfile.ZipFile(output) as archive:
        assert json.loads(archive.read("manifest.json")) == json.loads((ROOT / "manifest.json").read_text())
    assert done.stdout.startswith(str(output)) and "packed by imagegate" in done.stdout


@pytest.mark.slow
def test_bundle_without_manifest_says_where_to_run_it(tmp_path):
    command = [sys.executable, "-m", "imagegate", "bundle", "--source", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "manifest.json" in done.stderr


@pytest.mark.parametrize(
    ("path", "is_dir", "ignored"),
    [
        ("tests", True, True),
        ("server/tests", True, False),  # .mcpbignore anchors /tests to the root
        ("server/imagegate/__pycache__", True, True),
        ("server/imagegate/cli.cpython-311.pyc", False, True),
        (".venv-ci", True, True),
        (".tools", True, True),
        ("imagegate-0.1.0.mcpb", False, True),
        ("server/imagegate.egg-info", True, True),
        ("server/imagegate/catalog/data/models.toml", False, False),
        ("pyproject.toml", False, False),
    ],
)
def test_ignore_rules(path, is_dir, ignored):
    lines = [line.strip() for line in (ROOT / ".mcpbignore").read_text().splitlines()]
    own = [line for line in lines if line and not line.startswith("#")]
    assert _ignored(path, is_dir, [*MCPB_DEFAULT_EXCLUDES, *own]) is ignored


@pytest.mark.slow
def test_builtin_writer_packs_the_same_files_as_mcpb_pack(tmp_path):
    if not MCPB.exists():
        if os.environ.get("IMAGEGATE_REQUIRE_NODE_TOOLS") == "1":
            pytest.fail(f"IMAGEGATE_REQUIRE_NODE_TOOLS=1 but {MCPB} is missing (see .ci/run)")
        pytest.skip("mcpb CLI not installed: npm install --prefix .tools @anthropic-ai/mcpb@2.1.2")
    (tmp_path / "mcpb").mkdir()
    (tmp_path / "own").mkdir()
    official, done = bundle(tmp_path / "mcpb")
    assert "packed by mcpb" in done.stdout
    own, _ = bundle(tmp_path / "own", "--builtin")
    assert names(official) == names(own)
