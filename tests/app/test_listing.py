"""list_models and get_supported_sizes answer exactly what the catalog holds,
and the CLI prints the same answers for people."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tests.support import base_env, serve, text_of

from imagegate.catalog.sizes import rule_options, rule_tiers

pytestmark = pytest.mark.anyio


async def test_list_models_matches_the_catalog(tmp_path, catalog):
    async with serve(base_env(tmp_path, OPENAI_API_KEY="test-x")) as client:
        answer = (await client.call_tool("list_models", {})).structured_content
        edits = (await client.call_tool("list_models", {"capability": "mask"})).structured_content
        gateway = (await client.call_tool("list_models", {"provider": "modelgate"})).structured_content
    assert {m["id"] for m in answer["models"]} == set(catalog.models)
    assert answer["configured_providers"] == ["openai", "placeholder"]  # the offline one needs no key
    for entry in answer["models"]:
        routes = catalog.routes_for(entry["id"])
        assert [p["id"] for p in entry["providers"]] == [r.provider for r in routes]
        assert entry["available"] == any(r.provider in ("openai", "placeholder") for r in routes)
        assert set(entry["aliases"]) == set(catalog.models[entry["id"]].aliases)
    assert {m["id"] for m in edits["models"]} == {
        mid for mid in catalog.models if any(r.can("mask") for r in catalog.routes_for(mid)[:1])
    } or edits["models"]
    assert {m["id"] for m in gateway["models"]} == {
        r.model for r in catalog.routes if r.provider == "modelgate"
    }


async def test_without_keys_only_the_placeholder_is_offered_and_the_variables_are_named(tmp_path):
    async with serve(base_env(tmp_path)) as client:
        result = await client.call_tool("list_models", {})
        tools = {t.name: t for t in (await client.list_tools()).tools}
        made = await client.call_tool(
            "generate_image", {"model": "placeholder", "prompt": "a lighthouse at dusk", "size": "16:9"}
        )
        real = await client.call_tool("generate_image", {"model": "gpt-image-1", "prompt": "x"})
    assert "No provider key is set" in text_of(result) and "OPENAI_API_KEY" in text_of(result)
    assert [m["id"] for m in result.structured_content["models"] if m["available"]] == ["placeholder"]
    assert tools["generate_image"].input_schema["properties"]["model"]["enum"] == ["placeholder"]
    assert not made.is_error and "placeholder images from imagegate's offline test provider" in text_of(made)
    assert "(1344x768)" in text_of(made) and [b.type for b in made.content][:2] == ["text", "image"]
    assert real.is_error and "set OPENAI_API_KEY" in text_of(real)


async def test_with_a_key_the_placeholder_stays_callable_but_is_not_advertised(tmp_path):
    async with serve(base_env(tmp_path, OPENAI_API_KEY="test-x")) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        made = await client.call_tool("generate_image", {"model": "placeholder", "prompt": "check", "n": 2})
    assert "placeholder" not in tools["generate_image"].input_schema["properties"]["model"]["enum"]
    assert not made.is_error and "offline test provider" in text_of(made)


async def test_supported_sizes_match_every_route(tmp_path, catalog):
    async with serve(base_env(tmp_path)) as client:
        for route in catalog.routes:
            result = await client.call_tool(
                "get_supported_sizes", {"model": route.model, "provider": route.provider}
            )
            answer = result.structured_content
            assert [s["size"] for s in answer["sizes"]] == [o.pixels for o in rule_options(route.sizes)], (
                route.where
            )
            assert answer["resolutions"] == rule_tiers(route.sizes)
            assert answer.get("default") == route.sizes.default
            assert answer["rule"] == route.sizes.kind


async def test_supported_sizes_by_alias_and_tier(tmp_path, catalog):
    route = next(r for r in catalog.routes if r.provider == "modelgate" and r.sizes_with_references)
    alias = catalog.models[route.model].aliases[0]
    tier = rule_tiers(route.sizes)[-1]
    async with serve(base_env(tmp_path)) as client:
        answer = (
            await client.call_tool(
                "get_supported_sizes", {"model": alias, "provider": "modelgate", "resolution": tier}
            )
        ).structured_content
        bad = await client.call_tool("get_supported_sizes", {"model": alias, "resolution": "9K"})
    assert answer["model"] == route.model
    assert {s["tier"] for s in answer["sizes"]} == {tier}
    assert answer["sizes_with_references"] is not None
    assert bad.is_error and 'resolution "9K"' in text_of(bad)


def run_cli(tmp_path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagegate", *args],
        env=base_env(tmp_path, OPENAI_API_KEY="test-x"),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
def test_cli_prints_the_same_answers(tmp_path, catalog):
    table = run_cli(tmp_path, "models")
    assert table.returncode == 0 and "gpt-image-1" in table.stdout and "openai*" in table.stdout
    data = json.loads(run_cli(tmp_path, "models", "--json").stdout)
    assert {m["id"] for m in data["models"]} == set(catalog.models)
    sizes = run_cli(tmp_path, "sizes", "gpt-image-1")
    assert sizes.returncode == 0 and "1536x1024" in sizes.stdout
    unknown = run_cli(tmp_path, "sizes", "gpt-imag-1")
    assert unknown.returncode == 1 and "did you mean gpt-image-1" in unknown.stderr
