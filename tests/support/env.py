"""Environments for a server under test: nothing from the developer's shell but PATH, a home and
config folder of the test's own, output in the test's temp dir, and greppable sentinel keys."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from imagegate.catalog import load_catalog

TEST_KEY_PREFIX = "test-sentinel-key-"
KEYS = {
    "OPENAI_API_KEY": f"{TEST_KEY_PREFIX}openai",
    "ZHAOTOU_API_KEY": f"{TEST_KEY_PREFIX}zhaotou",
    "MODELMAX_API_KEY": f"{TEST_KEY_PREFIX}modelmax",
    "LOCAL_API_KEY": f"{TEST_KEY_PREFIX}local",
}
"""The OpenAI-protocol family's keys (openai, zhaotou, modelmax and the config-defined `local`)."""
EMULATED = {"openai": "openai", "zhaotou": "zhaotou", "modelmax": "modelmax", "local": "compat"}
"""imagegate provider id -> the emulator's provider serving it."""
LOCAL_PER_CALL = 2


class Upstream(Protocol):
    """What an environment needs of an emulator (or a proxy in front of one): its base URLs."""

    def base_url(self, provider: str) -> str: ...


def all_keys() -> dict[str, str]:
    """A distinct, greppable test key for every shipped provider."""
    cat = load_catalog()
    return {spec.key_env: f"{TEST_KEY_PREFIX}{pid}" for pid, spec in cat.providers.items() if spec.key_env}


def base_env(tmp: Path, **extra: str) -> dict[str, str]:
    """Only what a server needs: no keys leak in from the developer's shell."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp / "home"),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "IMAGEGATE_OUTPUT_DIR": str(tmp / "out"),
        "IMAGEGATE_LEDGER": str(tmp / "ledger.sqlite3"),  # never the developer's own ledger
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "IMAGEGATE_NO_LOCAL_PROBE": "1",  # a ComfyUI/WebUI on this machine's default ports stays out of tests
    }
    env.update(extra)
    return env


def provider_env(tmp: Path, upstream: Upstream, provider: str, key: str, **extra: str) -> dict[str, str]:
    """One provider keyed with `key` and pointed at the emulator's `provider`."""
    name = provider.upper()
    return base_env(
        tmp, **({f"{name}_API_KEY": key, f"{name}_BASE_URL": upstream.base_url(provider)} | extra)
    )


def config_text(upstream: Upstream) -> str:
    """A config file adding `local` (any OpenAI-compatible endpoint; URL replies by default)
    and a generations-only gpt-image-1 offering to modelmax (its documented capability)."""
    return f"""
[providers.local]
base_url = "{upstream.base_url("compat")}"
key_env = "LOCAL_API_KEY"

[[providers.local.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
per_call = {LOCAL_PER_CALL}

[[providers.modelmax.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
capabilities = ["generate"]
"""


def emulator_env(upstream: Upstream, tmp: Path, **extra: str) -> dict[str, str]:
    """The OpenAI family's whole environment: test keys, emulator base URLs, the config file, output
    in tmp."""
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "imagegate.toml"
    config.write_text(config_text(upstream))
    urls = {f"{pid.upper()}_BASE_URL": upstream.base_url(pid) for pid in ("openai", "zhaotou", "modelmax")}
    return base_env(tmp, **KEYS, **urls, IMAGEGATE_CONFIG=str(config), **extra)
