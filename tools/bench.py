"""What an agent pays for imagegate, measured side by side in one run against the emulator on
loopback: added latency per call (server time minus the upstream's own), fan-out wall time,
peak memory (also under body bombs from the hostile proxy), start-up against a minimal SDK server,
and context bytes.

    python -m tools.bench                 # the full table (a few minutes), JSON to bench-results.json
    python -m tools.bench --smoke         # seconds: every measurement once, tiny sizes (CI runs this)

Timings are medians of repeated calls; machines here are shared and noisy, so compare ratios
and figures from the same run, never across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client, StdioServerParameters

from imagegate.catalog import load_catalog
from tools.emulator import start_subprocess
from tools.hostile import DeepNesting, Endless, Fault, GzipBomb, start_hostile

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-bench-key"
FULL = {"sizes": ["1024x1024", "2048x2048", "4096x4096"], "repeat": 20, "startups": 7, "bomb_mb": 1024}
SMOKE = {"sizes": ["256x256"], "repeat": 2, "startups": 1, "bomb_mb": 64}
MINIMAL_SERVER = """
import anyio, mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
async def tools(ctx, params):
    return types.ListToolsResult(tools=[types.Tool(name="echo", input_schema={"type": "object"})])
async def main():
    server = Server("minimal", on_list_tools=tools)
    async with stdio_server() as (r, w):
        await server.run(r, w, server.create_initialization_options())
