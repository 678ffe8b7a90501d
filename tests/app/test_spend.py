"""Spend over MCP, against the emulator: quotes and costs in results and sidecars, budgets that refuse
before anything is sent (the emulator's log stays empty), the confirm token, and the confirmation form
in both protocol eras (accepted, declined, unanswered), with the SDK's in-memory client."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from tests.support import (
    VirtualTime,
    all_keys,
    base_env,
    error_of,
    image_bytes,
    meta_of,
    provider_env,
    serve,
    sidecar_of,
    text_of,
)
from tests.support.server import process_env
from tools.emulator import EmulatorClient, start_thread

from imagegate.app import create_server
from imagegate.ledger import Ledger
from imagegate.service import build_service

pytestmark = pytest.mark.anyio

HIGH = {"model": "gpt-image-1", "prompt": "a red fox", "n": 4, "quality": "high", "size": "1024x1024"}
"""4 × $0.167 (the table's high 1024x1024) = $0.668."""
LOW = {"model": "gpt-image-1", "prompt": "a red fox", "n": 2, "quality": "low", "size": "1024x1024"}
"""2 × $0.011 = $0.022."""
MODERN = "2026-07-28"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorClient]:
    with start_thread() as running:
        yield running


@pytest.fixture
def emu(emulator: EmulatorClient) -> EmulatorClient:
    emulator.reset()
    return emulator


def openai_env(tmp_path: Path, emu: EmulatorClient, **extra: str) -> dict[str, str]:
    return provider_env(tmp_path, emu, "openai", "test-spend-key", **extra)


def client_for(env: dict[str, str], **options: Any) -> Client:
    """The in-memory client with options serve() does not take (an elicitation callback, a protocol era)."""

    def service() -> Any:
        with process_env(env):
            return build_service(env)

    return Client(create_server(service), **options)  # type: ignore[arg-type]


# --- Cost in every result ---------------------------------------------------------------------------


