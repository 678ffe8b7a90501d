"""End-to-end tests: the real server over stdio against the upstream emulator (tools/emulator).

Helpers the e2e modules share: an environment pointing every OpenAI-protocol provider
(openai, zhaotou, modelmax and a config-defined `local`) at one emulator, a server session
whose stderr can be captured, and readers for the parts of a result.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TextIO

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client as stdio_transport
from PIL import Image
from tests.conftest import TEST_KEY_PREFIX, base_env, text_of
from tools.emulator import EmulatorClient

ERROR_META = "io.imagegate/error"
KEYS = {
    "OPENAI_API_KEY": f"{TEST_KEY_PREFIX}openai",
    "ZHAOTOU_API_KEY": f"{TEST_KEY_PREFIX}zhaotou",
    "MODELMAX_API_KEY": f"{TEST_KEY_PREFIX}modelmax",
    "LOCAL_API_KEY": f"{TEST_KEY_PREFIX}local",
}
EMULATED = {"openai": "openai", "zhaotou": "zhaotou", "modelmax": "modelmax", "local": "compat"}
"""imagegate provider id -> the emulator's provider serving it."""
LOCAL_PER_CALL = 2


def config_text(emulator: EmulatorClient) -> str:
    """A config file adding `local` (any OpenAI-compatible endpoint; URL replies by default)
    and a generations-only gpt-image-1 offering to modelmax (its documented capability)."""
    return f"""
[providers.local]
base_url = "{emulator.base_url("compat")}"
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


def emulator_env(emulator: EmulatorClient, tmp: Path, **extra: str) -> dict[str, str]:
    """The server's whole environment: test keys, emulator base URLs, the config file, output in tmp."""
    tmp.mkdir(parents=True, exist_ok=True)
    config = tmp / "imagegate.toml"
    config.write_text(config_text(emulator))
    urls = {f"{pid.upper()}_BASE_URL": emulator.base_url(pid) for pid in ("openai", "zhaotou", "modelmax")}
    return base_env(tmp, **KEYS, **urls, IMAGEGATE_CONFIG=str(config), **extra)


@asynccontextmanager
async def serve(env: Mapping[str, str], errlog: TextIO | None = None) -> AsyncIterator[Client]:
    """The real server as a subprocess over stdio; its stderr goes to `errlog` when given."""
    params = StdioServerParameters(command=sys.executable, args=["-m", "imagegate"], env=dict(env))
    transport = stdio_transport(params, errlog=errlog or sys.stderr)
    async with Client(transport, mode="legacy", read_timeout_seconds=60) as client:  # type: ignore[arg-type]
        yield client


def metadata(result: Any) -> dict[str, Any]:
    """The compact JSON object that ends the text block."""
    return json.loads(text_of(result).splitlines()[-1])


def summary_lines(result: Any) -> list[str]:
    """The human summary: the text block without its final JSON line."""
    return text_of(result).splitlines()[:-1]


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error, text_of(result)
    return dict(result.meta[ERROR_META])


def blocks(result: Any, kind: str) -> list[Any]:
    return [b for b in result.content if b.type == kind]


def decoded_previews(result: Any) -> list[tuple[bytes, Image.Image]]:
    """Each preview block's raw bytes and decoded image (checked to match its declared mime)."""
    previews = []
    for block in blocks(result, "image"):
        data = base64.b64decode(block.data, validate=True)
        image = Image.open(io.BytesIO(data))
        image.load()
        assert Image.MIME[image.format] == block.mime_type
        previews.append((data, image))
    return previews


def open_image(path: str | Path) -> Image.Image:
    image = Image.open(path)
    image.load()
    return image


def sizes_of(meta: dict[str, Any]) -> list[tuple[int, int]]:
    """Each saved image's real pixel size, checked against what the metadata says."""
    found = []
    for entry in meta["images"]:
        with Image.open(entry["path"]) as image:
            assert (image.width, image.height) == (entry["width"], entry["height"])
            found.append(image.size)
    return found


def sidecar_of(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).with_suffix(".json").read_text())


def write_image(path: Path, size: tuple[int, int], mode: str = "RGB", fmt: str = "PNG") -> str:
    """A small real image file; RGBA gets a half-transparent fill (a usable mask)."""
    colour = (200, 30, 30, 128) if mode == "RGBA" else "red"
    Image.new(mode, size, colour).save(path, fmt)
    return str(path)


def data_url(path: str | Path, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode()}"
