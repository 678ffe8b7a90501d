"""Load and storage failure over stdio against the emulator: 50 concurrent tool calls on one
session (0.3 s of upstream latency each) are all answered, each image under its own name,
complete and with its sidecar, in a fraction of the serial time and with bounded memory;
and an output folder that cannot be created sends the images to the fallback folder in the
system temp dir, which the reply names."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from tests.support import base_env, metadata, open_image, sidecar_of, text_of
from tests.support.server import require_slow
from tools.emulator import start_thread

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CALLS = 50
LATENCY = 0.3
SIZE = "1024x1024"
MAX_WALL_SECONDS = CALLS * LATENCY / 2
"""Half the serial 15 s; the server runs at most 4 upstream calls at once, so it takes ~13 x 0.3 s."""
MAX_GROWTH_MB = 150
"""Peak RSS above idle (about 45 MB measured): holding all 50 decoded 1024x1024 images (150 MB)
would break it."""


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def emulator():
    with start_thread() as emu:
        emu.prewarm([SIZE])
        yield emu


@pytest.fixture(autouse=True)
def clean(emulator):
    emulator.reset()
    yield
    emulator.configure(latency=0.0)


def server_env(emulator, tmp: Path, **extra: str) -> dict[str, str]:
    return base_env(tmp, OPENAI_API_KEY="test-load", OPENAI_BASE_URL=emulator.base_url("openai"), **extra)


@asynccontextmanager
async def server(env: dict[str, str], pidfile: Path) -> AsyncIterator[Client]:
    """The real server over stdio, started through a wrapper that writes its pid (as tools/bench.py does)."""
    require_slow("the server as a subprocess")
    code = (
        f"import os, sys\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "from imagegate.cli import main\nsys.exit(main())\n"
    )
    params = StdioServerParameters(command=sys.executable, args=["-c", code], env=env)
    async with Client(params, mode="legacy", read_timeout_seconds=120) as client:  # type: ignore[arg-type]
        yield client


def memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


async def test_fifty_concurrent_calls_on_one_session_are_all_answered_and_saved(emulator, tmp_path):
    if not Path("/proc/self/status").is_file():
        pytest.skip("needs /proc to read the server's memory")
    emulator.configure(latency=LATENCY)
    results: dict[int, Any] = {}

    async with server(server_env(emulator, tmp_path), tmp_path / "server.pid") as client:
        await client.list_tools()
        pid = int((tmp_path / "server.pid").read_text())
        idle = memory_mb(pid, "VmRSS")

        async def call(k: int) -> None:
            results[k] = await client.call_tool(
                "generate_image", {"model": "gpt-image-1", "prompt": "load test", "size": SIZE}
            )

        start = time.monotonic()
        async with anyio.create_task_group() as group:
            for k in range(CALLS):
                group.start_soon(call, k)
        wall = time.monotonic() - start
        peak = memory_mb(pid, "VmHWM")
        assert not (await client.call_tool("list_models", {})).is_error

    failed = [text_of(r) for r in results.values() if r.is_error]
    assert len(results) == CALLS and not failed, failed[:3]
    paths = [Path(metadata(r)["images"][0]["path"]) for r in results.values()]
    assert len(set(paths)) == CALLS  # same prompt, same second: never the same name
    assert all(p.is_relative_to(tmp_path / "out") for p in paths)
    for path in paths:
        assert open_image(path).size == (1024, 1024)  # complete: decodes to the last row
        side = sidecar_of(path)
        assert side["prompt"] == "load test" and side["image"]["bytes"] == path.stat().st_size
    assert not list((tmp_path / "out").rglob(".partial-*"))  # no temporary file left behind
    assert len(emulator.requests("openai")) == CALLS
    assert wall < MAX_WALL_SECONDS, f"{wall:.1f} s for {CALLS} calls"
    assert peak - idle < MAX_GROWTH_MB, f"RSS grew from {idle:.0f} MB to a peak of {peak:.0f} MB"


async def test_an_output_folder_that_cannot_be_created_falls_back_to_the_temp_dir(emulator, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file: nothing can be created under it, not even by root")
    system_temp = tmp_path / "system-temp"
    system_temp.mkdir()
    env = server_env(
        emulator, tmp_path, IMAGEGATE_OUTPUT_DIR=str(blocker / "images"), TMPDIR=str(system_temp)
    )

    async with server(env, tmp_path / "server.pid") as client:
        result = await client.call_tool(
            "generate_image", {"model": "gpt-image-1", "prompt": "fallback", "n": 2}
        )

    assert not result.is_error, text_of(result)
    fallback = system_temp / f"imagegate-{os.geteuid()}"  # the user's own, not a folder any user may plant
    assert f"the output folder could not be written; images were saved in {fallback}" in text_of(result)
    paths = [Path(image["path"]) for image in metadata(result)["images"]]
    assert len(paths) == 2 and all(p.is_relative_to(fallback) for p in paths)
    for path in paths:
        assert open_image(path).size == (1024, 1024) and sidecar_of(path)["prompt"] == "fallback"
    assert blocker.read_text().startswith("a regular file")
