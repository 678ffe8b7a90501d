"""Black Forest Labs FLUX protocol (shared/providers/bfl-flux.md) for `bfl`.

Owns the submit endpoints /v1/<model> with each model's field rules (§2–3), the tasks behind
/v1/get_result (Pending for a configurable number of polls, then Ready, moderated or failed, §4), and the
result host: samples are served from a *different origin* than the API (127.0.0.1 ⇄ localhost, as BFL's
delivery-*.bfl.ai differs from api.bfl.ai), and the request log shows whether `x-key` arrived there.
Auth (`x-key`), latency, faults, the log and image bytes are core's.

Task control (like dashscope.py's), back to defaults on /_emulator/reset:
    POST /bfl/_emulator/tasks {"pending_polls": n}  → how many polls answer Pending first (default 1)
    POST /bfl/_emulator/tasks {"outcome": "Request Moderated"|"Content Moderated"|"Error"|"Task not found",
                               "count": 1}  → the next `count` tasks end that way instead of Ready
"""

from __future__ import annotations

import base64
import binascii
import math
import random
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tools.emulator import images
from tools.emulator.core import ApiError, Call, Dialect, Provider, deliver_images, endpoint
from tools.emulator.state import EmulatorState, Fault

__all__ = ["BASE_PATH", "MODELS", "OUTCOMES", "routes"]

BASE_PATH = "/v1"
MP = 1_000_000
FOUR_MP = 2048 * 2048
ONE_MP = 1024 * 1024
RATIO_SPAN = (Fraction(9, 21), Fraction(21, 9))  # "between 21:9 and 9:21" (§2.3, §2.4)
OUTPUT_FORMATS = ("jpeg", "png")  # webp UNCONFIRMED (§2.1): refused
DELIVERY_FAULTS = frozenset({"expired_url", "wrong_mime", "truncated_base64", "partial"})
OUTCOMES = ("Ready", "Request Moderated", "Content Moderated", "Error", "Task not found")
DETAILS = {
    "Request Moderated": {"Moderation Reasons": ["Emulated input moderation"]},  # keys UNCONFIRMED (§4.2)
    "Content Moderated": {"Moderation Reasons": ["Emulated output moderation"]},
    "Error": {"error": "Emulated generation failure"},
}
DEFAULT_PENDING_POLLS = 1
TASK_LIMIT = 5000
WEBHOOK = frozenset({"webhook_url", "webhook_secret"})


def _inputs(count: int) -> frozenset[str]:
    return frozenset(["input_image", *(f"input_image_{i}" for i in range(2, count + 1))])


@dataclass(frozen=True)
class ModelRule:
    """What one model's submit endpoint accepts (§2, §3) and what it costs in credits (§4.1)."""

    fields: frozenset[str]
    ratio: bool = False  # aspect_ratio (Kontext, Ultra) instead of width/height
    multiple: int = 16
    min_edge: int = 64
    max_edge: int | None = None
    max_pixels: int = FOUR_MP  # FLUX.2: larger requests are resized down, not refused (§3)
    default_size: tuple[int, int] | None = None  # None: match the first input, else 1024x1024
    target_pixels: int = ONE_MP  # ratio models: the output area
    default_ratio: str | None = None  # None: the first input's ratio, else 1:1
    max_inputs: int = 0
    max_safety: int = 6
    default_format: str = "jpeg"
    upsampling: bool = False  # prompt_upsampling default
    price: float = 4.0  # credits per image, or for the first output MP when per_mp
    per_mp: bool = False


