"""ComfyUI emulator, as strict as ComfyUI's own server (github.com/comfyanonymous/ComfyUI `server.py`,
`execution.py` `validate_prompt`/`validate_inputs`, `nodes.py` INPUT_TYPES; docs.comfy.org comms_routes and
comms_messages). Mounted at /comfyui/, the base URL imagegate uses (no version segment, no key):

    POST /prompt {prompt, client_id}  → {prompt_id, number, node_errors}; 400 {error{type,message,details},
                                        node_errors} for unknown nodes, missing or out-of-range inputs,
                                        a ckpt_name or image not in the server's lists, or no output node
    GET  /ws?clientId=…               → WebSocket: status, execution_start, execution_cached, executing,
                                        progress {value,max}, a binary preview frame, executed, executing
                                        {node: null}, execution_success (or execution_error/_interrupted)
    GET  /history/{prompt_id}         → {} until the prompt ends, then {id: {prompt, outputs, status}}
    GET  /view?filename&subfolder&type → the saved image
    POST /upload/image (multipart image, type, subfolder) → {name, subfolder, type}
    POST /interrupt [{prompt_id}]     → stops the running prompt (only that one when prompt_id is given)
    POST /queue {delete: [ids]}       → drops queued prompts
    GET  /object_info/{node_class}    → {class: {input{required{…}}, …}}; CheckpointLoaderSimple lists the
                                        checkpoints (the provider's `models` setting, or CHECKPOINTS)

Prompts run one at a time, as ComfyUI's single prompt worker does. Control, back to defaults on reset:
    POST /comfyui/_emulator/run {"step_seconds": s, "outcome": "success"|"error"|"hold", "steps": n}
"hold" waits at the first step until /interrupt (cancellation tests).
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from tools.emulator import images
from tools.emulator.core import ApiError, Call, Dialect, FilePart, Provider, endpoint

__all__ = ["BASE_PATH", "CHECKPOINTS", "DIALECT", "routes"]

BASE_PATH = ""
CHECKPOINTS = ("v1-5-pruned-emaonly.safetensors", "sd_xl_base_1.0.safetensors")
MAX_RESOLUTION = 16384  # nodes.py
SEED_MAX = 0xFFFFFFFFFFFFFFFF
# class_type -> required inputs: (kind, min, max) for numbers, "LINK" for a link, a tuple for a choice
# list (None: the server's checkpoints / uploaded images), "STRING" for text. Output nodes save images.
NODES: dict[str, dict[str, Any]] = {
    "CheckpointLoaderSimple": {"ckpt_name": "CHECKPOINT"},
    "EmptyLatentImage": {
        "width": ("INT", 16, MAX_RESOLUTION),
        "height": ("INT", 16, MAX_RESOLUTION),
        "batch_size": ("INT", 1, 4096),
    },
    "CLIPTextEncode": {"text": "STRING", "clip": "LINK"},
    "KSampler": {
        "model": "LINK",
        "seed": ("INT", 0, SEED_MAX),
        "steps": ("INT", 1, 10000),
        "cfg": ("FLOAT", 0.0, 100.0),
        "sampler_name": ("euler", "euler_ancestral", "dpmpp_2m", "ddim"),
        "scheduler": ("normal", "karras", "simple"),
        "positive": "LINK",
        "negative": "LINK",
        "latent_image": "LINK",
        "denoise": ("FLOAT", 0.0, 1.0),
    },
    "VAEDecode": {"samples": "LINK", "vae": "LINK"},
    "VAEEncode": {"pixels": "LINK", "vae": "LINK"},
    "VAEEncodeForInpaint": {"pixels": "LINK", "vae": "LINK", "mask": "LINK", "grow_mask_by": ("INT", 0, 64)},
    "RepeatLatentBatch": {"samples": "LINK", "amount": ("INT", 1, 64)},
    "LoadImage": {"image": "IMAGE_FILE"},
    "LoadImageMask": {"image": "IMAGE_FILE", "channel": ("alpha", "red", "green", "blue")},
    "SaveImage": {"images": "LINK", "filename_prefix": "STRING"},
    "PreviewImage": {"images": "LINK"},
}
OUTPUT_NODES = frozenset({"SaveImage", "PreviewImage"})


@dataclass
class Job:
    prompt_id: str
    number: int
    graph: dict[str, Any]
    client_id: str | None
    cancelled: bool = False
    interrupted: asyncio.Event = field(default_factory=asyncio.Event)


class Server:
    """One emulated ComfyUI: uploads, queue, history, sockets; forgotten on a control-API reset."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider
        self._clear()

    def _clear(self) -> None:
        self._log = self.provider.state.log
        self.uploads: dict[str, bytes] = {}
        self.files: dict[tuple[str, str], bytes] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.sockets: dict[str, WebSocket] = {}
        self.lock = asyncio.Lock()
        self.running: Job | None = None
        self.pending: dict[str, Job] = {}
        self.number = 0
        self.step_seconds, self.outcome, self.steps = 0.001, "success", None

    def fresh(self) -> Server:
        if self.provider.state.log is not self._log:
            self._clear()
        return self

    def checkpoints(self) -> tuple[str, ...]:
        return self.provider.settings.models or CHECKPOINTS

    async def send(self, job: Job, kind: str, data: dict[str, Any]) -> None:
        socket = self.sockets.get(job.client_id or "")
        if socket is not None:
            try:
                await socket.send_text(json.dumps({"type": kind, "data": data}))
            except (RuntimeError, WebSocketDisconnect):
                self.sockets.pop(job.client_id or "", None)


