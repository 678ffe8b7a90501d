"""ComfyUI protocol (github.com/comfyanonymous/ComfyUI `server.py`, `execution.py`; docs.comfy.org
development/comfyui-server comms_routes and comms_messages; `script_examples/websockets_api_example.py`):
upload the input images with POST /upload/image, queue the route's API-format workflow with POST /prompt
`{prompt, client_id}` (→ `prompt_id`, or `error` + `node_errors`), follow it on the `/ws?clientId=` socket
(`execution_start`, `progress` {value, max}, `executing` {node: null} / `execution_success` at the end,
`execution_error`, `execution_interrupted`), read `/history/{prompt_id}` and hand the core `/view` URLs of
the saved images. A cancelled call deletes the prompt from the queue (POST /queue {delete}) and interrupts
it (POST /interrupt; newer servers take {prompt_id} and stop only that prompt: UNCONFIRMED here).
Owns the wire mapping only: the socket is the HTTP layer's (websocket.py), polling is `client.poll`.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import anyio

from ..catalog.spec import WorkflowInputs
from ..errors import ImagegateError, NoImagesReturned, UpstreamError, UpstreamTimeout
from . import websocket
from .base import (
    FORMAT_MIME,
    AdapterReply,
    Artifact,
    Batch,
    RouteWarning,
    WireRequest,
    classify,
    with_warnings,
)
from .http import ProviderClient

__all__ = [
    "CHECKPOINTS_PATH",
    "DIALECTS",
    "Workflow",
    "build_request",
    "classify_error",
    "event_outcome",
    "parse_checkpoints",
    "parse_history",
    "run",
]

DIALECTS: tuple[str, ...] = ()
CHECKPOINTS_PATH = "object_info/CheckpointLoaderSimple"
DEFAULT_WORKFLOWS = "defaults.toml"
"""The shipped workflows and their input maps (catalog/data/workflows/); local.py puts them on the route."""
"""server.py `get_object_info_node`: the node's INPUT_TYPES, whose `ckpt_name` lists the checkpoints."""
CANCEL_SECONDS = 3.0
SEED_RANGE = 2**53
MIME_EXTENSION = {mime: ext for ext, mime in FORMAT_MIME.items() if ext != "jpg"}


class Workflow(WorkflowInputs):
    """An API-format workflow and which node input ("node id.input name") takes what."""

    graph: dict[str, Any]


@dataclass
class _Run:
    """What the socket has told about one prompt so far."""

    prompt_id: str
    started: bool = False
    last_step: tuple[int, int] | None = field(default=None)


def workflow_for(job: Batch) -> tuple[str, Workflow]:
    """The role ("generate", "edit" or "inpaint") this call runs and its workflow."""
    flows = job.route.wire.workflows
    role = "generate" if job.tool == "generate" else "inpaint" if job.mask and "inpaint" in flows else "edit"
    if role not in flows:
        raise UpstreamError(f"{job.route.where} has no {role} workflow; add one to the config file")
    return role, Workflow.model_validate(flows[role])


def _set(graph: dict[str, Any], path: str | None, value: Any) -> bool:
    """Put `value` at "node.input" of a copied graph; False when the node does not exist."""
    if path is None:
        return False
    node, _, name = path.partition(".")
    if not isinstance(graph.get(node), dict):
        return False
    graph[node] = {**graph[node], "inputs": {**graph[node].get("inputs", {}), name: value}}
    return True


def build_request(
    job: Batch, workflow: Workflow, uploaded: dict[str, str], client_id: str, seed: int
) -> WireRequest:
    """POST /prompt: the workflow with this call's values at the mapped inputs; `extra` sets any
    "node.input" directly (`{"3.steps": 30}`)."""
    graph = dict(workflow.graph)
    warnings: list[RouteWarning] = []
    checkpoint = job.knobs.get("checkpoint")
    rule = job.route.knobs.get("checkpoint")
    values: dict[str | None, Any] = {
        workflow.prompt: job.prompt,
        workflow.negative_prompt: job.knobs.get("negative_prompt"),
        workflow.width: job.size.width,
        workflow.height: job.size.height,
        workflow.batch_size: job.count,
        workflow.seed: seed,
        workflow.guidance_scale: job.knobs.get("guidance_scale"),
        workflow.checkpoint: checkpoint if checkpoint is not None else (rule.default if rule else None),
        workflow.image: uploaded.get("image"),
        workflow.mask: uploaded.get("mask"),
    }
    for path, value in values.items():
        if value is not None:
            _set(graph, path, value)
    for path, value in job.extra.items():
        if not _set(graph, path, value):
            warnings.append(
                RouteWarning(f"extra.{path}", "names no node of the workflow; not sent", '"node.input"')
            )
    return WireRequest("prompt", json={"prompt": graph, "client_id": client_id}, warnings=tuple(warnings))


