"""Helpers for the hostile-upstream tests: every provider routed through the hostile proxy, the server's
pid and peak memory, the places a key could leak to, saved images checked, the HTTP transport.

The proxy (tools/hostile) sits between the real server and the emulator; these helpers only build
environments and read what the server left behind.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image
from tests.support import KEYS, all_keys, base_env, config_text, text_of
from tests.support.server import require_slow
from tools.hostile import HostileProxy

# One valid text-to-image call per wire protocol (DashScope in both of its modes).
CALLS: dict[str, dict[str, Any]] = {
    "openai": {"model": "gpt-image-1", "provider": "openai"},
    "gemini": {"model": "gemini-2.5-flash-image", "provider": "gemini"},
    "ark": {"model": "seedream-4.0", "provider": "ark"},
    "dashscope": {"model": "qwen-image-plus", "provider": "dashscope"},
    "dashscope-async": {"model": "wan2.2-t2i-flash", "provider": "dashscope"},
    "bfl": {"model": "flux-2-pro", "provider": "bfl"},
    "modelgate": {"model": "seedream-4.0", "provider": "modelgate"},
    "mixroute": {"model": "gpt-image-1", "provider": "mixroute"},
    "atalk": {"model": "flux-2-pro", "provider": "atalk"},
    "openrouter": {"model": "gemini-2.5-flash-image", "provider": "openrouter"},
    "fal": {"model": "flux-2-pro", "provider": "fal"},
    "replicate": {"model": "flux-schnell", "provider": "replicate"},
    "comfyui": {"model": "comfyui", "provider": "comfyui"},
    "sdwebui": {"model": "sdwebui", "provider": "sdwebui"},
}
URL_VARIABLES = {"comfyui": "COMFYUI_URL", "sdwebui": "SDWEBUI_URL"}
"""The local servers' URL variables (everyone else's is PROVIDER_BASE_URL)."""
PAYLOAD_TOKEN = "imagegate-payload"
SENTINELS = sorted({*all_keys().values(), *KEYS.values()})
RSS_KILL_MB = 4096  # a server past this is killed: the test fails instead of the machine


def hostile_env(proxy: HostileProxy, tmp: Path, **extra: str) -> dict[str, str]:
    """Every provider keyed with its sentinel key and routed through the proxy, plus `local` (URL replies)."""
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "imagegate.toml"
    config.write_text(config_text(proxy))  # type: ignore[arg-type]  # base_url is all it reads
    keys = {**all_keys(), **KEYS}
    urls = {
        URL_VARIABLES.get(pid, f"{pid.upper()}_BASE_URL"): proxy.base_url(pid)
        for pid in {c["provider"] for c in CALLS.values()}
    }
    urls |= {f"{pid.upper()}_BASE_URL": proxy.base_url(pid) for pid in ("zhaotou", "modelmax")}
    settings = {"IMAGEGATE_TIMEOUT": "3", "IMAGEGATE_MAX_RETRIES": "0", "IMAGEGATE_CONFIG": str(config)}
    return base_env(tmp, **keys, **urls, **{**settings, **extra})


def call_args(protocol: str, prompt: str = "a lighthouse at dusk", **more: Any) -> dict[str, Any]:
    return {**CALLS[protocol], "prompt": prompt, **more}


def server_pid(env: Mapping[str, str]) -> int:
    """The pid of this process's imagegate child serving `env` (matched by its output folder)."""
    marker = f"IMAGEGATE_OUTPUT_DIR={env['IMAGEGATE_OUTPUT_DIR']}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == os.getpid() and marker in (entry / "environ").read_bytes().split(b"\0"):
                return int(entry.name)
        except (OSError, ValueError, IndexError):
            continue
    raise LookupError("no imagegate child process for this environment")


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process ever had."""
    return status_kb(pid, "VmHWM") / 1024


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0
    except OSError:
        return False


@contextmanager
def rss_guard(pid: int, limit_mb: float = RSS_KILL_MB) -> Iterator[list[float]]:
    """Kill the server (our own child) if it grows past `limit_mb`; yields [killed-at MB] when it did."""
    killed: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.05):
            try:
                rss = status_kb(pid, "VmRSS") / 1024
            except (OSError, KeyError):
                return
            if rss > limit_mb:
                killed.append(rss)
                os.kill(pid, signal.SIGKILL)
                return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield killed
    finally:
        stop.set()
        thread.join(2)


def result_dump(result: Any) -> str:
    return result.model_dump_json(by_alias=True, exclude_none=True)


def leaks(result: Any, tmp: Path, stderr: str = "") -> list[str]:
    """Where a sentinel key shows up: the result, any file the server wrote, its stderr."""
    places = {"result": "" if result is None else result_dump(result), "stderr": stderr}
    for path in (tmp / "out").rglob("*"):
        if path.is_file() and path.suffix in (".json", ".txt", ".log"):
            places[str(path)] = path.read_text(errors="replace")
    return [f"{key} in {where}" for where, text in places.items() for key in SENTINELS if key in text]


def metadata_of(result: Any) -> dict[str, Any]:
    """The compact JSON line ending a success's text block ({} for an error)."""
    if result.is_error:
        return {}
    return json.loads(text_of(result).splitlines()[-1])


def check_saved(meta: Mapping[str, Any]) -> list[str]:
    """Problems with the reported images: a path that does not exist or is not an image."""
    problems = []
    for entry in meta.get("images", []):
        try:
            with Image.open(entry["path"]) as image:
                image.load()
        except (OSError, KeyError) as error:
            problems.append(f"{entry.get('path')}: {error}")
    return problems


@cache
def noise_png(edge: int = 1024) -> bytes:
    """A PNG of random pixels (~3 MB at 1024): its base64 is past the server's streaming threshold."""
    out = io.BytesIO()
    Image.frombytes("RGB", (edge, edge), random.Random(edge).randbytes(edge * edge * 3)).save(out, "PNG")
    return out.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_server(env: Mapping[str, str], stderr: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`imagegate serve --transport http` on a free port; yields its /mcp URL and the process."""
    require_slow("the server over HTTP")
    port = free_port()
    command = [sys.executable, "-m", "imagegate", "serve", "--transport", "http", "--port", str(port)]
    with stderr.open("wb") as errors:
        process = subprocess.Popen(command, env=dict(env), stdout=subprocess.DEVNULL, stderr=errors)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/mcp", process
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
