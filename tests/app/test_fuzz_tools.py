"""Property: whatever arguments a client sends to the four tools, the real server (over stdio)
answers with a tool result, an error or not, never a protocol error, a hang or an internal
error, and it is still serving afterwards.

Arguments come from hypothesis: wrong types, null values, 1 MB strings, enormous and negative
numbers, unknown arguments, random sizes, nested junk in `extra`, paths and URLs that must be
refused. Every provider is configured, its base URL a closed loopback port, and retries are
off, so a call that passes validation fails fast without leaving the machine. One server
serves every example: a blocking portal runs the session's event loop beside hypothesis.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tests.support import base_env, serve, text_of

from imagegate.catalog import load_catalog

CATALOG = load_catalog()
CLOSED = "http://127.0.0.1:9/v1"
"""The discard port: nothing listens there, so a request is refused at once."""
EXAMPLES = 300
MEGABYTE = "a lighthouse at dusk " * 50_000


@pytest.fixture(scope="module")
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as running:
        yield running


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("fuzz-inputs")
    picture = io.BytesIO()
    Image.new("RGB", (64, 64), "teal").save(picture, "PNG")
    (folder / "real.png").write_bytes(picture.getvalue())
    (folder / "text.png").write_text("not a picture")
    return {"real": str(folder / "real.png"), "text": str(folder / "text.png"), "folder": str(folder)}


@pytest.fixture(scope="module")
def client(portal, tmp_path_factory):
    """One server for the whole module: every provider keyed, every base URL closed."""
    env: dict[str, str] = {"IMAGEGATE_MAX_RETRIES": "0", "IMAGEGATE_TIMEOUT": "10"}
    for spec in CATALOG.providers.values():
        env |= {spec.key_env: "test-fuzz-key"} if spec.key_env else {}
        env |= {spec.base_url_env: CLOSED} if spec.base_url_env else {}
    with portal.wrap_async_context_manager(
        serve(base_env(tmp_path_factory.mktemp("fuzz"), **env))
    ) as session:
        yield session


# --- what a client might send ------------------------------------------------------------------------

MODELS = sorted({r.model for r in CATALOG.routes}) + ["nano-banana", "gpt-imag-1", ""]
PROVIDERS = sorted(CATALOG.providers) + ["nowhere"]
KNOBS = sorted(CATALOG.knobs)
ROUTES = {
    tool: [r for r in CATALOG.routes if r.can(tool.split("_")[0])]
    for tool in ("generate_image", "edit_image")
}
ARGUMENT_NAMES = {
    "generate_image": ["model", "prompt", "provider", "size", "resolution", "n", "extra", *KNOBS],
    "edit_image": [
        "model",
        "prompt",
        "provider",
        "size",
        "resolution",
        "n",
        "extra",
        "images",
        "mask",
        *KNOBS,
    ],
    "list_models": ["provider", "capability"],
    "get_supported_sizes": ["model", "provider", "resolution"],
}
ALL_NAMES = {name for names in ARGUMENT_NAMES.values() for name in names}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=25,
)
"""Any JSON value, nested a few levels (far from the ~200 levels at which the SDK's parser stops)."""
huge_text = st.sampled_from([MEGABYTE, "x" * 100_000, "\u00e9" * 70_000])
sizes = st.one_of(
    st.builds(lambda w, h: f"{w}x{h}", st.integers(-5, 100_000), st.integers(-5, 100_000)),
    st.builds(lambda w, h: f"{w}:{h}", st.integers(0, 100), st.integers(0, 100)),
    st.sampled_from(
        ["auto", "1024x1024", "16:9", "1:1", "0x0", "1024X1024", " 1024x1024", "1e3x1e3", "-1:1"]
    ),
    st.text(max_size=20),
    huge_text,
)
numbers = st.one_of(
    st.integers(-(10**12), 10**12), st.integers(-5, 12), st.floats(-1e6, 1e6), st.text(max_size=5)
)


def references(inputs: dict[str, str]) -> st.SearchStrategy[Any]:
    """Input-image references: real and fake files, special paths, URLs that must be refused."""
    named = st.sampled_from(
        [
            inputs["real"],
            inputs["text"],
            inputs["folder"],
            "/etc/passwd",
            "/dev/zero",
            "/proc/self/environ",
            "",
            ".",
            "~",
            "file:///etc/passwd",
            "ftp://127.0.0.1/a.png",
            "http://127.0.0.1:9/a.png",
            "http://169.254.169.254/latest/meta-data/",
            "https://[::1]/a.png",
            "http://0x7f.1/a.png",
            "data:image/png;base64,iVBORw0KGgo=",
            "data:,plain",
            "data:image/png;base64,***",
        ]
    )
    return st.one_of(named, st.text(max_size=30), huge_text, scalars)


def argument_values(inputs: dict[str, str]) -> dict[str, st.SearchStrategy[Any]]:
    refs = references(inputs)
    return {
        "model": st.one_of(st.sampled_from(MODELS), st.text(max_size=30), scalars),
        "prompt": st.one_of(st.text(max_size=200), huge_text, scalars),
        "provider": st.one_of(st.sampled_from(PROVIDERS), st.text(max_size=12), scalars),
        "size": st.one_of(sizes, scalars),
        "resolution": st.one_of(st.sampled_from(["1K", "2K", "4K", "8K", "1k", ""]), scalars),
        "n": st.one_of(numbers, scalars),
        "extra": st.one_of(st.dictionaries(st.text(max_size=12), junk, max_size=6), junk),
        "images": st.one_of(st.lists(refs, max_size=20), refs),
        "mask": refs,
        "capability": st.one_of(st.sampled_from(["generate", "edit", "mask", "video"]), scalars),
    } | {knob: junk for knob in KNOBS}


@st.composite
def calls(draw: st.DrawFn, inputs: dict[str, str]) -> tuple[str, dict[str, Any] | None]:
    """A tool and its arguments: often a valid call for a real route, then broken in a few places."""
    tool = draw(st.sampled_from(sorted(ARGUMENT_NAMES)))
    values = argument_values(inputs)
    args: dict[str, Any] = {}
    if tool in ROUTES and draw(st.booleans()):
        route = draw(st.sampled_from(ROUTES[tool]))
        args = {"model": route.model, "provider": route.provider, "prompt": "a red fox in the snow"}
        args |= {"images": [inputs["real"]]} if tool == "edit_image" else {}
    names = draw(st.lists(st.sampled_from(ARGUMENT_NAMES[tool]), max_size=4, unique=True))
    args |= {name: draw(values[name]) for name in names}
    unknown = st.text(min_size=1, max_size=15).filter(lambda k: k not in ALL_NAMES)
    args |= draw(st.dictionaries(unknown, junk, max_size=1))
    return tool, draw(st.sampled_from([args, args, args, {}, None]))


# --- the properties ---------------------------------------------------------------------------------


@pytest.mark.filterwarnings(
    "ignore:Generating overly large repr"
)  # a 1 MB example would hide the real failure
def test_every_call_gets_a_tool_result_never_a_protocol_error(portal, client, inputs):
    outcomes: set[bool] = set()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(call=calls(inputs))
    def answered(call: tuple[str, dict[str, Any] | None]) -> None:
        tool, args = call
        result = portal.call(client.call_tool, tool, args)  # a protocol error or a hang raises here
        text = text_of(result)
        assert text.strip(), f"{tool}: an empty result"
        assert "internal error" not in text, f"{tool}: {text}"
        outcomes.add(bool(result.is_error))

    answered()
    assert outcomes == {True, False}  # the examples reach both sides of validation


def test_the_server_still_answers_after_the_fuzzing(portal, client):
    result = portal.call(client.call_tool, "list_models", {})
    assert not result.is_error and "models" in text_of(result)


HUGE_VALUES = [
    # tool, arguments with HUGE standing for a 300 KB string
    pytest.param("generate_image", {"prompt": "HUGE"}, id="prompt"),
    pytest.param("generate_image", {"quality": "HUGE"}, id="knob"),
    pytest.param(
        "generate_image", {"model": "seedream-4.0", "provider": "ark", "resolution": "HUGE"}, id="resolution"
    ),
    pytest.param("edit_image", {"images": ["HUGE"]}, id="image-path"),
    pytest.param("edit_image", {"images": ["http://HUGE.example/a.png"]}, id="image-url"),
    pytest.param("list_models", {"provider": "HUGE"}, id="list-provider"),
    pytest.param("generate_image", {"size": "HUGE"}, id="size"),
    pytest.param("generate_image", {"model": "HUGE"}, id="model"),
    pytest.param("generate_image", {"provider": "HUGE"}, id="provider"),
    pytest.param("generate_image", {"HUGE": 1}, id="argument-name"),
    pytest.param("get_supported_sizes", {"model": "HUGE"}, id="sizes-model"),
    pytest.param(
        "get_supported_sizes", {"model": "gpt-image-1", "resolution": "HUGE"}, id="sizes-resolution"
    ),
]


@pytest.mark.parametrize(("tool", "args"), HUGE_VALUES)
def test_a_huge_value_is_refused_without_being_echoed_whole(portal, client, tool, args):
    """An agent pays for every character of a result: a refusal shows a bad value abbreviated."""
    base = {"model": "gpt-image-1", "prompt": "x"} if tool in ROUTES else {}
    arguments = base | {_huge(k): _huge(v) for k, v in args.items()}
    result = portal.call(client.call_tool, tool, arguments)
    assert result.is_error and len(text_of(result)) < 2_000, f"{len(text_of(result))} characters"


def _huge(value: Any) -> Any:
    if isinstance(value, list):
        return [_huge(item) for item in value]
    return value.replace("HUGE", "z" * 300_000) if isinstance(value, str) else value
