"""BFL end to end: the real server over stdio against the emulator's BFL protocol.

Submit, poll the returned polling_url, download the sample from another origin without the key;
editing with references; the size rules at their edges; each documented failure mapped to its
error kind with BFL's own message; usage carried into the result and the sidecar. The last part
drives the emulator directly to show it checks requests as BFL documents.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import pytest
from PIL import Image
from tests.support import (
    TEST_KEY_PREFIX,
    VirtualTime,
    image_file,
    kind_of,
    meta_of,
    provider_env,
    serve,
    text_of,
)
from tools.emulator import EmulatorClient

pytestmark = pytest.mark.anyio

KEY = f"{TEST_KEY_PREFIX}bfl"


def env_for(tmp_path: Path, emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    # The emulator delivers samples from "localhost", a host other than the API's 127.0.0.1, standing in
    # for BFL's public delivery CDN; as a loopback address it is fetched only with private URLs allowed.
    extra.setdefault("IMAGEGATE_ALLOW_PRIVATE_URLS", "true")
    return provider_env(tmp_path, emulator, "bfl", KEY, **extra)


def control_tasks(emulator: EmulatorClient, **body: Any) -> Any:
    """The emulator's BFL task control (pending polls, queued outcomes)."""
    return emulator.control("bfl", "tasks", **body)


def submits(emulator: EmulatorClient) -> list[dict[str, Any]]:
    return [r for r in emulator.requests("bfl") if r["endpoint"] not in ("get_result", "delivery")]


# ---- generation, polling and the key


@pytest.mark.slow
async def test_polls_the_returned_url_with_the_key_and_downloads_the_sample_without_it(tmp_path, emulator):
    emulator.reset()
    control_tasks(emulator, pending_polls=2)
    async with serve(env_for(tmp_path, emulator), stdio=True) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-2-pro", "prompt": "a red fox", "size": "1024x768"}
        )

    meta = meta_of(result)
    (image,) = meta["images"]
    assert (image["width"], image["height"], image["mime_type"]) == (1024, 768, "image/jpeg")
    assert image["seed"] is not None and image["revised_prompt"].startswith("a red fox, ")
    assert meta["usage"] == [{"cost": 3.0, "input_mp": 0.0, "output_mp": 0.79}]
    sidecar = json.loads(Path(image["path"]).with_suffix(".json").read_text())
    assert [sidecar["usage"]] == meta["usage"] and sidecar["seed"] == image["seed"]

    log = emulator.requests("bfl")
    assert [r["endpoint"] for r in log] == [
        "flux-2-pro",
        "get_result",
        "get_result",
        "get_result",
        "delivery",
    ]
    assert log[0]["json"] == {"prompt": "a red fox", "width": 1024, "height": 768}
    api_host = urlsplit(emulator.base_url("bfl")).netloc
    polls = [r for r in log if r["endpoint"] == "get_result"]
    assert all("x-key" in r["headers"] and r["auth_ok"] for r in polls)  # same origin: key sent
    (delivery,) = [r for r in log if r["endpoint"] == "delivery"]
    assert delivery["host"] != api_host and delivery["host"].startswith("localhost:")  # a foreign host
    assert "x-key" not in delivery["headers"] and "authorization" not in delivery["headers"]
    assert emulator.files()["downloads"] == 1
    for text in (text_of(result), json.dumps(sidecar)):
        assert KEY not in text


async def test_n_images_are_one_task_each_with_usage_per_task(tmp_path, emulator):
    emulator.reset()
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        result = await client.call_tool(
            "generate_image", {"model": "flux-kontext-pro", "prompt": "a lighthouse", "n": 3, "size": "1:1"}
        )

    meta = meta_of(result)
    assert meta["calls"] == 3 and len(meta["images"]) == 3
    assert {(i["width"], i["height"], i["mime_type"]) for i in meta["images"]} == {(1024, 1024, "image/png")}
    assert meta["usage"] == [{"cost": 4.0, "input_mp": 0.0, "output_mp": 1.05}] * 3
    assert [r["json"]["aspect_ratio"] for r in submits(emulator)] == ["1:1"] * 3


async def test_knobs_reach_the_wire_under_bfl_names(tmp_path, emulator):
    emulator.reset()
    args = {
        "model": "flux-2-flex",
        "prompt": "a glass teapot",
        "size": "512x512",
        "seed": 7,
        "safety_tolerance": 5,
        "output_format": "png",
        "guidance_scale": 3.5,
        "prompt_extend": False,
        "extra": {"steps": 20},
    }
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", args)

    (image,) = meta_of(result)["images"]
    assert (image["mime_type"], image["seed"], image.get("revised_prompt")) == ("image/png", 7, None)
    (submit,) = submits(emulator)
    assert submit["json"] == {
        "prompt": "a glass teapot",
        "width": 512,
        "height": 512,
        "seed": 7,
        "safety_tolerance": 5,
        "output_format": "png",
        "guidance": 3.5,
        "prompt_upsampling": False,
        "steps": 20,
    }