_FLUX2 = frozenset({"prompt", "seed", "width", "height", "safety_tolerance", "output_format"}) | WEBHOOK
_FLUX2_PRO = ModelRule(
    _FLUX2 | _inputs(8) | {"disable_pup"}, max_inputs=8, max_safety=5, price=3.0, per_mp=True
)
_KONTEXT = ModelRule(
    frozenset({"prompt", "seed", "aspect_ratio", "output_format", "prompt_upsampling", "safety_tolerance"})
    | _inputs(4)
    | WEBHOOK,
    ratio=True,
    multiple=32,
    max_inputs=4,
    default_format="png",
)
_PRO_11 = frozenset(
    {"prompt", "image_prompt", "prompt_upsampling", "seed", "safety_tolerance", "output_format"}
)
# FLUX 3 Image (docs.bfl.ai/flux_3/flux3_image_overview: only prompt required, up to ten references); the
# fields besides prompt, safety_tolerance 0-4 and the reference names are 3p (UNCONFIRMED).
_FLUX3 = ModelRule(
    frozenset(
        {"prompt", "seed", "aspect_ratio", "resolution", "grounding", "output_format", "safety_tolerance"}
    )
    | _inputs(10)
    | WEBHOOK,
    ratio=True,
    max_inputs=10,
    max_safety=4,
    default_format="png",
    price=4.8,
)
MODELS: dict[str, ModelRule] = {
    "flux-3-image": _FLUX3,
    "flux-2-pro": _FLUX2_PRO,
    "flux-2-max": replace(_FLUX2_PRO, price=7.0),
    "flux-2-flex": replace(
        _FLUX2_PRO,
        fields=_FLUX2 | _inputs(8) | {"prompt_upsampling", "guidance", "steps", "input_image_blob_path"},
        upsampling=True,
        price=6.0,
    ),
    "flux-2-klein-4b": replace(_FLUX2_PRO, fields=_FLUX2 | _inputs(4), max_inputs=4, price=1.4),
    "flux-2-klein-9b": replace(_FLUX2_PRO, fields=_FLUX2 | _inputs(4), max_inputs=4, price=1.5),
    "flux-kontext-pro": _KONTEXT,
    "flux-kontext-max": replace(_KONTEXT, price=8.0),
    "flux-pro-1.1": ModelRule(
        _PRO_11 | {"width", "height"} | WEBHOOK,
        multiple=32,
        min_edge=256,
        max_edge=1440,
        default_size=(1024, 768),
    ),
    "flux-pro-1.1-ultra": ModelRule(
        _PRO_11 | {"aspect_ratio", "raw", "image_prompt_strength"} | WEBHOOK,
        ratio=True,
        multiple=32,
        target_pixels=FOUR_MP,
        default_ratio="16:9",
        price=6.0,
    ),
}


@dataclass
class Task:
    """One submitted generation, as get_result reports it."""

    id: str
    outcome: str
    prompt: str
    seed: int
    size: tuple[int, int]
    fmt: str
    fault: Fault | None
    started: float
    polls: int = 0
    sample: str | None = None
    ended: float | None = None  # set by the first Ready poll, which renders the sample


