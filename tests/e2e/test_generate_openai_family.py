"""generate_image end to end over the OpenAI Images protocol: openai, zhaotou, modelmax and a
config-defined compatible provider, served by the emulator. What reaches the disk, what the
result holds (text, previews, links, structuredContent) and what the upstream was sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from tests.support import (
    EMULATED,
    blocks,
    decoded_previews,
    emulator_env,
    error_of,
    metadata,
    open_image,
    serve,
    sidecar_of,
    text_of,
)

from imagegate.catalog import load_catalog

pytestmark = pytest.mark.anyio

PROMPT = "a red fox in the snow"
PREVIEW_TOTAL_BASE64 = 96 * 1024


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_emulator(emulator):
    emulator.reset()


@pytest.fixture(scope="module")
async def client(emulator, tmp_path_factory):
    async with serve(emulator_env(emulator, tmp_path_factory.mktemp("generate"))) as session:
        yield session


async def generate(client, **args: Any):
    result = await client.call_tool("generate_image", {"prompt": PROMPT, **args})
    assert not result.is_error, text_of(result)
    return result


GENERATIONS = [
    # arguments, provider, pixel size, images per upstream call, response_format sent, URL reply
    pytest.param(
        {"model": "gpt-image-1", "size": "1536x1024", "n": 2},
        "openai",
        (1536, 1024),
        [2],
        None,
        False,
        id="openai-gpt-image-1-b64",
    ),
    pytest.param(
        {"model": "gpt-image-1", "size": "2:3"},
        "openai",
        (1024, 1536),
        [1],
        None,
        False,
        id="openai-gpt-image-1-ratio",
    ),
    pytest.param(
        {"model": "dall-e-3", "size": "1792x1024", "n": 3},
        "openai",
        (1792, 1024),
        [1, 1, 1],
        "b64_json",
        False,
        id="openai-dall-e-3-fans-out",
    ),
    pytest.param(
        {"model": "dall-e-2", "size": "256x256", "n": 4},
        "openai",
        (256, 256),
        [4],
        "b64_json",
        False,
        id="openai-dall-e-2-one-call",
    ),
    pytest.param(
        {"model": "dall-e-3", "size": "1024x1792", "extra": {"response_format": "url"}},
        "openai",
        (1024, 1792),
        [1],
        "url",
        True,
        id="openai-dall-e-3-url",
    ),
    pytest.param(
        {"model": "gemini-3-pro-image-preview", "provider": "zhaotou", "size": "1024x1792", "n": 2},
        "zhaotou",
        (1024, 1792),
        [2],
        "b64_json",
        False,
        id="zhaotou-gemini-3-pro",
    ),
    pytest.param(
        {"model": "imagen-3", "n": 5},  # Imagen's own 4 per request (seeds/003 states no maximum)
        "modelmax",
        (1024, 1024),
        [4, 1],
        "b64_json",
        False,
        id="modelmax-imagen-3-fans-out",
    ),
    pytest.param(
        {"model": "gpt-image-1", "provider": "local", "size": "1536x1024", "n": 5},
        "local",
        (1536, 1024),
        [2, 2, 1],
        None,
        True,
        id="compat-url-n-above-per-call",
    ),
]


@pytest.mark.parametrize(
    ("args", "provider", "size", "per_call", "response_format", "url_reply"), GENERATIONS
)
async def test_every_image_is_saved_at_the_asked_size_with_a_sidecar(
    client, emulator, args, provider, size, per_call, response_format, url_reply
):
    result = await generate(client, **args)

    meta = metadata(result)
    n = sum(per_call)
    assert (meta["model"], meta["provider"], meta["calls"], len(meta["images"])) == (
        load_catalog().resolve_model(args["model"]),
        provider,
        len(per_call),
        n,
    )
    for entry in meta["images"]:
        path = Path(entry["path"])
        image = open_image(path)
        assert image.size == size == (entry["width"], entry["height"])
        assert (
            entry["mime_type"] == "image/png"
            and path.suffix == ".png"
            and entry["bytes"] == path.stat().st_size
        )
        assert entry["uri"] == path.as_uri()
        side = sidecar_of(path)
        assert (side["prompt"], side["model"], side["provider"]) == (PROMPT, meta["model"], provider)
        assert side["image"] == {
            "width": size[0],
            "height": size[1],
            "mime_type": "image/png",
            "bytes": entry["bytes"],
        }
    sent = emulator.requests(EMULATED[provider])
    assert sorted(r["json"]["n"] for r in sent) == sorted(per_call)
    assert {r["json"].get("response_format") for r in sent} == {response_format}
    assert {r["json"]["size"] for r in sent} == {f"{size[0]}x{size[1]}"}
    assert emulator.files()["downloads"] == (n if url_reply else 0)  # URL results are fetched at once


async def test_fan_out_calls_run_concurrently(client, emulator):
    emulator.configure("openai", latency=0.5)
    result = await generate(client, model="dall-e-3", n=4)
    times = sorted(r["time"] for r in emulator.requests("openai"))
    assert metadata(result)["calls"] == 4 and len(times) == 4
    assert times[-1] - times[0] < 0.4  # all four were in flight together, not one after another


@pytest.mark.parametrize(
    ("output_format", "suffix", "mime", "pil_format"),
    [
        ("png", ".png", "image/png", "PNG"),
        ("jpeg", ".jpg", "image/jpeg", "JPEG"),
        ("webp", ".webp", "image/webp", "WEBP"),
    ],
)
async def test_the_saved_file_has_the_format_asked_for(client, output_format, suffix, mime, pil_format):
    result = await generate(client, model="gpt-image-1", output_format=output_format)
    entry = metadata(result)["images"][0]
    assert (Path(entry["path"]).suffix, entry["mime_type"], open_image(entry["path"]).format) == (
        suffix,
        mime,
        pil_format,
    )


GPT_KNOBS = {
    "quality": "high",
    "background": "opaque",
    "output_format": "jpeg",
    "output_compression": 80,
    "moderation": "low",
}
KNOBS_SENT = [
    # arguments (all sent as they are, `extra` merged in), emulator provider, also sent, never sent
    pytest.param(
        {"model": "gpt-image-1", **GPT_KNOBS},
        "openai",
        {},
        {"response_format", "style", "seed"},
        id="gpt-image-knobs-no-response-format",
    ),
    pytest.param(
        {"model": "dall-e-3", "quality": "hd", "style": "natural"},
        "openai",
        {"response_format": "b64_json", "n": 1},
        {"background", "output_format", "moderation"},
        id="dall-e-3",
    ),
    pytest.param(
        {"model": "gemini-3-pro-image-preview", "provider": "zhaotou", "quality": "hd", "style": "vivid"},
        "zhaotou",
        {"response_format": "b64_json"},
        {"seed", "provider"},
        id="zhaotou",
    ),
    pytest.param(
        {"model": "imagen-3", "quality": "standard", "style": "natural"},
        "modelmax",
        {"size": "1024x1024"},
        {"output_format"},
        id="modelmax",
    ),
    pytest.param(
        {"model": "gpt-image-1", "provider": "local", "extra": {"user": "tester-7"}},
        "compat",
        {"prompt": PROMPT},
        {"response_format", "extra", "provider"},
        id="compat-extra-passed-as-is",
    ),
]


@pytest.mark.parametrize(("args", "upstream", "also_sent", "absent"), KNOBS_SENT)
async def test_the_upstream_receives_exactly_the_knobs_its_model_takes(
    client, emulator, args, upstream, also_sent, absent
):
    await generate(client, **args)
    (sent,) = emulator.requests(upstream)
    given = {k: v for k, v in args.items() if k not in ("provider", "extra")}
    expected = given | args.get("extra", {}) | also_sent
    assert {k: sent["json"].get(k) for k in expected} == expected
    assert not absent & set(sent["json"])


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        ({"model": "gpt-image-1", "style": "vivid"}, "style"),
        ({"model": "dall-e-3", "background": "transparent"}, "background"),
        ({"model": "imagen-3", "output_format": "png"}, "output_format"),
        ({"model": "gemini-3-pro-image-preview", "provider": "zhaotou", "seed": 7}, "seed"),
        ({"model": "dall-e-3", "size": "1536x1024"}, "size"),
        ({"model": "imagen-3", "size": "16:9"}, "size"),  # ModelMax takes WxH only (seeds/003)
    ],
)
async def test_a_knob_or_size_the_route_lacks_is_refused_before_any_request(client, emulator, args, argument):
    result = await client.call_tool("generate_image", {"prompt": PROMPT, **args})
    assert error_of(result)["kind"] == "invalid_argument" and error_of(result)["argument"] == argument
    assert emulator.requests() == []


@asynccontextmanager
async def session_with(client, emulator, tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Any]:
    """The module's server when `env` changes nothing, else a server of its own."""
    if not env:
        yield client
        return
    async with serve(emulator_env(emulator, tmp_path, **env)) as session:
        yield session


