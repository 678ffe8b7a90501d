"""A team deployment under load: `imagegate serve --transport http --workers 4` on one port (uvicorn's
supervisor, one shared socket), tasks and upstream limits in a real redis-server, the emulator (a
process of its own) answering after a latency. 200 calls arrive at once as MCP tasks; midway one
worker is killed with SIGKILL. Every call either was never answered (its connection died with the
worker) or was handed a task; every task reaches a final state (those of the dead worker: failed by
lease expiry, naming the images they had saved); every file a task names exists; the supervisor
replaces the dead worker; and the emulator never sees more calls at once than the shared limit.
Throughput and latency percentiles are printed (`-s` shows them)."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import httpx2
import pytest
from tests.support import base_env
from tests.team.conftest import free_port
from tests.team.support import FINAL, TASKS
from tools.emulator import start_subprocess

from imagegate.team.backend import Keys, connect

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

WORKERS = 4
CALLS = 200
LATENCY = 0.3
CAP = 12
"""The shared limit on the upstream: below the 4 x 4 the workers' own limiters would allow together."""
LEASE = 1.5
POLL = 1.0
DEADLINE = 30.0


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


def children(pid: int) -> list[int]:
    """The worker processes under the supervisor (not multiprocessing's resource tracker)."""
    found = []
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"resource_tracker" not in cmdline:
            found.append(int(child))
    return found


def listening(pids: list[int], port: int) -> int:
    """How many of `pids` hold a socket listening on `port` (each worker binds its own)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    count = 0
    for pid in pids:
        try:
            links = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        except OSError:
            continue
        count += bool(links & inodes)
    return count


@contextmanager
def deployment(
    tmp_path: Path, emulator: Any, redis_url: str
) -> Iterator[tuple[str, subprocess.Popen[bytes], str]]:
    config = tmp_path / "team.toml"
    config.write_text(
        f"""
[providers.local]
base_url = "{emulator.base_url("compat")}"
key_env = "LOCAL_API_KEY"
limits = {{ concurrent = {CAP} }}

[[providers.local.offerings]]
model = "dall-e-2"
upstream = "dall-e-2"
per_call = 1
"""
    )
    env = base_env(
        tmp_path,
        LOCAL_API_KEY="test-key",
        IMAGEGATE_CONFIG=str(config),
        IMAGEGATE_REDIS_URL=redis_url,
        IMAGEGATE_DEPLOYMENT=(name := f"load-{uuid.uuid4().hex[:8]}"),
        IMAGEGATE_TASK_LEASE=str(LEASE),
        IMAGEGATE_STATE_KEY="load-test-state-key-0123456789abcdef0123456789",
    )
    port = free_port()
    command = [sys.executable, "-m", "imagegate", "serve", "--transport", "http", "--port", str(port)]
    with (tmp_path / "server.log").open("wb") as log:
        process = subprocess.Popen([*command, "--workers", str(WORKERS)], env=env, stderr=log)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 60
        while listening(children(process.pid), port) < WORKERS or not _answers(url):
            assert time.monotonic() < deadline and process.poll() is None, (
                tmp_path / "server.log"
            ).read_text()
            time.sleep(0.1)
        yield url, process, name
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def _answers(url: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", int(url.split(":")[2].split("/")[0])), timeout=0.5):
            pass
        return httpx2.get(url, timeout=2).status_code in (400, 405, 406)
    except (OSError, httpx2.HTTPError):
        return False


def saved_paths(state: Any) -> list[str]:
    """The files a final task names: its result's metadata, or a failed task's saved list."""
    if state.result is not None:
        text = state.result["content"][0]["text"]
        meta = json.loads(text[text.index("\n{") + 1 :])
        return [image["path"] for image in meta["images"]]
    if state.error is not None:
        return list(state.error.get("data", {}).get("saved", []))
    return []


async def test_four_workers_two_hundred_tasks_and_a_worker_killed_midway(tmp_path, redis_url):
    if not Path("/proc/self/task").is_dir():
        pytest.skip("finding the workers needs /proc")
    with start_subprocess() as emulator:
        emulator.prewarm(["256x256"])
        emulator.configure("compat", latency=LATENCY)
        with deployment(tmp_path, emulator, redis_url) as (url, supervisor, name):
            report = await _load(url, supervisor, redis_url, name)
            workers_after = children(supervisor.pid)
        starts = sorted(r["time"] for r in emulator.requests("compat"))
    log = (tmp_path / "server.log").read_text()

    answered, unanswered, states, latencies, wall, killed = report
    completed = [s for s in states.values() if s.status == "completed"]
    failed = [s for s in states.values() if s.status == "failed"]
    in_flight = max(sum(1 for t in starts if s - LATENCY * 0.9 < t <= s) for s in starts)
    latencies.sort()
    p50 = statistics.median(latencies) if latencies else float("nan")
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    print(
        f"\n{CALLS} calls on {WORKERS} workers, worker {killed} killed midway: "
        f"{len(answered)} handed a task, {len(unanswered)} lost with their connection; "
        f"{len(completed)} completed, {len(failed)} failed by lease expiry, "
        f"in {wall:.1f} s: {len(completed) / wall:.1f} images/s; "
        f"latency to completion p50 {p50:.2f} s, p99 {p99:.2f} s; "
        f"upstream calls at once: at most {in_flight} (limit {CAP})"
    )
    assert len(answered) + len(unanswered) == CALLS and len(answered) >= CALLS * 0.5
    assert all(s.status in FINAL for s in states.values()), [s.status for s in states.values()]
    assert len(completed) >= CALLS * 0.5 and failed  # the dead worker's tasks failed, never "working"
    assert all("the worker running this task stopped" in (s.status_message or "") for s in failed)
    named = [p for s in states.values() for p in saved_paths(s)]
    assert len(named) >= len(completed) and all(Path(p).is_file() for p in named)
    assert in_flight <= CAP
    assert killed not in workers_after and len(workers_after) == WORKERS  # the supervisor replaced it
    assert "Traceback" not in log and "load-test-state-key" not in log


WIRE = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": WIRE,
    "io.modelcontextprotocol/clientInfo": {"name": "load-test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}},
}


class Lost(Exception):
    """The request's connection died with its worker."""


