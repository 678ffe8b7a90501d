"""The real server over stdio against the emulated DashScope: sync Qwen-Image and Wan 2.6 calls, polled
Wan 2.2 tasks, edits with references, the size rules at their edges, every documented failure mapped to its
error kind with the upstream's own message, and usage carried into the result and the sidecar.

The last section drives the emulator directly: it must be as strict as the reference says DashScope is.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from PIL import Image
from tests.support import VirtualTime, image_file, kind_of, metadata, provider_env, serve, sidecar_of, text_of
from tools.emulator import EmulatorClient

pytestmark = pytest.mark.anyio

KEY = "test-sentinel-key-dashscope"
SYNC = "/services/aigc/multimodal-generation/generation"
T2I = "/services/aigc/text2image/image-synthesis"
INSPECTION = "Output data may contain inappropriate content."


def env_for(tmp_path: Path, emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    return provider_env(tmp_path, emulator, "dashscope", KEY, **extra)


def tasks(emulator: EmulatorClient, **scenario: Any) -> dict[str, Any]:
    """Queue a task outcome (or set default_polls) through the DashScope emulator's own control route."""
    return dict(emulator.control("dashscope", "tasks", **scenario))


def sent(emulator: EmulatorClient, endpoint: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests("dashscope") if r["endpoint"] == endpoint]


# --- text to image ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_qwen_image_generates_at_the_asked_size_with_usage_in_result_and_sidecar(tmp_path, emu):
    async with serve(env_for(tmp_path, emu), stdio=True) as client:
        result = await client.call_tool(
            "generate_image",
            {"model": "qwen-image-plus", "prompt": "a poster that says hello", "size": "16:9", "seed": 7},
        )
        assert not result.is_error, text_of(result)
        meta = metadata(result)
        (image,) = meta["images"]
        assert (image["width"], image["height"], image["mime_type"]) == (1664, 928, "image/png")
        with Image.open(image["path"]) as saved:
            assert saved.size == (1664, 928)
        assert meta["usage"] == [{"width": 1664, "height": 928, "image_count": 1}]
        assert sidecar_of(image)["usage"] == {"width": 1664, "height": 928, "image_count": 1}
        assert result.content[1].type == "image"  # a preview follows the text
    (call,) = sent(emu, "generation")
    assert call["json"] == {
        "model": "qwen-image-plus",
        "input": {"messages": [{"role": "user", "content": [{"text": "a poster that says hello"}]}]},
        "parameters": {"n": 1, "size": "1664*928", "seed": 7},
    }
    assert "x-dashscope-async" not in call["headers"]


async def test_qwen_image_fans_n_out_over_single_image_calls_and_always_sends_a_size(tmp_path, emu):
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "qwen-image", "prompt": "three foxes", "n": 3}
        )
        assert not result.is_error, text_of(result)
        meta = metadata(result)
        assert meta["calls"] == 3 and len(meta["images"]) == 3
    calls = sent(emu, "generation")
    assert [c["json"]["parameters"] for c in calls] == [{"n": 1, "size": "1328*1328"}] * 3


async def test_wan26_sends_n_explicitly_and_splits_at_four_per_call(tmp_path, emu):
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "wan2.6-t2i", "prompt": "a lighthouse", "n": 5, "size": "21:9"}
        )
        assert not result.is_error, text_of(result)
        meta = metadata(result)
        assert meta["calls"] == 2 and {(i["width"], i["height"]) for i in meta["images"]} == {(1344, 576)}
        assert sorted(u["image_count"] for u in meta["usage"]) == [1, 4]
        assert all(u["size"] == "1344*576" for u in meta["usage"])
    assert sorted(c["json"]["parameters"]["n"] for c in sent(emu, "generation")) == [1, 4]