@pytest.mark.parametrize(
    ("env", "max_edge", "max_bytes"),
    [
        pytest.param({}, 768, 65536, id="defaults"),
        # 4096 is the smallest per-preview cap the settings accept: previews shrink to fit, none are lost
        # to it
        pytest.param(
            {"IMAGEGATE_PREVIEW_MAX_EDGE": "256", "IMAGEGATE_PREVIEW_MAX_BYTES": "4096"},
            256,
            4096,
            id="edge-256-smallest-byte-cap",
        ),
    ],
)
async def test_ten_previews_respect_the_edge_byte_and_total_caps_and_none_vanishes_silently(
    client, emulator, tmp_path, env, max_edge, max_bytes
):
    n = 10
    async with session_with(client, emulator, tmp_path, env) as session:
        result = await generate(session, model="gpt-image-1", size="1024x1024", n=n)

    previews = decoded_previews(result)
    assert len(previews) >= min(n, 3), "a small cap shrinks previews; it does not drop them all"
    for data, image in previews:
        assert image.format == "JPEG" and max(image.size) <= max_edge and len(data) <= max_bytes
    assert sum(len(b.data) for b in blocks(result, "image")) <= PREVIEW_TOTAL_BASE64
    assert [b.type for b in result.content] == ["text"] + ["image"] * len(previews) + ["resource_link"] * n
    # Each image is previewed, or named in the one note saying its preview was left out.
    omitted = [w for w in metadata(result)["warnings"] if "previews omitted" in w]
    named = [e for e in metadata(result)["images"] if any(Path(e["path"]).name in w for w in omitted)]
    assert len(omitted) <= 1 and len(previews) + len(named) == n