def parse_queued(body: Any, provider: str) -> str:
    """The prompt_id of a POST /prompt answer (200 with node errors is still an error)."""
    if isinstance(body, dict) and body.get("node_errors"):
        raise classify_error(400, body, provider)
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    if not isinstance(prompt_id, str) or not prompt_id:
        raise UpstreamError(f"{provider} queued the workflow without a prompt_id")
    return prompt_id


def _node_errors(body: dict[str, Any]) -> list[str]:
    found = []
    for node, entry in (body.get("node_errors") or {}).items():
        if isinstance(entry, dict):
            for error in entry.get("errors") or []:
                if isinstance(error, dict):
                    detail = f": {error['details']}" if error.get("details") else ""
                    found.append(
                        f"node {node} ({entry.get('class_type', '?')}): {error.get('message')}{detail}"
                    )
    return found


def classify_error(status: int, body: Any, provider: str) -> ImagegateError:
    """POST /prompt refuses a workflow with 400 `{error: {type, message, details}, node_errors}`
    (execution.py `validate_prompt`); other routes answer bare statuses."""
    refusal = isinstance(body, dict) and ("node_errors" in body or isinstance(body.get("error"), dict))
    if status == 400 and refusal:
        error = body.get("error")  # body is a dict: `refusal` says so
        head = error.get("message") if isinstance(error, dict) else error if isinstance(error, str) else None
        details = error.get("details") if isinstance(error, dict) else None
        parts = [p for p in (head, details, *_node_errors(body)) if p]
        return UpstreamError(
            f"{provider} rejected the workflow (HTTP {status})",
            status=status,
            upstream_message="; ".join(str(p) for p in parts) or None,
        )
    return classify(status, body, provider)


def event_outcome(event: Any, run: _Run) -> bool:
    """Whether a socket event ends the wait for `run`'s prompt; raises what a failure event says."""
    kind, data = (event.get("type"), event.get("data")) if isinstance(event, dict) else (None, None)
    if not isinstance(data, dict) or data.get("prompt_id") != run.prompt_id:
        return False
    if kind == "execution_start":
        run.started = True
    elif kind == "execution_error":
        where = f"node {data.get('node_id')} ({data.get('node_type')})"
        message = f"{data.get('exception_type', 'error')}: {data.get('exception_message', '')}".strip()
        raise UpstreamError(f"ComfyUI failed in {where}", upstream_message=message)
    elif kind == "execution_interrupted":
        raise UpstreamError(
            "ComfyUI interrupted the workflow (someone pressed Cancel, or the server stopped it)"
        )
    return kind == "execution_success" or (kind == "executing" and data.get("node") is None)


def step_of(event: Any, run: _Run) -> str | None:
    """A `progress` event of this prompt as "step 5/20", once per step."""
    data = event.get("data") if isinstance(event, dict) else None
    if (
        not isinstance(data, dict)
        or event.get("type") != "progress"
        or data.get("prompt_id") != run.prompt_id
    ):
        return None
    value, most = data.get("value"), data.get("max")
    if not isinstance(value, int) or not isinstance(most, int) or (value, most) == run.last_step:
        return None
    run.last_step = (value, most)
    return f"step {value}/{most}"


def parse_history(body: Any, prompt_id: str, provider: str, output: str | None = None) -> AdapterReply:
    """The images of a finished prompt, as /view URLs (paths under the base URL)."""
    entry = body.get(prompt_id) if isinstance(body, dict) else None
    if not isinstance(entry, dict):
        raise UpstreamError(f"{provider} has no history for prompt {prompt_id}")
    status = _dict(entry.get("status"))
    if status.get("status_str") == "error":
        said = [m[1].get("exception_message") for m in status.get("messages") or [] if _is_error(m)]
        raise UpstreamError(
            f"{provider} ended the workflow with an error", upstream_message=said[0] if said else None
        )
    outputs = _dict(entry.get("outputs"))
    nodes = [output] if output else list(outputs)
    artifacts = tuple(
        Artifact(url="view?" + urlencode({k: image.get(k, "") for k in ("filename", "subfolder", "type")}),
        mime=FORMAT_MIME.get(str(image.get("filename", "")).rsplit(".", 1)[-1].lower()))
        for node in nodes
        for image in _dict(outputs.get(node)).get("images") or []
        if isinstance(image, dict) and image.get("filename") and (output or image.get("type") == "output")
    )  # fmt: skip
    if not artifacts:
        raise NoImagesReturned(
            f"{provider} finished the workflow without saving an image (no SaveImage output)"
        )
    return AdapterReply(artifacts=artifacts, request_id=prompt_id)


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_error(message: Any) -> bool:
    return (
        isinstance(message, list)
        and len(message) == 2
        and message[0] == "execution_error"
        and isinstance(message[1], dict)
    )