@pytest.mark.slow
async def test_wan22_runs_as_a_polled_task_and_returns_the_revised_prompt(tmp_path, emu):
    async with serve(env_for(tmp_path, emu), stdio=True) as client:
        result = await client.call_tool(
            "generate_image",
            {
                "model": "wan2.2-t2i-flash",
                "prompt": "a flower shop",
                "n": 2,
                "negative_prompt": "low quality",
            },
        )
        assert not result.is_error, text_of(result)
        meta = metadata(result)
        assert meta["calls"] == 1 and len(meta["images"]) == 2
        for image in meta["images"]:
            assert (image["width"], image["height"]) == (1024, 1024)
            assert image["revised_prompt"] == "A detailed, well-lit picture of a flower shop"
            assert sidecar_of(image)["revised_prompt"] == image["revised_prompt"]
        assert meta["usage"] == [{"image_count": 2}]
    (submit,) = sent(emu, "image-synthesis")
    assert "x-dashscope-async" in submit["headers"]
    assert submit["json"] == {
        "model": "wan2.2-t2i-flash",
        "input": {"prompt": "a flower shop", "negative_prompt": "low quality"},
        "parameters": {"n": 2, "size": "1024*1024"},
    }
    polls = sent(emu, "tasks")  # by default: submit PENDING, then RUNNING, then SUCCEEDED
    assert len(polls) == 2 and all(p["method"] == "GET" for p in polls)


async def test_a_task_that_loses_some_results_keeps_the_others_and_says_so(tmp_path, emu):
    emu.fault("dashscope", "tasks", "partial", keep=1)  # the finishing poll reports one per-result failure
    tasks(emu, default_polls=1)
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "wan2.2-t2i-flash", "prompt": "two cats", "n": 2}
        )
        assert not result.is_error, text_of(result)
        meta = metadata(result)
        assert len(meta["images"]) == 1
        assert any("1 of 2 images" in w for w in meta["warnings"]), meta["warnings"]


# --- sizes at their edges ---------------------------------------------------------------------------

SIZE_EDGES = [
    ("qwen-image-plus", "4:3", (1472, 1104)),
    ("qwen-image-plus", "928x1664", (928, 1664)),
    ("wan2.6-t2i", "768x768", (768, 768)),  # the zh doc's minimum total
    ("wan2.6-t2i", "1440x1440", (1440, 1440)),
    ("wan2.6-t2i", "2048x512", (2048, 512)),  # 4:1 at 1 MP
    ("wan2.2-t2i-flash", "512x1440", (512, 1440)),
    ("wan2.2-t2i-flash", "1440x512", (1440, 512)),
]
SIZE_REFUSALS = [
    ("qwen-image-plus", "1024x1024", "one of 1664x928"),
    (
        "qwen-image-plus",
        "1472x1140",
        "one of 1664x928",
    ),  # the old spelling: the emulator takes it, we do not send it
    ("wan2.6-t2i", "767x767", "fewer than 589824 pixels"),
    ("wan2.6-t2i", "1441x1440", "more than 2073600 pixels"),
    ("wan2.6-t2i", "2052x512", "outside ratio 1:4..4:1"),
    ("wan2.2-t2i-flash", "511x1024", "narrower than 512"),
    ("wan2.2-t2i-flash", "1024x1441", "taller than 1440"),
]


async def test_sizes_at_the_edges_are_sent_as_w_star_h_and_beyond_them_refused_before_any_call(tmp_path, emu):
    tasks(emu, default_polls=1)
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        for model, size, (width, height) in SIZE_EDGES:
            result = await client.call_tool(
                "generate_image", {"model": model, "prompt": "edge", "size": size}
            )
            assert not result.is_error, (model, size, text_of(result))
            (image,) = metadata(result)["images"]
            assert (image["width"], image["height"]) == (width, height), (model, size)
        made = len(emu.requests("dashscope"))
        for model, size, fragment in SIZE_REFUSALS:
            result = await client.call_tool(
                "generate_image", {"model": model, "prompt": "edge", "size": size}
            )
            assert result.is_error and kind_of(result) == "invalid_argument", (model, size)
            assert fragment in text_of(result), (model, size, text_of(result))
        assert len(emu.requests("dashscope")) == made  # nothing refused reached the upstream
    submitted = [r["json"]["parameters"]["size"] for r in emu.requests("dashscope") if r["method"] == "POST"]
    assert submitted == [f"{w}*{h}" for _, _, (w, h) in SIZE_EDGES]


# --- editing ----------------------------------------------------------------------------------------


