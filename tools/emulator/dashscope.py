"""Alibaba DashScope protocol (shared/providers/dashscope-qwen.md) for `dashscope`: Qwen-Image and Wan.

Owns the sync endpoint /api/v1/services/aigc/multimodal-generation/generation, the task endpoints
text2image/image-synthesis and image-generation/generation (`X-DashScope-Async: enable`), GET /tasks/{id},
their reply and error shapes ({request_id, code, message}) and the per-model rules of §3. A task moves
PENDING → RUNNING → SUCCEEDED over `polls` polls; POST /dashscope/_emulator/tasks queues other outcomes:

    {"outcome": "succeeded"|"failed"|"never"|"canceled"|"unknown", "polls": 2, "count": 1,
     "code"?, "message"?}  → the next `count` submitted tasks end so ("failed": DataInspectionFailed)
    {"default_polls": n}   → how many polls an ordinary task takes (back to 2 on /_emulator/reset)

Auth, latency, faults (a fault on `tasks` shapes the results a finishing poll delivers), the log and image
bytes are core's.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tools.emulator import images
from tools.emulator.core import ApiError, Call, Dialect, Provider, deliver_images, endpoint

__all__ = ["BASE_PATH", "RULES", "ModelRule", "routes"]

BASE_PATH = "/api/v1"
SYNC, TEXT2IMAGE, IMAGE_GENERATION = "generation", "image-synthesis", "image-generation"
MB = 1024 * 1024
MAX_SEED = 2147483647
OUTCOMES = ("succeeded", "failed", "never", "canceled", "unknown")
DEFAULT_POLLS = 2  # submit PENDING → poll 1 RUNNING → poll 2 SUCCEEDED
INSPECTION = "Output data may contain inappropriate content."
INPUT_FORMATS = ("JPEG", "PNG", "BMP", "TIFF", "WEBP", "GIF")  # §3 edit family
SIZE = re.compile(r"^(\d{2,5})\*(\d{2,5})$")


@dataclass(frozen=True)
class ModelRule:
    """What one model accepts (§3)."""

    modes: frozenset[str]  # endpoints serving it: SYNC, TEXT2IMAGE, IMAGE_GENERATION
    sizes: tuple[str, ...] = ()  # an explicit W*H list (Qwen-Image)
    side: tuple[int, int] | None = None  # each edge within
    pixels: tuple[int, int] | None = None  # total pixels within, aspect 1:max_ratio..max_ratio:1
    max_ratio: float = 4
    default_size: tuple[int, int] | None = (1024, 1024)  # None: follows the last input image
    settable: bool = True  # qwen-image-edit: size cannot be set
    max_n: int = 1
    default_n: int = 1
    images: tuple[int, int] = (0, 0)  # min and max input images
    prompt_max: int = 800  # longer prompts are truncated silently (§2.1)
    usage: str = "qwen"  # reply usage shape: "qwen" {width, height, image_count} or "wan" (§4.1)


# §3: current doc sizes plus the older 1472*1140 / 1140*1472 spellings (gotcha 4).
QWEN_SIZES = ("1664*928", "1472*1104", "1328*1328", "1104*1472", "928*1664", "1472*1140", "1140*1472")
QWEN_IMAGE = ModelRule(frozenset({SYNC, TEXT2IMAGE}), sizes=QWEN_SIZES, default_size=(1664, 928))
QWEN_EDIT = ModelRule(frozenset({SYNC}), default_size=None, settable=False, images=(1, 1))
QWEN_EDIT_PLUS = ModelRule(frozenset({SYNC}), side=(512, 2048), default_size=None, max_n=6, images=(1, 3))
WAN26 = ModelRule(
    frozenset({SYNC, IMAGE_GENERATION}),
    pixels=(768 * 768, 1440 * 1440),
    default_size=(1280, 1280),
    max_n=4,
    default_n=4,
    prompt_max=2100,
    usage="wan",
)
WAN_T2I = ModelRule(frozenset({TEXT2IMAGE}), side=(512, 1440), max_n=4, default_n=4, usage="wan")
# Qwen-Image 3.0 (its API reference): sync, 1-3 references, 512*512-2048*2048 pixels; n 1-6 and the 1:8
# ratio span are 3p (UNCONFIRMED). Without a size the model picks one (here: the last input's shape).
QWEN_3 = ModelRule(
    frozenset({SYNC}), pixels=(512 * 512, 2048 * 2048), max_ratio=8, default_size=None, max_n=6, images=(0, 3)
)
# Wan 2.7 image (its API reference): sync; pro renders 4K text-to-image. Pixel floor, n and 0-9 inputs are 3p.
WAN27 = replace(WAN26, modes=frozenset({SYNC}), pixels=(768 * 768, 2048 * 2048), default_n=1, images=(0, 9))
WAN27_PRO = replace(WAN27, pixels=(768 * 768, 4096 * 4096))
WAN26_IMAGE = replace(WAN26, modes=frozenset({SYNC}), default_size=None, default_n=1, images=(1, 9))
# Qwen-Image 2.x: 2.1-pro takes up to 10 references (the API reference); the rest is 3p (UNCONFIRMED): 2.0 and
# 2.0-pro as 3.0 with 1-3 inputs, 512*512-2048*2048 pixels, n 1-6; 2.1's 1:8-8:1 span.
QWEN_21_PRO = replace(QWEN_3, images=(0, 10))
LOOSE = ModelRule(frozenset({SYNC, TEXT2IMAGE, IMAGE_GENERATION}), side=(256, 4096), max_n=6, images=(0, 10))
RULES: dict[str, ModelRule] = {
    "qwen-image": QWEN_IMAGE,
    "qwen-image-plus": QWEN_IMAGE,
    "qwen-image-plus-2026-01-09": QWEN_IMAGE,
    "qwen-image-max": replace(QWEN_IMAGE, modes=frozenset({SYNC})),  # only plus and base also run async
    "qwen-image-max-2025-12-30": replace(QWEN_IMAGE, modes=frozenset({SYNC})),
    "qwen-image-edit": QWEN_EDIT,
    "qwen-image-edit-plus": QWEN_EDIT_PLUS,
    "qwen-image-edit-max": QWEN_EDIT_PLUS,
    "qwen-image-3.0-pro": QWEN_3,
    "qwen-image-3.0": QWEN_3,
    "qwen-image-2.1-pro": QWEN_21_PRO,
    "qwen-image-2.0-pro": QWEN_3,
    "qwen-image-2.0": QWEN_3,
    "wan2.7-image-pro": WAN27_PRO,
    "wan2.7-image": WAN27,
    "wan2.6-image": WAN26_IMAGE,
    "wan2.6-t2i": WAN26,
    "wan2.5-t2i-preview": replace(WAN26, modes=frozenset({TEXT2IMAGE}), prompt_max=800),
    "wan2.2-t2i-flash": WAN_T2I,
    "wan2.2-t2i-plus": WAN_T2I,
    "wanx2.1-t2i-turbo": WAN_T2I,
    "wanx2.1-t2i-plus": WAN_T2I,
    "wanx2.0-t2i-turbo": WAN_T2I,
}


@dataclass(frozen=True)
class Job:
    """One validated request, normalized for the reply."""

    model: str
    rule: ModelRule
    prompt: str
    n: int
    size: tuple[int, int]
    extend: bool


@dataclass
class Scenario:
    outcome: str = "succeeded"
    polls: int = DEFAULT_POLLS
    code: str = "DataInspectionFailed"
    message: str = INSPECTION


@dataclass
class Task:
    job: Job
    scenario: Scenario
    endpoint: str
    submitted: float = field(default_factory=time.time)
    polls: int = 0
    output: dict[str, Any] | None = None  # set once final, so later polls see the same results
    usage: dict[str, Any] | None = None


@dataclass
class TaskBoard:
    """Tasks and queued scenarios of one mounted provider; forgotten when the emulator is reset."""

    provider: Provider
    tasks: dict[str, Task] = field(default_factory=dict)
    queue: list[tuple[Scenario, int]] = field(default_factory=list)
    default_polls: int = DEFAULT_POLLS
    _log: object = None

    def fresh(self) -> TaskBoard:
        if self._log is not self.provider.state.log:  # /_emulator/reset replaced the log: start over
            self.tasks.clear()
            self.queue.clear()
            self.default_polls, self._log = DEFAULT_POLLS, self.provider.state.log
        return self

    def next_scenario(self) -> Scenario:
        if not self.queue:
            return Scenario(polls=self.default_polls)
        scenario, left = self.queue[0]
        self.queue[0] = (scenario, left - 1)
        if left == 1:
            self.queue.pop(0)
        return scenario


def routes(provider: Provider) -> list[BaseRoute]:
    """The sync endpoint, the two task submits, the task query and the scenario control."""
    board = TaskBoard(provider)
    services = f"{BASE_PATH}/services/aigc"

    async def submit_t2i(call: Call) -> Response:
        return _submit(board, call, TEXT2IMAGE)

    async def submit_generation(call: Call) -> Response:
        return _submit(board, call, IMAGE_GENERATION)

    async def query(call: Call) -> Response:
        return _query(board.fresh(), call)

    return [
        endpoint(provider, f"{services}/multimodal-generation/generation", SYNC, generate, DIALECT),
        endpoint(provider, f"{services}/text2image/image-synthesis", TEXT2IMAGE, submit_t2i, DIALECT),
        endpoint(
            provider, f"{services}/image-generation/generation", IMAGE_GENERATION, submit_generation, DIALECT
        ),
        endpoint(provider, f"{BASE_PATH}/tasks/{{task_id}}", "tasks", query, DIALECT, methods=("GET",)),
        Route("/_emulator/tasks", _control(board), methods=["POST"]),
    ]


def invalid(message: str, code: str = "InvalidParameter", status: int = 400) -> ApiError:
    return ApiError(status, message, code=code)


# --- the sync call ----------------------------------------------------------------------------------


async def generate(call: Call) -> Response:
    """POST multimodal-generation/generation: the images in the reply (§2.1, §4.1)."""
    if _async_header(call):  # gotcha 2; HTTP 403 as spring-ai-alibaba#166 shows
        raise invalid("current user api does not support asynchronous calls", "AccessDenied", 403)
    body, model, rule = _open(call, SYNC)
    job = _messages_job(call, body, model, rule)
    urls = deliver_images(call, job.n, job.size, mode="url")
    content = [{"image": url, **({"type": "image"} if rule.usage == "wan" else {})} for url in urls]
    output: dict[str, Any] = {
        "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": content}}]
    }
    if rule.usage == "wan":
        output["finished"] = True
    else:
        output["task_metric"] = {"TOTAL": job.n, "SUCCEEDED": len(urls), "FAILED": job.n - len(urls)}
    return JSONResponse({"request_id": _request_id(), "output": output, "usage": _usage(job, len(urls))})


def _async_header(call: Call) -> bool:
    return call.request.headers.get("x-dashscope-async", "").lower() == "enable"


def _open(call: Call, mode: str) -> tuple[dict[str, Any], str, ModelRule]:
    """The JSON body, its model and the model's rule, which must be served on this endpoint."""
    body = call.json
    if body is None:
        raise invalid("The request body is not valid JSON.")
    model = body.get("model")
    if not model:
        raise invalid('Required parameter "model" missing from request.', "BadRequest.EmptyModel")
    allowed = call.provider.settings.models or ()
    if not isinstance(model, str) or (model not in RULES and model not in allowed):
        raise invalid("Model not exist.")
    rule = RULES.get(model, LOOSE)
    if mode not in rule.modes:
        raise invalid("url error, please check url!")
    if not isinstance(body.get("input"), dict):
        raise invalid('Required parameter "input" missing from request.', "BadRequest.EmptyInput")
    if "parameters" in body and not isinstance(body["parameters"], dict):
        raise invalid("parameters must be an object.")
    return body, model, rule