def parse_checkpoints(body: Any) -> list[str]:
    """`ckpt_name`'s choices: `[[names…], {…}]`, or the newer `["COMBO", {"options": [names…]}]`."""
    try:
        spec = body["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"]
    except (KeyError, TypeError):
        return []
    names = (
        spec[0]
        if spec and isinstance(spec[0], list)
        else (spec[1] or {}).get("options", [])
        if len(spec) > 1
        else []
    )
    return [n for n in names if isinstance(n, str)]


async def _upload(client: ProviderClient, image: Any, role: str) -> str:
    """POST /upload/image (multipart `image`, type input): the name a LoadImage node takes."""
    name = f"imagegate-{role}-{uuid.uuid4().hex[:12]}.{MIME_EXTENSION.get(image.mime, 'png')}"
    reply = await client.request(
        "POST",
        "upload/image",
        classify_error,
        data={"type": "input"},
        files=[("image", (name, image.data, image.mime))],
    )
    body = await reply.parsed()
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        raise UpstreamError(f"{client.profile.id} answered an upload without the file's name")
    return f"{body['subfolder']}/{body['name']}" if body.get("subfolder") else body["name"]


@asynccontextmanager
async def _socket(client: ProviderClient, client_id: str) -> AsyncIterator[websocket.WebSocket | None]:
    """The progress socket, or None when it cannot be opened (then /history is polled instead)."""
    async with AsyncExitStack() as stack:
        try:
            socket = await stack.enter_async_context(websocket.connect(client, f"ws?clientId={client_id}"))
        except (UpstreamError, UpstreamTimeout):
            socket = None
        yield socket


async def _follow(client: ProviderClient, socket: websocket.WebSocket | None, run: _Run, job: Batch) -> None:
    async def seen(event: Any) -> None:
        step = step_of(event, run)
        if step and job.report:
            await job.report(f"{client.profile.id}: {step}")

    if socket is None:
        await client.poll(
            lambda: client.get_json(f"history/{run.prompt_id}", classify_error),
            lambda b: run.prompt_id in (b or {}),
        )
        return
    try:
        with anyio.fail_after(client.timeout):
            await socket.until(lambda event: event_outcome(event, run), seen)
    except TimeoutError:
        raise UpstreamTimeout(
            f"{client.profile.id} did not finish the workflow within {client.timeout:g} s"
        ) from None


async def _cancel(client: ProviderClient, run: _Run) -> None:
    """Take the prompt out of the queue, and stop it if it runs; whatever fails here is let go."""
    asks = [("queue", {"delete": [run.prompt_id]})] + (
        [("interrupt", {"prompt_id": run.prompt_id})] if run.started else []
    )
    with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_SECONDS):
        for path, body in asks:
            try:
                await client.request("POST", path, classify_error, json_body=body)
            except ImagegateError:
                pass


async def run(
    job: Batch, client: ProviderClient, seeds: Callable[[], int] = lambda: random.randrange(SEED_RANGE)
) -> AdapterReply:
    """Upload inputs, queue the workflow, follow it to its end, and read which images it saved."""
    _, workflow = workflow_for(job)
    uploaded = (
        {"image": await _upload(client, job.images[0], "image")} if job.images and workflow.image else {}
    )
    if job.mask is not None and workflow.mask:
        uploaded["mask"] = await _upload(client, job.mask, "mask")
    knob = job.knobs.get("seed")
    seed = int(knob) if isinstance(knob, (int, float)) and not isinstance(knob, bool) else seeds()
    client_id = uuid.uuid4().hex
    request = build_request(job, workflow, uploaded, client_id, seed)
    async with _socket(client, client_id) as socket:
        queued = await client.post_json(request.path, request.json, classify_error)
        state = _Run(parse_queued(queued, client.profile.id))
        try:
            await _follow(client, socket, state, job)
        except anyio.get_cancelled_exc_class():
            await _cancel(client, state)
            raise
    history = await client.get_json(f"history/{state.prompt_id}", classify_error)
    reply = parse_history(history, state.prompt_id, client.profile.id, workflow.output)
    same_seed = workflow.seed is not None and job.count == 1
    artifacts = tuple(
        replace(a, url=client.url(a.url or ""), seed=seed if same_seed else None) for a in reply.artifacts
    )
    return with_warnings(replace(reply, artifacts=artifacts), request)
