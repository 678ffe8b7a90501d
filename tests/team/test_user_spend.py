"""Budgets and the ledger per user (issue 18, on the spend of issue 17): two users of one team server,
each with their own bearer token, over real loopback Streamable HTTP (the server's own ASGI app,
`transports.http_app`, under uvicorn in this test's event loop, so no process is started) against
the emulator. One user's calls that use up the day's budget are refused for them before anything
is sent, while the other's still go; the ledger's rows carry each user's name; the usage resource
shows each user only their own spend; and a confirm token issued to one cannot be redeemed by the
other."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from tests.support import error_of, meta_of, provider_env, text_of
from tests.support.server import process_env
from tests.team.conftest import free_port
from tools.emulator import EmulatorClient

from imagegate.ledger import Ledger
from imagegate.service import build_service
from imagegate.team.users import hash_token
from imagegate.transports import http_app

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice-token-0123456789abcdef", "bob-token-fedcba9876543210"
LOW = {"model": "gpt-image-1", "prompt": "a red fox", "n": 2, "quality": "low", "size": "1024x1024"}
"""2 × $0.011 = $0.022 (the table's low 1024x1024)."""
USAGE = "imagegate://usage/today"


def team_env(tmp_path: Path, emu: EmulatorClient, **extra: str) -> dict[str, str]:
    config = tmp_path / "team.toml"
    config.write_text(
        f'[users.alice]\ntoken = "{hash_token(ALICE)}"\n\n[users.bob]\ntoken = "{hash_token(BOB)}"\n'
    )
    return provider_env(tmp_path, emu, "openai", "test-team-key", IMAGEGATE_CONFIG=str(config), **extra)


@asynccontextmanager
async def team_server(env: dict[str, str]) -> AsyncIterator[str]:
    """The HTTP app `imagegate serve --transport http` runs, served on a free loopback port."""
    with process_env(env):
        service = build_service(env)
    port = free_port()
    config = uvicorn.Config(
        http_app(service, "127.0.0.1"), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True
    await service.aclose()


def as_user(url: str, token: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    return Client(streamable_http_client(url, http_client=http))


async def usage_of(client: Client) -> dict[str, Any]:
    read = await client.read_resource(USAGE)
    return dict(json.loads(read.contents[0].text))


async def test_each_user_has_their_own_daily_budget_ledger_rows_and_usage(tmp_path, emu):
    env = team_env(tmp_path, emu, IMAGEGATE_DAILY_BUDGET="0.05")  # two LOW calls fit, a third does not
    async with team_server(env) as url, as_user(url, ALICE) as alice, as_user(url, BOB) as bob:
        first = await alice.call_tool("generate_image", LOW)
        second = await alice.call_tool("generate_image", LOW)
        sent_for_alice = len(emu.requests("openai"))
        refused = await alice.call_tool("generate_image", LOW)
        after_refusal = len(emu.requests("openai"))
        bobs = await bob.call_tool("generate_image", LOW)
        alice_usage, bob_usage = await usage_of(alice), await usage_of(bob)
    assert len(meta_of(first)["images"]) == 2 and len(meta_of(second)["images"]) == 2
    assert error_of(refused)["kind"] == "over_budget" and "IMAGEGATE_DAILY_BUDGET" in text_of(refused)
    assert sent_for_alice == after_refusal == 2  # the refusal sent nothing upstream
    assert len(meta_of(bobs)["images"]) == 2  # alice's spend is not bob's
    assert len(emu.requests("openai")) == 3

    ledger = Ledger(Path(env["IMAGEGATE_LEDGER"]))
    alices, bobs_rows = ledger.rows(user="alice"), ledger.rows(user="bob")
    assert [r["status"] for r in alices] == ["ok", "ok", "refused"]
    assert [r["status"] for r in bobs_rows] == ["ok"]
    assert {r["user"] for r in alices} == {"alice"} and {r["user"] for r in bobs_rows} == {"bob"}
    assert ledger.rows(user=None) == []  # no call went unattributed
    assert all(str(tmp_path / "out" / "alice") in p for r in alices for p in r["paths"])
    assert all(str(tmp_path / "out" / "bob") in p for p in bobs_rows[0]["paths"])
    assert ledger.spent_today("alice") == pytest.approx(0.044, abs=0.004)
    assert ledger.spent_today("bob") == pytest.approx(0.022, abs=0.002)

    assert alice_usage["user"] == "alice" and bob_usage["user"] == "bob"
    assert (alice_usage["calls"], alice_usage["images"]) == (2, 4)
    assert (bob_usage["calls"], bob_usage["images"]) == (1, 2)
    assert alice_usage["total_usd"] == pytest.approx(0.044, abs=0.004)
    assert bob_usage["total_usd"] == pytest.approx(0.022, abs=0.002)
    assert alice_usage["left_today"] == pytest.approx(0.05 - alice_usage["total_usd"], abs=1e-6)
    assert bob_usage["left_today"] == pytest.approx(0.05 - bob_usage["total_usd"], abs=1e-6)


def token_in(text: str) -> str:
    return text.split('"confirm": "', 1)[1].split('"', 1)[0]


async def test_a_confirm_token_issued_to_one_user_cannot_be_redeemed_by_another(tmp_path, emu):
    env = team_env(tmp_path, emu, IMAGEGATE_CONFIRM_ABOVE="0.01")  # LOW, $0.022, needs a confirmation
    async with team_server(env) as url, as_user(url, ALICE) as alice, as_user(url, BOB) as bob:
        asked = await alice.call_tool("generate_image", LOW)
        assert error_of(asked)["kind"] == "confirmation_required"
        token = token_in(text_of(asked))
        stolen = await bob.call_tool("generate_image", {**LOW, "confirm": token})
        nothing_sent = len(emu.requests("openai"))
        made = await alice.call_tool("generate_image", {**LOW, "confirm": token})
    assert error_of(stolen)["argument"] == "confirm" and "not a token for this call" in text_of(stolen)
    assert nothing_sent == 0
    assert len(meta_of(made)["images"]) == 2  # bob's try did not use the token up
    assert len(emu.requests("openai")) == 1
    ledger = Ledger(Path(env["IMAGEGATE_LEDGER"]))
    assert [r["status"] for r in ledger.rows(user="alice")] == ["ok"] and ledger.rows(user="bob") == []
