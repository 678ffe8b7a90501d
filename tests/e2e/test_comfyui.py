"""ComfyUI end to end: the real server (in memory) against the emulator's ComfyUI over loopback HTTP and
a real WebSocket. Checkpoints found at start-up become the `checkpoint` knob; a workflow is queued with
the socket's client id, its steps reach the agent as progress, its images come from /history and /view;
inputs are uploaded; a cancelled call takes its prompt back; failures name the node and the reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from tests.support import base_env, image_file, kind_of, meta_of, serve, text_of, write_image
from tools.emulator import EmulatorClient
from tools.emulator.comfyui import CHECKPOINTS

pytestmark = pytest.mark.anyio


def env_for(tmp_path: Path, emulator: EmulatorClient, **extra: str) -> dict[str, str]:
    return base_env(tmp_path, COMFYUI_URL=emulator.base_url("comfyui"), **extra)


def calls(emulator: EmulatorClient, endpoint: str) -> list[dict[str, Any]]:
    return [r for r in emulator.requests("comfyui") if r["endpoint"] == endpoint]


def queued_graph(emulator: EmulatorClient) -> dict[str, Any]:
    (prompt,) = calls(emulator, "prompt")
    return dict(prompt["json"]["prompt"])


def mask_file(tmp_path: Path, size: tuple[int, int] = (64, 64)) -> Path:
    from PIL import Image

    mask = Image.new("RGBA", size, (0, 0, 0, 255))
    mask.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1]))  # left half transparent: repaint it
    path = tmp_path / "mask.png"
    mask.save(path)
    return path


async def test_a_named_server_offers_its_checkpoints_and_generates_over_the_socket(tmp_path, emu):
    steps: list[str] = []

    async def record(progress: float, total: float | None, message: str | None) -> None:
        steps.append(message or "")

    async with serve(env_for(tmp_path, emu)) as client:
        listing = text_of(await client.call_tool("list_models", {"provider": "comfyui"}))
        assert all(name in listing for name in CHECKPOINTS), listing
        result = await client.call_tool(
            "generate_image",
            {"model": "comfyui", "prompt": "a lighthouse", "size": "768x512", "n": 2, "seed": 7,
             "negative_prompt": "blurry", "checkpoint": CHECKPOINTS[1]},
            progress_callback=record,
        )  # fmt: skip
    meta = meta_of(result)
    assert [(i["width"], i["height"]) for i in meta["images"]] == [(768, 512)] * 2
    graph = queued_graph(emu)
    assert graph["6"]["inputs"]["text"] == "a lighthouse" and graph["7"]["inputs"]["text"] == "blurry"
    assert graph["5"]["inputs"] == {"batch_size": 2, "height": 512, "width": 768}
    assert graph["3"]["inputs"]["seed"] == 7 and graph["4"]["inputs"]["ckpt_name"] == CHECKPOINTS[1]
    (socket,) = calls(emu, "ws")
    assert calls(emu, "prompt")[0]["json"]["client_id"] == socket["client_id"]
    assert "comfyui: step 1/20" in steps and "comfyui: step 20/20" in steps
    assert len(calls(emu, "view")) == 2


async def test_without_a_checkpoint_the_servers_first_is_used(tmp_path, emu):
    async with serve(env_for(tmp_path, emu)) as client:
        meta_of(await client.call_tool("generate_image", {"model": "comfyui", "prompt": "a fox"}))
    assert queued_graph(emu)["4"]["inputs"]["ckpt_name"] == CHECKPOINTS[0]


async def test_a_checkpoint_the_server_lacks_is_refused_before_anything_is_queued(tmp_path, emu):
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool(
            "generate_image", {"model": "comfyui", "prompt": "a fox", "checkpoint": "dreamshaper.safetensors"}
        )
    assert kind_of(result) == "invalid_argument"
    assert "checkpoint" in text_of(result) and CHECKPOINTS[0] in text_of(result)
    assert not calls(emu, "prompt")


async def test_an_edit_with_a_mask_uploads_both_and_runs_the_inpaint_workflow(tmp_path, emu):
    image = write_image(tmp_path / "photo.png", (64, 64))
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool(
            "edit_image",
            {
                "model": "comfyui",
                "prompt": "a red door",
                "images": [str(image)],
                "mask": str(mask_file(tmp_path)),
            },
        )
    assert [(i["width"], i["height"]) for i in meta_of(result)["images"]] == [(64, 64)]
    uploads = calls(emu, "upload")
    files = [f for u in uploads for f in u["form"] if f["name"] == "image"]
    assert len(uploads) == 2 and len(files) == 2 and {f["format"] for f in files} == {"PNG"}
    graph = queued_graph(emu)
    assert graph["3"]["class_type"] == "LoadImageMask" and graph["3"]["inputs"]["channel"] == "alpha"
    names = {f["filename"] for f in files}
    assert {graph["2"]["inputs"]["image"], graph["3"]["inputs"]["image"]} == names


async def test_an_edit_without_a_mask_runs_image_to_image(tmp_path, emu):
    image = image_file(tmp_path / "in.png", 96, 64)
    async with serve(env_for(tmp_path, emu)) as client:
        meta_of(
            await client.call_tool(
                "edit_image", {"model": "comfyui", "prompt": "winter", "images": [str(image)]}
            )
        )
    graph = queued_graph(emu)
    assert graph["3"]["class_type"] == "VAEEncode" and len(calls(emu, "upload")) == 1


async def test_a_failing_node_is_an_error_naming_it_and_the_reason(tmp_path, emu):
    emu.control("comfyui", "run", outcome="error")
    async with serve(env_for(tmp_path, emu)) as client:
        result = await client.call_tool("generate_image", {"model": "comfyui", "prompt": "a fox"})
    assert kind_of(result) == "upstream_error"
    assert "KSampler" in text_of(result) and "out of memory" in text_of(result)


async def test_extra_sets_any_node_input_and_a_wrong_one_is_refused_by_the_server(tmp_path, emu):
    async with serve(env_for(tmp_path, emu)) as client:
        ok = await client.call_tool(
            "generate_image", {"model": "comfyui", "prompt": "a fox", "extra": {"3.steps": 4, "99.x": 1}}
        )
        assert "extra.99.x" in text_of(ok)
        assert queued_graph(emu)["3"]["inputs"]["steps"] == 4
        emu.reset()
        bad = await client.call_tool(
            "generate_image", {"model": "comfyui", "prompt": "a fox", "extra": {"3.steps": 0}}
        )
    assert kind_of(bad) == "upstream_error" and "smaller than min" in text_of(bad)


async def test_a_cancelled_call_takes_its_prompt_back(tmp_path, emu):
    emu.control("comfyui", "run", outcome="hold")
    async with serve(env_for(tmp_path, emu)) as client:
        with anyio.move_on_after(0.6):
            await client.call_tool("generate_image", {"model": "comfyui", "prompt": "never"})
            pytest.fail("a held prompt should not finish")
        with anyio.fail_after(5):
            while not calls(emu, "interrupt"):
                await anyio.sleep(0.05)
    (interrupt,) = calls(emu, "interrupt")
    prompt_id = json.loads(json.dumps(interrupt["json"]))["prompt_id"]
    assert calls(emu, "queue")[0]["json"] == {"delete": [prompt_id]}


async def test_with_probing_off_and_no_url_the_server_is_not_configured(tmp_path, emu):
    async with serve(base_env(tmp_path, IMAGEGATE_NO_LOCAL_PROBE="1")) as client:
        result = await client.call_tool("generate_image", {"model": "comfyui", "prompt": "a fox"})
        models = text_of(await client.call_tool("list_models", {}))
    assert kind_of(result) == "not_configured" and "COMFYUI_URL" in text_of(result)
    assert "placeholder" in models
    assert not emu.requests("comfyui")


async def test_doctor_finds_the_server_and_names_its_checkpoints(tmp_path, emu):
    from tests.support.server import process_env

    from imagegate.doctor import diagnose
    from imagegate.service import build_service

    env = env_for(tmp_path, emu)
    with process_env(env):
        service = build_service(env)
    report = await diagnose(service.settings, service.catalog, timeout=5)
    lines = {line.split()[0]: line for line in report.text().splitlines() if line.strip()}
    assert "2 checkpoints" in lines["comfyui"] and CHECKPOINTS[0] in lines["comfyui"], lines["comfyui"]
    assert "SDWEBUI_URL, or start it at http://127.0.0.1:7860" in lines["sdwebui"]


# ---- a user's own workflow, registered in the config file


USER_GRAPH = {  # an API-format export with its own node ids, two output nodes, and no negative prompt
    "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "mine.safetensors"}},
    "latent": {"class_type": "EmptyLatentImage", "inputs": {"batch_size": 1, "height": 1024, "width": 1024}},
    "pos": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": "placeholder"}},
    "neg": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["ckpt", 1], "text": "lowres"}},
    "sampler": {"class_type": "KSampler", "inputs": {
        "cfg": 4.5, "denoise": 1, "latent_image": ["latent", 0], "model": ["ckpt", 0], "negative": ["neg", 0],
        "positive": ["pos", 0], "sampler_name": "euler", "scheduler": "normal", "seed": 1, "steps": 12}},
    "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sampler", 0], "vae": ["ckpt", 2]}},
    "peek": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    "save": {"class_type": "SaveImage", "inputs": {"filename_prefix": "mine", "images": ["decode", 0]}},
}  # fmt: skip
USER_MAPPING = """\
[providers.comfyui.workflows.generate]
file = "{file}"
prompt = "pos.text"
width = "latent.width"
height = "latent.height"
batch_size = "latent.batch_size"
seed = "sampler.seed"
checkpoint = "ckpt.ckpt_name"
output = "save"
"""


def user_config(tmp_path: Path, mapping: str = USER_MAPPING) -> Path:
    workflow = tmp_path / "my_flow_api.json"
    workflow.write_text(json.dumps(USER_GRAPH))
    config = tmp_path / "imagegate.toml"
    config.write_text(mapping.format(file=workflow))
    return config


async def test_a_users_workflow_from_the_config_file_gets_prompt_size_seed_and_batch(tmp_path, emu):
    config = user_config(tmp_path)
    async with serve(env_for(tmp_path, emu, IMAGEGATE_CONFIG=str(config))) as client:
        result = await client.call_tool(
            "generate_image",
            {"model": "comfyui", "prompt": "a lighthouse", "size": "768x512", "n": 2, "seed": 42,
             "checkpoint": CHECKPOINTS[1]},
        )  # fmt: skip

    meta = meta_of(result)
    assert [(i["width"], i["height"]) for i in meta["images"]] == [(768, 512)] * 2  # `save`'s, not `peek`'s
    graph = queued_graph(emu)
    assert set(graph) == set(USER_GRAPH)  # the user's graph, not the shipped txt2img
    assert graph["pos"]["inputs"]["text"] == "a lighthouse"
    assert graph["latent"]["inputs"] == {"batch_size": 2, "height": 512, "width": 768}
    assert graph["sampler"]["inputs"]["seed"] == 42 and graph["ckpt"]["inputs"]["ckpt_name"] == CHECKPOINTS[1]
    assert (
        graph["neg"]["inputs"]["text"] == "lowres" and graph["sampler"]["inputs"]["steps"] == 12
    )  # untouched


async def test_a_mapping_naming_a_node_the_file_lacks_fails_at_start_up_naming_file_role_and_node(
    tmp_path, emu
):
    from tests.support.server import process_env

    from imagegate.errors import ConfigError
    from imagegate.service import build_service

    config = user_config(tmp_path, USER_MAPPING.replace('seed = "sampler.seed"', 'seed = "ksampler.seed"'))
    env = env_for(tmp_path, emu, IMAGEGATE_CONFIG=str(config))
    with process_env(env), pytest.raises(ConfigError) as raised:
        build_service(env)

    message = raised.value.message
    assert str(tmp_path / "my_flow_api.json") in message
    assert "workflows.generate.seed" in message and "'ksampler.seed'" in message
    assert not calls(emu, "prompt")
