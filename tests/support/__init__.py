"""Helpers every test layer shares: environments for the server, the server itself (in memory or
over stdio), readers for the parts of a result, and small real image files.

Fixtures stay in the conftest files; everything here is a plain function or context manager.
"""

from tests.support.clock import VirtualTime
from tests.support.env import (
    EMULATED,
    KEYS,
    LOCAL_PER_CALL,
    TEST_KEY_PREFIX,
    all_keys,
    base_env,
    config_text,
    emulator_env,
    provider_env,
)
from tests.support.images import data_url, image_bytes, image_file, open_image, pixels, write_image
from tests.support.results import (
    ERROR_META,
    blocks,
    decoded_previews,
    error_kind,
    error_of,
    kind_of,
    meta_of,
    metadata,
    sidecar_of,
    sizes_of,
    summary_lines,
    text_of,
)
from tests.support.server import serve

__all__ = [
    "EMULATED",
    "ERROR_META",
    "KEYS",
    "LOCAL_PER_CALL",
    "TEST_KEY_PREFIX",
    "VirtualTime",
    "all_keys",
    "base_env",
    "blocks",
    "config_text",
    "data_url",
    "decoded_previews",
    "emulator_env",
    "error_kind",
    "error_of",
    "image_bytes",
    "image_file",
    "kind_of",
    "meta_of",
    "metadata",
    "open_image",
    "pixels",
    "provider_env",
    "serve",
    "sidecar_of",
    "sizes_of",
    "summary_lines",
    "text_of",
    "write_image",
]