async def rpc(http: httpx2.AsyncClient, url: str, method: str, params: dict[str, Any], name: str) -> Any:
    """One stateless 2026-07-28 request over plain HTTP, as any client (or load balancer) sends it."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": META}}
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": WIRE,
        "Mcp-Method": method,
        "Mcp-Name": name,
    }
    try:
        answer = await http.post(url, json=body, headers=headers)
    except httpx2.HTTPError as e:
        raise Lost from e
    text = answer.text
    if answer.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:") and '"id"' in line)
    reply = json.loads(text)
    if "error" in reply:
        raise Lost(reply["error"])
    return SimpleNamespace(**{k: reply["result"].get(v) for k, v in FIELDS.items()})


FIELDS = {
    "result_type": "resultType",
    "task_id": "taskId",
    "status": "status",
    "status_message": "statusMessage",
    "result": "result",
    "error": "error",
}


async def kill_midway(
    supervisor: subprocess.Popen[bytes],
    redis_url: str,
    name: str,
    answered: dict[int, str],
    killed: list[int],
) -> None:
    """Midway (half the tasks handed out), SIGKILL the worker running a task still working."""
    redis = connect(redis_url)
    try:
        while True:
            await anyio.sleep(0.1)
            if len(answered) < CALLS // 2:
                continue
            for task_id in list(answered.values()):
                owner, status = await redis.hmget(Keys(name).task(task_id), ["owner", "status"])
                pid = int(owner.split(":")[1]) if owner else 0
                if status == "working" and pid in children(supervisor.pid):
                    killed.append(pid)
                    os.kill(pid, signal.SIGKILL)
                    return
    finally:
        await redis.aclose()


async def _load(url: str, supervisor: subprocess.Popen[bytes], redis_url: str, name: str) -> tuple[Any, ...]:
    answered: dict[int, str] = {}
    unanswered: list[int] = []
    states: dict[str, Any] = {}
    latencies: list[float] = []
    killed: list[int] = []
    started = time.monotonic()

    async def one(http: httpx2.AsyncClient, i: int) -> None:
        begun = time.monotonic()
        arguments = {"model": "dall-e-2", "prompt": f"load {i}", "size": "256x256"}
        try:
            task = await rpc(
                http, url, "tools/call", {"name": "generate_image", "arguments": arguments}, "generate_image"
            )
        except Lost:  # its worker died with the request open
            unanswered.append(i)
            return
        assert task.result_type == "task", task
        answered[i] = task.task_id
        while True:
            await anyio.sleep(POLL)
            try:
                state = await rpc(http, url, "tasks/get", {"taskId": task.task_id}, task.task_id)
            except Lost:  # this poll met the dying worker: ask again
                continue
            if state.status in FINAL:
                states[task.task_id] = state
                if state.status == "completed":
                    latencies.append(time.monotonic() - begun)
                return

    limits = httpx2.Limits(max_connections=CALLS, max_keepalive_connections=CALLS)
    async with httpx2.AsyncClient(timeout=20, limits=limits) as http:
        with anyio.fail_after(DEADLINE):
            async with anyio.create_task_group() as group:
                group.start_soon(kill_midway, supervisor, redis_url, name, answered, killed)
                for i in range(CALLS):
                    group.start_soon(one, http, i)
    wall = time.monotonic() - started
    return answered, unanswered, states, latencies, wall, killed[0]