# ---- editing with references


async def test_edit_sends_references_as_numbered_fields_and_follows_the_first_input(tmp_path, emulator):
    emulator.reset()
    first, second = (
        Path(image_file(tmp_path / "a.png", 512, 384)),
        Path(image_file(tmp_path / "b.png", 256, 256)),
    )
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        edited = await client.call_tool(
            "edit_image",
            {"model": "flux-2-pro", "prompt": "put them together", "images": [str(first), str(second)]},
        )
        by_url = await client.call_tool(
            "edit_image",
            {
                "model": "flux-kontext-pro",
                "prompt": "make it night",
                "images": ["https://example.com/ref.png"],
                "size": "7:3",
            },
        )

    (image,) = meta_of(edited)["images"]
    assert (image["width"], image["height"]) == (512, 384)  # no size: FLUX.2 matches the input
    assert meta_of(edited)["usage"][0]["input_mp"] == 0.26
    (url_image,) = meta_of(by_url)["images"]
    assert (url_image["width"], url_image["height"]) == (1568, 672)  # ~1 MP at 7:3, multiples of 32
    pro, kontext = (r["json"] for r in submits(emulator))
    assert base64.b64decode(pro["input_image"]) == first.read_bytes()  # raw base64, no data: prefix
    assert base64.b64decode(pro["input_image_2"]) == second.read_bytes()
    assert "width" not in pro and "input_image_3" not in pro
    assert kontext == {
        "prompt": "make it night",
        "input_image": "https://example.com/ref.png",
        "aspect_ratio": "7:3",
    }


# ---- size rules at their edges

ACCEPTED = [
    ("flux-2-pro", "2048x2048", {"width": 2048, "height": 2048}, (2048, 2048)),  # exactly 4 MP
    ("flux-2-pro", "64x64", {"width": 64, "height": 64}, (64, 64)),
    ("flux-2-pro", None, {}, (1024, 1024)),
    ("flux-1.1-pro", None, {"width": 1024, "height": 768}, (1024, 768)),  # the catalog's default
    ("flux-1.1-pro", "1440x256", {"width": 1440, "height": 256}, (1440, 256)),
    ("flux-kontext-max", "3:7", {"aspect_ratio": "3:7"}, (672, 1568)),
    ("flux-1.1-pro-ultra", None, {"aspect_ratio": "16:9"}, (2720, 1536)),
    ("flux-1.1-pro-ultra", "21:9", {"aspect_ratio": "21:9"}, (3136, 1344)),
]
REFUSED = [
    ("flux-2-pro", "2064x2048", "more than 4194304 pixels"),
    ("flux-2-pro", "1000x1000", "not a multiple of 16"),
    ("flux-2-pro", "48x64", "narrower than 64"),
    ("flux-2-pro", "16:9", "flux-2-pro via bfl"),
    ("flux-1.1-pro", "1472x256", "wider than 1440"),
    ("flux-1.1-pro", "1024x240", "lower than 256"),
    ("flux-1.1-pro", "1000x768", "not a multiple of 32"),
    ("flux-kontext-pro", "8:3", "ratios 3:7..7:3"),
    ("flux-kontext-pro", "1024x1024", "takes only aspect ratios"),
    ("flux-1.1-pro-ultra", "1:3", "ratios 9:21..21:9"),
]


async def test_sizes_at_the_edges_are_sent_in_the_routes_wire_form_or_refused_before_sending(
    tmp_path, emulator
):
    emulator.reset()
    control_tasks(emulator, pending_polls=0)
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        for model, size, fields, pixels in ACCEPTED:
            args = {"model": model, "prompt": "a kite"} | ({"size": size} if size else {})
            (image,) = meta_of(await client.call_tool("generate_image", args))["images"]
            body = submits(emulator)[-1]["json"]
            assert {k: v for k, v in body.items() if k != "prompt"} == fields, (model, size)
            assert (image["width"], image["height"]) == pixels, (model, size)
        sent = len(emulator.requests("bfl"))
        for model, size, fragment in REFUSED:
            result = await client.call_tool(
                "generate_image", {"model": model, "prompt": "a kite", "size": size}
            )
            kind, text = kind_of(result), text_of(result)
            assert kind == "invalid_argument" and fragment in text, (model, size, text)
        assert len(emulator.requests("bfl")) == sent  # nothing refused reached BFL


# ---- failures

