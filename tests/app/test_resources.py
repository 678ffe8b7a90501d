"""Saved images as MCP resources: listed newest first, read back byte for byte with
their sidecar, linked from tool results; anything outside the output tree is refused cleanly."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from mcp.shared.exceptions import MCPError
from tests.support import base_env, serve, text_of

from imagegate import gallery
from imagegate.errors import InvalidRequest

pytestmark = pytest.mark.anyio

PROMPT = "a fox in the snow"


def saved_paths(result) -> list[Path]:
    meta = json.loads(text_of(result).splitlines()[-1])
    return [Path(image["path"]) for image in meta["images"]]


def refused_uris(tmp_path: Path, day: str) -> list[str]:
    (tmp_path / "secret.png").write_bytes(b"outside")
    (tmp_path / "secret.json").write_text("{}")
    return [
        "imagegate://images/../../etc/passwd",
        f"imagegate://images/{day}/../../secret.png",
        "imagegate://images/%2e%2e/secret.png",
        f"imagegate://images/{tmp_path}/secret.png",
        "imagegate://images//etc/passwd",
        f"file://{tmp_path}/secret.png",
        "imagegate://images/2026-01-01/000000-missing-1.png",
        "imagegate://images/",
        "imagegate://other/x",
        "",
    ]


async def test_generated_images_are_listed_and_read_back_with_their_sidecar(tmp_path):
    async with serve(base_env(tmp_path)) as client:
        result = await client.call_tool("generate_image", {"model": "placeholder", "prompt": PROMPT, "n": 2})
        assert not result.is_error, text_of(result)
        paths = saved_paths(result)
        listed = {r.uri: r for r in (await client.list_resources()).resources}
        links = [b for b in result.content if b.type == "resource_link"]

        assert [b.uri for b in links] == [f"imagegate://images/{p.parent.name}/{p.name}" for p in paths]
        for link, path in zip(links, paths, strict=True):
            resource = listed[link.uri]
            assert (resource.name, resource.mime_type, resource.size) == (
                path.name,
                link.mime_type,
                path.stat().st_size,
            )
            assert "placeholder" in (resource.description or "") and PROMPT in (resource.description or "")

            contents = (await client.read_resource(link.uri)).contents
            blob, side = contents
            assert blob.uri == link.uri and blob.mime_type == link.mime_type
            assert base64.b64decode(blob.blob) == path.read_bytes()
            assert side.uri == link.uri + "#metadata" and side.mime_type == "application/json"
            assert json.loads(side.text) == json.loads(path.with_suffix(".json").read_text())
        assert str(paths[0]) in text_of(result)  # the path stays in the text


async def test_the_template_is_listed(tmp_path):
    async with serve(base_env(tmp_path)) as client:
        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["imagegate://images/{date}/{name}"]
        assert (await client.list_resources()).resources == []  # no output dir yet: an empty list


async def test_uris_outside_the_saved_images_are_refused_and_the_server_keeps_serving(tmp_path):
    async with serve(base_env(tmp_path)) as client:
        result = await client.call_tool("generate_image", {"model": "placeholder", "prompt": PROMPT})
        path = saved_paths(result)[0]
        day = path.parent.name
        sidecar_uri = f"imagegate://images/{day}/{path.with_suffix('.json').name}"
        for uri in [*refused_uris(tmp_path, day), sidecar_uri]:
            with pytest.raises(MCPError) as caught:
                await client.read_resource(uri)
            assert "not a saved image" in str(caught.value) or "not found" in str(caught.value), uri
            assert "Traceback" not in str(caught.value)
        good = f"imagegate://images/{day}/{path.name}"
        assert base64.b64decode((await client.read_resource(good)).contents[0].blob) == path.read_bytes()


def test_symlinks_out_of_the_tree_and_images_without_sidecars_are_not_served(tmp_path):
    root, day = tmp_path / "out", tmp_path / "out" / "2026-11-21"
    day.mkdir(parents=True)
    (tmp_path / "secret.png").write_bytes(b"secret")
    (day / "000001-leak-1.png").symlink_to(tmp_path / "secret.png")
    (day / "000001-leak-1.json").write_text("{}")
    (day / "000002-bare-1.png").write_bytes(b"no sidecar")
    (day / "000003-ok-1.png").write_bytes(b"ok")
    (day / "000003-ok-1.json").write_text(json.dumps({"prompt": "p", "model": "m", "provider": "v"}))

    assert [i.uri for i in gallery.list_images(root)] == ["imagegate://images/2026-11-21/000003-ok-1.png"]
    for name in ("000001-leak-1.png", "000002-bare-1.png"):
        with pytest.raises(InvalidRequest, match=name):
            gallery.read_image(root, f"imagegate://images/2026-11-21/{name}")
    assert gallery.image_uri(root, tmp_path / "secret.png") is None


def test_listing_is_newest_first_and_capped(tmp_path):
    for d, t in [("2026-11-20", "235959"), ("2026-11-21", "000001"), ("2026-11-21", "120000")]:
        folder = tmp_path / d
        folder.mkdir(exist_ok=True)
        (folder / f"{t}-x-1.jpg").write_bytes(b"x")
        (folder / f"{t}-x-1.json").write_text("{}")
    names = [i.uri.removeprefix(gallery.URI_PREFIX) for i in gallery.list_images(tmp_path, limit=2)]
    assert names == ["2026-11-21/120000-x-1.jpg", "2026-11-21/000001-x-1.jpg"]