async def test_edit_plus_sends_local_references_as_data_urls_and_follows_the_last_ones_shape(tmp_path, emu):
    first = image_file(tmp_path / "dress.png", 600, 400)
    last = image_file(tmp_path / "girl.png", 512, 768)
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "edit_image",
            {
                "model": "qwen-image-edit-plus",
                "prompt": "put the dress on the girl",
                "images": [first, last],
                "n": 2,
            },
        )
        assert not result.is_error, text_of(result)
        meta = metadata(result)
        assert meta["calls"] == 1 and len(meta["images"]) == 2
        assert {(i["width"], i["height"]) for i in meta["images"]} == {
            (832, 1248)
        }  # ~1024², 2:3 like the last
    (call,) = sent(emu, "generation")
    content = call["json"]["input"]["messages"][0]["content"]
    assert [sorted(item) for item in content] == [["image"], ["image"], ["text"]]
    assert all(item["image"].startswith("data:image/png;base64,") for item in content[:2])
    assert call["json"]["parameters"] == {"n": 2}


async def test_edit_passes_a_url_reference_through_and_honours_an_explicit_size(tmp_path, emu):
    url = "https://example.com/cat.png"
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "edit_image", {"model": "qwen-image-edit", "prompt": "make it a watercolour", "images": [url]}
        )
        assert not result.is_error, text_of(result)
        (image,) = metadata(result)["images"]
        assert (image["width"], image["height"]) == (1024, 1024)
        sized = await client.call_tool(
            "edit_image",
            {"model": "qwen-image-edit-plus", "prompt": "wider", "images": [url], "size": "2048x512"},
        )
        assert not sized.is_error, text_of(sized)
        assert (metadata(sized)["images"][0]["width"], metadata(sized)["images"][0]["height"]) == (2048, 512)
        small = image_file(tmp_path / "small.png", 300, 300)
        refused = await client.call_tool(
            "edit_image", {"model": "qwen-image-edit", "prompt": "x", "images": [small]}
        )
        assert refused.is_error and kind_of(refused) == "invalid_argument" and "384" in text_of(refused)
    first, second = sent(emu, "generation")
    assert first["json"]["input"]["messages"][0]["content"][0] == {"image": url}
    assert "size" not in first["json"]["parameters"]
    assert second["json"]["parameters"]["size"] == "2048*512"


# --- failures ---------------------------------------------------------------------------------------

STATUS_FAULTS = [
    # (endpoint, fault params, expected kind, upstream message that must reach the agent)
    (
        "generation",
        {
            "status": 400,
            "code": "Arrearage",
            "message": "Access denied, please make sure your account is in good standing.",
        },
        "insufficient_balance",
        "account is in good standing",
    ),
    ("generation", {"status": 429}, "rate_limited", "Requests rate limit exceeded"),
    ("generation", {"status": 400}, "content_refused", "Input data may contain inappropriate content."),
    ("generation", {"status": 500}, "upstream_error", "An internal error has occured"),
    ("generation", {"status": 408}, "timeout", "Request timed out"),
    (
        "generation",
        {"status": 400, "code": "InvalidParameter", "message": "The parameter size is invalid."},
        "upstream_error",
        "The parameter size is invalid.",
    ),
    (
        "generation",
        {"status": 403, "code": "AccessDenied.Unpurchased", "message": "Access to model denied."},
        "auth_failed",
        "Access to model denied.",
    ),
    (
        "image-synthesis",
        {"status": 429, "code": "Throttling.AllocationQuota", "message": "Free quota exceeded."},
        "rate_limited",
        "Free quota exceeded.",
    ),
    (
        "tasks",
        {"status": 500, "code": "InternalError.Algo", "message": "algorithm failed"},
        "upstream_error",
        "algorithm failed",
    ),
]


async def test_each_error_status_maps_to_its_kind_with_the_upstreams_message(tmp_path, emu):
    tasks(emu, default_polls=1)
    async with serve(env_for(tmp_path, emu, IMAGEGATE_MAX_RETRIES="0"), **VirtualTime().hooks) as client:
        for endpoint, params, kind, message in STATUS_FAULTS:
            emu.fault("dashscope", endpoint, "status", **params)
            model = "qwen-image-plus" if endpoint == "generation" else "wan2.2-t2i-flash"
            result = await client.call_tool("generate_image", {"model": model, "prompt": "a fox"})
            assert result.is_error, (endpoint, params, text_of(result))
            assert kind_of(result) == kind and message in text_of(result), (endpoint, params, text_of(result))