class Tasks:
    """The tasks of one emulator app, forgotten when the control API resets the state."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._clear()

    def _clear(self) -> None:
        self._log = self.state.log  # reset() replaces the log: that is how a reset is noticed here
        self.items: OrderedDict[str, Task] = OrderedDict()
        self.pending_polls = DEFAULT_PENDING_POLLS
        self.outcomes: list[str] = []  # queued by the control route, one per coming task

    def fresh(self) -> Tasks:
        if self.state.log is not self._log:
            self._clear()
        return self

    def next_outcome(self) -> str:
        queued = self.fresh().outcomes
        return queued.pop(0) if queued else "Ready"

    def add(self, task: Task) -> None:
        self.fresh().items[task.id] = task
        while len(self.items) > TASK_LIMIT:
            self.items.popitem(last=False)


def routes(provider: Provider) -> list[BaseRoute]:
    """A submit endpoint per model, get_result, credits, the delivery host and the task setting."""
    tasks = Tasks(provider.state)
    submits: list[BaseRoute] = [
        endpoint(provider, f"{BASE_PATH}/{name}", name, partial(submit, tasks, rule), DIALECT)
        for name, rule in MODELS.items()
    ]
    return [
        *submits,
        endpoint(provider, f"{BASE_PATH}/get_result", "get_result", partial(poll, tasks), DIALECT, ("GET",)),
        endpoint(provider, f"{BASE_PATH}/credits", "credits", _credits, DIALECT, ("GET",)),
        Route("/delivery/{name}", partial(_deliver, provider), methods=["GET"]),
        Route("/_emulator/tasks", partial(_configure_tasks, tasks), methods=["POST"]),
    ]


# ---- submit


async def submit(tasks: Tasks, rule: ModelRule, call: Call) -> Response:
    """POST /v1/<model>: check the body, queue a task, answer {id, polling_url, cost, input_mp, output_mp}."""
    body = call.json
    if body is None:
        raise _invalid("body", "JSON decode error", "json_invalid")
    for field_name in body:
        if field_name not in rule.fields:
            raise _invalid(field_name, "Extra inputs are not permitted", "extra_forbidden")  # UNCONFIRMED
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise _invalid("prompt", "Field required" if prompt is None else "Input should be a valid string")
    inputs = _check_inputs(body, rule)
    _check_options(body, rule)
    size = _ratio_size(body, rule, inputs) if rule.ratio else _pixel_size(body, rule, inputs)
    task = _task(body, rule, prompt, size, call, tasks.next_outcome())
    tasks.add(task)
    input_mp = round(sum((w * h if w else ONE_MP) for w, h in inputs) / MP, 2)
    output_mp = round(size[0] * size[1] / MP, 2)
    reply = {"cost": _cost(rule, output_mp, input_mp), "input_mp": input_mp, "output_mp": output_mp}
    if body.get("webhook_url"):  # §4.1: the result goes to the webhook (not called here); still pollable
        return JSONResponse({"id": task.id, "status": "Pending", "webhook_url": body["webhook_url"], **reply})
    origin, mount = _where(call)
    return JSONResponse(
        {"id": task.id, "polling_url": f"{origin}{mount}{BASE_PATH}/get_result?id={task.id}", **reply}
    )


def _where(call: Call) -> tuple[str, str]:
    """This request's origin and the provider's mount path ("/bfl"), for URLs the replies hand out."""
    url = call.request.url
    return f"{url.scheme}://{url.netloc}", url.path.rsplit(BASE_PATH + "/", 1)[0]


def _task(
    body: dict[str, Any], rule: ModelRule, prompt: str, size: tuple[int, int], call: Call, outcome: str
) -> Task:
    upsample = body.get("prompt_upsampling", rule.upsampling) or (
        "disable_pup" in rule.fields and not body.get("disable_pup")
    )
    seed = body.get("seed")
    return Task(
        id=str(uuid.uuid4()),
        outcome=outcome,
        prompt=f"{prompt}, richly detailed, natural light" if upsample else prompt,
        seed=seed if isinstance(seed, int) else random.randrange(2**31),
        size=size,
        fmt=body.get("output_format") or rule.default_format,
        fault=call.fault if call.fault and call.fault.kind in DELIVERY_FAULTS else None,
        started=time.time(),
    )


def _cost(rule: ModelRule, output_mp: float, input_mp: float) -> float:
    if not rule.per_mp:
        return rule.price
    return round(rule.price + rule.price / 2 * (max(0.0, output_mp - 1) + input_mp), 2)


def _check_inputs(body: dict[str, Any], rule: ModelRule) -> list[tuple[int, int]]:
    """Each input_image* (and image_prompt) is an http(s) URL or base64 of a real image; (0, 0) for URLs."""
    sizes = []
    for name in sorted(_inputs(rule.max_inputs) | {"image_prompt"}, key=lambda n: (len(n), n)):
        value = body.get(name)
        if value is None or name not in rule.fields:
            continue
        if not isinstance(value, str):
            raise _invalid(name, "Input should be a valid string")
        if value.startswith(("http://", "https://")):
            sizes.append((0, 0))  # fetched by BFL; the emulator does not reach out
            continue
        info = _decode_image(value)
        if info is None:
            raise _invalid(
                name, "Value error, could not decode the image: expected a URL or base64 image data"
            )
        sizes.append((info.width, info.height))
    return sizes


def _decode_image(value: str) -> images.ImageInfo | None:
    payload = (
        value.split(",", 1)[1] if value.startswith("data:") else value
    )  # data: prefix UNCONFIRMED: taken
    try:
        return images.probe(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return None


def _check_options(body: dict[str, Any], rule: ModelRule) -> None:
    _integer(body, "seed", None, None)
    _integer(body, "safety_tolerance", 0, rule.max_safety)
    _integer(body, "steps", 1, 50)
    _number(body, "guidance", 1.5, 10)
    _number(body, "image_prompt_strength", 0, 1)
    for flag in ("prompt_upsampling", "raw", "disable_pup"):
        if body.get(flag) is not None and not isinstance(body[flag], bool):
            raise _invalid(flag, "Input should be a valid boolean", "bool_type")
    fmt = body.get("output_format")
    if fmt is not None and fmt not in OUTPUT_FORMATS:
        raise _invalid("output_format", "Input should be 'jpeg' or 'png'", "enum")


def _integer(body: dict[str, Any], name: str, low: int | None, high: int | None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(name, "Input should be a valid integer", "int_type")
    if low is not None and value < low:
        raise _invalid(name, f"Input should be greater than or equal to {low}", "greater_than_equal")
    if high is not None and value > high:
        raise _invalid(name, f"Input should be less than or equal to {high}", "less_than_equal")


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(name, "Input should be a valid number", "float_type")
    if not low <= value <= high:
        raise _invalid(name, f"Input should be between {low:g} and {high:g}", "less_than_equal")


def _pixel_size(body: dict[str, Any], rule: ModelRule, inputs: list[tuple[int, int]]) -> tuple[int, int]:
    """width/height: multiples, bounds; FLUX.2 0/omitted follows the first input and >4 MP is resized (§3)."""
    default = rule.default_size or next(((w, h) for w, h in inputs if w), (1024, 1024))
    edges = []
    for name, fallback in zip(("width", "height"), default, strict=True):
        value = body.get(name)
        if value is None or (value == 0 and rule.default_size is None):  # FLUX.2: 0 = "model decides"
            edges.append(fallback)
            continue
        _integer(body, name, rule.min_edge, rule.max_edge)
        if value % rule.multiple:
            raise _invalid(name, f"Value error, {name.title()} must be a multiple of {rule.multiple}")
        edges.append(value)
    width, height = edges
    if width * height > rule.max_pixels or width % rule.multiple or height % rule.multiple:
        scale = min(1.0, math.sqrt(rule.max_pixels / (width * height)))
        width, height = (
            max(rule.multiple, int(edge * scale) // rule.multiple * rule.multiple) for edge in edges
        )
    return width, height


def _ratio_size(body: dict[str, Any], rule: ModelRule, inputs: list[tuple[int, int]]) -> tuple[int, int]:
    """aspect_ratio in 21:9..9:21; the output has about `target_pixels`, edges snapped to 32 (§2.3)."""
    value = body.get("aspect_ratio")
    if value is None:
        first = next(((w, h) for w, h in inputs if w), None)
        ratio = (
            Fraction(*first)
            if first and rule.default_ratio is None
            else _parse_ratio(rule.default_ratio or "1:1")
        )
    else:
        parsed = _parse_ratio(value) if isinstance(value, str) else None
        if parsed is None:
            raise _invalid("aspect_ratio", "Value error, aspect ratio must be a string like '16:9'")
        ratio = parsed
    if not RATIO_SPAN[0] <= ratio <= RATIO_SPAN[1]:
        raise _invalid("aspect_ratio", "Value error, aspect ratio must be between 21:9 and 9:21")
    width = math.sqrt(rule.target_pixels * ratio)
    height = width / float(ratio)
    return (
        max(rule.multiple, round(width / rule.multiple) * rule.multiple),
        max(rule.multiple, round(height / rule.multiple) * rule.multiple),
    )


def _parse_ratio(value: str) -> Fraction | None:
    parts = value.split(":")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        return None
    return Fraction(int(parts[0]), int(parts[1]))


# ---- polling and delivery


async def poll(tasks: Tasks, call: Call) -> Response:
    """GET /v1/get_result?id=…: Pending for the configured number of polls, then the task's outcome."""
    task_id = call.request.query_params.get("id")
    if not task_id:
        raise _invalid("id", "Field required", "missing", where="query")
    task = tasks.fresh().items.get(task_id)
    if task is None or task.outcome == "Task not found":
        return JSONResponse({"id": task_id, "status": "Task not found", "result": None})
    task.polls += 1
    reply: dict[str, Any] = {
        "id": task.id,
        "result": None,
        "progress": None,
        "details": None,
        "preview": None,
    }
    if task.polls <= tasks.pending_polls:
        progress = round(task.polls / (tasks.pending_polls + 1), 2)
        return JSONResponse({**reply, "status": "Pending", "progress": progress})
    if task.outcome != "Ready":
        return JSONResponse({**reply, "status": task.outcome, "details": DETAILS[task.outcome]})
    if task.ended is None:
        task.sample, task.ended = _sample(call, task), time.time()
    result = {"sample": task.sample, "prompt": task.prompt, "seed": task.seed}
    timing = {
        "start_time": task.started,
        "end_time": task.ended,
        "duration": round(task.ended - task.started, 3),
    }
    return JSONResponse({**reply, "status": "Ready", "result": {**result, **timing}})


