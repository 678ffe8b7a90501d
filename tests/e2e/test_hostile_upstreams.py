"""Issue 12's defects, one test each (1, 2, 3, 6, 7, 8, 9, 10, 11, 13), through the real server against
the hostile proxy (tools/hostile) in front of the emulator: over stdio and Streamable HTTP where the
process is the point (1: one reply killed it; 7: its memory), in memory for the rest, which is the same
server and the same upstream bytes without a process start per case. Each asserts what "What to
build" asks: a clear `upstream_error` (or `timeout`) naming the provider, an answer within
IMAGEGATE_TIMEOUT plus slack, the server alive for the next call, every usable image saved, never more
than n, no key anywhere, capped text, bounded memory, no fetch of an internal address."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client
from tests.support import error_kind, image_bytes, serve, text_of
from tests.support.hostile import (
    PAYLOAD_TOKEN,
    alive,
    call_args,
    check_saved,
    hostile_env,
    http_server,
    leaks,
    metadata_of,
    noise_png,
    peak_rss_mb,
    result_dump,
    rss_guard,
    server_pid,
)
from tools.emulator import EmulatorClient
from tools.hostile import (
    Chain,
    DeepNesting,
    Drip,
    EchoCredential,
    Endless,
    Fault,
    GzipBomb,
    HostileProxy,
    HugeString,
    Mutate,
    Raw,
    Redirect,
    ReplaceImage,
    Reply,
    Request,
    Trap,
    Truncate,
    error_body,
    start_hostile,
    start_trap,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
TIMEOUT = 3.0  # IMAGEGATE_TIMEOUT in these tests
SLACK = 4.0  # start-up of a call, one retry-free error path, a loaded 2-core CI machine
PEAK_MB = 600
GENERATIONS = {"openai": "/images/generations", "gemini": ":generateContent", "local": "/images/generations"}
UPSTREAM = {"openai": "openai", "gemini": "gemini", "local": "compat"}


@pytest.fixture(scope="module")
def running_proxy(emulator: EmulatorClient) -> Iterator[HostileProxy]:
    with start_hostile(emulator) as proxy:
        yield proxy


@pytest.fixture
def hostile(running_proxy: HostileProxy) -> Iterator[HostileProxy]:
    running_proxy.reset()
    yield running_proxy
    running_proxy.disarm()


@pytest.fixture(scope="module")
def running_trap() -> Iterator[Trap]:
    with start_trap(("127.0.0.2",)) as trap:
        yield trap


@pytest.fixture
def trap(running_trap: Trap) -> Trap:
    running_trap.clear()
    return running_trap


def arm(hostile: HostileProxy, fault: Fault, provider: str, count: int = 1) -> None:
    hostile.arm(fault, provider=UPSTREAM[provider], path=GENERATIONS[provider], count=count)


def normal(provider: str = "openai", **more: Any) -> dict[str, Any]:
    if provider == "local":
        return {"model": "gpt-image-1", "provider": "local", "prompt": "a lighthouse at dusk", **more}
    return call_args(provider, **more)


async def timed(client: Client, tool: str, args: dict[str, Any], limit: float) -> tuple[Any, float]:
    """The tool call's result and seconds taken; fails the test if no answer comes within `limit`."""
    started = time.monotonic()
    try:
        with anyio.fail_after(limit):
            result = await client.call_tool(tool, args)
    except TimeoutError:
        pytest.fail(f"{tool} did not answer within {limit:.0f} s")
    return result, time.monotonic() - started


def assert_upstream_error(result: Any, provider: str, kinds: tuple[str, ...] = ("upstream_error",)) -> None:
    assert result.is_error, f"expected an error, got: {text_of(result)[:300]}"
    assert error_kind(result) in kinds, f"kind {error_kind(result)}: {text_of(result)[:300]}"
    assert provider in text_of(result), f"the error does not name {provider}: {text_of(result)[:300]}"


async def assert_still_serving(client: Client, provider: str = "openai") -> None:
    result, _ = await timed(client, "generate_image", normal(provider), TIMEOUT + SLACK)
    assert not result.is_error, f"the next normal call failed: {text_of(result)[:300]}"
    assert len(metadata_of(result)["images"]) == 1 and not check_saved(metadata_of(result))


# --- 1. one reply kills the server ---------------------------------------------------------------

NESTINGS = [
    DeepNesting(100_000, "list", 200),
    DeepNesting(100_000, "list", 500),
    DeepNesting(50_000, "object", 200),
]