def _messages_job(call: Call, body: dict[str, Any], model: str, rule: ModelRule) -> Job:
    """input.messages: exactly one user message, its images first, exactly one text item (§2.1)."""
    messages = body["input"].get("messages")
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        raise invalid("input.messages must hold exactly one message.")
    message = messages[0]
    content = message.get("content")
    if message.get("role") != "user" or not isinstance(content, list) or not content:
        raise invalid("input.messages[0] must be a user message with a content list.")
    texts = [item["text"] for item in content if isinstance(item, dict) and isinstance(item.get("text"), str)]
    refs = [item.get("image") for item in content if isinstance(item, dict) and "image" in item]
    if len(texts) != 1 or len(texts) + len(refs) != len(content) or not texts[0].strip():
        raise invalid("The content must hold exactly one non-empty text item and only image items besides.")
    last = _check_images(call, refs, rule)
    parameters = body.get("parameters", {})
    return _job(model, rule, texts[0], parameters, last)


def _check_images(call: Call, refs: list[Any], rule: ModelRule) -> tuple[int, int] | None:
    """Count and check input images; return the last one's size when known (it sets the default shape)."""
    low, high = rule.images
    if not low <= len(refs) <= high:
        wanted = f"{low}" if low == high else f"{low} to {high}"
        raise invalid(f"This model takes {wanted} input image(s), got {len(refs)}.")
    shape = None
    for ref in refs:
        if not isinstance(ref, str):
            raise invalid("An image item must be a URL or a data URL.", "InvalidURL")
        shape = _check_image(call, ref)
    return shape


