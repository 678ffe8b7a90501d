"""fal's queue API for `fal` (server/imagegate/providers/fal.py cites the documents: fal-js queue.ts,
types/common.ts, types/endpoints.ts; fal.ai docs inference-api and model-apis/errors; later.md).

Owns, under the base URL (queue.fal.run): POST /{endpoint} for the curated endpoints below, each checking its
input schema (types/endpoints.ts: field names, enums, image_size presets or {width, height}, `image_urls` or
one `image_url`) and answering `{request_id, response_url, status_url, cancel_url, queue_position}`; GET
/{owner}/{app}/requests/{id}/status (HTTP 202 with IN_QUEUE + queue_position, then IN_PROGRESS with logs when
`?logs=1`, then 200 COMPLETED with metrics); GET /{owner}/{app}/requests/{id} (the result; before
completion 400 "Request is still in progress"); PUT …/cancel (202 CANCELLATION_REQUESTED, 400
ALREADY_COMPLETED, 404 NOT_FOUND). Status, result and cancel live on the owner/app root only, as the docs
say. Result images are served from another origin (127.0.0.1 ⇄ localhost, standing in for fal.media),
and the log shows whether an Authorization header reached it. Auth is `Authorization: Key <key>` only.
UNCONFIRMED, strict here on purpose: unknown input fields are refused (422 extra_forbidden); num_images
ranges where fal publishes none are 1-4; the 401 wording. While IN_PROGRESS the runner's log gains a line
("Generating image: step k/n") each poll, so a client relaying logs has something new to say.

Request control, back to defaults on /_emulator/reset:
    POST /fal/_emulator/requests {"queue_polls": n, "progress_polls": n}  (defaults 1 and 1)
    POST /fal/_emulator/requests {"outcome": "content_policy"|"nsfw"|"error", "count": 1}
"""

from __future__ import annotations

import base64
import binascii
import random
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tools.emulator import images
from tools.emulator.core import ApiError, Call, Dialect, Provider, deliver_images, endpoint
from tools.emulator.state import EmulatorState

__all__ = ["BASE_PATH", "ENDPOINTS", "OUTCOMES", "routes"]

BASE_PATH = ""
PRESETS = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}
RATIOS_1K = {
    "21:9": (1536, 672),
    "16:9": (1344, 768),
    "3:2": (1248, 832),
    "4:3": (1184, 864),
    "5:4": (1152, 896),
    "1:1": (1024, 1024),
    "4:5": (896, 1152),
    "3:4": (864, 1184),
    "2:3": (832, 1248),
    "9:16": (768, 1344),
}
OUTCOMES = ("completed", "content_policy", "nsfw", "error")
COMMON = frozenset({"prompt", "seed", "sync_mode", "output_format"})
LIMIT = 5000


@dataclass(frozen=True)
class Endpoint:
    """One endpoint's input schema, as far as the emulator checks it."""

    fields: frozenset[str]
    size: str = "image_size"  # or "aspect_ratio"
    inputs: str | None = None  # "image_urls" or "image_url" (required when set)
    max_inputs: int | None = None
    num_images: int | None = None  # max num_images; None: no such field
    formats: tuple[str, ...] = ("jpeg", "png")
    safety: tuple[str, ...] = ()
    resolutions: tuple[str, ...] = ()
    default: tuple[int, int] | None = (1024, 768)  # None: follow the first input
    min_pixels: int = 0
    default_format: str = "jpeg"
    enums: tuple[tuple[str, tuple[str, ...]], ...] = ()  # other enum fields and their values