@pytest.mark.parametrize("provider", ["openai", "gemini"])
async def test_1_a_deeply_nested_reply_is_an_upstream_error_and_the_stdio_server_lives(
    hostile, tmp_path, provider
):
    async with serve(hostile_env(hostile, tmp_path), stdio=True) as client:  # one process takes all three
        for fault in NESTINGS:
            hostile.reset()
            arm(hostile, fault, provider)
            result, took = await timed(client, "generate_image", normal(provider), TIMEOUT + SLACK)
            assert hostile.fired == ["DeepNesting"], fault
            assert_upstream_error(result, provider)
            assert took < TIMEOUT + SLACK
            await assert_still_serving(client, provider)


async def test_1_a_deeply_nested_reply_over_http_leaves_tools_list_and_the_next_call_working(
    hostile, tmp_path
):
    arm(hostile, DeepNesting(), "openai")
    with http_server(hostile_env(hostile, tmp_path), tmp_path / "stderr.log") as (url, process):
        async with Client(url) as client:
            result, _ = await timed(client, "generate_image", normal(), TIMEOUT + SLACK)
        assert hostile.fired == ["DeepNesting"]
        assert_upstream_error(result, "openai")
        async with Client(url) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert "generate_image" in tools
            await assert_still_serving(client)
        assert process.poll() is None


# --- 2. a truncated base64 reply hangs -----------------------------------------------------------


def _large_image_first(request: Request, reply: Reply) -> Reply:
    document = reply.json()
    document["data"][0]["b64_json"] = base64.b64encode(noise_png()).decode()
    return reply.with_json(document)


CUTS = [
    pytest.param(
        Chain((Mutate(_large_image_first), Truncate(fraction=0.5, honest=True))), id="ends-inside-the-string"
    ),
    pytest.param(Truncate(fraction=0.5, hold=120), id="full-content-length-socket-held-open"),
]


@pytest.mark.parametrize("fault", CUTS)
async def test_2_a_reply_cut_inside_its_base64_answers_in_time_and_holds_nothing(hostile, tmp_path, fault):
    arm(hostile, fault, "openai", count=2)
    async with serve(hostile_env(hostile, tmp_path)) as client:
        for _ in range(2):
            result, took = await timed(client, "generate_image", normal(), TIMEOUT + SLACK)
            assert_upstream_error(result, "openai", ("upstream_error", "timeout"))
            assert took < TIMEOUT + SLACK
        assert len(hostile.fired) == 2
        await assert_still_serving(client)  # no preview slot (or anything else) is held by the two


# --- 3. one bad item discards the good ones ------------------------------------------------------


def _missing_url_first(request: Request, reply: Reply) -> Reply:
    document = reply.json()
    origin = f"http://{request.header('host')}"
    document["data"][0] = {
        "url": f"{origin}/files/00000000000000000000000000000000.png"
    }  # the emulator's 404
    return reply.with_json(document)


BAD_FIRST = [
    pytest.param(ReplaceImage("not_image", index=0), 3, 2, id="non-image-base64-then-two-pngs"),
    pytest.param(ReplaceImage("invalid", index=0), 2, 1, id="invalid-base64-then-a-png"),
    pytest.param(ReplaceImage("truncated", index=1), 2, 1, id="a-png-then-truncated-base64"),
    pytest.param(Mutate(_missing_url_first), 2, 1, id="a-404-url-then-a-png"),
]


@pytest.mark.parametrize(("fault", "n", "good"), BAD_FIRST)
async def test_3_each_usable_image_is_saved_whatever_happens_to_its_siblings(
    hostile, tmp_path, fault, n, good
):
    arm(hostile, fault, "openai")
    async with serve(hostile_env(hostile, tmp_path)) as client:
        result, _ = await timed(client, "generate_image", normal(n=n), TIMEOUT + SLACK)
    assert len(hostile.fired) == 1
    assert not result.is_error, f"{good} good images were sent: {text_of(result)[:400]}"
    meta = metadata_of(result)
    assert len(meta["images"]) == good and not check_saved(meta)
    assert all(image["path"] in text_of(result) for image in meta["images"])  # reported, not only saved
    assert meta["warnings"], "the unusable image must become a warning"
    assert len(list((tmp_path / "out").rglob("*.png"))) == good


# --- 6. keys leak from 200 bodies ----------------------------------------------------------------


def _error_echoing_the_key(request: Request, reply: Reply) -> Reply:
    body = error_body(f"Incorrect API key provided: {request.credential}", code="invalid_api_key")
    return Reply(400, (("content-type", "application/json"),), body)