def _check_image(call: Call, ref: str) -> tuple[int, int] | None:
    if ref.startswith(("http://", "https://")):
        return None  # the real service fetches it; the emulator has no internet
    if ref.startswith("oss://"):
        if call.request.headers.get("x-dashscope-ossresourceresolve", "").lower() != "enable":
            raise invalid(
                "oss:// inputs need the X-DashScope-OssResourceResolve: enable header.", "InvalidURL"
            )
        return None
    match = re.match(r"^data:image/[\w.+-]+;base64,(.*)$", ref, re.DOTALL)
    if match is None:
        raise invalid("The provided URL does not appear to be valid.", "InvalidURL")
    try:
        data = base64.b64decode(match[1], validate=True)
    except (binascii.Error, ValueError):
        raise invalid(
            "The image data URL does not hold valid base64.", "InvalidParameter.DataInspection"
        ) from None
    info = images.probe(data)
    if info is None or info.format not in INPUT_FORMATS:
        raise invalid("The image format is not supported.", "InvalidParameter.DataInspection")
    if len(data) > 10 * MB or not all(384 <= edge <= 3072 for edge in (info.width, info.height)):
        raise invalid(
            f"The image is {info.width}x{info.height}, {len(data)} bytes; sides must be 384-3072 px, ≤ 10 MB."
        )
    return info.width, info.height