_FLUX2 = COMMON | {"image_size", "safety_tolerance", "enable_safety_checker"}
_FLUX = Endpoint(_FLUX2, safety=("1", "2", "3", "4", "5"))
_FLUX_EDIT = Endpoint(_FLUX2 | {"image_urls"}, inputs="image_urls", safety=_FLUX.safety, default=None)
_SEEDREAM = COMMON - {"output_format"} | {
    "image_size",
    "num_images",
    "max_images",
    "enable_safety_checker",
    "enhance_prompt_mode",
}
_NANO = COMMON | {"aspect_ratio", "num_images", "safety_tolerance", "limit_generations"}
_NANO_SAFETY = ("1", "2", "3", "4", "5", "6")
_QWEN = COMMON | {
    "image_size",
    "num_images",
    "negative_prompt",
    "guidance_scale",
    "num_inference_steps",
    "acceleration",
    "enable_safety_checker",
}
# RecraftV3TextToImageInput: no num_images, seed or output_format; `style` an enum (its families here, the
# sub-styles like "digital_illustration/pixel_art" too). IdeogramV3Input: rendering_speed, style enums.
_RECRAFT_STYLES = ("any", "realistic_image", "digital_illustration", "vector_illustration")
_RECRAFT = frozenset(
    {"prompt", "image_size", "style", "colors", "style_id", "enable_safety_checker", "sync_mode"}
)
_IDEOGRAM = COMMON - {"output_format"} | {
    "image_size",
    "num_images",
    "rendering_speed",
    "expand_prompt",
    "negative_prompt",
    "style",
    "style_codes",
    "style_preset",
    "color_palette",
    "image_urls",
}
ENDPOINTS: dict[str, Endpoint] = {
    "fal-ai/flux-2-pro": _FLUX,
    "fal-ai/flux-2-pro/edit": _FLUX_EDIT,
    "fal-ai/flux-2-max": _FLUX,
    "fal-ai/flux-2-max/edit": _FLUX_EDIT,
    "fal-ai/flux-2-flex": Endpoint(_FLUX2 | {"guidance_scale", "num_inference_steps"}, safety=_FLUX.safety),
    "fal-ai/flux-2-flex/edit": Endpoint(
        _FLUX2 | {"guidance_scale", "num_inference_steps", "image_urls"},
        inputs="image_urls",
        safety=_FLUX.safety,
        default=None,
    ),
    "fal-ai/bytedance/seedream/v4/text-to-image": Endpoint(
        _SEEDREAM, num_images=6, default=(2048, 2048), min_pixels=921600, formats=(), default_format="png"
    ),
    "fal-ai/bytedance/seedream/v4/edit": Endpoint(
        _SEEDREAM | {"image_urls"},
        inputs="image_urls",
        max_inputs=10,
        num_images=6,
        default=(2048, 2048),
        min_pixels=921600,
        formats=(),
    ),
    "fal-ai/nano-banana": Endpoint(
        _NANO,
        size="aspect_ratio",
        num_images=4,
        formats=("jpeg", "png", "webp"),
        safety=_NANO_SAFETY,
        default_format="png",
    ),
    "fal-ai/nano-banana/edit": Endpoint(
        _NANO | {"image_urls"},
        size="aspect_ratio",
        inputs="image_urls",
        num_images=4,
        formats=("jpeg", "png", "webp"),
        safety=_NANO_SAFETY,
        default=None,
        default_format="png",
    ),
    "fal-ai/nano-banana-pro": Endpoint(
        _NANO | {"resolution", "enable_web_search", "system_prompt"},
        size="aspect_ratio",
        num_images=4,
        formats=("jpeg", "png", "webp"),
        safety=_NANO_SAFETY,
        resolutions=("1K", "2K", "4K"),
        default_format="png",
    ),
    "fal-ai/nano-banana-pro/edit": Endpoint(
        _NANO | {"resolution", "enable_web_search", "system_prompt", "image_urls"},
        size="aspect_ratio",
        inputs="image_urls",
        num_images=4,
        formats=("jpeg", "png", "webp"),
        safety=_NANO_SAFETY,
        resolutions=("1K", "2K", "4K"),
        default=None,
        default_format="png",
    ),
    "fal-ai/recraft/v3/text-to-image": Endpoint(
        _RECRAFT, default=(1024, 1024), formats=(), default_format="webp", enums=(("style", _RECRAFT_STYLES),)
    ),
    "fal-ai/ideogram/v3": Endpoint(
        _IDEOGRAM,
        num_images=4,
        default=(1024, 1024),
        formats=(),
        default_format="png",
        enums=(
            ("rendering_speed", ("TURBO", "BALANCED", "QUALITY")),
            ("style", ("AUTO", "GENERAL", "REALISTIC", "DESIGN")),
        ),
    ),
    "fal-ai/qwen-image": Endpoint(_QWEN | {"loras", "use_turbo"}, num_images=4, default_format="png"),
    "fal-ai/qwen-image-edit": Endpoint(
        _QWEN | {"image_url"}, inputs="image_url", num_images=4, default=None, default_format="png"
    ),
}


@dataclass
class Job:
    id: str
    app: str
    outcome: str
    size: tuple[int, int]
    count: int
    fmt: str
    seed: int
    polls: int = 0
    done: bool = False
    cancelled: bool = False
    result: dict[str, Any] | None = field(default=None, repr=False)