def routes(provider: Provider) -> list[BaseRoute]:
    server = Server(provider)
    return [
        endpoint(provider, "/prompt", "prompt", partial(queue_prompt, server), DIALECT),
        endpoint(provider, "/history/{prompt_id}", "history", partial(history, server), DIALECT, ("GET",)),
        endpoint(provider, "/view", "view", partial(view, server), DIALECT, ("GET",)),
        endpoint(provider, "/upload/image", "upload", partial(upload, server), DIALECT),
        endpoint(provider, "/interrupt", "interrupt", partial(interrupt, server), DIALECT),
        endpoint(provider, "/queue", "queue", partial(edit_queue, server), DIALECT),
        endpoint(
            provider,
            "/object_info/{node_class}",
            "object_info",
            partial(object_info, server),
            DIALECT,
            ("GET",),
        ),
        WebSocketRoute("/ws", partial(socket, server)),
        Route("/_emulator/run", partial(configure, server), methods=["POST"]),
    ]


# ---- validation (execution.py)


def _invalid(kind: str, message: str, details: str = "", node_errors: Any = None) -> JSONResponse:
    error = {"type": kind, "message": message, "details": details, "extra_info": {}}
    return JSONResponse({"error": error, "node_errors": node_errors or {}}, status_code=400)


def _input_error(
    server: Server, graph: dict[str, Any], name: str, rule: Any, value: Any
) -> dict[str, Any] | None:
    def error(kind: str, message: str, details: str) -> dict[str, Any]:
        return {"type": kind, "message": message, "details": details, "extra_info": {"input_name": name}}

    if isinstance(value, list):
        if len(value) != 2 or str(value[0]) not in graph:
            return error(
                "bad_linked_input", "Bad linked input, must be a length-2 list of [node_id, slot_index]", name
            )
        return None
    if rule == "LINK":
        return error("return_type_mismatch", "Return type mismatch between linked nodes", name)
    if rule == "STRING":
        return (
            None
            if isinstance(value, str)
            else error("invalid_input_type", "Failed to convert an input value to a STRING value", name)
        )
    choices = (
        {"CHECKPOINT": server.checkpoints(), "IMAGE_FILE": tuple(server.uploads)}.get(rule, rule)
        if isinstance(rule, str)
        else rule
    )
    if isinstance(choices, tuple) and (
        not choices or isinstance(choices[0], str) and choices[0] not in ("INT", "FLOAT")
    ):
        if value not in choices:
            if rule == "IMAGE_FILE":
                return error(
                    "custom_validation_failed",
                    "Custom validation failed for node",
                    f"Invalid image file: {value}",
                )
            return error(
                "value_not_in_list", "Value not in list", f"{name}: '{value}' not in {list(choices)}"
            )
        return None
    kind, low, high = rule
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (kind == "INT" and not float(value).is_integer())
    ):
        return error(
            "invalid_input_type", f"Failed to convert an input value to a {kind} value", f"{name}, {value}"
        )
    if value < low:
        return error("value_smaller_than_min", f"Value {value} smaller than min of {low}", f"{name}")
    if value > high:
        return error("value_bigger_than_max", f"Value {value} bigger than max of {high}", f"{name}")
    return None