def _sample(call: Call, task: Task) -> str | None:
    """Render the image (with a delivery fault from this poll or the submit) and name it on the other host."""
    faulted = call if call.fault and call.fault.kind in DELIVERY_FAULTS else replace(call, fault=task.fault)
    urls = deliver_images(faulted, 1, task.size, task.fmt, mode="url")
    if not urls:
        return None  # `partial`: Ready without a sample
    name = urls[0].rsplit("/", 1)[1]
    url = call.request.url
    host = "localhost" if url.hostname != "localhost" else "127.0.0.1"  # another origin, same server
    _, mount = _where(call)
    query = f"se={int(time.time()) + 600}&sig={uuid.uuid4().hex}"  # looks signed; not checked
    return f"{url.scheme}://{host}:{url.port}{mount}/delivery/{name}?{query}"


async def _deliver(provider: Provider, request: Request) -> Response:
    """The sample host: no auth (a signed URL); logged with header names so tests see if x-key came along."""
    record = {
        "id": f"req_{uuid.uuid4().hex[:24]}",
        "time": time.time(),
        "provider": provider.name,
        "endpoint": "delivery",
        "method": request.method,
        "path": request.url.path,
        "host": request.url.netloc,
        "query": list(request.query_params.keys()),
        "headers": list(request.headers.keys()),  # names only: values may carry keys
        "auth_ok": provider.settings.accepts(request.headers.get("x-key")),
        "status": None,
    }
    provider.state.log.append(record)
    stored = provider.state.fetch_file(request.path_params["name"].partition(".")[0])
    if stored is None:  # expired signed URL (§4.2: ~10 minutes)
        record["status"] = 403
        return Response(
            "Signature not valid in the specified time frame", status_code=403, media_type="text/plain"
        )
    record["status"] = 200
    return Response(stored.data, media_type=stored.mime)