ECHOES = [
    pytest.param(
        "openai",
        Chain((EchoCredential("data.*.revised_prompt"), EchoCredential("usage.note"))),
        False,
        id="openai-200",
    ),
    pytest.param(
        "gemini",
        Chain((EchoCredential("candidates.0.content.parts.0.text"), EchoCredential("usageMetadata.note"))),
        False,
        id="gemini-200",
    ),
    pytest.param("openai", Mutate(_error_echoing_the_key), True, id="openai-error"),
]


@pytest.mark.parametrize(("provider", "fault", "is_error"), ECHOES)
async def test_6_a_key_echoed_in_a_reply_reaches_no_result_sidecar_or_log(
    hostile, tmp_path, provider, fault, is_error
):
    arm(hostile, fault, provider)
    errlog = tmp_path / "stderr.log"
    with errlog.open("w") as errors:
        async with serve(hostile_env(hostile, tmp_path), errors) as client:
            result, _ = await timed(client, "generate_image", normal(provider), TIMEOUT + SLACK)
    assert len(hostile.fired) == 1 and result.is_error is is_error, text_of(result)[:300]
    assert not leaks(result, tmp_path, errlog.read_text())


# --- 7. no cap on reply bodies -------------------------------------------------------------------

BOMBS = [
    pytest.param(GzipBomb(inflated=1 << 30), id="gzip-1GB"),
    pytest.param(Endless(chunked=True, total=3 << 30, seconds=60), id="endless-chunked"),
    pytest.param(Endless(chunked=False, total=3 << 30, seconds=60), id="endless-until-close"),
]


@pytest.mark.parametrize("fault", BOMBS)
async def test_7_a_body_bomb_ends_in_an_error_with_memory_bounded(hostile, tmp_path, fault):
    arm(hostile, fault, "openai")
    env = hostile_env(hostile, tmp_path, IMAGEGATE_TIMEOUT="10")  # the cap must act, not the deadline
    async with serve(env, stdio=True) as client:
        await client.list_tools()
        pid = server_pid(env)
        with rss_guard(pid) as killed:
            result, _ = await timed(client, "generate_image", normal(), 10 + SLACK + 10)
        assert not killed, f"killed at {killed[0]:.0f} MB"
        peak = peak_rss_mb(pid)
        assert_upstream_error(result, "openai")
        assert peak < PEAK_MB, f"peak RSS {peak:.0f} MB"
        await assert_still_serving(client)
        assert alive(pid)


# --- 8. IMAGEGATE_TIMEOUT bounds each read, not the call ----------------------------------------

DRIPS = [
    pytest.param("openai", "/images/generations", id="api-reply-dripping"),
    pytest.param("local", "^/files/", id="result-download-dripping"),
]


@pytest.mark.parametrize(("provider", "path"), DRIPS)
async def test_8_a_dripping_reply_ends_within_the_timeout_whatever_the_rate(
    hostile, tmp_path, provider, path
):
    hostile.arm(Drip(rate=20, chunk=2, seconds=120), path=path)  # a byte every 50 ms: no read ever idles
    async with serve(hostile_env(hostile, tmp_path)) as client:
        result, took = await timed(client, "generate_image", normal(provider), TIMEOUT + SLACK + 30)
        assert hostile.fired == ["Drip"]
        assert took < TIMEOUT + SLACK, f"answered after {took:.1f} s with IMAGEGATE_TIMEOUT={TIMEOUT:.0f}"
        assert_upstream_error(result, provider, ("timeout", "upstream_error"))
        await assert_still_serving(client)


# --- 9. the image count is not bounded by n ------------------------------------------------------


def _ten_thousand_images(request: Request, reply: Reply) -> Reply:
    item = {"b64_json": base64.b64encode(image_bytes(colour="teal")).decode()}
    return reply.with_json({**reply.json(), "data": [item] * 10_000})


async def test_9_a_reply_with_ten_thousand_images_for_n_1_saves_one_and_warns(hostile, tmp_path):
    arm(hostile, Mutate(_ten_thousand_images), "openai")
    async with serve(hostile_env(hostile, tmp_path)) as client:
        result, _ = await timed(client, "generate_image", normal(n=1), TIMEOUT + SLACK + 10)
    assert hostile.fired == ["Mutate"]
    assert not result.is_error, text_of(result)[:300]
    meta = metadata_of(result)
    assert len(meta["images"]) == 1 and not check_saved(meta)
    assert meta["warnings"], "the dropped extras must be a warning"
    assert len(list((tmp_path / "out").rglob("*.png"))) == 1
    assert len(result.content) <= 3 and len(result_dump(result)) < 200_000


