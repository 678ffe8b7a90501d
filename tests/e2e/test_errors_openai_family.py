"""Upstream failures end to end over the OpenAI Images protocol: each surfaces as an isError
result with its kind in `_meta` and the upstream's own words, retries happen only where they
should, partial batches keep what arrived, and no key ever leaves the server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from tests.support import (
    KEYS,
    emulator_env,
    error_of,
    metadata,
    open_image,
    serve,
    summary_lines,
    text_of,
    write_image,
)

pytestmark = pytest.mark.anyio

GPT = {"model": "gpt-image-1", "prompt": "a fox"}
DALLE3_URL = {"model": "dall-e-3", "prompt": "a fox", "extra": {"response_format": "url"}}
IMAGEN = {"model": "imagen-3", "prompt": "a fox"}
GEMINI = {"model": "gemini-3-pro-image-preview", "provider": "zhaotou", "prompt": "a fox"}
LOCAL = {"model": "gpt-image-1", "provider": "local", "prompt": "a fox"}
POLICY_GPT = "Your request was rejected by the safety system"
POLICY_DALL_E = "Your request was rejected as a result of our safety system"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_emulator(emulator):
    emulator.reset()


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("errors")


@pytest.fixture(scope="module")
async def client(emulator, out_dir):
    async with serve(emulator_env(emulator, out_dir, IMAGEGATE_MAX_RETRIES="1")) as session:
        yield session


def saved_images(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg", ".webp")}


FAULTS = [
    # emulator provider, fault, its parameters, requests it hits (and the emulator sees), arguments, kind,
    # fragments
    pytest.param(
        "openai",
        "status",
        {"status": 401},
        1,
        GPT,
        "auth_failed",
        ["openai rejected the API key (HTTP 401)", "Incorrect API key provided."],
        id="401",
    ),
    pytest.param(
        "modelmax",
        "status",
        {"status": 402},
        1,
        IMAGEN,
        "insufficient_balance",
        ["modelmax says the account balance is insufficient", "Insufficient balance."],
        id="402-modelmax",
    ),
    pytest.param(
        "openai",
        "status",
        {"status": 400},
        1,
        GPT,
        "content_refused",
        ["openai's content policy refused", POLICY_GPT],
        id="400-policy-gpt-image",
    ),
    pytest.param(
        "openai",
        "status",
        {"status": 400},
        1,
        {"model": "dall-e-3", "prompt": "x"},
        "content_refused",
        ["content policy", POLICY_DALL_E],
        id="400-policy-dall-e",
    ),
    pytest.param(
        "zhaotou",
        "status",
        {"status": 400},
        1,
        GEMINI,
        "content_refused",
        ["zhaotou's content policy refused", POLICY_DALL_E],
        id="400-policy-zhaotou",
    ),
    pytest.param(
        "openai",
        "status",
        {"status": 429, "retry_after": "0"},
        2,
        GPT,
        "rate_limited",
        ["openai is rate limiting (HTTP 429)", "Rate limit reached"],
        id="429-persistent",
    ),
    pytest.param(
        "openai",
        "status",
        {"status": 500},
        1,
        GPT,
        "upstream_error",
        ["openai failed (HTTP 500)", "The server had an error"],
        id="500-not-retried",
    ),
    pytest.param(
        "modelmax",
        "status",
        {"status": 502},
        2,
        IMAGEN,
        "upstream_error",
        ["modelmax failed (HTTP 502)", "Bad gateway"],
        id="502-persistent",
    ),
    pytest.param(
        "openai",
        "status",
        {"status": 504},
        2,
        GPT,
        "timeout",
        ["openai timed out (HTTP 504)"],
        id="504-persistent",
    ),
    pytest.param(
        "openai", "malformed_json", {}, 1, GPT, "upstream_error", ["malformed JSON"], id="malformed-json"
    ),
    pytest.param(
        "openai",
        "bad_base64",
        {},
        1,
        GPT,
        "upstream_error",
        ["base64 image data that does not decode"],
        id="bad-base64",
    ),
    pytest.param(
        "openai",
        "truncated_base64",
        {},
        1,
        GPT,
        "upstream_error",
        ["not a usable image", "truncated"],
        id="truncated-image",
    ),
    pytest.param(
        "openai",
        "expired_url",
        {},
        1,
        DALLE3_URL,
        "upstream_error",
        ["answered HTTP 404", "expired"],
        id="expired-url-openai",
    ),
    pytest.param(
        "compat",
        "expired_url",
        {},
        1,
        LOCAL,
        "upstream_error",
        ["answered HTTP 404", "expired"],
        id="expired-url-compat",
    ),
    pytest.param(
        "openai",
        "error_in_200",
        {"status": 500, "message": "the render farm is on fire"},
        1,
        GPT,
        "upstream_error",
        ["the render farm is on fire"],
        id="error-in-200",
    ),
    pytest.param(
        "openai", "error_in_200", {"status": 400}, 1, GPT, "content_refused", [POLICY_GPT], id="policy-in-200"
    ),
    pytest.param(
        "openai",
        "drop_connection",
        {},
        1,  # sent, then dropped: it may be generating (and billing) already, so it is not sent again
        GPT,
        "upstream_error",
        ["could not reach openai"],
        id="dropped-connection",
    ),
    pytest.param(
        "openai", "partial", {"keep": 0}, 1, GPT, "no_images", ["without any image"], id="no-image-in-reply"
    ),
]


@pytest.mark.parametrize(("upstream", "fault", "params", "hits", "args", "kind", "fragments"), FAULTS)
async def test_each_upstream_failure_is_a_clear_error_and_the_next_call_is_served(
    client, emulator, out_dir, upstream, fault, params, hits, args, kind, fragments
):
    before = saved_images(out_dir)
    emulator.fault(upstream, "*", fault, count=hits, **params)

    result = await client.call_tool("generate_image", args)

    error = error_of(result)
    provider = args.get("provider") or {"openai": "openai", "modelmax": "modelmax"}[upstream]
    assert (error["kind"], error["provider"]) == (kind, provider), text_of(result)
    for fragment in fragments:
        assert fragment in text_of(result)
    assert len(emulator.requests(upstream)) == hits
    assert saved_images(out_dir) == before and not list(out_dir.rglob(".partial-*"))
    following = await client.call_tool("generate_image", args)
    assert not following.is_error, text_of(following)


@pytest.mark.parametrize(
    ("upstream", "fault", "params", "args", "min_gap"),
    [
        pytest.param(
            "openai",
            "status",
            {"status": 429, "retry_after": "1"},
            GPT,
            0.9,
            id="429-retry-after-honoured",
            marks=pytest.mark.slow,  # waits out the one second it was asked to
        ),
        pytest.param("openai", "status", {"status": 503}, GPT, 0.0, id="503"),
        pytest.param("modelmax", "status", {"status": 502}, IMAGEN, 0.0, id="502-modelmax"),
    ],
)
async def test_a_transient_failure_is_retried_and_the_call_succeeds(
    client, emulator, upstream, fault, params, args, min_gap
):
    emulator.fault(upstream, "*", fault, **params)

    result = await client.call_tool("generate_image", args)

    assert not result.is_error, text_of(result)
    first, second = emulator.requests(upstream)
    assert (first["fault"], second["fault"]) == (fault, None)
    assert second["time"] - first["time"] >= min_gap
    assert open_image(metadata(result)["images"][0]["path"]).size == (1024, 1024)


@pytest.mark.parametrize(
    ("args", "fault", "params", "made", "reason"),
    [
        pytest.param(
            {"model": "dall-e-3", "prompt": "a fox", "n": 3},
            "status",
            {"status": 500},
            2,
            "openai failed (HTTP 500)",
            id="one-call-of-three-fails",
        ),
        pytest.param(
            {"model": "dall-e-3", "prompt": "a fox", "n": 2},
            "bad_base64",
            {},
            1,
            "does not decode",
            id="one-call-returns-bad-data",
        ),
        pytest.param(
            {"model": "gpt-image-1", "prompt": "a fox", "n": 3},
            "partial",
            {"keep": 1},
            1,
            "the upstream returned fewer images",
            id="fewer-in-one-reply",
        ),
    ],
)
async def test_a_partial_batch_keeps_what_arrived_and_says_what_did_not(
    client, emulator, args, fault, params, made, reason
):
    emulator.fault("openai", "generations", fault, **params)

    result = await client.call_tool("generate_image", args)

    assert not result.is_error, text_of(result)
    meta = metadata(result)
    assert len(meta["images"]) == made
    assert all(open_image(entry["path"]).size == (1024, 1024) for entry in meta["images"])
    (warning,) = meta["warnings"]
    assert warning.startswith(f"{made} of {args['n']} images were made") and reason in warning


async def test_warnings_are_in_the_human_summary_not_only_in_the_json(client, emulator):
    # DESIGN "Results": the summary names model, provider, paths, sizes, calls made *and warnings*.
    emulator.fault("openai", "generations", "status", status=500)
    result = await client.call_tool("generate_image", {"model": "dall-e-3", "prompt": "a fox", "n": 2})
    assert not result.is_error
    assert any("1 of 2 images were made" in line for line in summary_lines(result)), summary_lines(result)


@pytest.mark.slow  # waits out a one-second timeout
async def test_a_slow_upstream_times_out_without_retry_and_the_server_recovers(emulator, tmp_path):
    async with serve(emulator_env(emulator, tmp_path, IMAGEGATE_TIMEOUT="1")) as session:
        emulator.fault("openai", "generations", "slow", seconds=2.5)
        began = time.monotonic()
        result = await session.call_tool("generate_image", GPT)
        took = time.monotonic() - began

        assert error_of(result) == {"kind": "timeout", "provider": "openai"}
        assert "openai did not answer within 1 s" in text_of(result)
        assert 0.9 <= took < 2.5 and len(emulator.requests("openai")) == 1
        following = await session.call_tool("generate_image", GPT)
        assert not following.is_error, text_of(following)


def secrets_in(text: str) -> list[str]:
    found = [key for key in KEYS.values() if key in text]
    return found + (["sentinel-key"] if "sentinel-key" in text else [])


KEY = {pid: KEYS[f"{pid.upper()}_API_KEY"] for pid in ("openai", "zhaotou", "modelmax", "local")}
ECHOES = [
    # emulator provider, a status fault whose message quotes the key, arguments that reach it
    ("openai", {"status": 401, "message": f"Incorrect API key provided: {KEY['openai']}."}, GPT),
    ("openai", {"status": 500, "message": f"failed for Authorization: Bearer {KEY['openai']}"}, GPT),
    (
        "zhaotou",
        {"status": 429, "retry_after": "0", "message": f"{KEY['zhaotou']} is over its quota"},
        GEMINI,
    ),
    ("modelmax", {"status": 402, "message": f"balance of {KEY['modelmax']} is 0"}, IMAGEN),
    ("compat", {"status": 403, "message": f"key {KEY['local']} is not allowed"}, LOCAL),
]


@pytest.mark.slow
async def test_no_key_appears_in_any_result_sidecar_or_log_even_when_the_upstream_echoes_it(
    emulator, tmp_path
):
    image, mask = (
        write_image(tmp_path / "fox.png", (64, 64)),
        write_image(tmp_path / "mask.png", (64, 64), "RGBA"),
    )
    calls: list[tuple[str, dict[str, Any]]] = [
        ("generate_image", GPT),
        ("generate_image", DALLE3_URL),
        ("generate_image", GEMINI),
        ("generate_image", {**IMAGEN, "n": 2}),
        ("generate_image", {**LOCAL, "n": 3}),
        ("edit_image", {**GPT, "images": [image], "mask": mask}),
        ("edit_image", {**LOCAL, "images": [image]}),
        ("generate_image", {**GPT, "size": "9x9"}),
    ]
    env = emulator_env(emulator, tmp_path, IMAGEGATE_MAX_RETRIES="1", IMAGEGATE_STRUCTURED_OUTPUT="true")
    stderr_path = tmp_path / "stderr.txt"
    results = []
    with stderr_path.open("w") as errlog:
        async with serve(env, errlog=errlog, stdio=True) as session:
            for tool, args in calls:
                results.append(await session.call_tool(tool, args))
            for upstream, params, args in ECHOES:
                emulator.reset()
                emulator.fault(upstream, "*", "status", count=2 if params["status"] == 429 else 1, **params)
                results.append(await session.call_tool("generate_image", args))

    echoed = results[len(calls) :]
    assert [r.is_error for r in results] == [False] * (len(calls) - 1) + [True] * (1 + len(ECHOES))
    assert all("***" in text_of(r) for r in echoed), [text_of(r) for r in echoed]
    for result in results:
        assert not secrets_in(result.model_dump_json()), text_of(result)
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len([p for p in written if p.suffix == ".json"]) == 10  # one sidecar per saved image
    for path in written:
        assert not secrets_in(path.read_bytes().decode("latin-1")), path
    assert not secrets_in(stderr_path.read_text())


async def test_a_key_echoed_in_an_error_inside_a_200_reply_is_redacted(client, emulator):
    message = f"bad key {KEYS['OPENAI_API_KEY']}"
    emulator.fault("openai", "generations", "error_in_200", status=500, message=message)

    result = await client.call_tool("generate_image", GPT)

    assert error_of(result)["kind"] == "upstream_error"
    assert not secrets_in(result.model_dump_json()), text_of(result)
