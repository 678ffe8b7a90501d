"""`imagegate serve --transport http`: stateless Streamable HTTP on loopback, driven by the SDK's
own HTTP client; DNS-rebinding protection refuses foreign Host and Origin headers."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import pytest
from mcp import Client
from tests.support import base_env, text_of

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(tmp, *extra: str, **env: str) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "imagegate", "serve", "--transport", "http", "--port", str(port), *extra]
    process = subprocess.Popen(
        command, env=base_env(tmp, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)
        assert process.stdout is not None and process.stdout.read() == b""  # logs go to stderr only


@pytest.fixture(scope="module")
def http_server(tmp_path_factory) -> Iterator[str]:
    with serving(tmp_path_factory.mktemp("http")) as url:
        yield url


LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
PROTOCOL = {"MCP-Protocol-Version": "2025-06-18"}


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
    answer = httpx2.post(http_server, json=LIST, headers={**ACCEPT, **headers}, timeout=10)
    assert answer.status_code in (400, 403, 421), answer.status_code


def test_a_configured_token_is_required(tmp_path):
    token = "test-http-token-7f3a"
    with serving(tmp_path, IMAGEGATE_HTTP_TOKEN=token) as url:
        missing = httpx2.post(url, json=LIST, headers=ACCEPT, timeout=10)
        wrong = httpx2.post(url, json=LIST, headers={**ACCEPT, "Authorization": "Bearer nope"}, timeout=10)
        right = httpx2.post(
            url, json=LIST, headers={**ACCEPT, **PROTOCOL, "Authorization": f"Bearer {token}"}, timeout=10
        )
    assert missing.status_code == 401 and wrong.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer" and token not in missing.text
    assert right.status_code == 200 and "generate_image" in right.text


def test_allowed_hosts_replace_the_loopback_defaults(tmp_path):
    with serving(tmp_path, "--allow-host", "images.example:8000") as url:
        ours = httpx2.post(
            url, json=LIST, headers={**ACCEPT, **PROTOCOL, "Host": "images.example:8000"}, timeout=10
        )
        foreign = httpx2.post(
            url, json=LIST, headers={**ACCEPT, **PROTOCOL, "Host": "evil.example:8000"}, timeout=10
        )
    assert ours.status_code == 200 and foreign.status_code in (400, 403, 421)