# --- 10. result URLs reach internal addresses -----------------------------------------------------


def _urls_to(target: str) -> Mutate:
    def point(request: Request, reply: Reply) -> Reply:
        document = reply.json()
        for item in document["data"]:
            item["url"] = target
        return reply.with_json(document)

    return Mutate(point)


INTERNAL = ["direct", "redirect-from-the-provider-host", "hex-ip", "ipv4-mapped-ipv6"]


@pytest.mark.parametrize("how", INTERNAL)
async def test_10_result_urls_to_internal_addresses_are_refused_and_never_fetched(
    hostile, trap, tmp_path, how
):
    port = trap.port
    targets = {
        "direct": trap.url("/direct.png"),
        "hex-ip": f"http://0x7f000002:{port}/hex.png",
        "ipv4-mapped-ipv6": f"http://[::ffff:127.0.0.2]:{port}/mapped.png",
    }
    async with serve(hostile_env(hostile, tmp_path)) as client:
        control, _ = await timed(client, "generate_image", normal("local"), TIMEOUT + SLACK)
        assert not control.is_error, (
            f"the provider's own (127.0.0.1) result URL must work: {text_of(control)[:300]}"
        )
        if how == "redirect-from-the-provider-host":  # one hop on the provider's own host, then off it
            hostile.arm(Redirect(f"{hostile.url}/hop/1.png"), path="^/files/")
            hostile.arm(Redirect(trap.url("/redirected.png")), path="^/hop/")
        else:
            arm(hostile, _urls_to(targets[how]), "local")
        result, _ = await timed(client, "generate_image", normal("local"), TIMEOUT + SLACK)
    assert hostile.fired and hostile.armed in (
        0,
        1,
    )  # the second hop is never reached if the first is refused
    assert trap.hits == [], f"the server connected to the trap: {trap.hits}"
    assert not metadata_of(result).get("images"), "no image may come from an internal address"
    assert "local" in text_of(result)


# --- 11. upstream error text is not capped --------------------------------------------------------

TEN_MB = 10 * 1024 * 1024
HUGE_ERRORS = [
    pytest.param(Raw(500, body=error_body("x" * TEN_MB)), id="json-500"),
    pytest.param(Raw(400, (("content-type", "text/plain"),), b"y" * TEN_MB), id="text-400"),
    pytest.param(Raw(200, body=error_body("z" * TEN_MB)), id="error-shape-in-a-200"),
]


@pytest.mark.parametrize("fault", HUGE_ERRORS)
async def test_11_a_ten_megabyte_upstream_message_gives_a_short_result(hostile, tmp_path, fault):
    arm(hostile, fault, "openai")
    async with serve(hostile_env(hostile, tmp_path)) as client:
        result, _ = await timed(client, "generate_image", normal(), TIMEOUT + SLACK)
        assert hostile.fired == ["Raw"] and result.is_error
        assert "openai" in text_of(result)
        assert len(result_dump(result)) < 16 * 1024, f"{len(result_dump(result))} bytes"
        await assert_still_serving(client)


# --- 13. the internal payload token, and a huge job id --------------------------------------------


async def test_13_a_huge_base64_like_revised_prompt_never_surfaces_the_payload_token(hostile, tmp_path):
    arm(hostile, HugeString("data.0.revised_prompt", size=200_000, char="A"), "openai")
    async with serve(hostile_env(hostile, tmp_path)) as client:
        result, _ = await timed(client, "generate_image", normal(), TIMEOUT + SLACK)
    assert hostile.fired == ["HugeString"]
    assert not result.is_error, text_of(result)[:300]
    assert PAYLOAD_TOKEN not in result_dump(result)
    sidecars = [p.read_text() for p in (tmp_path / "out").rglob("*.json")]
    assert sidecars and not any(PAYLOAD_TOKEN in text for text in sidecars)


async def test_13_get_image_job_with_a_hundred_thousand_character_id_answers_briefly(hostile, tmp_path):
    async with serve(hostile_env(hostile, tmp_path, IMAGEGATE_WAIT_BUDGET="5")) as client:
        result, _ = await timed(client, "get_image_job", {"job": "j" * 100_000}, 10)
    assert result.is_error and len(text_of(result)) < 1_000, f"{len(text_of(result))} characters"
    assert "j" * 200 not in result_dump(result)