async def test_a_preview_is_png_only_when_transparency_was_asked_for(client):
    transparent = await generate(client, model="gpt-image-1", background="transparent", output_format="png")
    opaque = await generate(client, model="gpt-image-1", background="opaque", output_format="png")
    [(_, clear)], [(_, solid)] = decoded_previews(transparent), decoded_previews(opaque)
    assert (clear.format, clear.mode) == ("PNG", "RGBA")
    assert (solid.format, solid.mode) == ("JPEG", "RGB")


@pytest.mark.parametrize(
    ("env", "links", "structured"),
    [
        pytest.param({}, True, False, id="defaults-links-on-structured-off"),
        pytest.param(
            {"IMAGEGATE_RESOURCE_LINKS": "false", "IMAGEGATE_STRUCTURED_OUTPUT": "true"},
            False,
            True,
            id="links-off-structured-on",
        ),
    ],
)
async def test_resource_links_and_structured_content_follow_their_switches(
    client, emulator, tmp_path, env, links, structured
):
    async with session_with(client, emulator, tmp_path, env) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        result = await generate(session, model="dall-e-3", n=2)

    meta = metadata(result)
    found = blocks(result, "resource_link")
    if links:
        # Links name MCP resources (readable by clients that cannot open paths); the path stays in the text.
        assert [(b.uri, b.name, b.mime_type, b.size) for b in found] == [
            (
                f"imagegate://images/{Path(i['path']).parent.name}/{Path(i['path']).name}",
                Path(i["path"]).name,
                i["mime_type"],
                i["bytes"],
            )
            for i in meta["images"]
        ]
    else:
        assert found == []
    for name in ("generate_image", "edit_image"):
        assert (tools[name].output_schema is not None) == structured
    if structured:
        assert result.structured_content == meta
        jsonschema.validate(result.structured_content, tools["generate_image"].output_schema)
        assert "base64" not in json.dumps(result.structured_content) and len(json.dumps(meta)) < 4096
    else:
        assert result.structured_content is None


async def test_progress_is_reported_at_each_phase_and_only_goes_up(client):
    seen: list[tuple[float, str | None]] = []

    async def record(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, message))

    await client.call_tool(
        "generate_image", {"model": "dall-e-3", "prompt": PROMPT, "n": 3}, progress_callback=record
    )

    values = [p for p, _ in seen]
    messages = [m for _, m in seen]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert messages[0] == "sending to openai"
    assert sorted(m for m in messages if m and m.startswith("saved image")) == [
        f"saved image {k} of 3" for k in (1, 2, 3)
    ]


async def test_the_summary_names_model_provider_calls_and_every_saved_path(client):
    result = await generate(client, model="imagen-3", n=5)
    lines = text_of(result).splitlines()
    assert lines[0].startswith("5 images from imagen-3 via modelmax") and "(2 calls)" in lines[0]
    for entry in metadata(result)["images"]:
        assert f"- {entry['path']} (1024x1024)" in lines
        assert Path(entry["path"]).is_absolute()
    assert len(text_of(result)) < 4096  # full-size images are never inlined
