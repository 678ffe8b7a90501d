"""The SD WebUI adapter's pure parts: txt2img/img2img bodies, the reply with its `info` string, /progress,
/sd-models and the error shapes of modules/api/api.py and FastAPI (tests/fixtures/sdwebui/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from imagegate.catalog import ResolvedSize, load_catalog
from imagegate.errors import AuthFailed, NoImagesReturned, UpstreamError
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.sdwebui import (
    build_request,
    classify_error,
    parse_checkpoints,
    parse_reply,
    progress_text,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sdwebui"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def job(tool: str = "generate", **kw: Any) -> Batch:
    route = next(r for r in load_catalog().routes_for("sdwebui") if r.provider == "sdwebui")
    fields: dict[str, Any] = {"tool": tool, "route": route, "prompt": "maltese puppy", "count": 2,
                              "size": ResolvedSize(768, 512), "knobs": {}}  # fmt: skip
    return Batch(**(fields | kw))


def test_txt2img_body_with_checkpoint_override_and_knobs():
    request = build_request(
        job(knobs={"seed": 5, "guidance_scale": 6.0, "checkpoint": "a.safetensors [1]"}), "t1"
    )
    assert request.path == "sdapi/v1/txt2img" and request.json is not None
    body = request.json
    assert (body["width"], body["height"], body["batch_size"], body["n_iter"]) == (768, 512, 2, 1)
    assert (body["seed"], body["cfg_scale"], body["force_task_id"]) == (5, 6.0, "t1")
    assert body["override_settings"] == {"sd_model_checkpoint": "a.safetensors [1]"}


def test_img2img_body_takes_the_inputs_size_and_inverts_the_mask():
    picture = InputImage("in", "image/png", 96, 64, data=b"img")
    mask = InputImage("mask", "image/png", 96, 64, data=b"msk")
    body = build_request(job("edit", size=ResolvedSize(), images=(picture,), mask=mask), "t").json
    assert body is not None and (body["width"], body["height"]) == (96, 64)
    assert body["init_images"] == ["aW1n"] and body["mask"] == "bXNr" and body["inpainting_mask_invert"] == 1


def test_reply_images_carry_the_seeds_from_info():
    reply = parse_reply(fixture("txt2img_reply"), "sdwebui")
    assert [a.seed for a in reply.artifacts] == [3015493364, 3015493365]
    assert all(a.encoded for a in reply.artifacts)


def test_a_grid_before_the_images_is_skipped_and_no_images_is_an_error():
    body = fixture("txt2img_reply")
    info = json.loads(body["info"]) | {"index_of_first_image": 1}
    assert len(parse_reply(body | {"info": json.dumps(info)}, "sdwebui").artifacts) == 1
    with pytest.raises(NoImagesReturned):
        parse_reply(body | {"images": []}, "sdwebui")


def test_errors_in_the_apis_shapes():
    oom = classify_error(500, fixture("error_500"), "sdwebui")
    assert isinstance(oom, UpstreamError) and "out of memory" in (oom.upstream_message or "")
    bad = classify_error(422, fixture("error_422"), "sdwebui")
    assert "body.steps: value is not a valid integer" in (bad.upstream_message or "")
    login = classify_error(401, {"detail": "Incorrect username or password"}, "sdwebui")
    assert isinstance(login, AuthFailed) and "SDWEBUI_AUTH" in login.message
    assert "--api" in classify_error(404, {"detail": "Not Found"}, "sdwebui").message


def test_checkpoints_and_progress():
    assert parse_checkpoints(fixture("sd_models")) == ["v1-5-pruned-emaonly.safetensors [6ce0161689]"]
    assert progress_text(fixture("progress"), "imagegate-1") == "step 5/20"
    assert progress_text(fixture("progress"), "someone-else") is None
