"""The same upstream faults against every wire protocol, through the real server over stdio:
429 (with and without Retry-After), 503 and 504 are retried into a success; a persistent 429,
a 500, a malformed body, a dropped connection, the provider's error shape in a 200 and a reply
slower than the timeout end in a clear error of the right class naming the provider, within a
bounded time; the server serves the next call."""

from __future__ import annotations

import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import anyio
import pytest
from mcp import Client
from tests.support import base_env, error_kind, serve, text_of
from tools.emulator import EmulatorClient, start_thread

pytestmark = [pytest.mark.slow]
CALLS = {  # one valid text-to-image call per provider (and both DashScope modes)
    "openai": {"model": "gpt-image-1"},
    "zhaotou": {"model": "gemini-3-pro-image-preview"},
    "modelmax": {"model": "imagen-3"},
    "modelgate": {"model": "seedream-4.0"},
    "mixroute": {"model": "gpt-image-1"},
    "atalk": {"model": "flux-2-pro"},
    "gemini": {"model": "gemini-2.5-flash-image"},
    "ark": {"model": "seedream-4.0"},
    "dashscope": {"model": "qwen-image-plus"},
    "dashscope-async": {"model": "wan2.2-t2i-flash"},
    "bfl": {"model": "flux-2-pro"},
    "openrouter": {"model": "gemini-2.5-flash-image"},
    "fal": {"model": "flux-2-pro"},
    "replicate": {"model": "flux-schnell"},
    "comfyui": {"model": "comfyui"},
    "sdwebui": {"model": "sdwebui"},
}
FAULTED = {
    "sdwebui": "txt2img"
}  # the call itself: its progress polls run beside it and must not take the fault
VARIABLES = {  # the providers whose variables are not PROVIDER_API_KEY / PROVIDER_BASE_URL
    "fal": ("FAL_KEY", "FAL_BASE_URL"),
    "replicate": ("REPLICATE_API_TOKEN", "REPLICATE_BASE_URL"),
    "comfyui": (None, "COMFYUI_URL"),
    "sdwebui": (None, "SDWEBUI_URL"),
}
ANY_ERROR = "any"
FAULTS = [
    ("retried-429", {"kind": "status", "status": 429, "retry_after": "1"}, 1, None),
    ("retried-429-without-retry-after", {"kind": "status", "status": 429}, 1, None),
    ("retried-503", {"kind": "status", "status": 503}, 1, None),
    ("retried-504", {"kind": "status", "status": 504}, 1, None),
    ("persistent-429", {"kind": "status", "status": 429}, 2, "rate_limited"),
    # Twice: ModelGate, Ark and DashScope document their 500s as worth retrying, and are retried once.
    ("http-500", {"kind": "status", "status": 500}, 2, "upstream_error"),
    ("malformed-json", {"kind": "malformed_json"}, 1, "upstream_error"),
    ("dropped-connection", {"kind": "drop_connection"}, 2, "upstream_error"),
    ("error-shape-in-a-200", {"kind": "error_in_200", "status": 400}, 1, ANY_ERROR),
    ("slower-than-the-timeout", {"kind": "slow", "seconds": 6}, 1, "timeout"),
]


def test_every_protocol_survives_the_same_faults(tmp_path):
    """Every protocol against its own emulator, all at once, through one server process over stdio:
    the faults wait real seconds (Retry-After, backoff, the timeout), so side by side the matrix takes
    as long as its slowest protocol rather than the sum of them, and the one process must come
    through every protocol's faults at the same time."""
    providers = sorted({case.split("-")[0] for case in CALLS})
    failures: dict[str, list[str]] = {}

    async def matrix(emulators: dict[str, EmulatorClient]) -> None:
        async with serve(matrix_env(tmp_path, emulators), stdio=True) as client:
            async with anyio.create_task_group() as group:
                for provider in providers:  # a provider's cases share its emulator: one after the other
                    cases = [case for case in CALLS if case.split("-")[0] == provider]
                    group.start_soon(run_cases, client, emulators[provider], cases, failures)

    with ExitStack() as stack:
        emulators = {provider: stack.enter_context(start_thread()) for provider in providers}
        anyio.run(matrix, emulators)
    report = [f"{case}: {line}" for case, lines in failures.items() for line in lines]
    assert not report, "\n".join(report)


def matrix_env(tmp_path: Path, emulators: dict[str, EmulatorClient]) -> dict[str, str]:
    variables: dict[str, str] = {}
    for provider, emulator in emulators.items():
        key, url = VARIABLES.get(provider, (f"{provider.upper()}_API_KEY", f"{provider.upper()}_BASE_URL"))
        variables[url] = emulator.base_url(provider)
        if key:
            variables[key] = "test-matrix-key"
    return base_env(
        tmp_path,
        IMAGEGATE_MAX_RETRIES="1",
        IMAGEGATE_TIMEOUT="3",
        # BFL's emulated delivery host, "localhost", is another loopback host
        IMAGEGATE_ALLOW_PRIVATE_URLS="true",
        **variables,
    )


async def run_cases(
    client: Client, emulator: EmulatorClient, cases: list[str], failures: dict[str, list[str]]
) -> None:
    for case in cases:
        failures[case] = await faults_against(client, emulator, case)


async def faults_against(client: Client, emulator: EmulatorClient, case: str) -> list[str]:
    provider = case.split("-")[0]
    args = {**CALLS[case], "provider": provider, "prompt": "a lighthouse at dusk"}
    failures = []
    for name, fault, count, expected in FAULTS:
        await anyio.to_thread.run_sync(emulator.reset)
        arm = partial(emulator.fault, provider, FAULTED.get(provider, "*"), count=count, **fault)
        await anyio.to_thread.run_sync(arm)
        started = time.monotonic()
        result = await client.call_tool("generate_image", args)
        took = time.monotonic() - started
        got = error_kind(result) if result.is_error else None
        matched = got is not None if expected == ANY_ERROR else got == expected
        if not matched or took > 15:
            failures.append(
                f"{name}: expected {expected}, got {got} in {took:.1f} s: {text_of(result)[:200]}"
            )
        elif expected and provider not in text_of(result):
            failures.append(f"{name}: the error does not name {provider}: {text_of(result)[:200]}")
    await anyio.to_thread.run_sync(emulator.reset)
    after = await client.call_tool("generate_image", args)
    if after.is_error:
        failures.append(f"the next call failed: {text_of(after)[:200]}")
    return failures