FAILURES = [
    ({"fault": ("flux-2-pro", "status", {"status": 402})}, "insufficient_balance", "Insufficient credits"),
    ({"fault": ("flux-2-pro", "status", {"status": 403})}, "auth_failed", "Not authenticated"),
    ({"fault": ("flux-2-pro", "status", {"status": 422})}, "upstream_error", "prompt: Field required"),
    (
        {"fault": ("flux-2-pro", "status", {"status": 429, "count": 2, "retry_after": 0})},
        "rate_limited",
        "24",
    ),
    ({"fault": ("flux-2-pro", "status", {"status": 500})}, "upstream_error", "Internal Server Error"),
    (
        {"fault": ("flux-2-pro", "status", {"status": 503, "count": 2})},
        "upstream_error",
        "temporarily unavailable",
    ),
    ({"fault": ("flux-2-pro", "malformed_json", {})}, "upstream_error", "malformed JSON"),
    ({"fault": ("get_result", "status", {"status": 403})}, "auth_failed", "Not authenticated"),
    (
        {"fault": ("get_result", "error_in_200", {"message": "Task store offline"})},
        "upstream_error",
        "Task store offline",
    ),
    ({"outcome": "Request Moderated"}, "content_refused", "Moderation Reasons: Emulated input moderation"),
    ({"outcome": "Content Moderated"}, "content_refused", "flagged the generated image"),
    ({"outcome": "Error"}, "upstream_error", "Emulated generation failure"),
    ({"outcome": "Task not found"}, "upstream_error", "Task not found"),
    ({"fault": ("flux-2-pro", "expired_url", {})}, "upstream_error", "expired"),
    ({"keys": ["another-key"]}, "auth_failed", "Invalid API key"),
]


async def test_each_documented_failure_maps_to_its_kind_with_bfls_message(tmp_path, emulator):
    env = env_for(tmp_path, emulator, IMAGEGATE_MAX_RETRIES="1")
    async with serve(env, **VirtualTime().hooks) as client:
        for setup, kind, fragment in FAILURES:
            emulator.reset()
            control_tasks(emulator, pending_polls=0)
            if "fault" in setup:
                endpoint, fault, params = setup["fault"]
                emulator.fault("bfl", endpoint, fault, **params)
            if "outcome" in setup:
                control_tasks(emulator, outcome=setup["outcome"])
            if "keys" in setup:
                emulator.configure("bfl", keys=setup["keys"])
            result = await client.call_tool("generate_image", {"model": "flux-2-pro", "prompt": "a red fox"})
            got, text = kind_of(result), text_of(result)
            assert (got, fragment in text) == (kind, True), (setup, text)
            assert KEY not in text


async def test_a_task_that_never_finishes_times_out(tmp_path, emulator):
    emulator.reset()
    control_tasks(emulator, pending_polls=1000)
    async with serve(env_for(tmp_path, emulator, IMAGEGATE_TIMEOUT="2"), **VirtualTime().hooks) as client:
        result = await client.call_tool("generate_image", {"model": "flux-2-pro", "prompt": "a slow fox"})

    kind, text = kind_of(result), text_of(result)
    assert kind == "timeout" and "did not finish the task within 2 s" in text


# ---- the emulator checks requests as BFL documents them


@pytest.fixture
def bfl(emulator: EmulatorClient) -> Iterator[httpx2.Client]:
    emulator.reset()
    base = emulator.base_url("bfl")
    with httpx2.Client(
        base_url=base, headers={"x-key": KEY}, trust_env=False, verify=False, timeout=10
    ) as http:
        yield http


def b64_png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


RULE_CASES = [
    ("flux-2-pro", {"width": 1000, "height": 1024}, "width", "multiple of 16"),
    ("flux-2-pro", {"width": 32, "height": 1024}, "width", "greater than or equal to 64"),
    ("flux-2-pro", {"safety_tolerance": 6}, "safety_tolerance", "less than or equal to 5"),
    ("flux-2-pro", {"output_format": "webp"}, "output_format", "'jpeg' or 'png'"),
    ("flux-2-pro", {"guidance": 3}, "guidance", "Extra inputs"),
    (
        "flux-2-pro",
        {f"input_image_{i}": "https://x.example/a.png" for i in range(2, 10)},
        "input_image_9",
        "Extra",
    ),
    ("flux-2-flex", {"guidance": 11}, "guidance", "between 1.5 and 10"),
    ("flux-2-flex", {"steps": 51}, "steps", "less than or equal to 50"),
    ("flux-2-klein-4b", {"input_image_5": "https://x.example/a.png"}, "input_image_5", "Extra"),
    ("flux-kontext-pro", {"safety_tolerance": 7}, "safety_tolerance", "less than or equal to 6"),
    ("flux-kontext-pro", {"aspect_ratio": "22:9"}, "aspect_ratio", "between 21:9 and 9:21"),
    ("flux-kontext-pro", {"width": 1024}, "width", "Extra"),
    ("flux-kontext-pro", {"input_image": "bm90IGFuIGltYWdl"}, "input_image", "could not decode"),
    ("flux-pro-1.1", {"width": 1472}, "width", "less than or equal to 1440"),
    ("flux-pro-1.1", {"height": 784}, "height", "multiple of 32"),
    ("flux-pro-1.1-ultra", {"image_prompt_strength": 2}, "image_prompt_strength", "between 0 and 1"),
]


