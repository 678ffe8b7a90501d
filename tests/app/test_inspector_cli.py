"""Smoke test with the official MCP Inspector CLI (@modelcontextprotocol/inspector 0.15.0, the newest
that runs on Node 20): a client we did not write lists the tools and calls list_models and
generate_image against the emulator. Skips where .ci/run's npm install has not been done;
fails instead under IMAGEGATE_REQUIRE_NODE_TOOLS=1 (set by .ci/run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.support import TEST_KEY_PREFIX, base_env
from tools.emulator import start_thread

from imagegate.app import TOOL_DESCRIPTIONS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = ROOT / ".tools" / "node_modules" / ".bin" / "mcp-inspector"
KEY = f"{TEST_KEY_PREFIX}openai"


@pytest.fixture(scope="module")
def inspector() -> Path:
    if INSPECTOR.exists():
        return INSPECTOR
    if os.environ.get("IMAGEGATE_REQUIRE_NODE_TOOLS") == "1":
        pytest.fail(f"IMAGEGATE_REQUIRE_NODE_TOOLS=1 but {INSPECTOR} is missing (see .ci/run)")
    pytest.skip("no MCP Inspector CLI: npm install --prefix .tools @modelcontextprotocol/inspector@0.15.0")


@pytest.fixture(scope="module")
def emulator():
    with start_thread() as emu:
        yield emu


def inspect(inspector: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    """`mcp-inspector --cli <server command> --method …`, whose stdout is the JSON answer."""
    command = [str(inspector), "--cli", sys.executable, "-m", "imagegate", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=env["HOME"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert KEY not in done.stdout + done.stderr
    return json.loads(done.stdout)


def server_env(emulator, tmp_path: Path) -> dict[str, str]:
    (tmp_path / "home").mkdir(exist_ok=True)
    return base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=emulator.base_url("openai"))


def test_inspector_lists_the_four_tools(inspector, emulator, tmp_path):
    answer = inspect(inspector, server_env(emulator, tmp_path), "--method", "tools/list")
    assert {t["name"]: t["description"] for t in answer["tools"]} == {
        k: v for k, v in TOOL_DESCRIPTIONS.items() if k != "get_image_job"
    }
    generate = next(t for t in answer["tools"] if t["name"] == "generate_image")
    assert "gpt-image-1" in generate["inputSchema"]["properties"]["model"]["enum"]


def test_inspector_calls_list_models(inspector, emulator, tmp_path):
    answer = inspect(
        inspector,
        server_env(emulator, tmp_path),
        "--method",
        "tools/call",
        "--tool-name",
        "list_models",
        "--tool-arg",
        "provider=openai",
    )
    assert answer.get("isError") is not True
    models = {m["id"]: m for m in answer["structuredContent"]["models"]}
    assert models["gpt-image-1"]["available"] is True
    assert "gpt-image-1" in answer["content"][0]["text"]


def test_inspector_calls_generate_image(inspector, emulator, tmp_path):
    answer = inspect(
        inspector,
        server_env(emulator, tmp_path),
        "--method",
        "tools/call",
        "--tool-name",
        "generate_image",
        "--tool-arg",
        "prompt=a red cube",
        "--tool-arg",
        "model=gpt-image-1",
        "--tool-arg",
        "n=2",
        "--tool-arg",
        "size=1024x1024",
    )
    assert answer.get("isError") is not True, answer
    kinds = [block["type"] for block in answer["content"]]
    assert kinds == ["text", "image", "image", "resource_link", "resource_link"]
    meta = json.loads(answer["content"][0]["text"].splitlines()[-1])
    paths = [Path(image["path"]) for image in meta["images"]]
    assert len(paths) == 2 and all(p.is_file() and (tmp_path / "out") in p.parents for p in paths)
    assert all(block["mimeType"] == "image/jpeg" and block["data"] for block in answer["content"][1:3])
    assert [block["uri"] for block in answer["content"][3:]] == [
        f"imagegate://images/{p.parent.name}/{p.name}" for p in paths
    ]
    requests = emulator.requests("openai")
    assert requests[-1]["json"]["n"] == 2 and requests[-1]["json"]["size"] == "1024x1024"
