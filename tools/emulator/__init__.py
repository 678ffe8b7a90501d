"""Upstream emulator for imagegate's tests and benchmarks (developer tooling; it does not ship).

One process serves every provider under /<provider>/ (e.g. http://127.0.0.1:PORT/openai/v1) with real images,
per-provider auth and strictness, latency, queued faults and a request log. control.py documents the control
API; core.PROVIDERS maps each provider to its protocol module.

    with start_thread() as emulator:
        emulator.fault("openai", "generations", "status", status=429, retry_after="1")
        base_url = emulator.base_url("openai")
"""

from tools.emulator.core import PROVIDERS, base_path, create_app
from tools.emulator.images import prewarm
from tools.emulator.runner import ControlError, EmulatorClient, start_subprocess, start_thread

__all__ = [
    "PROVIDERS",
    "ControlError",
    "EmulatorClient",
    "base_path",
    "create_app",
    "prewarm",
    "start_subprocess",
    "start_thread",
]
