"""Users kept apart: tokens are stored as hashes (and refused in the clear), each user's images go to
their own subfolder, and over HTTP neither of two users can list or read the other's images, while
the single IMAGEGATE_HTTP_TOKEN of before still works. No token reaches the server's log."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from tests.support import base_env, text_of
from tests.team.conftest import free_port

from imagegate.cli import main
from imagegate.errors import ConfigError
from imagegate.settings import load_settings
from imagegate.team.users import Users, hash_token

ALICE, BOB, SHARED = (
    "alice-token-0123456789abcdef",
    "bob-token-fedcba9876543210",
    "shared-token-00112233445566",
)


def test_a_token_is_stored_as_its_sha256_and_identifies_its_user():
    users = Users.parse({"alice": hash_token(ALICE), "bob": hash_token(BOB)}, SHARED, "team.toml")
    assert hash_token(ALICE).startswith("sha256:") and len(hash_token(ALICE)) == 7 + 64
    assert users.identify(ALICE).user == "alice" and users.identify(BOB).user == "bob"
    assert users.identify(SHARED).user is None and users.identify("nope") is None
    assert ALICE not in repr(users) and BOB not in repr(users)


@pytest.mark.parametrize(
    ("table", "said"),
    [
        ({"alice": ALICE}, "never the token itself"),
        ({"1alice": hash_token(ALICE)}, "a user name is a letter"),
        ({"a": hash_token(ALICE), "b": hash_token(ALICE)}, "same token"),
    ],
    ids=["token-in-the-clear", "bad-name", "shared-token"],
)
def test_a_users_table_that_is_not_hashes_of_distinct_tokens_is_refused(table, said):
    with pytest.raises(ConfigError) as refused:
        Users.parse(table, None, "team.toml")
    assert said in refused.value.message and ALICE not in refused.value.message


def test_the_cli_prints_the_config_entry_and_never_the_token(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(ALICE + "\n"))
    assert main(["hash-token", "alice"]) == 0
    out = capsys.readouterr().out
    assert out == f'[users.alice]\ntoken = "{hash_token(ALICE)}"\n' and ALICE not in out


def team_config(tmp_path: Path) -> Path:
    config = tmp_path / "team.toml"
    config.write_text(
        f'[users.alice]\ntoken = "{hash_token(ALICE)}"\n\n[users.bob]\ntoken = "{hash_token(BOB)}"\n'
    )
    return config


def test_users_come_from_the_config_file(tmp_path):
    settings = load_settings(base_env(tmp_path, IMAGEGATE_CONFIG=str(team_config(tmp_path))))
    assert [u.name for u in settings.users.users] == ["alice", "bob"] and settings.users.required


@contextmanager
def serving(tmp_path: Path, **env: str) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "server.log"
    command = [sys.executable, "-m", "imagegate", "serve", "--transport", "http", "--port", str(port)]
    with log.open("wb") as errors:
        process = subprocess.Popen(
            command, env=base_env(tmp_path, **env), stdout=subprocess.DEVNULL, stderr=errors
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        try:
            yield f"http://127.0.0.1:{port}/mcp", log
        finally:
            process.terminate()
            process.wait(timeout=10)


def images(listed) -> list[str]:
    return [r.uri for r in listed.resources if r.uri.startswith("imagegate://images/")]


def as_user(url: str, token: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http))


@pytest.mark.slow
@pytest.mark.anyio
async def test_two_users_never_see_each_others_images(tmp_path):
    with serving(tmp_path, IMAGEGATE_CONFIG=str(team_config(tmp_path)), IMAGEGATE_HTTP_TOKEN=SHARED) as (
        url,
        log,
    ):
        async with as_user(url, ALICE) as alice, as_user(url, BOB) as bob, as_user(url, SHARED) as shared:
            made = await alice.call_tool("generate_image", {"model": "placeholder", "prompt": "alice's cat"})
            link = next(b for b in made.content if b.type == "resource_link")
            mine = images(await alice.list_resources())
            theirs = images(await bob.list_resources())
            read = await alice.read_resource(link.uri)
            with pytest.raises(MCPError) as refused:
                await bob.read_resource(link.uri)
            nobody = images(await shared.list_resources())
        denied = httpx2.post(
            url, json={}, headers={"Authorization": "Bearer wrong-token-000000000"}, timeout=10
        )
    out = tmp_path / "out"
    assert not made.is_error and str(out / "alice") in text_of(made)
    assert mine == [link.uri] and theirs == [] and nobody == []
    assert read.contents and "not found" in refused.value.error.message
    assert list((out / "alice").rglob("*.png")) and not (out / "bob").exists()
    assert denied.status_code == 401
    text = log.read_text()
    assert ALICE not in text and BOB not in text and SHARED not in text