def _job(
    model: str, rule: ModelRule, prompt: str, parameters: dict[str, Any], last: tuple[int, int] | None
) -> Job:
    """Parameters shared by every endpoint (§2.1): n, size, seed, flags, negative_prompt."""
    n = parameters.get("n", rule.default_n)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= rule.max_n:
        raise invalid(f"n must be an integer from 1 to {rule.max_n} for {model}, got {n!r}.")
    seed = parameters.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise invalid(f"seed must be an integer in [0, {MAX_SEED}], got {seed!r}.")
    for flag in ("prompt_extend", "watermark"):
        if not isinstance(parameters.get(flag, False), bool):
            raise invalid(f"{flag} must be true or false.")
    if not isinstance(parameters.get("negative_prompt", ""), str):
        raise invalid("negative_prompt must be a string.")
    size = _size(parameters.get("size"), rule, last)
    return Job(model, rule, prompt[: rule.prompt_max], n, size, parameters.get("prompt_extend", True))


def _size(value: Any, rule: ModelRule, last: tuple[int, int] | None) -> tuple[int, int]:
    if value is None or not rule.settable:  # qwen-image-edit: not settable, ignored (UNCONFIRMED)
        return rule.default_size or _follow(last)
    match = SIZE.match(value) if isinstance(value, str) else None
    if match is None:  # gotcha 1: "1328x1328" is refused, only W*H counts
        raise invalid(f"The size '{value}' is invalid; give it as width*height, e.g. 1024*1024.")
    width, height = int(match[1]), int(match[2])
    if not _fits(rule, width, height):
        raise invalid(f"The size '{value}' is not supported by this model.")
    return width, height


