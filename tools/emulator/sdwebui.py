"""Stable Diffusion WebUI / Forge emulator, as strict as its API (AUTOMATIC1111/stable-diffusion-webui
`modules/api/api.py`, `models.py`, `processing.py`). Mounted at /sdwebui/ (the base URL imagegate uses):

    POST /sdapi/v1/txt2img  {prompt, width, height, batch_size, n_iter, seed, cfg_scale, override_settings,
                             force_task_id, …} → {images: [base64 PNG…], parameters, info: "<JSON>"}
    POST /sdapi/v1/img2img  the same plus init_images [base64] (required), mask (base64),
                            inpainting_mask_invert
    GET  /sdapi/v1/progress → {progress, eta_relative, state{job_count, sampling_step,
                               sampling_steps…}, current_image, textinfo, current_task}
    POST /sdapi/v1/interrupt → {} ; the running call answers with the images made so far (none here)
    GET  /sdapi/v1/sd-models → [{title, model_name, hash, sha256, filename, config}]

A malformed field is FastAPI's 422 `{detail: [{loc, msg, type}]}`; an undecodable image api.py's 500
`{error, detail, body, errors}` ("Invalid encoded image"); an unknown override checkpoint is kept as the
current one, as WebUI falls back to it. With the provider's `keys` setting (["user:pass"]) every route asks
HTTP Basic (api.py `auth`: 401 "Incorrect username or password"); without, anyone may call.
Calls run one at a time (api.py's queue_lock). Control, back to defaults on reset:
    POST /sdwebui/_emulator/run {"step_seconds": s, "outcome": "success"|"hold"}
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tools.emulator import images
from tools.emulator.core import ApiError, Call, Dialect, Provider, endpoint

__all__ = ["BASE_PATH", "CHECKPOINTS", "DIALECT", "routes"]

BASE_PATH = ""
CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors [6ce0161689]", "sd_xl_base_1.0.safetensors [31e35c80fc]")
INTS = ("width", "height", "batch_size", "n_iter", "steps", "seed", "inpainting_mask_invert")
FLOATS = ("cfg_scale", "denoising_strength")
STRINGS = ("prompt", "negative_prompt", "sampler_name", "force_task_id", "mask")


class Server:
    """One emulated WebUI: its progress state and the call running; forgotten on a reset."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self._clear()

    def _clear(self) -> None:
        self._log = self.provider.state.log
        self.lock = asyncio.Lock()
        self.task: str | None = None
        self.step, self.steps, self.jobs = 0, 0, 0
        self.interrupted = asyncio.Event()
        self.step_seconds, self.outcome = 0.001, "success"
        self.loaded = CHECKPOINTS[0]

    def fresh(self) -> Server:
        if self.provider.state.log is not self._log:
            self._clear()
        return self

    def checkpoints(self) -> tuple[str, ...]:
        return self.provider.settings.models or CHECKPOINTS


def routes(provider: Provider) -> list[BaseRoute]:
    server = Server(provider)
    return [
        endpoint(provider, "/sdapi/v1/txt2img", "txt2img", partial(generate, server, False), DIALECT),
        endpoint(provider, "/sdapi/v1/img2img", "img2img", partial(generate, server, True), DIALECT),
        endpoint(provider, "/sdapi/v1/progress", "progress", partial(progress, server), DIALECT, ("GET",)),
        endpoint(provider, "/sdapi/v1/interrupt", "interrupt", partial(interrupt, server), DIALECT),
        endpoint(provider, "/sdapi/v1/sd-models", "sd-models", partial(sd_models, server), DIALECT, ("GET",)),
        Route("/_emulator/run", partial(configure, server), methods=["POST"]),
    ]


def _invalid(name: str, message: str, kind: str) -> ApiError:
    return ApiError(422, message, type=kind, param=name)


def _check(body: dict[str, Any] | None, img2img: bool) -> dict[str, Any]:
    if body is None:
        raise _invalid("body", "value is not a valid dict", "type_error.dict")
    for name in INTS:
        if name in body and (isinstance(body[name], bool) or not isinstance(body[name], int)):
            raise _invalid(name, "value is not a valid integer", "type_error.integer")
    for name in FLOATS:
        if name in body and (isinstance(body[name], bool) or not isinstance(body[name], (int, float))):
            raise _invalid(name, "value is not a valid float", "type_error.float")
    for name in STRINGS:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise _invalid(name, "str type expected", "type_error.str")
    if "override_settings" in body and not isinstance(body["override_settings"], dict):
        raise _invalid("override_settings", "value is not a valid dict", "type_error.dict")
    if img2img:
        if body.get("init_images") is None:
            raise ApiError(404, "Init image not found")
        if not isinstance(body["init_images"], list):
            raise _invalid("init_images", "value is not a valid list", "type_error.list")
    return body


