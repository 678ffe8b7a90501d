"""UNCONFIRMED facts reach the agent, a config file can set a provider's wire id, and a gateway's
"no such model" names the id imagegate sent and how to override it.

list_models marks each route's unconfirmed facts (the wire id quoted), get_supported_sizes states each
with its reason and the route's notes; the output schemas in tools/list do not grow. The override and
the model-not-found text are checked end to end: the in-memory server against the emulated gateways.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.support import TEST_KEY_PREFIX, base_env, kind_of, serve, text_of
from tools.emulator import start_thread

from imagegate.catalog import load_catalog
from imagegate.errors import ConfigError
from imagegate.settings import load_settings

pytestmark = pytest.mark.anyio

LOCAL = """
[providers.local]
base_url = "http://127.0.0.1:9/v1"
key_env = "LOCAL_API_KEY"

[[providers.local.offerings]]
model = "seedream-4.0"
upstream = "seedream-four"
unconfirmed.upstream = "the doc's display name, lower-cased"
unconfirmed.sizes = "the doc gives 1024x1024 only as an example"
notes = "The doc shows 2K in its table and 4K in its example."
sizes = { kind = "list", sizes = ["1024x1024", "2048x2048"], default = "1024x1024" }
sizes_with_references = { kind = "list", sizes = ["1200x896"], default = "1200x896" }
sizes_with_references_from = 2