async def test_bad_key_content_refusals_and_failed_tasks_in_one_session(tmp_path, emu):
    async with serve(env_for(tmp_path, emu, DASHSCOPE_API_KEY="wrong-key"), **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {"model": "qwen-image", "prompt": "a fox"})
        assert kind_of(result) == "auth_failed" and "Invalid API-key provided." in text_of(result)
    tasks(emu, default_polls=1)
    emu.fault("dashscope", "generation", "error_in_200", code="DataInspectionFailed", message=INSPECTION)
    tasks(emu, outcome="failed", polls=2)  # FAILED with DataInspectionFailed on the second poll
    tasks(emu, outcome="failed", code="InternalError.Algo", message="The algorithm ran into an error.")
    tasks(emu, outcome="canceled")
    tasks(emu, outcome="unknown")
    expected = [
        ("qwen-image", "content_refused", INSPECTION),
        ("wan2.2-t2i-flash", "content_refused", INSPECTION),
        ("wan2.2-t2i-flash", "upstream_error", "The algorithm ran into an error."),
        ("wan2.2-t2i-flash", "upstream_error", "ended as CANCELED"),
        ("wan2.2-t2i-flash", "upstream_error", "ended as UNKNOWN"),
    ]
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        for model, kind, fragment in expected:
            result = await client.call_tool("generate_image", {"model": model, "prompt": "a fox"})
            assert result.is_error and kind_of(result) == kind, (model, kind, text_of(result))
            assert fragment in text_of(result), text_of(result)
        after = await client.call_tool(
            "generate_image", {"model": "wan2.2-t2i-flash", "prompt": "fine again"}
        )
        assert not after.is_error, text_of(after)


async def test_a_task_that_never_finishes_times_out(tmp_path, emu):
    tasks(emu, outcome="never")
    async with serve(env_for(tmp_path, emu, IMAGEGATE_TIMEOUT="3"), **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {"model": "wan2.2-t2i-flash", "prompt": "forever"})
    assert result.is_error and kind_of(result) == "timeout", text_of(result)
    assert len(sent(emu, "tasks")) >= 2


async def test_the_key_never_reaches_a_result_or_a_sidecar(tmp_path, emu):
    emu.fault(
        "dashscope", "generation", "status", status=400, code="InvalidParameter", message=f"bad key {KEY}"
    )
    async with serve(env_for(tmp_path, emu, IMAGEGATE_MAX_RETRIES="0"), **VirtualTime().hooks) as client:
        failed = await client.call_tool("generate_image", {"model": "qwen-image", "prompt": "a fox"})
        made = await client.call_tool("generate_image", {"model": "qwen-image", "prompt": "a fox"})
    assert failed.is_error and not made.is_error
    for result in (failed, made):
        assert KEY not in text_of(result) and KEY not in json.dumps(result.meta or {})
    for sidecar in (tmp_path / "out").rglob("*.json"):
        assert KEY not in sidecar.read_text()


# --- the emulator is as strict as the reference -----------------------------------------------------


@pytest.fixture
def http(emu: EmulatorClient) -> Iterator[httpx2.Client]:
    base = emu.base_url("dashscope")
    headers = {"authorization": f"Bearer {KEY}"}
    with httpx2.Client(base_url=base, headers=headers, trust_env=False, verify=False, timeout=10) as client:
        yield client


def qwen_body(**parameters: Any) -> dict[str, Any]:
    content = [{"text": "a fox"}]
    return {
        "model": "qwen-image",
        "input": {"messages": [{"role": "user", "content": content}]},
        "parameters": parameters,
    }


ASYNC = {"X-DashScope-Async": "enable"}
REFUSALS = [
    (SYNC, qwen_body(), ASYNC, 403, "AccessDenied", "does not support asynchronous calls"),
    (
        T2I,
        {"model": "wan2.2-t2i-flash", "input": {"prompt": "x"}},
        {},
        403,
        "AccessDenied",
        "synchronous calls",
    ),
    (SYNC, qwen_body(size="1328x1328"), {}, 400, "InvalidParameter", "width*height"),
    (SYNC, qwen_body(size="1024*1024"), {}, 400, "InvalidParameter", "not supported"),
    (SYNC, qwen_body(n=2), {}, 400, "InvalidParameter", "from 1 to 1"),
    (SYNC, qwen_body(seed=-1), {}, 400, "InvalidParameter", "seed"),
    (
        SYNC,
        {"model": "wan2.2-t2i-flash", "input": {"messages": []}},
        {},
        400,
        "InvalidParameter",
        "url error",
    ),
    (SYNC, {"model": "qwen-image-9", "input": {}}, {}, 400, "InvalidParameter", "Model not exist."),
    (SYNC, {"input": {}}, {}, 400, "BadRequest.EmptyModel", "model"),
    (
        SYNC,
        {"model": "qwen-image-edit", "input": {"messages": [{"role": "user", "content": [{"text": "x"}]}]}},
        {},
        400,
        "InvalidParameter",
        "1 input image",
    ),
    (
        T2I,
        {"model": "wan2.2-t2i-flash", "input": {"prompt": "x"}, "parameters": {"n": 5}},
        ASYNC,
        400,
        "InvalidParameter",
        "from 1 to 4",
    ),
    (
        T2I,
        {"model": "wan2.2-t2i-flash", "input": {"prompt": "x"}, "parameters": {"size": "1500*1024"}},
        ASYNC,
        400,
        "InvalidParameter",
        "not supported",
    ),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "code", "fragment"), REFUSALS)
