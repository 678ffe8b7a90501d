"""Stable Diffusion WebUI (AUTOMATIC1111) and Forge protocol, as `modules/api/api.py` and `models.py`
define it (github.com/AUTOMATIC1111/stable-diffusion-webui; Forge keeps the same routes): POST
/sdapi/v1/txt2img or /sdapi/v1/img2img (`init_images` and `mask` as base64) answer
`{images: [base64…], parameters, info}` where `info` is a JSON string (`all_seeds`, `index_of_first_image`).
`override_settings.sd_model_checkpoint` picks the checkpoint for one call; GET /sdapi/v1/progress
(`progress`, `state.sampling_step`/`sampling_steps`, `current_task`) is polled while it runs; POST
/sdapi/v1/interrupt stops it when the call is cancelled. `--api-auth user:pass` guards every route with HTTP
Basic (`api.py` `auth`: 401 "Incorrect username or password"). Errors are `{error, detail, body, errors}`
(`api_middleware`), or FastAPI's `{detail: [{loc, msg}]}` for a malformed body (422).

Masks: `processing.create_binary_mask` turns an RGBA mask into its alpha channel (opaque = repaint), so
`inpainting_mask_invert: 1` makes the transparent pixels the ones repainted, as edit_image's masks mean.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import anyio

from ..errors import AuthFailed, ImagegateError, NoImagesReturned, UpstreamError, UpstreamTimeout
from .base import (
    AdapterReply,
    Artifact,
    Batch,
    ErrorShape,
    WireModel,
    WireRequest,
    classify,
    reading,
    with_warnings,
)
from .http import ProviderClient

__all__ = [
    "CHECKPOINTS_PATH",
    "DIALECTS",
    "build_request",
    "classify_error",
    "parse_checkpoints",
    "parse_reply",
    "progress_text",
    "run",
]

DIALECTS: tuple[str, ...] = ()
CHECKPOINTS_PATH = "sdapi/v1/sd-models"
"""api.py `get_sd_models`: `[{title, model_name, hash, sha256, filename, config}]`."""
PROGRESS_PATH = "sdapi/v1/progress?skip_current_image=true"
PROGRESS_INTERVAL = 1.0
CANCEL_SECONDS = 3.0
WIRE_NAMES = {"guidance_scale": "cfg_scale", "negative_prompt": "negative_prompt", "seed": "seed"}
ERRORS = ErrorShape(messages=("errors", "detail", "error"), codes=())


class _Reply(WireModel):
    images: list[str] | None = None
    info: str | dict[str, Any] | None = None


def build_request(job: Batch, task_id: str) -> WireRequest:
    """txt2img, or img2img with the first image (and the mask) as base64, for `count` images in one batch."""
    body: dict[str, Any] = {
        "prompt": job.prompt,
        "batch_size": job.count,
        "n_iter": 1,
        "force_task_id": task_id,
        "send_images": True,
        "save_images": False,
    }
    if job.size.width and job.size.height:
        body |= {"width": job.size.width, "height": job.size.height}
    elif job.images:  # img2img's own default is 512x512: keep the input's size instead
        body |= {"width": job.images[0].width, "height": job.images[0].height}
    body |= {wire: job.knobs[name] for name, wire in WIRE_NAMES.items() if name in job.knobs}
    if "checkpoint" in job.knobs:
        body["override_settings"] = {"sd_model_checkpoint": job.knobs["checkpoint"]}
        body["override_settings_restore_afterwards"] = True
    path = "sdapi/v1/txt2img"
    if job.tool == "edit":
        path = "sdapi/v1/img2img"
        body["init_images"] = [image.base64() for image in job.images[:1]]
        if job.mask is not None:
            body |= {"mask": job.mask.base64(), "inpainting_mask_invert": 1}
    body.update(job.extra)
    return WireRequest(path, json=body)


def _info(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def parse_reply(body: Any, provider: str) -> AdapterReply:
    """The images (from `info.index_of_first_image`: a grid may come first) with their seeds."""
    try:
        reply = _Reply.model_validate(body)
    except ValueError:
        raise UpstreamError(f"{provider} answered in a shape that is not a txt2img/img2img reply") from None
    info = _info(reply.info)
    first = info.get("index_of_first_image", 0)
    images = (reply.images or [])[first if isinstance(first, int) and first >= 0 else 0 :]
    seeds = [s if isinstance(s, int) else None for s in info.get("all_seeds") or []]
    if not images:
        raise NoImagesReturned(f"{provider} answered without an image (interrupted, or send_images off)")
    artifacts = tuple(
        Artifact(encoded=image, mime="image/png", seed=seeds[i] if i < len(seeds) else None)
        for i, image in enumerate(images)
    )
    return AdapterReply(artifacts=artifacts, request_id=info.get("job_timestamp") or None)


def _detail(body: Any) -> str | None:
    """`detail` as text: a string, or FastAPI's list of {loc, msg}."""
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        parts = [
            f"{'.'.join(str(p) for p in d.get('loc', []))}: {d.get('msg')}"
            for d in detail
            if isinstance(d, dict)
        ]
        return "; ".join(parts) or None
    return detail if isinstance(detail, str) and detail else None


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """401 is the --api-auth login (SDWEBUI_AUTH); 404 on /sdapi is a server started without --api."""
    message = _detail(body) or ERRORS.read(body).message
    if status == 401:
        return AuthFailed(
            f"{provider} refused the login (HTTP 401); set SDWEBUI_AUTH to the user:pass of --api-auth",
            provider=provider,
            upstream_message=message,
        )
    if status == 404:
        return UpstreamError(
            f"{provider} has no /sdapi routes (HTTP 404); start the WebUI with --api",
            status=404,
            upstream_message=message,
        )
    error = classify(status, body, provider, shape=ERRORS)
    error.upstream_message = message or error.upstream_message
    return error