def validate(server: Server, body: dict[str, Any] | None) -> JSONResponse | dict[str, Any]:
    graph = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(graph, dict):
        return _invalid("invalid_prompt", "no prompt", "")
    for node_id, node in graph.items():
        kind = node.get("class_type") if isinstance(node, dict) else None
        if kind not in NODES:
            return _invalid(
                "invalid_prompt",
                f"Cannot execute because node {kind} does not exist.",
                f"Node ID '#{node_id}'",
            )
    if not any(node["class_type"] in OUTPUT_NODES for node in graph.values()):
        return _invalid("prompt_no_outputs", "Prompt has no outputs")
    node_errors = {}
    for node_id, node in graph.items():
        inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
        errors = []
        for name, rule in NODES[node["class_type"]].items():
            if name not in inputs:
                errors.append(
                    {
                        "type": "required_input_missing",
                        "message": "Required input is missing",
                        "details": name,
                        "extra_info": {"input_name": name},
                    }
                )
            elif (found := _input_error(server, graph, name, rule, inputs[name])) is not None:
                errors.append(found)
        if errors:
            node_errors[node_id] = {
                "errors": errors,
                "dependent_outputs": [],
                "class_type": node["class_type"],
            }
    if node_errors:
        lines = "\n".join(
            f"{e['message']}: {e['details']}" for n in node_errors.values() for e in n["errors"]
        )
        return _invalid(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", lines, node_errors
        )
    return graph


# ---- handlers


async def queue_prompt(server: Server, call: Call) -> Response:
    server.fresh()
    checked = validate(server, call.json)
    if isinstance(checked, JSONResponse):
        return checked
    server.number += 1
    client_id = call.json.get("client_id") if call.json else None
    job = Job(str(uuid.uuid4()), server.number, checked, client_id if isinstance(client_id, str) else None)
    server.pending[job.prompt_id] = job
    asyncio.get_running_loop().create_task(execute(server, job))
    return JSONResponse({"prompt_id": job.prompt_id, "number": job.number, "node_errors": {}})


def _size_and_count(server: Server, graph: dict[str, Any]) -> tuple[int, int, int]:
    width = height = 512
    count = 1
    for node in graph.values():
        inputs = node.get("inputs", {})
        if node["class_type"] == "EmptyLatentImage":
            width, height, count = inputs["width"], inputs["height"], inputs["batch_size"]
        elif node["class_type"] == "LoadImage":
            info = images.probe(server.uploads[inputs["image"]])
            if info is not None:
                width, height = info.width, info.height
        elif node["class_type"] == "RepeatLatentBatch":
            count = inputs["amount"]
    return int(width), int(height), int(count)


async def execute(server: Server, job: Job) -> None:
    async with server.lock:
        server.pending.pop(job.prompt_id, None)
        if job.cancelled:
            return
        server.running = job
        try:
            await _run(server, job)
        finally:
            server.running = None