[[providers.local.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
sizes = { kind = "list", sizes = ["1024x1024"] }
sizes_with_references = { kind = "list", sizes = ["1536x1024"] }
"""


def local_env(tmp_path: Path, config: str = LOCAL, **extra: str) -> dict[str, str]:
    path = tmp_path / "imagegate.toml"
    path.write_text(config)
    return base_env(tmp_path, LOCAL_API_KEY=f"{TEST_KEY_PREFIX}local", IMAGEGATE_CONFIG=str(path), **extra)


def entry(answer: dict, model: str, provider: str) -> dict:
    [found] = [p for m in answer["models"] if m["id"] == model for p in m["providers"] if p["id"] == provider]
    return found


# --- shown to the agent --------------------------------------------------------------------------------


async def test_list_models_marks_the_unconfirmed_id_and_facts_of_each_route(tmp_path):
    async with serve(local_env(tmp_path)) as client:
        result = await client.call_tool("list_models", {})
    text, answer = text_of(result), result.structured_content
    assert 'local ✓ (UNCONFIRMED: id "seedream-four", sizes)' in text
    assert entry(answer, "seedream-4.0", "local")["unconfirmed"] == ["upstream", "sizes"]
    assert "unconfirmed" not in entry(answer, "gpt-image-1", "local")  # nothing unconfirmed: nothing said
    assert "UNCONFIRMED: no primary document states it; get_supported_sizes" in text.splitlines()[-1]


async def test_list_models_marks_every_unconfirmed_fact_of_the_shipped_catalog(tmp_path, catalog):
    keys = {spec.key_env: "test-x" for spec in catalog.providers.values() if spec.key_env}
    async with serve(base_env(tmp_path, **keys)) as client:
        result = await client.call_tool("list_models", {})
    lines = {line.split(" ", 1)[0]: line for line in text_of(result).splitlines()}
    for route in catalog.routes:
        if route.model not in lines:
            continue
        model_facts = catalog.models[route.model].unconfirmed
        facts = entry(result.structured_content, route.model, route.provider).get("unconfirmed", [])
        assert set(facts) | {f for f in model_facts if f != "upstream"} >= set(route.unconfirmed), route.where
        if "upstream" in route.unconfirmed:
            assert f'id "{route.upstream}"' in lines[route.model], route.where


async def test_supported_sizes_states_each_unconfirmed_fact_with_its_reason_and_the_notes(tmp_path):
    async with serve(local_env(tmp_path)) as client:
        result = await client.call_tool("get_supported_sizes", {"model": "seedream-4.0", "provider": "local"})
    text, answer = text_of(result), result.structured_content
    assert "UNCONFIRMED upstream: the doc's display name, lower-cased" in text
    assert "UNCONFIRMED sizes: the doc gives 1024x1024 only as an example" in text
    assert "note: The doc shows 2K in its table and 4K in its example." in text
    assert answer["unconfirmed"] == {
        "upstream": "the doc's display name, lower-cased",
        "sizes": "the doc gives 1024x1024 only as an example",
    }


async def test_supported_sizes_of_the_shipped_routes_state_every_unconfirmed_fact(tmp_path, catalog):
    marked = [r for r in catalog.routes if r.unconfirmed][:12]
    async with serve(base_env(tmp_path)) as client:
        for route in marked:
            result = await client.call_tool(
                "get_supported_sizes", {"model": route.model, "provider": route.provider}
            )
            for fact, why in route.unconfirmed.items():
                assert f"UNCONFIRMED {fact}: {why}" in text_of(result), route.where


async def test_sizes_with_references_say_from_how_many_and_a_different_default(tmp_path):
    async with serve(local_env(tmp_path)) as client:
        two = await client.call_tool("get_supported_sizes", {"model": "seedream-4.0", "provider": "local"})
        one = await client.call_tool("get_supported_sizes", {"model": "gpt-image-1", "provider": "local"})
    assert "with 2 or more reference images (default 1200x896):\n  1200x896" in text_of(two)
    assert "default: 1024x1024" in text_of(two)
    assert two.structured_content["references_from"] == 2
    assert two.structured_content["default_with_references"] == "1200x896"
    assert "with reference images:\n  1536x1024" in text_of(one)  # same (upstream) default: nothing to add
    assert "default_with_references" not in one.structured_content


async def test_the_output_schemas_in_tools_list_do_not_grow(tmp_path):
    async with serve(local_env(tmp_path)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    for name in ("list_models", "get_supported_sizes"):
        schema = json.dumps(tools[name].output_schema)
        for field in ("unconfirmed", "notes", "references_from", "default_with_references"):
            assert field not in schema, (name, field)


# --- overridable without code ----------------------------------------------------------------------------

OVERRIDE = """
[providers.zhaotou.upstream]
"seedream-4.0" = " doubao-seedream-4-0-250828 "
"""


async def test_a_config_file_sets_a_known_providers_wire_id_and_confirms_it(tmp_path):
    env = local_env(tmp_path, OVERRIDE, ZHAOTOU_API_KEY="test-x")
    async with serve(env) as client:
        listed = await client.call_tool("list_models", {"provider": "zhaotou"})
        sizes = await client.call_tool(
            "get_supported_sizes", {"model": "seedream-4.0", "provider": "zhaotou"}
        )
    zhaotou = entry(listed.structured_content, "seedream-4.0", "zhaotou")
    assert zhaotou["upstream"] == "doubao-seedream-4-0-250828"
    assert "upstream" not in zhaotou.get("unconfirmed", [])
    [line] = [t for t in text_of(listed).splitlines() if t.startswith("seedream-4.0 ")]
    assert "UNCONFIRMED upstream" not in text_of(sizes) and 'id "' not in line


def test_an_override_of_a_config_defined_providers_id_drops_its_mark():
    catalog = _catalog_for(LOCAL + '\n[providers.local.upstream]\n"Seedream-4.0" = "sd4"\n')
    [route] = [r for r in catalog.routes if r.where == "seedream-4.0 via local"]
    assert route.upstream == "sd4" and dict(route.unconfirmed) == {
        "sizes": "the doc gives 1024x1024 only as an example"
    }


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('"gpt-imag-1" = "x"', 'providers.zhaotou.upstream."gpt-imag-1": unknown model; zhaotou offers: '),
        ('"qwen-image-plus" = "x"', "zhaotou does not offer qwen-image-plus; zhaotou offers: "),
        ('"seedream-4.0" = "  "', "providers.zhaotou.upstream.seedream-4.0"),
    ],
)
def test_an_override_of_a_model_the_provider_does_not_offer_names_file_entry_and_the_offered_ids(
    tmp_path, line, problem
):
    with pytest.raises(ConfigError) as raised:
        _catalog_for(f"[providers.zhaotou.upstream]\n{line}\n", tmp_path)
    assert problem in raised.value.message and str(tmp_path / "c.toml") in raised.value.message
    if "offers" in problem:
        offered = [r.model for r in load_catalog().routes if r.provider == "zhaotou"]
        assert raised.value.message.endswith(", ".join(offered))


def _catalog_for(config: str, folder: Path | None = None):
    import tempfile

    folder = folder or Path(tempfile.mkdtemp())
    (folder / "c.toml").write_text(config)
    settings = load_settings(base_env(folder, IMAGEGATE_CONFIG=str(folder / "c.toml")))
    return load_catalog(settings.additions)


# --- "model not found" names the id ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator():
    with start_thread() as emu:
        yield emu


@pytest.fixture
def emu(emulator):
    emulator.reset()
    yield emulator
    emulator.reset()


GATEWAYS = [  # provider, model: each gateway's emulator refuses an id it does not know in its own words
    ("zhaotou", "seedream-4.0"),
    ("modelmax", "imagen-3"),
    ("mixroute", "seedream-4.0"),
    ("modelgate", "seedream-4.0"),
    ("atalk", "flux-2-pro"),
    ("ark", "seedream-4.0"),  # by its documented code, InvalidEndpointOrModel.NotFound (ark-seedream.md §5)
]


def gateway_env(emu, tmp_path: Path, provider: str, config: str = "") -> dict[str, str]:
    path = tmp_path / "imagegate.toml"
    path.write_text(config)
    name = provider.upper()
    return base_env(
        tmp_path,
        **{f"{name}_API_KEY": f"{TEST_KEY_PREFIX}{provider}", f"{name}_BASE_URL": emu.base_url(provider)},
        IMAGEGATE_CONFIG=str(path),
        IMAGEGATE_MAX_RETRIES="0",
    )


@pytest.mark.parametrize(("provider", "model"), GATEWAYS)
async def test_a_gateway_without_the_model_gets_an_error_naming_the_id_sent_and_the_override(
    emu, tmp_path, provider, model
):
    if provider in ("zhaotou", "modelmax"):  # their emulators take any id unless given an allow-list
        emu.configure(provider, models=["some-other-model"])
    override = f'[providers.{provider}.upstream]\n"{model}" = "no-such-{provider}-model"\n'
    async with serve(gateway_env(emu, tmp_path, provider, override)) as client:
        result = await client.call_tool(
            "generate_image", {"model": model, "provider": provider, "prompt": "a fox"}
        )
    text = text_of(result)
    assert result.is_error and kind_of(result) == "model_not_found", text
    assert f'{provider} has no model "no-such-{provider}-model"' in text
    assert "not marked UNCONFIRMED" in text  # the user set it
    assert text.endswith(f'[providers.{provider}.upstream]\n"{model}" = "<{provider}\'s id for it>"')
    [sent] = [r for r in emu.requests(provider) if r["endpoint"] != "models"]
    assert sent["status"] >= 400


async def test_an_unconfirmed_catalog_id_the_gateway_lacks_is_called_unconfirmed_with_the_reason(
    emu, tmp_path, catalog
):
    route = next(r for r in catalog.routes if r.provider == "zhaotou" and "upstream" in r.unconfirmed)
    emu.configure("zhaotou", models=["some-other-model"])
    async with serve(gateway_env(emu, tmp_path, "zhaotou")) as client:
        result = await client.call_tool(
            "generate_image", {"model": route.model, "provider": "zhaotou", "prompt": "a fox"}
        )
    text = text_of(result)
    assert kind_of(result) == "model_not_found" and f'zhaotou has no model "{route.upstream}"' in text
    assert f"it is UNCONFIRMED ({route.unconfirmed['upstream'].rstrip('.')})" in text
    assert f'"{route.model}" = "<zhaotou\'s id for it>"' in text


async def test_the_overridden_id_is_the_one_sent(emu, tmp_path):
    emu.configure("zhaotou", models=["doubao-seedream-4-0-250828"])
    async with serve(gateway_env(emu, tmp_path, "zhaotou", OVERRIDE)) as client:
        result = await client.call_tool(
            "generate_image",
            {"model": "seedream-4.0", "provider": "zhaotou", "prompt": "a fox", "size": "1:1"},
        )
    assert not result.is_error, text_of(result)
    [sent] = emu.requests("zhaotou")
    assert sent["status"] == 200 and sent["json"]["model"] == "doubao-seedream-4-0-250828"


async def test_a_refusal_that_names_the_model_is_not_called_a_missing_model(emu, tmp_path, catalog):
    [route] = [r for r in catalog.routes if r.where == "seedream-4.0 via mixroute"]
    said = f"Invalid size '9x9' for {route.upstream}: give an aspect ratio."
    emu.fault("mixroute", "*", "status", status=400, message=said, code="invalid_parameter")
    env = gateway_env(emu, tmp_path, "mixroute")
    async with serve(env) as client:
        result = await client.call_tool(
            "generate_image", {"model": "seedream-4.0", "provider": "mixroute", "prompt": "a fox"}
        )
    assert result.is_error and kind_of(result) != "model_not_found" and said in text_of(result)
    assert "[providers.mixroute.upstream]" not in text_of(result)
