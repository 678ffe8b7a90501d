"""README.md tells the truth: its tool tables are what the server advertises, its emulator base URLs
are the emulator's, and its offline commands run as written, with a clean environment."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.env import base_env
from tools.emulator import PROVIDERS, base_path
from tools.readme import README, current, render

TEXT = README.read_text(encoding="utf-8")
EMULATOR = "http://127.0.0.1:8900"
OFFLINE = ("imagegate generate ", "imagegate models", "imagegate sizes ")
"""README commands that need no key and no network (the placeholder model, the catalog)."""


def bash_lines(text: str) -> list[str]:
    """Every line of every ```bash block, comments after `#` cut off."""
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    return [line.split("  #", 1)[0].strip() for block in blocks for line in block.splitlines()]


def offline_commands() -> list[str]:
    commands = [line for line in bash_lines(TEXT) if line.startswith(OFFLINE)]
    return [c for c in commands if not c.startswith("imagegate generate ") or "-m placeholder" in c]


def test_tool_tables_are_what_tools_list_advertises():
    assert current(TEXT) == render(), "README.md's tool tables are stale: run python -m tools.readme"


def test_emulator_base_urls_are_the_emulators():
    rows = dict(re.findall(rf"\| `(\w+)` \| `({re.escape(EMULATOR)}/[^`]*)`", TEXT))
    assert rows == {provider: EMULATOR + base_path(provider) for provider in PROVIDERS}


def test_the_offline_commands_are_found():
    commands = offline_commands()
    assert 'imagegate generate "a lighthouse at dusk" -m placeholder' in commands
    assert {"imagegate models", "imagegate sizes gpt-image-1"} <= set(commands)


@pytest.mark.slow
@pytest.mark.parametrize("command", offline_commands())
def test_offline_command_runs_as_written(command: str, tmp_path: Path):
    script = Path(sys.executable).with_name("imagegate")
    program = [str(script)] if script.exists() else [sys.executable, "-m", "imagegate"]
    done = subprocess.run(
        program + shlex.split(command)[1:],
        env=base_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip()
    if "placeholder" in command:
        assert list((tmp_path / "out").rglob("*.png"))