async def _run(server: Server, job: Job) -> None:
    pid = {"prompt_id": job.prompt_id}
    messages: list[list[Any]] = [["execution_start", {**pid, "timestamp": int(time.time() * 1000)}]]
    await server.send(job, "execution_start", messages[0][1])
    await server.send(job, "execution_cached", {"nodes": [], **pid})
    sampler = next((n for n, node in job.graph.items() if node["class_type"] == "KSampler"), None)
    steps = server.steps or (job.graph[sampler]["inputs"]["steps"] if sampler else 1)
    for node_id in job.graph:
        await server.send(job, "executing", {"node": node_id, "display_node": node_id, **pid})
        if node_id != sampler:
            continue
        for step in range(1, steps + 1):
            if server.outcome == "hold" and step == 1:
                await job.interrupted.wait()
            if job.interrupted.is_set():
                data = {**pid, "node_id": node_id, "node_type": "KSampler", "executed": []}
                server.history[job.prompt_id] = _entry(
                    job, {}, "error", [*messages, ["execution_interrupted", data]]
                )
                await server.send(job, "execution_interrupted", data)
                return
            await asyncio.sleep(server.step_seconds)
            await server.send(job, "progress", {"value": step, "max": steps, "node": node_id, **pid})
            socket = server.sockets.get(job.client_id or "")
            if socket is not None and step == 1:  # a preview frame: event type 1, image type 1 (JPEG)
                await socket.send_bytes(
                    struct.pack(">I", 1) + struct.pack(">I", 1) + images.render(64, 64, "jpeg")
                )
        if server.outcome == "error":
            data = {
                **pid,
                "node_id": node_id,
                "node_type": "KSampler",
                "executed": [],
                "exception_message": "CUDA out of memory. Tried to allocate 2.00 GiB",
                "exception_type": "torch.OutOfMemoryError",
                "traceback": [],
                "current_inputs": {},
                "current_outputs": {},
            }
            server.history[job.prompt_id] = _entry(job, {}, "error", [*messages, ["execution_error", data]])
            await server.send(job, "execution_error", data)
            return
    outputs = _save(server, job)
    for node_id, output in outputs.items():
        await server.send(
            job, "executed", {"node": node_id, "display_node": node_id, "output": output, **pid}
        )
    server.history[job.prompt_id] = _entry(job, outputs, "success", [*messages, ["execution_success", pid]])
    await server.send(job, "executing", {"node": None, **pid})
    await server.send(job, "execution_success", {**pid, "timestamp": int(time.time() * 1000)})


def _save(server: Server, job: Job) -> dict[str, Any]:
    width, height, count = _size_and_count(server, job.graph)
    outputs = {}
    for node_id, node in job.graph.items():
        if node["class_type"] not in OUTPUT_NODES:
            continue
        kind = "output" if node["class_type"] == "SaveImage" else "temp"
        prefix = node["inputs"].get("filename_prefix", "ComfyUI")
        saved = []
        for _ in range(count):
            name = f"{prefix}_{len(server.files) + 1:05d}_.png"
            server.files[(kind, name)] = images.render(width, height, "png")
            saved.append({"filename": name, "subfolder": "", "type": kind})
        outputs[node_id] = {"images": saved}
    return outputs


def _entry(job: Job, outputs: dict[str, Any], status: str, messages: list[list[Any]]) -> dict[str, Any]:
    return {
        "prompt": [job.number, job.prompt_id, job.graph, {"client_id": job.client_id}, list(outputs)],
        "outputs": outputs,
        "status": {"status_str": status, "completed": status == "success", "messages": messages},
        "meta": {},
    }


async def history(server: Server, call: Call) -> Response:
    prompt_id = call.request.path_params["prompt_id"]
    entry = server.fresh().history.get(prompt_id)
    return JSONResponse({prompt_id: entry} if entry else {})