anyio.run(main)
"""


def _config(emulator_url: str) -> str:
    """A model without a size table (any WxH up to 4096) on three OpenAI-compatible routes."""
    base = f"{emulator_url}/compat/v1"
    routes = {"benchb64": ("b64_json", 10), "benchurl": ("url", 10), "benchone": ("b64_json", 1)}
    text = [
        '[models."bench-image"]',
        'label = "Benchmark image"\nmaker = "imagegate"\nfamily = "bench"\ncapabilities = ["generate"]',
        'output_formats = ["png"]\nmax_n = 10\nper_call = 10',
        '[models."bench-image".sizes]\nkind = "range"\nmax_width = 4096\nmax_height = 4096\nmultiple_of = 16',
    ]
    for name, (reply, per_call) in routes.items():
        text += [
            f'[providers.{name}]\nbase_url = "{base}"\nkey_env = "BENCH_API_KEY"',
            f'[[providers.{name}.offerings]]\nmodel = "bench-image"\nupstream = "bench-image"\n'
            f"per_call = {per_call}",
            f'wire = {{ response_format = "{reply}" }}',
        ]
    return "\n".join(text) + "\n"


def _env(tmp: Path, config: Path, **extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp),
        "PYTHONPATH": str(ROOT / "server"),
        "IMAGEGATE_CONFIG": str(config),
        "IMAGEGATE_OUTPUT_DIR": str(tmp / "out"),
        "BENCH_API_KEY": KEY,
        **extra,
    }


@asynccontextmanager
async def _server(env: dict[str, str], pidfile: Path | None = None):
    code = "import os, sys\n"
    if pidfile is not None:
        code += f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
    code += "from imagegate.cli import main\nsys.exit(main())\n"
    params = StdioServerParameters(command=sys.executable, args=["-c", code], env=env)
    async with Client(params, read_timeout_seconds=600) as client:
        yield client


Server = Callable[[], AbstractAsyncContextManager[Any]]
"""Opens a client session to an imagegate server (a fresh one, or one shared by a smoke run)."""


@asynccontextmanager
async def _reuse(client: Any) -> AsyncIterator[Any]:
    yield client


async def _median(action: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        await action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def added_latency(
    server: Server, emulator_url: str, sizes: list[str], repeat: int
) -> list[dict[str, Any]]:
    """Per size and reply form: median upstream time (a direct POST) and median tool-call time."""
    rows = []
    async with httpx2.AsyncClient(timeout=600) as http, server() as client:
        for size in sizes:
            for provider, reply in (("benchb64", "b64_json"), ("benchurl", "url")):
                body = {
                    "model": "bench-image",
                    "prompt": "bench",
                    "n": 1,
                    "size": size,
                    "response_format": reply,
                }
                url = f"{emulator_url}/compat/v1/images/generations"

                async def direct(url: str = url, body: dict[str, Any] = body, reply: str = reply) -> None:
                    answer = await http.post(url, json=body, headers={"Authorization": f"Bearer {KEY}"})
                    if reply == "url":  # the server downloads the file too: so does the baseline
                        await http.get(answer.json()["data"][0]["url"])

                async def call(provider: str = provider, size: str = size) -> None:
                    result = await client.call_tool(
                        "generate_image",
                        {"model": "bench-image", "provider": provider, "prompt": "bench", "size": size},
                    )
                    assert not result.is_error, result.content

                await call()  # warm: render cache, imports, connection pool
                upstream = await _median(direct, repeat)
                served = await _median(call, repeat)
                rows.append(
                    {
                        "size": size,
                        "reply": reply,
                        "upstream_ms": upstream * 1000,
                        "call_ms": served * 1000,
                        "added_ms": (served - upstream) * 1000,
                    }
                )
    return rows


async def fan_out(server: Server, emulator: Any, n: int) -> dict[str, Any]:
    """n images on a one-per-call route with 1 s of upstream latency: wall time of the tool call."""
    emulator.configure(latency=1.0)
    try:
        async with server() as client:
            start = time.perf_counter()
            result = await client.call_tool(
                "generate_image",
                {"model": "bench-image", "provider": "benchone", "prompt": "fan", "n": n, "size": "256x256"},
            )
            wall = time.perf_counter() - start
            assert not result.is_error, result.content
    finally:
        emulator.configure(latency=0.0)
    return {"n": n, "upstream_latency_s": 1.0, "wall_s": wall}


async def responsiveness(server: Server, size: str) -> dict[str, Any]:
    """Whether other requests progress while a large image is decoded, previewed and saved: round
    trips of a light request (tools/list; ping left the protocol in 2026-07) during one base64 call
    of `size`, against the same requests to the idle server."""

    async def pings(client: Any, until: anyio.Event | None, count: int = 0) -> list[float]:
        """A light request every 5 ms: `count` times, or until `until` is set (at least once)."""
        times: list[float] = []
        while True:
            start = time.perf_counter()
            await client.list_tools()
            times.append(time.perf_counter() - start)
            if until.is_set() if until is not None else len(times) >= count:
                return times
            await anyio.sleep(0.005)

    async with server() as client:
        arguments = {"model": "bench-image", "provider": "benchb64", "prompt": "busy", "size": size}
        await client.call_tool("generate_image", arguments)  # warm
        idle = await pings(client, None, 50)
        done, busy = anyio.Event(), []

        async def call() -> None:
            result = await client.call_tool("generate_image", arguments)
            assert not result.is_error, result.content
            done.set()

        async with anyio.create_task_group() as group:
            group.start_soon(call)
            busy = await pings(client, done)
    ms = lambda values: 1000 * statistics.median(values)  # noqa: E731
    return {
        "size": size,
        "idle_ping_ms": ms(idle),
        "busy_ping_ms": ms(busy),
        "busy_ping_max_ms": 1000 * max(busy),
        "pings_during_call": len(busy),
    }


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


async def memory(env: dict[str, str], tmp: Path, size: str, n: int) -> dict[str, Any]:
    """Peak RSS of the server for one call returning n base64 PNGs of `size`, above its idle RSS."""
    pidfile = tmp / "server.pid"
    async with _server(env, pidfile) as client:
        await client.list_tools()
        pid = int(pidfile.read_text())
        idle = _status(pid, "VmRSS")
        result = await client.call_tool(
            "generate_image",
            {"model": "bench-image", "provider": "benchb64", "prompt": "mem", "n": n, "size": size},
        )
        assert not result.is_error, result.content
        peak = _status(pid, "VmHWM")
    width, height = (int(v) for v in size.split("x"))
    decoded = n * width * height * 3
    return {
        "size": size,
        "n": n,
        "idle_mb": idle / 2**20,
        "peak_mb": peak / 2**20,
        "above_idle_mb": (peak - idle) / 2**20,
        "decoded_mb": decoded / 2**20,
        "ratio_to_decoded": (peak - idle) / decoded,
    }


def _bombs(megabytes: int) -> dict[str, Fault]:
    size = megabytes << 20
    return {
        "gzip_bomb": GzipBomb(inflated=size),
        "endless_chunked": Endless(chunked=True, total=size, seconds=60),
        "deep_nesting": DeepNesting(100_000),
    }


async def body_bombs(emulator: Any, tmp: Path, megabytes: int) -> list[dict[str, Any]]:
    """Peak RSS of a fresh server for one call whose reply is a body bomb (tools/hostile): a gzip body
    inflating to `megabytes`, an endless chunked body stopping after that many, 100,000 nested lists."""
    rows = []
    with start_hostile(emulator) as hostile:
        config = tmp / "bombs.toml"
        config.write_text(_config(hostile.url))
        env = _env(tmp, config, IMAGEGATE_TIMEOUT="30", IMAGEGATE_MAX_RETRIES="0")
        for case, fault in _bombs(megabytes).items():
            pidfile = tmp / f"{case}.pid"
            async with _server(env, pidfile) as client:
                await client.list_tools()
                pid = int(pidfile.read_text())
                idle = _status(pid, "VmRSS")
                hostile.arm(fault, path="/images/generations")
                start = time.perf_counter()
                arguments = {"model": "bench-image", "provider": "benchb64", "prompt": "bomb"}
                result = await client.call_tool("generate_image", arguments | {"size": "256x256"})
                took = time.perf_counter() - start
                peak = _status(pid, "VmHWM")
                hostile.disarm()
            body_mb = 0.2 if case == "deep_nesting" else megabytes
            rows.append(
                {"case": case, "body_mb": body_mb, "is_error": bool(result.is_error), "seconds": took}
                | {"idle_mb": idle / 2**20, "peak_mb": peak / 2**20}
            )
    return rows


def _time_to_tools(command: list[str], env: dict[str, str]) -> float:
    """Spawn, initialize, list tools: seconds until the tools/list answer arrives."""
    messages = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdin and proc.stdout
    for message in messages:
        proc.stdin.write(json.dumps(message) + "\n")
    proc.stdin.flush()
    for line in proc.stdout:
        if json.loads(line).get("id") == 2:
            break
    elapsed = time.perf_counter() - start
    proc.kill()
    proc.wait()
    return elapsed


def startup(env: dict[str, str], tmp: Path, repeat: int) -> dict[str, Any]:
    """imagegate against a minimal SDK server with one tool, alternating, same way, same run."""
    minimal = tmp / "minimal_server.py"
    minimal.write_text(MINIMAL_SERVER)
    ours, base = [], []
    for _ in range(repeat):
        ours.append(_time_to_tools([sys.executable, "-m", "imagegate"], env))
        base.append(_time_to_tools([sys.executable, str(minimal)], env))
    mine, theirs = statistics.median(ours), statistics.median(base)
    return {"imagegate_s": mine, "minimal_sdk_s": theirs, "ratio": mine / theirs}


async def context(env: dict[str, str], server: Server) -> dict[str, Any]:
    """Bytes an agent carries: tools/list with one provider and with every keyed one (and for a client with a
    wait budget, which also gets the job tool), and one result. `*_model_view` counts only what
    clients put in the model's context (name, description, input schema; not titles, annotations
    or output schemas)."""
    sizes = {}
    keys = {spec.key_env: KEY for spec in load_catalog().providers.values() if spec.key_env}
    bare = {k: v for k, v in env.items() if k not in ("IMAGEGATE_CONFIG", "BENCH_API_KEY")}
    lists = {
        "tools_list_one_provider": {"OPENAI_API_KEY": KEY},
        "tools_list_one_provider_with_jobs": {"OPENAI_API_KEY": KEY, "IMAGEGATE_WAIT_BUDGET": "50"},
        "tools_list_all_providers": keys,
    }
    for name, extra in lists.items():
        async with _server({**bare, **extra}) as client:
            tools = (await client.list_tools()).tools
            dumped = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
            sizes[name] = _json_bytes(dumped)
            if name != "tools_list_one_provider_with_jobs":
                sizes[name + "_model_view"] = _json_bytes(
                    [{k: t[k] for k in ("name", "description", "inputSchema")} for t in dumped]
                )
    async with server() as client:
        result = await client.call_tool(
            "generate_image",
            {"model": "bench-image", "provider": "benchb64", "prompt": "context", "size": "1024x1024"},
        )
        sizes["generate_result_1024"] = len(result.model_dump_json(by_alias=True, exclude_none=True).encode())
        result = await client.call_tool(
            "generate_image",
            {
                "model": "bench-image",
                "provider": "benchb64",
                "prompt": "context",
                "size": "2048x2048",
                "n": 4,
            },
        )
        sizes["generate_result_2048_n4"] = len(
            result.model_dump_json(by_alias=True, exclude_none=True).encode()
        )
    return sizes


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def _table(report: dict[str, Any]) -> str:
    lines = ["added latency (median)", "  size        reply     upstream ms   call ms   added ms"]
    lines += [
        f"  {r['size']:<11} {r['reply']:<9} {r['upstream_ms']:>11.1f} {r['call_ms']:>9.1f} "
        f"{r['added_ms']:>10.1f}"
        for r in report["latency"]
    ]
    f, m, s = report["fan_out"], report["memory"], report["startup"]
    lines.append(
        f"fan-out: n={f['n']} at {f['upstream_latency_s']:.0f} s per call -> {f['wall_s']:.2f} s wall"
    )
    r = report["responsiveness"]
    lines.append(
        f"tools/list during a {r['size']} base64 call: {r['pings_during_call']} answered, "
        f"median {r['busy_ping_ms']:.1f} ms "
        f"(max {r['busy_ping_max_ms']:.1f}; idle {r['idle_ping_ms']:.1f})"
    )
    lines.append(
        f"memory: {m['n']}x{m['size']} b64 -> peak {m['peak_mb']:.0f} MB, "
        f"{m['above_idle_mb']:.0f} MB above idle = {m['ratio_to_decoded']:.2f}x "
        f"the decoded {m['decoded_mb']:.0f} MB"
    )
    lines.append(
        f"start-up to tools/list: imagegate {s['imagegate_s']:.2f} s, "
        f"minimal SDK server {s['minimal_sdk_s']:.2f} s, ratio {s['ratio']:.2f}"
    )
    for b in report["body_bombs"]:
        outcome = "error" if b["is_error"] else "NOT AN ERROR"
        lines.append(
            f"body bomb {b['case']} ({b['body_mb']:g} MB): {outcome} in {b['seconds']:.1f} s, "
            f"peak {b['peak_mb']:.0f} MB (idle {b['idle_mb']:.0f})"
        )
    lines.append("context bytes: " + ", ".join(f"{k} {v}" for k, v in report["context"].items()))
    return "\n".join(lines)


async def run(smoke: bool) -> dict[str, Any]:
    plan = SMOKE if smoke else FULL
    async with AsyncExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        emulator = stack.enter_context(start_subprocess(env={"IMAGEGATE_EMULATOR_TEXTURE": "noise"}))
        config = tmp / "bench.toml"
        config.write_text(_config(emulator.url))
        env = _env(tmp, config)
        emulator.prewarm(plan["sizes"])
        report: dict[str, Any] = {"smoke": smoke, "python": sys.version.split()[0]}
        # Full runs measure each on a fresh server; a smoke run, which only proves the code works,
        # shares one between them (a process start is most of its CPU).
        shared = await stack.enter_async_context(_server(env)) if smoke else None
        server: Server = (lambda: _reuse(shared)) if shared is not None else (lambda: _server(env))
        report["latency"] = await added_latency(server, emulator.url, plan["sizes"], plan["repeat"])
        report["fan_out"] = await fan_out(server, emulator, 4)
        report["responsiveness"] = await responsiveness(server, plan["sizes"][-1])
        report["memory"] = await memory(env, tmp, "256x256" if smoke else "4096x4096", 4)
        report["body_bombs"] = await body_bombs(emulator, tmp, plan["bomb_mb"])
        report["startup"] = startup(env, tmp, plan["startups"])
        report["context"] = await context(env, server)
    return report


def main() -> None:
    summary = " ".join(__doc__.split("\n\n")[0].split())  # the first paragraph, whole
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=summary)
    parser.add_argument("--smoke", action="store_true", help="every measurement once, tiny sizes")
    parser.add_argument("--json", default="bench-results.json", help="where to write the JSON report")
    args = parser.parse_args()
    report = anyio.run(run, args.smoke)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(_table(report))


if __name__ == "__main__":
    main()