class Jobs:
    """The queue of one emulator app, forgotten when the control API resets the state."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._clear()

    def _clear(self) -> None:
        self._log = self.state.log
        self.items: OrderedDict[str, Job] = OrderedDict()
        self.queue_polls, self.progress_polls = 1, 1
        self.outcomes: list[str] = []

    def fresh(self) -> Jobs:
        if self.state.log is not self._log:
            self._clear()
        return self

    def add(self, job: Job) -> None:
        self.fresh().items[job.id] = job
        while len(self.items) > LIMIT:
            self.items.popitem(last=False)


def routes(provider: Provider) -> list[BaseRoute]:
    jobs = Jobs(provider.state)
    submits: list[BaseRoute] = [
        endpoint(provider, f"/{name}", name, partial(_submit, jobs, name, rule), DIALECT)
        for name, rule in ENDPOINTS.items()
    ]
    root = "/{owner}/{app}/requests/{request_id}"
    return [
        *submits,
        endpoint(provider, f"{root}/status", "status", partial(_status, jobs), DIALECT, ("GET",)),
        endpoint(provider, root, "result", partial(_result, jobs), DIALECT, ("GET",)),
        endpoint(provider, f"{root}/cancel", "cancel", partial(_cancel, jobs), DIALECT, ("PUT",)),
        Route("/cdn/{name}", partial(_cdn, provider), methods=["GET"]),
        Route("/_emulator/requests", partial(_configure, jobs), methods=["POST"]),
    ]


# ---- submit


async def _submit(jobs: Jobs, name: str, rule: Endpoint, call: Call) -> Response:
    body = call.json
    if body is None:
        raise _invalid("body", "Input should be a valid dictionary", "dict_type")
    for key in body:
        if key not in rule.fields:
            raise _invalid(key, "Extra inputs are not permitted", "extra_forbidden")
    if not isinstance(body.get("prompt"), str):
        raise _invalid("prompt", "Field required", "missing")
    inputs = _inputs(body, rule)
    count = _options(body, rule)
    size = _size(body, rule, inputs)
    fmt = body.get("output_format") or rule.default_format
    seed = body["seed"] if isinstance(body.get("seed"), int) else random.randrange(2**31)
    outcome = jobs.fresh().outcomes.pop(0) if jobs.outcomes else "completed"
    owner, app = name.split("/")[:2]
    job = Job(str(uuid.uuid4()), f"{owner}/{app}", outcome, size, count, fmt, seed)
    jobs.add(job)
    url = call.request.url
    mount = url.path[: -len(name) - 1]
    root = f"{url.scheme}://{url.netloc}{mount}/{job.app}/requests/{job.id}"
    return JSONResponse(
        {
            "status": "IN_QUEUE",
            "request_id": job.id,
            "response_url": root,
            "status_url": f"{root}/status",
            "cancel_url": f"{root}/cancel",
            "queue_position": jobs.queue_polls,
        }
    )


def _inputs(body: dict[str, Any], rule: Endpoint) -> list[tuple[int, int]]:
    if rule.inputs is None:
        return []
    value = body.get(rule.inputs)
    if value is None:
        raise _invalid(rule.inputs, "Field required", "missing")
    refs = value if rule.inputs == "image_urls" else [value]
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise _invalid(
            rule.inputs,
            "Input should be a valid list of URLs"
            if rule.inputs == "image_urls"
            else "Input should be a valid string",
            "type_error",
        )
    if rule.max_inputs and len(refs) > rule.max_inputs:
        raise _invalid(
            rule.inputs, f"List should have at most {rule.max_inputs} items after validation", "too_long"
        )
    return [_probe_ref(rule.inputs, ref) for ref in refs]


def _probe_ref(name: str, ref: str) -> tuple[int, int]:
    if ref.startswith(("http://", "https://")):
        return (0, 0)  # fetched by fal; the emulator does not reach out
    header, _, data = ref.partition(",")
    try:
        info = (
            images.probe(base64.b64decode(data, validate=True)) if header.startswith("data:image/") else None
        )
    except (binascii.Error, ValueError):
        info = None
    if info is None:
        raise _invalid(
            name, "Could not load the image: expected a public URL or a base64 data URI", "image_load_error"
        )
    return (info.width, info.height)


def _options(body: dict[str, Any], rule: Endpoint) -> int:
    count = body.get("num_images", 1)
    if rule.num_images is not None and (type(count) is not int or not 1 <= count <= rule.num_images):
        raise _invalid("num_images", f"Input should be between 1 and {rule.num_images}", "less_than_equal")
    if body.get("seed") is not None and type(body["seed"]) is not int:
        raise _invalid("seed", "Input should be a valid integer", "int_type")
    fmt = body.get("output_format")
    if fmt is not None and fmt not in rule.formats:
        raise _invalid(
            "output_format", f"Input should be {' or '.join(repr(f) for f in rule.formats)}", "enum"
        )
    safety = body.get("safety_tolerance")
    if safety is not None and safety not in rule.safety:
        raise _invalid(
            "safety_tolerance", f"Input should be {', '.join(repr(s) for s in rule.safety)}", "enum"
        )
    for name, values in rule.enums:
        value = body.get(name)
        known = value in values or (name == "style" and str(value).split("/")[0] in values)
        if value is not None and not known:
            raise _invalid(name, f"Input should be {', '.join(repr(v) for v in values)}", "enum")
    resolution = body.get("resolution")
    if resolution is not None and resolution not in rule.resolutions:
        raise _invalid(
            "resolution", f"Input should be {', '.join(repr(r) for r in rule.resolutions)}", "enum"
        )
    return count


def _size(body: dict[str, Any], rule: Endpoint, inputs: list[tuple[int, int]]) -> tuple[int, int]:
    first = next(((w, h) for w, h in inputs if w), None)
    if rule.size == "aspect_ratio":
        ratio = body.get("aspect_ratio")
        if ratio is not None and ratio not in RATIOS_1K and not (ratio == "auto" and rule.inputs):
            raise _invalid("aspect_ratio", f"Input should be {', '.join(repr(r) for r in RATIOS_1K)}", "enum")
        scale = {"1K": 1, "2K": 2, "4K": 4}[body.get("resolution", "1K")]
        width, height = (
            first if (ratio in (None, "auto") and first) else RATIOS_1K.get(ratio or "1:1", (1024, 1024))
        )
        return width * scale, height * scale
    value = body.get("image_size")
    if value is None or value == "auto":
        return rule.default or first or (1024, 1024)
    if isinstance(value, str) and value in PRESETS:
        return PRESETS[value]
    if not (
        isinstance(value, dict)
        and set(value) <= {"width", "height"}
        and all(type(v) is int and 0 < v <= 14142 for v in value.values())
    ):
        raise _invalid(
            "image_size", "Input should be a valid ImageSize or one of the presets", "union_tag_invalid"
        )
    width, height = value.get("width", 512), value.get("height", 512)
    if width * height < rule.min_pixels:
        raise _invalid("image_size", "Total pixels must be between 960x960 and 4096x4096", "value_error")
    return width, height


# ---- status, result, cancel


def _job(jobs: Jobs, call: Call) -> Job:
    params = call.request.path_params
    job = jobs.fresh().items.get(params["request_id"])
    if job is None or job.app != f"{params['owner']}/{params['app']}":
        raise ApiError(404, "Request not found", type="not_found")
    return job


async def _status(jobs: Jobs, call: Call) -> Response:
    job = _job(jobs, call)
    job.polls += 1
    url = str(call.request.url).split("?", 1)[0]
    base = {
        "request_id": job.id,
        "response_url": url[: -len("/status")],
        "status_url": url,
        "cancel_url": url[: -len("status")] + "cancel",
    }
    logs = call.request.query_params.get("logs") == "1"
    if job.cancelled:
        return JSONResponse(
            {**base, "status": "COMPLETED", "logs": [], "error": "Request was cancelled"}, status_code=200
        )
    if job.polls <= jobs.queue_polls:
        return JSONResponse(
            {**base, "status": "IN_QUEUE", "queue_position": jobs.queue_polls - job.polls}, status_code=202
        )
    running = job.polls - jobs.queue_polls  # the runner's log grows by a line each poll
    steps = [_log(f"Generating image: step {k}/{jobs.progress_polls}") for k in range(1, running)]
    if job.polls <= jobs.queue_polls + jobs.progress_polls:
        entries = [_log("Generating image"), *steps] if logs else []
        return JSONResponse({**base, "status": "IN_PROGRESS", "logs": entries}, status_code=202)
    job.done = True
    entries = [_log("Generating image"), *steps, _log("Done")] if logs else []
    return JSONResponse({**base, "status": "COMPLETED", "logs": entries, "metrics": {"inference_time": 1.25}})


def _log(message: str) -> dict[str, str]:
    return {
        "message": message,
        "level": "INFO",
        "source": "USER",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


async def _result(jobs: Jobs, call: Call) -> Response:
    job = _job(jobs, call)
    if not job.done:
        return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
    if job.outcome == "content_policy":
        item = {
            "loc": ["body", "prompt"],
            "msg": "The content was flagged by a content checker.",
            "type": "content_policy_violation",
            "url": "https://docs.fal.ai/errors#content_policy_violation",
            "input": "…",
            "categories": ["violence"],
        }
        return JSONResponse({"detail": [item]}, status_code=422)
    if job.outcome == "error":
        return JSONResponse({"detail": "Internal server error"}, status_code=500)
    if job.result is None:
        urls = deliver_images(call, job.count, job.size, job.fmt, mode="url")
        files = [
            {
                "url": _foreign(call, u),
                "width": job.size[0],
                "height": job.size[1],
                "content_type": f"image/{job.fmt}",
            }
            for u in urls
        ]
        job.result = {
            "images": files,
            "seed": job.seed,
            "has_nsfw_concepts": [job.outcome == "nsfw"] * len(files),
            "timings": {"inference": 1.25},
            "prompt": "emulated",
        }
    return JSONResponse(job.result)


def _foreign(call: Call, url: str) -> str:
    """A served file's URL on the other loopback name, under this mount's /cdn/ (fal.media stands apart)."""
    name = url.rsplit("/", 1)[1]
    here = call.request.url
    host = "localhost" if here.hostname != "localhost" else "127.0.0.1"
    mount = here.path.split("/", 2)[1]
    return f"{here.scheme}://{host}:{here.port}/{mount}/cdn/{name}"


async def _cancel(jobs: Jobs, call: Call) -> Response:
    try:
        job = _job(jobs, call)
    except ApiError:
        return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
    if job.done:
        return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
    job.cancelled = True
    return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)


async def _cdn(provider: Provider, request: Request) -> Response:
    """fal's CDN stand-in: no auth; logged with header names so tests see whether a key came along."""
    record = {
        "id": f"req_{uuid.uuid4().hex[:24]}",
        "time": time.time(),
        "provider": provider.name,
        "endpoint": "cdn",
        "method": "GET",
        "path": request.url.path,
        "host": request.url.netloc,
        "query": [],
        "headers": list(request.headers.keys()),
        "auth_ok": False,
        "status": None,
    }
    provider.state.log.append(record)
    stored = provider.state.fetch_file(request.path_params["name"].partition(".")[0])
    record["status"] = 404 if stored is None else 200
    if stored is None:
        return Response("Not Found", status_code=404, media_type="text/plain")
    return Response(stored.data, media_type=stored.mime)