def test_emulator_refuses_what_dashscope_refuses(http, path, body, headers, status, code, fragment):
    response = http.post(path, json=body, headers=headers)
    assert response.status_code == status, response.text
    reply = response.json()
    assert reply["code"] == code and fragment in reply["message"] and reply["request_id"]


def test_emulator_accepts_the_old_qwen_size_spelling_and_defaults_to_16_9(http):
    old = http.post(SYNC, json=qwen_body(size="1472*1140")).json()
    assert old["usage"] == {"width": 1472, "height": 1140, "image_count": 1}
    default = http.post(SYNC, json=qwen_body()).json()
    assert default["usage"] == {"width": 1664, "height": 928, "image_count": 1}


def test_emulator_wan_tasks_default_to_four_images_and_walk_through_their_statuses(http, emu):
    tasks(emu, default_polls=3)
    submit = http.post(
        T2I, json={"model": "wan2.2-t2i-flash", "input": {"prompt": "x"}}, headers=ASYNC
    ).json()
    assert submit["output"]["task_status"] == "PENDING"
    task = f"/tasks/{submit['output']['task_id']}"
    statuses = [http.get(task).json()["output"]["task_status"] for _ in range(4)]
    assert statuses == ["PENDING", "RUNNING", "SUCCEEDED", "SUCCEEDED"]
    final = http.get(task).json()
    assert len(final["output"]["results"]) == 4 and final["usage"] == {"image_count": 4}
    url = final["output"]["results"][0]["url"]
    with Image.open(io.BytesIO(httpx2.get(url, trust_env=False, verify=False).content)) as image:
        assert image.size == (1024, 1024)
    assert http.get("/tasks/no-such-task").json()["output"]["task_status"] == "UNKNOWN"


def test_emulator_task_control_is_forgotten_on_reset(http, emu):
    tasks(emu, outcome="never", count=2)
    emu.reset()
    tasks(emu, default_polls=1)
    submit = http.post(
        T2I, json={"model": "wan2.2-t2i-flash", "input": {"prompt": "x"}}, headers=ASYNC
    ).json()
    assert http.get(f"/tasks/{submit['output']['task_id']}").json()["output"]["task_status"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("model", "size", "endpoint", "wire_size"),
    [
        ("qwen-image-max", "4:3", "generation", "1472*1104"),
        ("wan2.5-t2i-preview", "1024x1536", "image-synthesis", "1024*1536"),
    ],
)
async def test_the_max_and_preview_models_run_on_their_own_endpoints(
    tmp_path, emu, model, size, endpoint, wire_size
):
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": model, "prompt": "a harbour", "size": size}
        )
        assert not result.is_error, text_of(result)
    (call,) = sent(emu, endpoint)
    assert call["json"]["model"] == model and call["json"]["parameters"]["size"] == wire_size


async def test_edit_max_takes_up_to_three_references_and_refuses_a_fourth(tmp_path, emu):
    refs = [image_file(tmp_path / f"ref{i}.png", 512, 512) for i in range(4)]
    async with serve(env_for(tmp_path, emu), **VirtualTime().hooks) as client:
        made = await client.call_tool(
            "edit_image", {"model": "qwen-image-edit-max", "prompt": "merge", "images": refs[:3]}
        )
        refused = await client.call_tool(
            "edit_image", {"model": "qwen-image-edit-max", "prompt": "merge", "images": refs}
        )
    assert not made.is_error, text_of(made)
    assert kind_of(refused) == "invalid_argument" and "images" in text_of(refused)
    assert len(sent(emu, "generation")) == 1
