"""`imagegate serve --transport http`: stateless Streamable HTTP on loopback, driven by the SDK's
own HTTP client; DNS-rebinding protection refuses foreign Host and Origin headers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx2
import pytest
from mcp import Client

from tests.conftest import base_env, text_of

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def http_server(tmp_path_factory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("http")
    port = free_port()
    command = [sys.executable, "-m", "imagegate", "serve", "--transport", "http", "--port", str(port)]
    process = subprocess.Popen(command, env=base_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stdout is not None and process.stdout.read() == b""  # logs go to stderr only


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_both_protocol_eras_list_and_call_over_http(http_server, mode):
    async with Client(http_server, mode=mode) as client:  # type: ignore[arg-type]
        tools = {t.name for t in (await client.list_tools()).tools}
        made = await client.call_tool("generate_image", {"model": "placeholder", "prompt": "over http"})
        refused = await client.call_tool("generate_image", {"model": "placeholder", "prompt": "x", "n": 99})
    assert tools == {"generate_image", "edit_image", "list_models", "get_supported_sizes"}
    assert not made.is_error and [b.type for b in made.content][:2] == ["text", "image"]
    assert refused.is_error and "n 99 is out of range" in text_of(refused)


@pytest.mark.parametrize(
    "headers",
    [{"Host": "evil.example:80"}, {"Origin": "http://evil.example"}],
    ids=["foreign-host", "foreign-origin"],
)
def test_dns_rebinding_guard_refuses_foreign_host_and_origin(http_server, headers):
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    accept = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    answer = httpx2.post(http_server, json=body, headers={**accept, **headers}, timeout=10)
    assert answer.status_code in (400, 403, 421), answer.status_code
