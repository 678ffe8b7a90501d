"""Bad input: each comes back as a clear isError result, and the server keeps serving."""

from __future__ import annotations

import subprocess
import sys

import pytest
from tests.support import base_env, serve, text_of

pytestmark = pytest.mark.anyio

CASES = [
    ({"model": "gpt-imag-1", "prompt": "x"}, ['model "gpt-imag-1" is unknown', "did you mean gpt-image-1"]),
    (
        {"model": "gpt-image-1", "prompt": "x", "size": "1000x1000"},
        [
            'size "1000x1000" is not offered by gpt-image-1 via openai; '
            "use one of 1024x1024, 1536x1024, 1024x1536, auto or a ratio 1:1, 3:2, 2:3"
        ],
    ),
    ({"model": "gpt-image-1", "prompt": "x", "n": 11}, ["n 11 is out of range", "1 to 10"]),
    (
        {"model": "dall-e-3", "prompt": "x", "n": 11},
        ["n 11 is out of range for dall-e-3 via openai; use 1 to 10"],
    ),
    (
        {"model": "dall-e-3", "prompt": "x", "quality": "low"},
        ['quality "low" is not offered by dall-e-3 via openai; use one of standard, hd'],
    ),
    ({"model": "nano-banana", "prompt": "x"}, ["set GEMINI_API_KEY"]),
    ({"model": "gpt-image-1", "prompt": "x", "n": "two"}, ['n must be an integer; got the string "two"']),
    ({"model": "gpt-image-1", "prompt": "x", "n": True}, ["n must be an integer"]),
    ({"model": "gpt-image-1"}, ["prompt is required"]),
    ({"model": "gpt-image-1", "prompt": ""}, ["prompt is empty"]),
    ({"prompt": "x"}, ["model is required"]),
    ({"model": "gpt-image-1", "prompt": "x", "provider": "nowhere"}, ['provider "nowhere"']),
    (
        {"model": "gpt-image-1", "prompt": "x", "sise": "1:1"},
        ['unknown argument "sise" (did you mean "size"?)'],
    ),
    (
        {"model": "gpt-image-1", "prompt": "x", "style": "vivid"},
        ["style is not supported by gpt-image-1 via openai"],
    ),
    (
        {"model": "gpt-image-1", "prompt": "x", "extra": {"size": "1:1"}},
        ["extra.size duplicates the argument"],
    ),
    ({"model": "gpt-image-1", "prompt": "x", "extra": "nope"}, ["extra must be an object"]),
    ({"model": "seedream-4.0", "prompt": "x"}, ["set ARK_API_KEY", "MODELGATE_API_KEY"]),
]


async def test_each_bad_call_is_a_clear_error_and_the_next_call_is_served(tmp_path):
    async with serve(base_env(tmp_path, OPENAI_API_KEY="test-x")) as client:
        for args, fragments in CASES:
            result = await client.call_tool("generate_image", args)
            assert result.is_error, args
            for fragment in fragments:
                assert fragment in text_of(result), (args, text_of(result))
        listing = await client.call_tool("list_models", {})
        assert not listing.is_error


async def test_unknown_tool_is_a_protocol_error_and_the_session_survives(tmp_path):
    from mcp.shared.exceptions import MCPError

    async with serve(base_env(tmp_path, OPENAI_API_KEY="test-x")) as client:
        with pytest.raises(MCPError):
            await client.call_tool("draw", {})
        assert not (await client.call_tool("list_models", {})).is_error


@pytest.mark.slow
@pytest.mark.parametrize(
    ("config", "fragments"),
    [
        ("timeout = 'soon'\n", ["config.toml", "config: timeout"]),
        (
            "[providers.local]\nbase_url = 'http://x/v1'\n"
            "[[providers.local.offerings]]\nmodel = 'gpt-image-1'\nupstrem = 'x'\n",
            ["config.toml", "providers.local.offerings.0.upstrem", "Extra inputs are not permitted"],
        ),
        (
            "[providers.local]\nbase_url = 'http://x/v1'\n"
            "[[providers.local.offerings]]\nmodel = 'no-such-model'\nupstream = 'x'\n",
            ["providers.local.offerings[0] (no-such-model): model: unknown model"],
        ),
        ("this is not toml", ["config.toml", "cannot read config"]),
    ],
)
def test_a_malformed_config_stops_start_up_naming_file_entry_and_field(tmp_path, config, fragments):
    path = tmp_path / "config.toml"
    path.write_text(config)
    env = base_env(tmp_path, IMAGEGATE_CONFIG=str(path))
    done = subprocess.run(
        [sys.executable, "-m", "imagegate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    for fragment in fragments:
        assert fragment in done.stderr, done.stderr


@pytest.mark.slow
def test_a_bad_setting_is_named(tmp_path):
    env = base_env(tmp_path, IMAGEGATE_TIMEOUT="soon")
    done = subprocess.run(
        [sys.executable, "-m", "imagegate", "models"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "IMAGEGATE_TIMEOUT='soon' is not a float" in done.stderr


async def test_an_unfilled_bundle_option_counts_as_unset(tmp_path):
    env = base_env(
        tmp_path, OPENAI_API_KEY="${user_config.openai_api_key}", IMAGEGATE_TIMEOUT="${user_config.timeout}"
    )
    async with serve(env) as client:
        result = await client.call_tool("generate_image", {"model": "gpt-image-1", "prompt": "x"})
    assert result.is_error and "set OPENAI_API_KEY" in text_of(result)
