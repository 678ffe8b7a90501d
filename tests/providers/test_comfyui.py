"""The ComfyUI adapter's pure parts: the shipped workflows filled in, the queue reply, the socket's events,
/history and /object_info read, and POST /prompt's validation errors classified, against the shapes of
ComfyUI's server.py and execution.py (tests/fixtures/comfyui/)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from imagegate.catalog import ResolvedSize, Route, load_catalog
from imagegate.catalog.spec import KnobRule, WireOptions
from imagegate.errors import NoImagesReturned, UpstreamError
from imagegate.local import _shipped_workflows
from imagegate.providers.base import Batch, InputImage
from imagegate.providers.comfyui import (
    DEFAULT_WORKFLOWS,
    _Run,
    build_request,
    classify_error,
    event_outcome,
    parse_checkpoints,
    parse_history,
    parse_queued,
    step_of,
    workflow_for,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "comfyui"
PROMPT_ID = "5b7a5b3c-0e4c-4c1a-9a47-3f1d1f1b6a01"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def route(default: str | None = "v1-5-pruned-emaonly.safetensors") -> Route:
    base = next(r for r in load_catalog().routes_for("comfyui") if r.provider == "comfyui")
    knobs = (
        {**base.knobs, "checkpoint": KnobRule(values=[default], default=default)} if default else base.knobs
    )
    return replace(base, wire=WireOptions(workflows=_shipped_workflows(DEFAULT_WORKFLOWS)), knobs=knobs)


def job(tool: str = "generate", **kw: Any) -> Batch:
    fields: dict[str, Any] = {"tool": tool, "route": route(), "prompt": "a red fox", "count": 1,
                              "size": ResolvedSize(), "knobs": {}}  # fmt: skip
    return Batch(**(fields | kw))


def image(name: str = "in") -> InputImage:
    return InputImage(name, "image/png", 64, 64, data=b"png")


def test_generate_fills_the_mapped_inputs_and_keeps_the_rest_of_the_workflow():
    request = build_request(
        job(count=3, size=ResolvedSize(832, 1216), knobs={"negative_prompt": "blur", "guidance_scale": 5.0}),
        workflow_for(job())[1], {}, "client-1", seed=99,
    )  # fmt: skip
    assert request.path == "prompt" and request.json is not None
    graph = request.json["prompt"]
    assert request.json["client_id"] == "client-1"
    assert graph["5"]["inputs"] == {"batch_size": 3, "height": 1216, "width": 832}
    assert graph["6"]["inputs"]["text"] == "a red fox" and graph["7"]["inputs"]["text"] == "blur"
    assert graph["3"]["inputs"]["seed"] == 99 and graph["3"]["inputs"]["cfg"] == 5.0
    assert (
        graph["3"]["inputs"]["steps"] == 20
        and graph["4"]["inputs"]["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    )


def test_no_size_leaves_the_workflows_own():
    request = build_request(job(), workflow_for(job())[1], {}, "c", seed=1)
    assert request.json is not None and request.json["prompt"]["5"]["inputs"]["width"] == 512


def test_a_mask_picks_the_inpaint_workflow_and_the_uploaded_names():
    edit = job("edit", images=(image(),), mask=image("mask"))
    role, workflow = workflow_for(edit)
    graph = build_request(edit, workflow, {"image": "a.png", "mask": "m.png"}, "c", 1).json["prompt"]  # type: ignore[index]
    assert (
        role == "inpaint"
        and graph["2"]["inputs"]["image"] == "a.png"
        and graph["3"]["inputs"]["image"] == "m.png"
    )
    assert workflow_for(job("edit", images=(image(),)))[0] == "edit"


def test_extra_sets_node_inputs_and_warns_about_a_node_that_is_not_there():
    request = build_request(job(extra={"3.steps": 8, "42.x": 1}), workflow_for(job())[1], {}, "c", 1)
    assert request.json is not None and request.json["prompt"]["3"]["inputs"]["steps"] == 8
    assert [w.feature for w in request.warnings] == ["extra.42.x"]


def test_a_validation_error_names_the_node_and_the_value():
    error = classify_error(400, fixture("prompt_invalid"), "comfyui")
    assert isinstance(error, UpstreamError) and error.status == 400
    assert "node 4 (CheckpointLoaderSimple)" in (error.upstream_message or "")
    assert "dreamshaper" in (error.upstream_message or "")
    with pytest.raises(UpstreamError):
        parse_queued(fixture("prompt_invalid"), "comfyui")
    assert parse_queued({"prompt_id": PROMPT_ID, "number": 3, "node_errors": {}}, "comfyui") == PROMPT_ID


@pytest.mark.parametrize(
    ("event", "done"),
    [
        ({"type": "executing", "data": {"node": "3", "prompt_id": PROMPT_ID}}, False),
        ({"type": "executing", "data": {"node": None, "prompt_id": PROMPT_ID}}, True),
        ({"type": "execution_success", "data": {"prompt_id": PROMPT_ID, "timestamp": 1}}, True),
        ({"type": "executing", "data": {"node": None, "prompt_id": "someone-else"}}, False),
        ({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}, False),
    ],
)
def test_the_socket_events_that_end_the_wait(event, done):
    assert event_outcome(event, _Run(PROMPT_ID)) is done


def test_failure_events_raise_with_the_nodes_words_and_start_is_noted():
    run = _Run(PROMPT_ID)
    event_outcome({"type": "execution_start", "data": {"prompt_id": PROMPT_ID}}, run)
    assert run.started
    with pytest.raises(UpstreamError, match="KSampler") as caught:
        data = {"prompt_id": PROMPT_ID, "node_id": "3", "node_type": "KSampler"}
        data |= {"exception_type": "torch.OutOfMemoryError", "exception_message": "CUDA out of memory."}
        event_outcome({"type": "execution_error", "data": data}, run)
    assert "out of memory" in (caught.value.upstream_message or "")
    with pytest.raises(UpstreamError, match="interrupted"):
        event_outcome({"type": "execution_interrupted", "data": {"prompt_id": PROMPT_ID}}, run)


def test_progress_is_said_once_per_step():
    run = _Run(PROMPT_ID)
    event = {"type": "progress", "data": {"value": 5, "max": 20, "prompt_id": PROMPT_ID, "node": "3"}}
    assert step_of(event, run) == "step 5/20" and step_of(event, run) is None


def test_history_gives_the_saved_images_not_the_previews():
    reply = parse_history(fixture("history_success"), PROMPT_ID, "comfyui")
    assert [a.url for a in reply.artifacts] == [
        "view?filename=ComfyUI_00001_.png&subfolder=&type=output",
        "view?filename=ComfyUI_00002_.png&subfolder=&type=output",
    ]
    assert reply.request_id == PROMPT_ID and {a.mime for a in reply.artifacts} == {"image/png"}


def test_history_of_a_failed_prompt_and_of_one_without_images():
    with pytest.raises(UpstreamError) as caught:
        parse_history(fixture("history_error"), PROMPT_ID, "comfyui")
    assert caught.value.upstream_message == "CUDA out of memory."
    empty = {PROMPT_ID: {"outputs": {}, "status": {"status_str": "success", "completed": True}}}
    with pytest.raises(NoImagesReturned):
        parse_history(empty, PROMPT_ID, "comfyui")


def test_checkpoints_in_both_object_info_shapes():
    assert parse_checkpoints(fixture("object_info_list")) == [
        "v1-5-pruned-emaonly.safetensors",
        "sd_xl_base_1.0.safetensors",
    ]
    assert parse_checkpoints(fixture("object_info_combo")) == ["flux1-dev-fp8.safetensors"]
    assert parse_checkpoints({}) == []