def parse_checkpoints(body: Any) -> list[str]:
    """The titles of GET /sdapi/v1/sd-models ("name.safetensors [hash]"), as sd_model_checkpoint wants."""
    if not isinstance(body, list):
        return []
    return [
        str(item.get("title") or item.get("model_name"))
        for item in body
        if isinstance(item, dict) and (item.get("title") or item.get("model_name"))
    ]


def progress_text(body: Any, task_id: str) -> str | None:
    """ "step 5/20" while this call's task runs (`current_task`, where the server names it)."""
    if not isinstance(body, dict) or body.get("current_task") not in (task_id, None):
        return None
    state = body.get("state")
    state = state if isinstance(state, dict) else {}
    step, steps = state.get("sampling_step"), state.get("sampling_steps")
    if isinstance(step, int) and isinstance(steps, int) and steps > 0 and state.get("job_count", 1):
        return f"step {step}/{steps}"
    return None


async def _watch(client: ProviderClient, job: Batch, task_id: str) -> None:
    """Relay /progress while the call runs; a server without it (or a failing poll) costs nothing."""
    said: list[str] = []

    async def fetch() -> None:
        try:
            text = progress_text(await client.get_json(PROGRESS_PATH, classify_error), task_id)
        except ImagegateError:
            return
        if text and text not in said[-1:] and job.report:
            said.append(text)
            await job.report(f"{client.profile.id}: {text}")

    try:
        await client.poll(fetch, lambda _: False, interval=PROGRESS_INTERVAL, max_interval=PROGRESS_INTERVAL)
    except UpstreamTimeout:
        return  # the call's own request has the same deadline and says so


async def _interrupt(client: ProviderClient, task_id: str) -> None:
    """POST /interrupt, unless the server says another task is running (it stops whatever runs)."""
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SECONDS):
        try:
            progress = await client.get_json(PROGRESS_PATH, classify_error)
            if not isinstance(progress, dict) or progress.get("current_task") in (task_id, None):
                await client.request("POST", "sdapi/v1/interrupt", classify_error)
        except ImagegateError:
            pass


async def run(job: Batch, client: ProviderClient) -> AdapterReply:
    """One txt2img/img2img call, its progress relayed meanwhile; interrupted when cancelled."""
    task_id = f"imagegate-{uuid.uuid4().hex[:16]}"
    request = build_request(job, task_id)
    outcome: AdapterReply | ImagegateError
    try:
        async with anyio.create_task_group() as group:  # the POST stays in this task: its error is its own
            group.start_soon(_watch, client, job, task_id)
            try:
                outcome = await client.post_json(
                    request.path,
                    request.json,
                    classify_error,
                    read=reading(parse_reply, client, classify_error),
                )
            except ImagegateError as e:
                outcome = e
            group.cancel_scope.cancel()
    except anyio.get_cancelled_exc_class():
        await _interrupt(client, task_id)
        raise
    if isinstance(outcome, ImagegateError):
        raise outcome
    reply = outcome
    return with_warnings(reply, request)
