"""`imagegate models --import replicate:OWNER/NAME`: read the model's schema from the (emulated) API,
append the catalog addition to the config file, and the server then enforces the imported limits."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from tests.e2e.conftest import emu, emulator, running_emulator  # noqa: F401  (the e2e emulator fixtures)
from tests.support import TEST_KEY_PREFIX, VirtualTime, base_env, error_kind, meta_of, serve, text_of

from imagegate.cli import main

KEY = f"{TEST_KEY_PREFIX}replicate"


@pytest.fixture
def env(tmp_path, emu, monkeypatch):  # noqa: F811
    config = tmp_path / "imagegate.toml"
    config.write_text('output_dir = "~/images"\n')
    values = base_env(
        tmp_path,
        REPLICATE_API_TOKEN=KEY,
        REPLICATE_BASE_URL=emu.base_url("replicate"),
        IMAGEGATE_CONFIG=str(config),
        IMAGEGATE_ALLOW_PRIVATE_URLS="true",
    )
    for name in list(__import__("os").environ):
        if name.endswith(("_API_KEY", "_API_TOKEN", "_BASE_URL", "FAL_KEY")) or name.startswith("IMAGEGATE_"):
            monkeypatch.delenv(name)
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_an_imported_model_loads_and_its_limits_are_enforced_before_any_request(env, emu, capsys):  # noqa: F811
    assert main(["models", "--import", "replicate:stability-ai/sdxl"]) == 0
    out = capsys.readouterr()
    assert "[models.sdxl]" in out.out and "[[providers.replicate.offerings]]" in out.out
    text = open(env["IMAGEGATE_CONFIG"]).read()
    assert text.startswith('output_dir = "~/images"\n') and out.out in text  # appended, not replaced
    assert env["IMAGEGATE_CONFIG"] in out.err
    emu.reset()
    anyio.run(_enforced, env, emu)


async def _enforced(env: dict[str, str], upstream: Any) -> None:
    async with serve(env, **VirtualTime().hooks) as client:
        refused = await client.call_tool(
            "generate_image", {"model": "sdxl", "prompt": "a fox", "guidance_scale": 60, "size": "512x512"}
        )
        assert error_kind(refused) == "invalid_argument" and "guidance_scale" in text_of(refused)
        assert upstream.requests("replicate") == []  # refused before any request
        result = await client.call_tool(
            "generate_image", {"model": "sdxl", "prompt": "a fox", "n": 2, "size": "512x512", "seed": 3}
        )
    assert len(meta_of(result)["images"]) == 2
    (create,) = [r for r in upstream.requests("replicate") if r["endpoint"] == "predictions_version"]
    assert create["json"]["input"] == {
        "prompt": "a fox",
        "width": 512,
        "height": 512,
        "num_outputs": 2,
        "seed": 3,
    }


def test_dry_run_prints_and_writes_nothing(env, capsys):
    before = open(env["IMAGEGATE_CONFIG"]).read()
    assert main(["models", "--import", "replicate:google/nano-banana-pro", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "[[providers.replicate.offerings]]" in out and 'model = "gemini-3-pro-image"' in out
    assert "[models." not in out  # the catalog knows it: an offering only
    assert open(env["IMAGEGATE_CONFIG"]).read() == before


def test_a_second_import_of_the_same_model_is_refused_and_the_file_kept(env, capsys):
    assert main(["models", "--import", "replicate:stability-ai/sdxl"]) == 0
    before = open(env["IMAGEGATE_CONFIG"]).read()
    assert main(["models", "--import", "replicate:stability-ai/sdxl"]) != 0
    assert open(env["IMAGEGATE_CONFIG"]).read() == before
    capsys.readouterr()


def test_an_unknown_source_says_what_works(env, capsys):
    assert main(["models", "--import", "civitai:123"]) == 1
    assert "replicate:OWNER/NAME or fal:ENDPOINT" in capsys.readouterr().err