@pytest.mark.parametrize(("model", "fields", "param", "fragment"), RULE_CASES)
def test_the_emulator_refuses_what_bfl_documents_as_invalid(bfl, model, fields, param, fragment):
    reply = bfl.post(f"/{model}", json={"prompt": "a fox", **fields})

    assert reply.status_code == 422, reply.text
    (item,) = reply.json()["detail"]
    assert item["loc"] == ["body", param] and fragment in item["msg"]


def test_the_emulator_sizes_follow_the_input_resize_past_4_mp_and_snap_ratios(bfl, emulator):
    control_tasks(emulator, pending_polls=0)

    def output_of(model: str, **fields: Any) -> tuple[int, int]:
        submitted = bfl.post(f"/{model}", json={"prompt": "a fox", **fields})
        assert submitted.status_code == 200, submitted.text
        sample = bfl.get(submitted.json()["polling_url"]).json()["result"]["sample"]
        with Image.open(io.BytesIO(httpx2.get(sample, trust_env=False, verify=False).content)) as image:
            return image.size

    assert output_of("flux-2-pro", input_image=b64_png(640, 480)) == (640, 480)
    assert output_of("flux-2-pro", input_image=f"data:image/png;base64,{b64_png(320, 160)}") == (320, 160)
    assert output_of("flux-2-pro", width=4096, height=2048) == (2896, 1440)  # resized to ≤ 4 MP
    assert output_of("flux-kontext-pro", input_image=b64_png(600, 300)) == (1440, 736)  # the input's 2:1
    assert output_of("flux-pro-1.1") == (1024, 768)


def test_the_emulator_requires_the_key_for_polling_and_forgets_unknown_tasks(bfl, emulator):
    submitted = bfl.post("/flux-2-pro", json={"prompt": "a fox"}).json()
    assert set(submitted) == {"id", "polling_url", "cost", "input_mp", "output_mp"}

    anonymous = httpx2.get(submitted["polling_url"], trust_env=False, verify=False)
    assert (anonymous.status_code, anonymous.json()) == (403, {"detail": "Not authenticated"})
    assert bfl.get(submitted["polling_url"]).json()["status"] == "Pending"
    assert bfl.get("/get_result", params={"id": "nope"}).json() == {
        "id": "nope",
        "status": "Task not found",
        "result": None,
    }
    assert bfl.get("/get_result").json()["detail"][0]["loc"] == ["query", "id"]
    assert bfl.get("/credits").json() == {"credits": 1000.0}


def test_the_emulator_sample_url_expires_with_the_expired_url_fault(bfl, emulator):
    control_tasks(emulator, pending_polls=0)
    emulator.fault("bfl", "flux-2-pro", "expired_url")
    submitted = bfl.post("/flux-2-pro", json={"prompt": "a fox"}).json()
    sample = bfl.get(submitted["polling_url"]).json()["result"]["sample"]

    assert httpx2.get(sample, trust_env=False, verify=False).status_code == 403
    assert emulator.files()["not_found"] == 1


@pytest.mark.parametrize("model", ["flux-2-klein-4b", "flux-2-klein-9b"])
async def test_klein_generates_on_its_own_path_and_takes_at_most_four_references(tmp_path, emulator, model):
    emulator.reset()
    refs = [image_file(tmp_path / f"ref{i}.png", 256, 256) for i in range(5)]
    async with serve(env_for(tmp_path, emulator), **VirtualTime().hooks) as client:
        made = await client.call_tool(
            "generate_image", {"model": model, "prompt": "a kite", "size": "1024x768"}
        )
        edited = await client.call_tool(
            "edit_image", {"model": model, "prompt": "a kite", "images": refs[:4]}
        )
        refused = await client.call_tool("edit_image", {"model": model, "prompt": "a kite", "images": refs})
    (image,) = meta_of(made)["images"]
    assert (image["width"], image["height"]) == (1024, 768)
    assert len(meta_of(edited)["images"]) == 1
    assert kind_of(refused) == "invalid_argument"
    assert [r["endpoint"] for r in submits(emulator)] == [model, model]
    assert {f"input_image_{i}" for i in (2, 3, 4)} <= set(submits(emulator)[1]["json"])
