"""The in-memory server sees what the subprocess would: the default config file and output folder
follow HOME and XDG_* as the session's environment has them, never the developer's own, and the
test process's environment is left as it was."""

from __future__ import annotations

import os

import pytest
from tests.support import base_env, serve

pytestmark = pytest.mark.anyio

LOCAL = """
[providers.local]
base_url = "http://127.0.0.1:9/v1"
key_env = "LOCAL_API_KEY"

[[providers.local.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
"""


async def test_the_default_config_file_is_read_from_the_sessions_xdg_config_home(tmp_path):
    (tmp_path / "config" / "imagegate").mkdir(parents=True)
    (tmp_path / "config" / "imagegate" / "config.toml").write_text(LOCAL)
    before = dict(os.environ)
    async with serve(base_env(tmp_path, LOCAL_API_KEY="test-local")) as client:
        listed = (await client.call_tool("list_models", {})).structured_content
    assert "local" in listed["configured_providers"]
    assert dict(os.environ) == before


async def test_without_a_config_file_there_none_is_read(tmp_path):
    async with serve(base_env(tmp_path, LOCAL_API_KEY="test-local")) as client:
        listed = (await client.call_tool("list_models", {})).structured_content
    assert "local" not in listed["configured_providers"]


async def test_without_an_output_dir_images_go_under_the_sessions_home(tmp_path):
    env = base_env(tmp_path)
    del env["IMAGEGATE_OUTPUT_DIR"]
    async with serve(env) as client:
        made = await client.call_tool("generate_image", {"model": "placeholder", "prompt": "where"})
    assert not made.is_error and str(tmp_path / "home") in made.content[0].text