def _fits(rule: ModelRule, width: int, height: int) -> bool:
    if rule.sizes:
        return f"{width}*{height}" in rule.sizes
    if rule.side is not None:
        return all(rule.side[0] <= edge <= rule.side[1] for edge in (width, height))
    low, high = rule.pixels or (0, 0)
    return low <= width * height <= high and 1 / rule.max_ratio <= width / height <= rule.max_ratio


def _follow(last: tuple[int, int] | None) -> tuple[int, int]:
    """About 1024x1024 pixels in the last input's aspect, edges multiples of 16 (§3)."""
    width, height = last or (1024, 1024)
    scale = math.sqrt(1024 * 1024 / (width * height))
    return max(16, round(width * scale / 16) * 16), max(16, round(height * scale / 16) * 16)


def _usage(job: Job, made: int) -> dict[str, Any]:
    if job.rule.usage == "wan":  # §4.1 wan2.6: billed per image, tokens fixed at 0
        size = f"{job.size[0]}*{job.size[1]}"
        return {"image_count": made, "size": size, "input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    return {"width": job.size[0], "height": job.size[1], "image_count": made}


def _request_id() -> str:
    return str(uuid.uuid4())


# --- tasks ------------------------------------------------------------------------------------------


def _submit(board: TaskBoard, call: Call, mode: str) -> Response:
    """POST a task endpoint: check it like a sync call, answer PENDING with a task_id (§4.2)."""
    if not _async_header(call):  # gotcha 2
        raise invalid("current user api does not support synchronous calls", "AccessDenied", 403)
    body, model, rule = _open(call, mode)
    if mode == IMAGE_GENERATION:
        job = _messages_job(call, body, model, rule)
    else:
        prompt = body["input"].get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise invalid('Required parameter "input.prompt" missing from request.', "BadRequest.EmptyInput")
        if not isinstance(body["input"].get("negative_prompt", ""), str):
            raise invalid("negative_prompt must be a string.")
        job = _job(model, rule, prompt, body.get("parameters", {}), None)
    task_id = str(uuid.uuid4())
    board.fresh().tasks[task_id] = Task(job, board.next_scenario(), mode)
    return JSONResponse(
        {"request_id": _request_id(), "output": {"task_id": task_id, "task_status": "PENDING"}}
    )


def _query(board: TaskBoard, call: Call) -> Response:
    """GET /tasks/{id}: one status step per poll; the final answer is kept for later polls."""
    task_id = call.request.path_params["task_id"]
    task = board.tasks.get(task_id)
    if task is None:  # an unknown or expired id answers UNKNOWN (§4.2)
        return _task_reply(task_id, {"task_status": "UNKNOWN"})
    task.polls += 1
    scenario = task.scenario
    if task.output is None and scenario.outcome != "never" and task.polls >= scenario.polls:
        task.output, task.usage = _finish(call, task)
    if task.output is not None:
        return _task_reply(task_id, task.output, task.usage)
    status = "PENDING" if task.polls <= (scenario.polls - 1) // 2 else "RUNNING"
    return _task_reply(task_id, {"task_status": status, **_times(task)})


def _finish(call: Call, task: Task) -> tuple[dict[str, Any], dict[str, Any] | None]:
    scenario, job = task.scenario, task.job
    times = {**_times(task), "end_time": _stamp(time.time())}
    if scenario.outcome == "failed":
        return {"task_status": "FAILED", "code": scenario.code, "message": scenario.message, **times}, None
    if scenario.outcome in ("canceled", "unknown"):
        return {"task_status": scenario.outcome.upper(), **times}, None
    urls = deliver_images(call, job.n, job.size, mode="url")
    metrics = {"TOTAL": job.n, "SUCCEEDED": len(urls), "FAILED": job.n - len(urls)}
    output: dict[str, Any] = {"task_status": "SUCCEEDED", **times, "task_metrics": metrics}
    if task.endpoint == IMAGE_GENERATION:  # messages-protocol tasks answer like the sync call (UNCONFIRMED)
        content = [{"image": url, "type": "image"} for url in urls]
        output["choices"] = [{"finish_reason": "stop", "message": {"role": "assistant", "content": content}}]
        return output, _usage(job, len(urls))
    actual = {"actual_prompt": f"A detailed, well-lit picture of {job.prompt}"} if job.extend else {}
    made = [{"orig_prompt": job.prompt, **actual, "url": url} for url in urls]
    failed = [{"code": "DataInspectionFailed", "message": INSPECTION}] * (job.n - len(urls))
    output["results"] = made + failed
    return output, {"image_count": len(urls)}


def _times(task: Task) -> dict[str, str]:
    return {"submit_time": _stamp(task.submitted), "scheduled_time": _stamp(task.submitted + 0.02)}


def _stamp(moment: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(moment)) + f".{int(moment * 1000) % 1000:03d}"


def _task_reply(task_id: str, output: dict[str, Any], usage: dict[str, Any] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"request_id": _request_id(), "output": {"task_id": task_id, **output}}
    if usage is not None:
        body["usage"] = usage
    return JSONResponse(body)


def _control(board: TaskBoard) -> Callable[[Request], Awaitable[JSONResponse]]:
    """POST /_emulator/tasks: queue an outcome for the next `count` tasks, or set `default_polls`."""

    async def configure(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body() or b"{}")
            return JSONResponse(_configure(board.fresh(), body))
        except (TypeError, ValueError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)

    return configure


def _configure(board: TaskBoard, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    if "default_polls" in body:
        board.default_polls = _count(body, "default_polls")
        return {"default_polls": board.default_polls}
    unknown = set(body) - {"outcome", "polls", "count", "code", "message"}
    outcome = body.get("outcome", "succeeded")
    if unknown or outcome not in OUTCOMES:
        raise ValueError(
            f"a task scenario takes outcome ({', '.join(OUTCOMES)}), polls, count, code, message"
        )
    texts = {key: str(body[key]) for key in ("code", "message") if key in body}
    scenario = Scenario(outcome, _count({"polls": board.default_polls, **body}, "polls"), **texts)
    board.queue.append((scenario, _count({"count": 1, **body}, "count")))
    return {"queued": sum(left for _, left in board.queue)}


def _count(body: dict[str, Any], name: str) -> int:
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1")
    return value


# --- errors -----------------------------------------------------------------------------------------


CANNED: dict[int, tuple[str, str]] = {
    400: ("DataInspectionFailed", "Input data may contain inappropriate content."),
    401: ("InvalidApiKey", "Invalid API-key provided."),
    403: ("AccessDenied", "Access denied."),
    408: ("RequestTimeOut", "Request timed out, please try again later."),
    413: ("BadRequest.TooLarge", "Payload Too Large"),
    429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    500: (
        "InternalError",
        "An internal error has occured, please try again later or contact service support.",
    ),
}


def _canned(status: int, call: Call) -> ApiError:
    code, message = CANNED.get(
        status, ("InternalError" if status >= 500 else "InvalidParameter", "Request failed.")
    )
    return ApiError(status, message, code=code)


def _render(error: ApiError) -> dict[str, Any]:
    return {"request_id": _request_id(), "code": error.code or "InvalidParameter", "message": error.message}


DIALECT = Dialect(render=_render, canned=_canned)