def _decode(value: Any) -> images.ImageInfo:
    """api.py `decode_base64_to_image`: a data URL or bare base64; anything else is a 500."""
    text = (
        value.split(";")[1].split(",")[1]
        if isinstance(value, str) and value.startswith("data:image/")
        else value
    )
    try:
        info = images.probe(base64.b64decode(text, validate=True)) if isinstance(text, str) else None
    except (binascii.Error, ValueError):
        info = None
    if info is None:
        raise ApiError(500, "Invalid encoded image", type="HTTPException")
    return info


async def generate(server: Server, img2img: bool, call: Call) -> Response:
    body = _check(call.json, img2img)
    size = (body.get("width", 512), body.get("height", 512))
    if img2img:
        for image in body["init_images"]:
            _decode(image)
        if body.get("mask"):
            _decode(body["mask"])
    count = body.get("batch_size", 1) * body.get("n_iter", 1)
    async with server.fresh().lock:
        wanted = (body.get("override_settings") or {}).get("sd_model_checkpoint")
        model = next((c for c in server.checkpoints() if wanted and c.startswith(str(wanted))), server.loaded)
        server.task, server.jobs, server.steps = body.get("force_task_id"), count, body.get("steps", 20)
        server.interrupted = asyncio.Event()
        try:
            for step in range(1, server.steps + 1):
                server.step = step
                if server.outcome == "hold" and server.step == 1:
                    await server.interrupted.wait()
                if server.interrupted.is_set():
                    count = 0
                    break
                await asyncio.sleep(server.step_seconds)
        finally:
            server.task, server.jobs, server.step = None, 0, 0
    seed = body.get("seed", -1)
    seed = seed if seed >= 0 else 1234
    data = base64.b64encode(images.render(size[0], size[1], "png")).decode()
    info = {
        "prompt": body.get("prompt", ""),
        "all_seeds": [seed + i for i in range(count)],
        "seed": seed,
        "width": size[0],
        "height": size[1],
        "sd_model_name": model.split(" [")[0].rsplit(".", 1)[0],
        "index_of_first_image": 0,
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
    }
    parameters = {k: v for k, v in body.items() if k not in ("init_images", "mask")}
    return JSONResponse({"images": [data] * count, "parameters": parameters, "info": json.dumps(info)})


async def progress(server: Server, call: Call) -> Response:
    s = server.fresh()
    state = {
        "skipped": False,
        "interrupted": s.interrupted.is_set(),
        "job": "scripts_txt2img" if s.jobs else "",
        "job_count": 1 if s.jobs else 0,
        "job_timestamp": "0",
        "job_no": 0,
        "sampling_step": s.step,
        "sampling_steps": s.steps if s.jobs else 0,
    }
    fraction = (s.step / s.steps) if s.jobs and s.steps else 0
    return JSONResponse(
        {"progress": fraction, "eta_relative": 0.0, "state": state, "current_image": None, "textinfo": None,
         "current_task": s.task}
    )  # fmt: skip


async def interrupt(server: Server, call: Call) -> Response:
    server.fresh().interrupted.set()
    return JSONResponse({})


async def sd_models(server: Server, call: Call) -> Response:
    return JSONResponse(
        [
            {"title": title, "model_name": title.split(" [")[0].rsplit(".", 1)[0],
             "hash": title.split("[")[-1].rstrip("]"), "sha256": None,
             "filename": f"/models/Stable-diffusion/{title.split(' [')[0]}", "config": None}
            for title in server.fresh().checkpoints()
        ]
    )  # fmt: skip


async def configure(server: Server, request: Request) -> JSONResponse:
    body = await request.json()
    server.fresh()
    if not isinstance(body, dict) or set(body) - {"step_seconds", "outcome"}:
        return JSONResponse(
            {"error": 'expected {"step_seconds": s, "outcome": "success"|"hold"}'}, status_code=400
        )
    server.step_seconds = float(body.get("step_seconds", server.step_seconds))
    server.outcome = body.get("outcome", server.outcome)
    return JSONResponse({"step_seconds": server.step_seconds, "outcome": server.outcome})


def _login(request: Request) -> str | None:
    """The emulator's credential: "user:pass" of a Basic login, or a stand-in that passes when no login
    is set (an emulator `keys` setting turns the login on)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return "test-anonymous"
    try:
        return base64.b64decode(value).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _canned(status: int, call: Call) -> ApiError:
    if status == 401:
        return ApiError(
            401, "Incorrect username or password", type="HTTPException", headers={"WWW-Authenticate": "Basic"}
        )
    return ApiError(
        status,
        {404: "Not Found", 500: "Internal Server Error"}.get(status, "Request failed"),
        type="HTTPException",
    )


def _render(error: ApiError) -> dict[str, Any]:
    if error.status == 422:
        return {"detail": [{"loc": ["body", error.param], "msg": error.message, "type": error.type}]}
    if error.status == 401:
        return {"detail": error.message}
    return {"error": error.type, "detail": error.message, "body": "", "errors": error.message}


DIALECT = Dialect(render=_render, canned=_canned, credential=_login)
