"""manifest.json (the MCPB bundle for Claude Desktop) says what the server really is: the tools it
registers, its version, a user_config entry for every provider key, and an environment that a
host which leaves options unfilled (`${user_config.…}` stays literal) still starts correctly from."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
from tests.support import TEST_KEY_PREFIX, base_env, serve, text_of
from tools.emulator import start_thread

from imagegate import __version__
from imagegate.app import TOOL_DESCRIPTIONS
from imagegate.settings import is_unset

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = json.loads((ROOT / "manifest.json").read_text(encoding="utf-8"))
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
ENV = MANIFEST["server"]["mcp_config"]["env"]
PLACEHOLDER = re.compile(r"\$\{user_config\.([A-Za-z0-9_]+)\}")


def host_env(user_values: dict[str, str], **extra: str) -> dict[str, str]:
    """mcp_config.env as a host fills it (mcpb src/shared/config.ts replaceVariables): the user's
    value, else the option's default, else the placeholder left as it is."""

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        default = MANIFEST["user_config"][key].get("default")
        return user_values.get(key, str(default) if default is not None else match.group(0))

    return {name: PLACEHOLDER.sub(fill, value) for name, value in ENV.items()} | extra


def test_version_matches_pyproject_and_the_package():
    assert MANIFEST["version"] == PYPROJECT["project"]["version"] == __version__
    assert MANIFEST["name"] == PYPROJECT["project"]["name"]


def test_server_runs_the_console_script_with_uv_from_the_bundle_folder():
    server = MANIFEST["server"]
    assert MANIFEST["manifest_version"] == "0.4" and server["type"] == "uv"
    assert server["mcp_config"]["command"] == "uv"
    assert server["mcp_config"]["args"] == ["run", "--directory", "${__dirname}", "imagegate"]
    assert "imagegate" in PYPROJECT["project"]["scripts"]
    assert (ROOT / server["entry_point"]).is_file()


def test_every_provider_key_has_a_sensitive_optional_user_config_entry(catalog):
    key_envs = {spec.key_env for spec in catalog.providers.values() if spec.key_env}
    assert len(key_envs) >= 14  # the ten of the first round, OpenRouter, fal, Replicate, the WebUI's login
    for name in key_envs:
        match = PLACEHOLDER.fullmatch(ENV.get(name, ""))
        assert match, f"mcp_config.env has no ${{user_config.…}} for {name}"
        option = MANIFEST["user_config"][match.group(1)]
        assert option["type"] == "string" and option["sensitive"] is True and option["required"] is False
        assert name in option["description"]


def test_every_placeholder_names_a_user_config_option():
    used = {m.group(1) for value in ENV.values() for m in PLACEHOLDER.finditer(value)}
    assert used == set(MANIFEST["user_config"])


def test_output_folder_preview_size_and_resource_links_are_mapped():
    options = MANIFEST["user_config"]
    assert ENV["IMAGEGATE_OUTPUT_DIR"] == "${user_config.output_dir}"
    assert options["output_dir"]["type"] == "directory"
    assert ENV["IMAGEGATE_PREVIEW_MAX_EDGE"] == "${user_config.preview_max_edge}"
    assert options["preview_max_edge"]["type"] == "number" and options["preview_max_edge"]["min"] >= 64
    assert ENV["IMAGEGATE_RESOURCE_LINKS"] == "false"  # Claude Desktop rejected text + resource_link


def test_privacy_policies_cover_every_provider_that_publishes_one(catalog):
    known = {spec.privacy_policy for spec in catalog.providers.values() if spec.privacy_policy}
    assert known and known <= set(MANIFEST["privacy_policies"])


def test_compatibility():
    compatibility = {"platforms": ["darwin", "win32", "linux"], "runtimes": {"python": ">=3.11"}}
    assert MANIFEST["compatibility"] == compatibility


@pytest.mark.parametrize("value", ["${user_config.openai_api_key}", " ${user_config.output_dir} ", "", None])
def test_an_unfilled_bundle_option_counts_as_unset(value):
    assert is_unset(value)


@pytest.mark.anyio
@pytest.mark.slow
async def test_manifest_lists_exactly_the_tools_the_server_registers(tmp_path):
    # Claude Desktop is a client with a wait budget (known by its name); the variable stands in for it.
    async with serve(base_env(tmp_path) | host_env({}, IMAGEGATE_WAIT_BUDGET="50"), stdio=True) as client:
        tools = (await client.list_tools()).tools
    assert [{"name": t.name, "description": t.description} for t in tools] == MANIFEST["tools"]
    assert {t["name"]: t["description"] for t in MANIFEST["tools"]} == TOOL_DESCRIPTIONS


@pytest.mark.anyio
@pytest.mark.slow
async def test_unfilled_key_and_output_folder_count_as_unset_over_stdio(tmp_path):
    """Only the OpenAI key filled in: every other key and the output folder stay `${user_config.…}`."""
    home = tmp_path / "home"
    with start_thread() as emulator:
        user = {"openai_api_key": f"{TEST_KEY_PREFIX}openai"}
        env = base_env(tmp_path) | host_env(user, OPENAI_BASE_URL=emulator.base_url("openai"))
        assert env["GEMINI_API_KEY"] == "${user_config.gemini_api_key}"
        assert env["IMAGEGATE_OUTPUT_DIR"] == "${user_config.output_dir}"
        async with serve(env, stdio=True) as client:
            listed = (await client.call_tool("list_models", {})).structured_content
            arguments = {"model": "gpt-image-1", "prompt": "a red cube", "size": "1024x1024"}
            made = await client.call_tool("generate_image", arguments)
    keyed = {pid for pid in listed["configured_providers"] if pid != "placeholder"}
    assert keyed == {"openai"}
    assert not made.is_error, text_of(made)
    saved = Path(json.loads(text_of(made).splitlines()[-1])["images"][0]["path"])
    assert saved.is_file() and home in saved.parents  # the platform default under HOME
    assert "${user_config" not in str(saved)
    assert [b.type for b in made.content] == ["text", "image"]  # IMAGEGATE_RESOURCE_LINKS=false
