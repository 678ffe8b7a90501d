"""Every capability is named where an agent or a human meets it: the CLI's `models --capability` takes
each one the catalog knows (`catalog.spec.CAPABILITIES`, written once), and edit_image's description
does not say a prompt is needed where a route makes variations without one."""

from __future__ import annotations

import json
import os

import pytest
from tests.support import base_env, serve

from imagegate.catalog.spec import CAPABILITIES
from imagegate.cli import main


@pytest.mark.parametrize("capability", CAPABILITIES)
def test_models_takes_every_capability_and_lists_only_models_that_have_it(
    capability, tmp_path, monkeypatch, capsys
):
    for name in list(os.environ):  # the developer's keys and config stay out
        monkeypatch.delenv(name)
    for name, value in base_env(tmp_path, OPENAI_API_KEY="test-x").items():
        monkeypatch.setenv(name, value)

    assert main(["models", "--capability", capability, "--json"]) == 0
    models = json.loads(capsys.readouterr().out)["models"]
    assert models and all(capability in m["capabilities"] for m in models)


@pytest.mark.anyio
async def test_edit_image_says_that_without_a_prompt_it_makes_variations(tmp_path):
    async with serve(base_env(tmp_path, OPENAI_API_KEY="test-x")) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    edit = tools["edit_image"]
    assert "prompt" not in edit.input_schema["required"]  # dall-e-2 via openai makes variations
    assert "no prompt: variations" in (edit.description or "")