async def _credits(call: Call) -> Response:
    return JSONResponse({"credits": 1000.0})


async def _configure_tasks(tasks: Tasks, request: Request) -> JSONResponse:
    """POST {"pending_polls": n} or {"outcome": status, "count": n}; see the module docstring."""
    try:
        body = await request.json()
        if set(body) == {"pending_polls"}:
            tasks.fresh().pending_polls = _count(body["pending_polls"], 0)
            return JSONResponse({"pending_polls": tasks.pending_polls})
        if set(body) - {"count"} != {"outcome"} or body["outcome"] not in OUTCOMES:
            raise ValueError(
                f'expected {{"pending_polls": n}} or {{"outcome": one of {OUTCOMES}, "count": n}}'
            )
        tasks.fresh().outcomes += [body["outcome"]] * _count(body.get("count", 1), 1)
        return JSONResponse({"queued": len(tasks.outcomes)})
    except (ValueError, TypeError, AttributeError) as error:
        return JSONResponse({"error": str(error)}, status_code=400)


def _count(value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"expected an integer >= {low}, got {value!r}")
    return value


# ---- errors


def _invalid(field_name: str, message: str, kind: str = "value_error", where: str = "body") -> ApiError:
    """A FastAPI validation error (§5: 422 `detail` list; shape UNCONFIRMED)."""
    return ApiError(422, message, type=kind, param=field_name, code=where)


CANNED: dict[int, str] = {
    400: "Bad request",
    402: "Insufficient credits",
    403: "Not authenticated",
    404: "Not Found",
    429: "You have reached the maximum number of active tasks (24). Wait for a task to finish.",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service temporarily unavailable",
    504: "Gateway Timeout",
}


def _canned(status: int, call: Call) -> ApiError:
    if status == 401:  # a missing or unknown key: BFL's docs list 403 for key problems (§5)
        message = "Invalid API key" if call.request.headers.get("x-key") else "Not authenticated"
        return ApiError(403, message)
    if status == 422:
        return _invalid("prompt", "Field required", "missing")
    return ApiError(status, CANNED.get(status, "Request failed"))


def _render(error: ApiError) -> dict[str, Any]:
    if error.status == 422 and error.param:
        item = {"type": error.type, "loc": [error.code or "body", error.param], "msg": error.message}
        return {"detail": [item]}
    return {"detail": error.message}


DIALECT = Dialect(render=_render, canned=_canned, credential=lambda request: request.headers.get("x-key"))
