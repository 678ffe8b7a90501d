"""What a new user meets in the first hour (issue 15): the CLI over a real pipe and a real terminal,
the HTTP endpoint opened by a browser, the default output folder, and argument messages that say
what was wrong and where the server looked."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from tests.support import base_env, text_of

from imagegate.app import create_server
from imagegate.service import build_service
from imagegate.settings import load_settings

pytestmark = pytest.mark.anyio
IMAGEGATE = [sys.executable, "-m", "imagegate"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_a_reader_that_closes_the_pipe_gets_no_traceback(tmp_path):
    # `imagegate models | head`: the read end is closed before the command writes a byte.
    process = subprocess.Popen(
        [*IMAGEGATE, "models"], env=base_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=30) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err, err


def _read_for(fd: int, seconds: float) -> str:
    out, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline and b"\n" not in out:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                out += os.read(fd, 1024)
            except OSError:
                break
    return out.decode(errors="replace")


@pytest.mark.slow
def test_started_in_a_terminal_it_says_what_it_is_and_how_to_stop(tmp_path):
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        IMAGEGATE, env=base_env(tmp_path), stdin=follower, stdout=subprocess.PIPE, stderr=follower
    )
    os.close(follower)
    try:
        line = _read_for(leader, 30)
    finally:
        process.terminate()
        process.wait(timeout=10)
        os.close(leader)
    assert "MCP server on stdio" in line and "Ctrl-C" in line, line


@pytest.mark.slow
def test_started_by_a_client_on_pipes_it_says_nothing(tmp_path):
    process = subprocess.run(IMAGEGATE, env=base_env(tmp_path), input=b"", capture_output=True, timeout=30)
    assert process.stdout == b"" and b"Ctrl-C" not in process.stderr


@pytest.mark.slow
def test_a_browser_opening_the_http_endpoint_is_answered_at_once(tmp_path):
    port = _free_port()
    command = [*IMAGEGATE, "serve", "--transport", "http", "--port", str(port)]
    process = subprocess.Popen(
        command, env=base_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/mcp"
        page = httpx2.get(url, headers={"Accept": "text/html"}, timeout=5)  # a browser: no event stream
        bare = httpx2.get(url, timeout=5)  # curl's */*
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert page.status_code == 406 and bare.status_code == 406
    assert "text/event-stream" in page.json()["error"]["message"]


def test_without_a_pictures_folder_images_go_to_the_data_folder_once(tmp_path, monkeypatch):
    for name in ("XDG_DATA_HOME", "XDG_PICTURES_DIR", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # platformdirs reads the process environment
    settings = load_settings({"HOME": str(tmp_path)})
    assert settings.output_dir == tmp_path / ".local" / "share" / "imagegate"
    (tmp_path / "Pictures").mkdir()
    assert load_settings({"HOME": str(tmp_path)}).output_dir == tmp_path / "Pictures" / "imagegate"


async def _call(tmp_path: Path, name: str, arguments: dict[str, Any]) -> Any:
    server = create_server(lambda: build_service(base_env(tmp_path)))
    async with Client(server) as client:  # type: ignore[arg-type]
        return await client.call_tool(name, arguments)


async def test_a_number_given_as_a_string_is_quoted_in_the_message(tmp_path):
    result = await _call(tmp_path, "generate_image", {"model": "placeholder", "prompt": "x", "n": "3"})
    assert result.is_error and 'n must be an integer; got the string "3"' in text_of(result)


async def test_a_relative_path_that_is_not_there_says_where_it_was_looked_for(tmp_path):
    arguments = {"model": "placeholder", "prompt": "x", "images": ["no-such-dir/cat.png"]}
    result = await _call(tmp_path, "edit_image", arguments)
    assert result.is_error
    assert "does not exist" in text_of(result) and str(Path.cwd()) in text_of(result)
    assert "absolute path" in text_of(result)


async def test_aliases_are_listed_with_their_model(tmp_path):
    server = create_server(lambda: build_service(base_env(tmp_path, GEMINI_API_KEY="test-key")))
    async with Client(server) as client:  # type: ignore[arg-type]
        result = await client.call_tool("list_models", {})
    line = next(x for x in text_of(result).splitlines() if x.startswith("gemini-3-pro-image "))
    assert "nano-banana-pro" in line


@pytest.mark.slow
def test_the_cli_table_lists_aliases(tmp_path):
    out = subprocess.run(
        [*IMAGEGATE, "models"],
        env=base_env(tmp_path, GEMINI_API_KEY="test-key"),
        capture_output=True,
        timeout=30,
    )
    assert b"nano-banana-pro" in out.stdout


async def test_an_unknown_tool_names_only_the_tools_this_client_was_offered(tmp_path):
    server = create_server(lambda: build_service(base_env(tmp_path)))
    async with Client(server) as client:  # type: ignore[arg-type]
        offered = {t.name for t in (await client.list_tools()).tools}
        with pytest.raises(MCPError) as raised:
            await client.call_tool("make_picture", {})
    assert "get_image_job" not in offered and "get_image_job" not in str(raised.value)
    assert all(name in str(raised.value) for name in offered)


async def test_a_ratio_made_at_another_shape_says_so(tmp_path):
    result = await _call(tmp_path, "generate_image", {"model": "placeholder", "prompt": "x", "size": "3:2"})
    assert not result.is_error
    assert "3:2 is made as 1216x832" in text_of(result)


def test_the_bundle_icon_is_the_size_mcpb_recommends_and_the_inline_one_stays_small():
    from PIL import Image

    root = Path(__file__).resolve().parents[2]
    manifest = json.loads((root / "manifest.json").read_text())
    with Image.open(root / manifest["icon"]) as icon:
        assert (icon.format, icon.size) == ("PNG", (512, 512))
    with Image.open(root / "server" / "imagegate" / "icon.png") as inline:
        assert inline.size == (64, 64)  # inlined in serverInfo: every handshake carries it


async def test_a_knob_the_model_lacks_names_the_models_that_take_it(tmp_path):
    env = base_env(tmp_path, OPENAI_API_KEY="test-key")
    server = create_server(lambda: build_service(env))
    async with Client(server) as client:  # type: ignore[arg-type]
        result = await client.call_tool(
            "generate_image", {"model": "gpt-image-1", "prompt": "x", "style": "vivid"}
        )
    assert (
        result.is_error
        and "style is not supported by gpt-image-1 via openai; models that take it: dall-e-3"
        in text_of(result)
    )