async def test_a_result_states_the_tables_estimate_and_the_cost_the_tokens_report(tmp_path, emu):
    async with serve(openai_env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", LOW)
    meta = meta_of(result)
    cost = meta["cost"]
    assert (cost["estimated"], cost["currency"]) == (0.022, "USD")
    usage = meta["usage"][0]  # the emulator's tokens, priced at gpt-image-1's rates per million
    details = usage["input_tokens_details"]
    tokens = details["text_tokens"] * 5.0 + details["image_tokens"] * 10.0 + usage["output_tokens"] * 40.0
    assert cost["reported"] == pytest.approx(tokens / 1e6)
    assert any(
        line.startswith("cost: about $0.022 by the price table; $0.02")
        for line in text_of(result).splitlines()
    )
    side = sidecar_of(meta["images"][0])["cost"]
    assert side["estimated"] == 0.011 and side["reported"] == pytest.approx(cost["reported"] / 2)


async def test_a_gateway_route_does_not_borrow_the_makers_price(tmp_path, emu):
    env = provider_env(tmp_path, emu, "zhaotou", "test-spend-key")
    async with serve(env) as client:
        made = await client.call_tool("generate_image", {"model": "gpt-4o-image", "prompt": "a fox"})
        listed = text_of(await client.call_tool("list_models", {}))
    assert "estimated" not in meta_of(made).get("cost", {})  # unknown: left out, as every None is
    assert "cost: unknown" in text_of(made)
    line = next(x for x in listed.splitlines() if x.startswith("gpt-image-1 "))
    assert "openai $0.011–0.25?" in line  # the maker's API has the list price, UNCONFIRMED


async def test_get_supported_sizes_gives_the_price_per_tier(tmp_path):
    async with serve(base_env(tmp_path, GEMINI_API_KEY="test-x")) as client:
        text = text_of(await client.call_tool("get_supported_sizes", {"model": "nano-banana-pro"}))
    assert "price per image: 1K $0.134, 2K $0.134, 4K $0.24" in text
    assert "UNCONFIRMED price:" in text


async def test_the_confirm_argument_costs_tools_list_a_few_bytes_only(tmp_path):
    def size(tools: list[Any]) -> int:  # as on the wire: compact JSON, UTF-8
        dumped = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
        return len(json.dumps(dumped, separators=(",", ":"), ensure_ascii=False).encode())

    async with serve(base_env(tmp_path, **all_keys())) as client:
        without = (await client.list_tools()).tools
    async with serve(base_env(tmp_path, **all_keys(), IMAGEGATE_CONFIRM_ABOVE="1")) as client:
        tools = (await client.list_tools()).tools
    assert size(tools) - size(without) <= 2 * len(',"confirm":{"type":"string"}')
    generate = next(t for t in tools if t.name == "generate_image")
    assert generate.input_schema["properties"]["confirm"] == {"type": "string"}


async def test_without_a_threshold_the_confirm_argument_is_not_offered(tmp_path):
    async with serve(base_env(tmp_path)) as client:
        tools = (await client.list_tools()).tools
    assert all("confirm" not in t.input_schema.get("properties", {}) for t in tools)


# --- Budgets -----------------------------------------------------------------------------------------


async def test_a_call_over_the_daily_budget_is_refused_before_any_request(tmp_path, emu):
    async with serve(openai_env(tmp_path, emu, IMAGEGATE_DAILY_BUDGET="0.5")) as client:
        result = await client.call_tool("generate_image", HIGH)
    assert error_of(result)["kind"] == "over_budget"
    text = text_of(result)
    assert "about $0.67" in text and "only $0.50 is left" in text and "IMAGEGATE_DAILY_BUDGET" in text
    assert emu.requests("openai") == []


async def test_the_per_call_budget_refuses_and_says_how_to_raise_it(tmp_path, emu):
    async with serve(openai_env(tmp_path, emu, IMAGEGATE_CALL_BUDGET="0.1")) as client:
        refused = await client.call_tool("generate_image", HIGH)
        cheap = await client.call_tool("generate_image", LOW)
    assert "per-call budget of $0.10" in text_of(refused) and "IMAGEGATE_CALL_BUDGET" in text_of(refused)
    assert not cheap.is_error
    assert len(emu.requests("openai")) == 1  # only the cheap call went out


async def test_spend_accumulates_until_the_daily_budget_refuses(tmp_path, emu):
    async with serve(openai_env(tmp_path, emu, IMAGEGATE_DAILY_BUDGET="0.05")) as client:
        first = await client.call_tool("generate_image", LOW)
        second = await client.call_tool("generate_image", LOW)
        third = await client.call_tool("generate_image", LOW)
    assert not first.is_error and not second.is_error  # about $0.022 each
    assert error_of(third)["kind"] == "over_budget"
    assert len(emu.requests("openai")) == 2


@pytest.mark.parametrize("policy", ["allow", "refuse"])
async def test_an_unknown_price_follows_the_setting_and_says_which_applied(tmp_path, emu, policy):
    env = provider_env(
        tmp_path, emu, "zhaotou", "test-k", IMAGEGATE_DAILY_BUDGET="5", IMAGEGATE_UNKNOWN_PRICE=policy
    )
    async with serve(env) as client:
        result = await client.call_tool("generate_image", {"model": "gpt-4o-image", "prompt": "a fox"})
    said = text_of(result)
    if policy == "refuse":
        assert error_of(result)["kind"] == "over_budget" and "IMAGEGATE_UNKNOWN_PRICE=refuse" in said
        assert emu.requests("zhaotou") == []
    else:
        assert not result.is_error and "sent because IMAGEGATE_UNKNOWN_PRICE=allow" in said


async def test_a_cny_price_is_judged_at_the_configured_rate_and_the_rate_is_stated(tmp_path, emu):
    config = tmp_path / "imagegate.toml"
    config.write_text("[spend]\ncny_per_usd = 7.0\ndaily_budget = 0.05\n")
    env = provider_env(tmp_path, emu, "ark", "test-k", IMAGEGATE_CONFIG=str(config))
    async with serve(env) as client:
        result = await client.call_tool(
            "generate_image", {"model": "seedream-4.0", "prompt": "a fox", "n": 2}
        )
    # 2 × ¥0.20 = ¥0.40 ≈ $0.057 > $0.05
    assert "¥0.40 (≈ $0.057 at 7 CNY per USD)" in text_of(result)
    assert emu.requests("ark") == []


# --- Confirmation ------------------------------------------------------------------------------------


def token_in(text: str) -> str:
    return text.split('"confirm": "', 1)[1].split('"', 1)[0]


async def test_the_confirm_token_lets_the_same_call_through_once(tmp_path, emu):
    async with serve(openai_env(tmp_path, emu, IMAGEGATE_CONFIRM_ABOVE="0.5")) as client:
        asked = await client.call_tool("generate_image", HIGH)
        assert error_of(asked)["kind"] == "confirmation_required"
        assert "4 images on gpt-image-1 high 1024x1024 is about $0.67" in text_of(asked)
        assert emu.requests("openai") == []
        token = token_in(text_of(asked))
        other = await client.call_tool("generate_image", {**HIGH, "n": 3, "confirm": token})
        made = await client.call_tool("generate_image", {**HIGH, "confirm": token})
        again = await client.call_tool("generate_image", {**HIGH, "confirm": token})
    assert error_of(other)["argument"] == "confirm"  # bound to the arguments it was given for
    assert len(meta_of(made)["images"]) == 4
    assert error_of(again)["argument"] == "confirm"  # once
    assert len(emu.requests("openai")) == 1


def answering(action: str | None, seen: list[str]) -> Any:
    """An elicitation callback: accept / decline / cancel, or never answer (None)."""

    async def answer(context: Any, params: types.ElicitRequestParams) -> types.ElicitResult:
        seen.append(params.message)
        if action is None:
            import anyio

            await anyio.sleep_forever()
        content = {"go_ahead": True} if action == "accept" else None
        return types.ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    return answer


@pytest.mark.parametrize("mode", ["legacy", MODERN])
@pytest.mark.parametrize("action", ["accept", "decline", "cancel"])
async def test_a_client_with_elicitation_is_asked_with_a_form(tmp_path, emu, mode, action):
    seen: list[str] = []
    env = openai_env(tmp_path, emu, IMAGEGATE_CONFIRM_ABOVE="0.5")
    async with client_for(env, mode=mode, elicitation_callback=answering(action, seen)) as client:
        result = await client.call_tool("generate_image", HIGH)
    assert seen == ["4 images on gpt-image-1 high 1024x1024, about $0.67 (price UNCONFIRMED) — go ahead?"]
    if action == "accept":
        assert len(meta_of(result)["images"]) == 4 and len(emu.requests("openai")) == 1
    else:
        assert error_of(result)["kind"] == "confirmation_declined"
        assert f"the confirmation was {'declined' if action == 'decline' else 'cancelled'}" in text_of(result)
        assert emu.requests("openai") == []


async def test_an_unanswered_form_times_out_and_sends_nothing(tmp_path, emu):
    seen: list[str] = []
    env = openai_env(tmp_path, emu, IMAGEGATE_CONFIRM_ABOVE="0.5", IMAGEGATE_CONFIRM_TIMEOUT="0.05")
    async with client_for(env, mode="legacy", elicitation_callback=answering(None, seen)) as client:
        result = await client.call_tool("generate_image", HIGH)
    assert error_of(result)["kind"] == "confirmation_declined"
    assert "not answered within 0.05 s" in text_of(result)
    assert emu.requests("openai") == []


async def test_usage_resource_gives_todays_spend(tmp_path, emu):
    async with serve(openai_env(tmp_path, emu, IMAGEGATE_DAILY_BUDGET="2")) as client:
        await client.call_tool("generate_image", LOW)
        listed = [r.uri for r in (await client.list_resources()).resources]
        read = await client.read_resource("imagegate://usage/today")
    assert "imagegate://usage/today" in listed
    report = json.loads(read.contents[0].text)
    assert report["calls"] == 1 and report["images"] == 2
    assert report["by"][0]["provider"] == "openai" and report["total_usd"] == pytest.approx(0.022, abs=0.002)
    assert report["left_today"] == pytest.approx(2 - report["total_usd"])


# --- Never paying twice ----------------------------------------------------------------------------


async def test_a_post_dropped_after_it_was_sent_is_not_sent_again(tmp_path, emu):
    emu.fault("openai", "*", "drop_connection", count=2)
    async with serve(openai_env(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", LOW)
    assert error_of(result)["kind"] == "upstream_error"
    assert len(emu.requests("openai")) == 1


async def test_openai_gets_one_idempotency_key_for_a_request_and_its_retries(tmp_path):
    keys: list[str | None] = []
    png = base64.b64encode(image_bytes((1024, 1024))).decode()

    def reply(request: httpx2.Request) -> httpx2.Response:
        keys.append(request.headers.get("idempotency-key"))
        if len(keys) in (1, 2):
            return httpx2.Response(503, json={"error": {"message": "overloaded"}})
        return httpx2.Response(200, json={"data": [{"b64_json": png}]})

    env = base_env(tmp_path, OPENAI_API_KEY="test-k")
    async with serve(env, transport=httpx2.MockTransport(reply), **VirtualTime().hooks) as client:
        first = await client.call_tool("generate_image", {**LOW, "n": 1})
        second = await client.call_tool("generate_image", {**LOW, "n": 1})
    assert not first.is_error and not second.is_error
    assert keys[0] and keys[0] == keys[1] == keys[2]  # one request, its two retries: one key
    assert keys[3] and keys[3] != keys[0]  # the next request: its own


async def test_a_call_whose_reply_was_lost_counts_against_the_budget(tmp_path, emu):
    """The POST went out and its reply never came: the upstream may have billed it, so the row keeps
    its estimate and the daily budget sees it; a refusal at the door (a 4xx) costs nothing."""
    env = openai_env(tmp_path, emu, IMAGEGATE_DAILY_BUDGET="0.05")
    emu.fault("openai", "*", "drop_connection", count=1)
    async with serve(env) as client:
        lost = await client.call_tool("generate_image", LOW)
        emu.fault("openai", "*", "status", status=400, count=1)
        refused = await client.call_tool("generate_image", LOW)
        kept = await client.call_tool("generate_image", LOW)
        over = await client.call_tool("generate_image", LOW)
    assert error_of(lost)["kind"] == "upstream_error" and refused.is_error and not kept.is_error
    assert error_of(over)["kind"] == "over_budget"  # $0.022 lost + $0.022 kept: no room for a third
    rows = Ledger(Path(env["IMAGEGATE_LEDGER"])).rows()
    assert [(r["status"], r["charged_usd"]) for r in rows[:3]] == [
        ("failed", pytest.approx(0.022)),
        ("failed", 0.0),
        ("ok", pytest.approx(0.022, rel=0.05)),  # what its tokens report, near the table's estimate
    ]
    assert "may have billed" in (rows[0]["note"] or "")


async def test_an_estimate_that_is_a_ceiling_is_said_as_up_to(tmp_path, emu):
    async with serve(openai_env(tmp_path, emu)) as client:  # quality left to the upstream: the most it costs
        result = await client.call_tool("generate_image", {"model": "gpt-image-1", "prompt": "a fox"})
    assert any(line.startswith("cost: up to $") for line in text_of(result).splitlines()), text_of(result)