async def view(server: Server, call: Call) -> Response:
    query = call.request.query_params
    name = query.get("filename", "")
    if not name:
        return Response(status_code=404)
    if name.startswith("/") or ".." in name:
        return Response(status_code=400)
    data = server.fresh().files.get((query.get("type", "output"), name))
    return Response(data, media_type="image/png") if data is not None else Response(status_code=404)


async def upload(server: Server, call: Call) -> Response:
    parts = dict(call.form or [])
    image = parts.get("image")
    if not isinstance(image, FilePart) or not image.filename:
        return Response(status_code=400)
    kind = parts.get("type") if isinstance(parts.get("type"), str) else "input"
    server.fresh().uploads[image.filename] = image.data
    return JSONResponse({"name": image.filename, "subfolder": "", "type": kind})


async def interrupt(server: Server, call: Call) -> Response:
    running = server.fresh().running
    wanted = call.json.get("prompt_id") if call.json else None
    if running is not None and wanted in (None, running.prompt_id):
        running.interrupted.set()
    return Response(status_code=200)


async def edit_queue(server: Server, call: Call) -> Response:
    body = call.json or {}
    doomed = body.get("delete") if isinstance(body.get("delete"), list) else []
    for job in server.fresh().pending.values():
        if body.get("clear") or job.prompt_id in doomed:
            job.cancelled = True
    return Response(status_code=200)


async def object_info(server: Server, call: Call) -> Response:
    node = call.request.path_params["node_class"]
    if node != "CheckpointLoaderSimple":
        return JSONResponse({})
    info = {
        "input": {
            "required": {
                "ckpt_name": [
                    list(server.fresh().checkpoints()),
                    {"tooltip": "The name of the checkpoint (model) to load."},
                ]
            }
        },
        "input_order": {"required": ["ckpt_name"]},
        "output": ["MODEL", "CLIP", "VAE"],
        "name": node,
        "display_name": "Load Checkpoint",
        "category": "loaders",
        "output_node": False,
    }
    return JSONResponse({node: info})


async def socket(server: Server, websocket: WebSocket) -> None:
    await websocket.accept()
    sid = websocket.query_params.get("clientId") or uuid.uuid4().hex
    server.fresh().sockets[sid] = websocket
    server.provider.state.log.append(
        {
            "provider": server.provider.name,
            "endpoint": "ws",
            "method": "GET",
            "path": websocket.url.path,
            "query": list(websocket.query_params.keys()),
            "client_id": sid,
            "json": None,
            "form": None,
            "status": 101,
            "time": time.time(),
            "id": sid,
            "auth_ok": True,
            "fault": None,
            "headers": list(websocket.headers.keys()),
        }
    )
    try:
        await websocket.send_text(
            json.dumps(
                {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": sid}}
            )
        )
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        pass
    finally:
        if server.sockets.get(sid) is websocket:
            server.sockets.pop(sid, None)


async def configure(server: Server, request: Request) -> JSONResponse:
    body = await request.json()
    server.fresh()
    if (
        not isinstance(body, dict)
        or set(body) - {"step_seconds", "outcome", "steps"}
        or body.get("outcome", "success") not in ("success", "error", "hold")
    ):
        return JSONResponse(
            {"error": 'expected {"step_seconds": s, "outcome": "success"|"error"|"hold", "steps": n}'},
            status_code=400,
        )
    server.step_seconds = float(body.get("step_seconds", server.step_seconds))
    server.outcome = body.get("outcome", server.outcome)
    server.steps = body.get("steps", server.steps)
    return JSONResponse(
        {"step_seconds": server.step_seconds, "outcome": server.outcome, "steps": server.steps}
    )


def _canned(status: int, call: Call) -> ApiError:
    return ApiError(status, {404: "Not Found", 500: "Internal Server Error"}.get(status, "Request failed"))


def _render(error: ApiError) -> dict[str, Any]:
    return {
        "error": {"type": error.type, "message": error.message, "details": "", "extra_info": {}},
        "node_errors": {},
    }


DIALECT = Dialect(render=_render, canned=_canned, credential=lambda request: "test-no-key")
