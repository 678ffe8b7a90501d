"""Every route's limits, enforced through the MCP surface: for each model x provider in the catalog, a
valid call passes validation and a call breaking each limit is refused with that limit
named. The expectations are derived from the catalog; the answers come from the server."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from tests.support import all_keys, base_env, serve, text_of

from imagegate.catalog import Route, load_catalog
from imagegate.catalog.sizes import rule_options

pytestmark = pytest.mark.anyio
CATALOG = load_catalog()
ERROR_META = "io.imagegate/error"


def refused(result) -> bool:
    """True when the server refused the call's arguments (not when an upstream failed later)."""
    meta = result.meta or {}
    return bool(result.is_error) and meta.get(ERROR_META, {}).get("kind") in (
        "invalid_argument",
        "not_configured",
    )


def tool_of(route: Route) -> str:
    return "generate_image" if route.can("generate") else "edit_image"


INPUT_PNG = Path(tempfile.mkdtemp()) / "input.png"
Image.new("RGB", (1024, 1024), "teal").save(INPUT_PNG)


def an_input(route: Route) -> str:
    """An input the route takes without a download: a URL where it lists URLs, else a local file."""
    return "https://example.com/in.png" if "url" in (route.inputs.forms or ()) else str(INPUT_PNG)


def base_args(route: Route) -> dict:
    args = {"model": route.model, "provider": route.provider, "prompt": "a lighthouse at dusk"}
    if tool_of(route) == "edit_image":
        args["images"] = [an_input(route)] * (route.inputs.min_images or 1)
    return args


def bad_size(route: Route) -> str:
    rule = route.sizes
    if rule.kind in ("list", "table"):
        return "999x999"
    if rule.kind == "ratio":
        return "1024x1024"
    width = (rule.max_width or 0) + (rule.multiple_of or 1) * 4 or 16384
    return f"{max(width, 16384)}x{rule.max_height or 16384}"


def knob_cases(route: Route, tool: str) -> Iterator[tuple[str, object, str]]:
    knobs = route.knobs_for(tool.split("_")[0])
    for name in CATALOG.knobs:
        rule = knobs.get(name)
        if rule is None:
            kind = CATALOG.knobs[name].type
            value = {"string": "x", "integer": 1, "number": 1.5, "boolean": True}[kind]
            # A knob no offered model has in this tool is not even in its schema.
            yield name, value, (f"{name} is not supported by {route.where}", f'unknown argument "{name}"')
        elif rule.values is not None and CATALOG.knobs[name].type == "string":
            yield name, "not-a-value", f'{name} "not-a-value" is not offered by {route.where}'
        elif rule.max is not None:
            yield name, int(rule.max) + 1, f"{name} {int(rule.max) + 1} is out of range for {route.where}"


def broken_calls(route: Route) -> Iterator[tuple[str, dict, str]]:
    tool = tool_of(route)
    good = base_args(route)
    yield "n", {**good, "n": route.max_n + 1}, f"n {route.max_n + 1} is out of range"
    yield "size", {**good, "size": bad_size(route)}, f'size "{bad_size(route)}"'
    for name, value, fragment in knob_cases(route, tool):
        yield name, {**good, name: value}, fragment
    if tool == "edit_image":
        most = route.inputs.max_images or 1
        yield "images", {**good, "images": [an_input(route)] * (most + 1)}, f"images has {most + 1} items"
        if not route.can("mask"):
            yield "mask", {**good, "mask": an_input(route)}, "mask is not supported"
    if not any(o.tier for o in rule_options(route.sizes)) and not route.sizes.tiers:
        yield "resolution", {**good, "resolution": "2K"}, "resolution"


def valid_call(route: Route) -> dict:
    args = base_args(route)
    options = rule_options(route.sizes)
    if options:
        args["size"] = options[-1].pixels
        if options[-1].tier:
            args["resolution"] = options[-1].tier
    return args


async def test_every_route_accepts_valid_calls_and_refuses_each_broken_limit(tmp_path):
    failures = []
    # Valid calls go nowhere real: every base URL is a closed local port, and nothing retries.
    nowhere = {f"{p.upper()}_BASE_URL": "http://127.0.0.1:9/v1" for p in CATALOG.providers}
    nowhere |= {s.base_url_env: "http://127.0.0.1:9/v1" for s in CATALOG.providers.values() if s.base_url_env}
    async with serve(base_env(tmp_path, IMAGEGATE_MAX_RETRIES="0", **nowhere, **all_keys())) as client:
        for route in CATALOG.routes:
            tool = tool_of(route)
            result = await client.call_tool(tool, valid_call(route))
            if refused(result):
                failures.append(f"{route.where}: valid call refused: {text_of(result)}")
            for limit, args, fragment in broken_calls(route):
                result = await client.call_tool(tool, args)
                text = text_of(result)
                wanted = fragment if isinstance(fragment, tuple) else (fragment,)
                if not refused(result) or not any(f in text for f in wanted):
                    failures.append(
                        f"{route.where}: breaking {limit} with {args.get(limit)!r} gave {text!r}, "
                        f"wanted {fragment!r}"
                    )
    assert not failures, "\n".join(failures[:30]) + f"\n({len(failures)} failures)"


async def test_edit_refused_where_a_provider_cannot_edit(tmp_path):
    route = next(r for r in CATALOG.routes if not r.can("edit") and r.can("generate"))
    async with serve(base_env(tmp_path, **all_keys())) as client:
        result = await client.call_tool(
            "edit_image",
            {
                "model": route.model,
                "provider": route.provider,
                "prompt": "x",
                "images": ["https://e.com/a.png"],
            },
        )
    assert result.is_error and "cannot edit" in text_of(result)


async def test_a_local_file_is_refused_where_only_urls_are_taken(tmp_path):
    route = next((r for r in CATALOG.routes if r.inputs.forms == ["url"] and r.can("edit")), None)
    if route is None:
        pytest.skip("no URL-only route in the catalog")
    async with serve(base_env(tmp_path, **all_keys())) as client:
        args = {**base_args(route), "images": ["/tmp/cat.png"]}
        result = await client.call_tool("edit_image", args)
    text = text_of(result)
    assert result.is_error and "is a local file" in text and "takes only http(s) URLs" in text
