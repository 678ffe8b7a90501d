"""An input form a route cannot take is refused with a hint naming the providers of the same model
that would take it. The hint reads the validator's own rule (`takes_form`), so every provider it names
gets past that check with the same call, and every provider that would is named.

No call here reaches an upstream: the inputs are a missing file and a data: URL that is not an image,
which every route that accepts the form refuses while loading it, before any request."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.support import all_keys, base_env, error_kind, serve, text_of

from imagegate.catalog import Route, load_catalog

pytestmark = pytest.mark.anyio
CATALOG = load_catalog()
HINT = "that take it: "
NOT_AN_IMAGE = "data:image/png;base64,AAAA"
URL_ONLY = [r for r in CATALOG.routes if r.can("edit") and r.inputs.forms == ["url"]]


def env(tmp_path: Path) -> dict[str, str]:
    """Every provider configured, every base URL a closed loopback port: nothing could leave anyway."""
    closed = {s.base_url_env: "http://127.0.0.1:9" for s in CATALOG.providers.values() if s.base_url_env}
    return base_env(tmp_path, **all_keys(), **closed, IMAGEGATE_MAX_RETRIES="0")


def named(text: str) -> list[str]:
    return text.split(HINT, 1)[1].split(", ") if HINT in text else []


def form_refused(text: str) -> bool:
    return "but" in text and "takes only" in text


def inputs_for(tmp_path: Path) -> dict[str, str]:
    return {"a local file": str(tmp_path / "missing.png"), "inline data": NOT_AN_IMAGE}


async def test_a_local_file_for_nano_banana_via_modelgate_names_the_gateways_that_take_files(tmp_path):
    args = {
        "model": "nano-banana",
        "provider": "modelgate",
        "prompt": "x",
        "images": [str(tmp_path / "a.png")],
    }
    async with serve(env(tmp_path)) as client:
        result = await client.call_tool("edit_image", args)
    text = text_of(result)
    assert error_kind(result) == "invalid_argument" and "is a local file" in text
    assert {"mixroute", "atalk", "zhaotou", "gemini"} <= set(named(text)), text
    assert "modelgate" not in named(text)


@pytest.mark.skipif(not URL_ONLY, reason="no URL-only route in the catalog")
async def test_the_hint_names_exactly_the_providers_whose_form_check_the_same_input_passes(tmp_path):
    async with serve(env(tmp_path)) as client:
        for route in URL_ONLY:
            others = [r for r in CATALOG.routes if r.model == route.model and r.provider != route.provider]
            for what, ref in inputs_for(tmp_path).items():
                refused = await refusal(client, route, ref)
                assert f"is {what}" in refused, refused
                passing = [
                    r.provider
                    for r in others
                    if r.can("edit") and not form_refused(await refusal(client, r, ref))
                ]
                assert passing, route.where  # the check below must have something to find
                assert sorted(named(refused)) == sorted(passing), (route.where, what, refused)


async def refusal(client, route: Route, ref: str) -> str:
    """The text of an edit call to `route` with one input `ref`, which must be refused (not sent)."""
    args = {"model": route.model, "provider": route.provider, "prompt": "x", "images": [ref]}
    result = await client.call_tool("edit_image", args)
    assert error_kind(result) == "invalid_argument", (route.where, text_of(result))
    return text_of(result)