async def _configure(jobs: Jobs, request: Request) -> JSONResponse:
    body = await request.json()
    jobs.fresh()
    if (
        isinstance(body, dict)
        and body
        and set(body) <= {"queue_polls", "progress_polls"}
        and all(type(v) is int and v >= 0 for v in body.values())
    ):
        jobs.queue_polls = body.get("queue_polls", jobs.queue_polls)
        jobs.progress_polls = body.get("progress_polls", jobs.progress_polls)
        return JSONResponse({"queue_polls": jobs.queue_polls, "progress_polls": jobs.progress_polls})
    if isinstance(body, dict) and body.get("outcome") in OUTCOMES and set(body) <= {"outcome", "count"}:
        jobs.outcomes += [body["outcome"]] * int(body.get("count", 1))
        return JSONResponse({"queued": len(jobs.outcomes)})
    return JSONResponse(
        {"error": f'expected {{"queue_polls": n, "progress_polls": n}} or {{"outcome": one of {OUTCOMES}}}'},
        status_code=400,
    )


# ---- errors: FastAPI's {"detail": …}


def _invalid(name: str, message: str, kind: str) -> ApiError:
    return ApiError(422, message, type=kind, param=name)


CANNED = {
    400: "Bad request",
    401: "Authentication is required to access this application.",
    403: "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing.",
    404: "Not Found",
    429: "Too many concurrent requests",
    500: "Internal server error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _canned(status: int, call: Call) -> ApiError:
    if status == 422:
        return _invalid("prompt", "Field required", "missing")
    return ApiError(status, CANNED.get(status, "Request failed"))


def _render(error: ApiError) -> dict[str, Any]:
    if error.status == 422 and error.param:
        return {"detail": [{"loc": ["body", error.param], "msg": error.message, "type": error.type}]}
    return {"detail": error.message}


def _credential(request: Request) -> str | None:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme == "Key" else None


DIALECT = Dialect(render=_render, canned=_canned, credential=_credential)
