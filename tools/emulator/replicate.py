"""Replicate predictions protocol (shared/providers/later.md; providers/replicate.py cites the documents).

Owns: POST /v1/models/{owner}/{name}/predictions (official models) and POST /v1/predictions (`version`),
each input checked against the model's own OpenAPI Input schema (types, enums, bounds; unknown fields are
refused, which Replicate does not document: UNCONFIRMED); `Prefer: wait` answers a finished prediction
when it finishes within the wait, else the `starting` one; GET /v1/predictions/{id} (`processing` for a
configurable number of polls), POST /v1/predictions/{id}/cancel, GET /v1/models/{owner}/{name} (with
`latest_version.openapi_schema`, what `imagegate models --import` reads) and GET /v1/account. Output
files are served from another origin (127.0.0.1 <-> localhost), as replicate.delivery is not the API.

Control, back to defaults on /_emulator/reset:
    POST /replicate/_emulator/predictions {"processing_polls": n}  -> polls answering `processing`
        (default 0: the prediction finishes within `Prefer: wait`), each adding a line to `logs`
        ("50%| step 1/2", as a model's progress bar prints)
    POST /replicate/_emulator/predictions {"outcome": "failed"|"canceled"|"aborted", "error": "…", "count": 1}
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tools.emulator.core import ApiError, Call, Dialect, Provider, deliver_images, endpoint
from tools.emulator.state import EmulatorState

__all__ = ["BASE_PATH", "MODELS", "routes"]

BASE_PATH = "/v1"
RATIOS_9 = ["1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3"]
FORMATS = {"jpg": "jpeg", "png": "png", "webp": "webp", "jpeg": "jpeg"}


def _p(kind: str, order: int, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "x-order": order, **extra}


def _enum(name: str, values: list[Any], order: int, default: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Cog enum: the property refers to a component schema through `allOf`, as Cog writes it."""
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}], "default": default, "x-order": order}, {
        name: {"enum": values, "type": "string", "title": name, "description": "An enumeration."}
    }


def _model(props: dict[str, Any], enums: dict[str, Any], output_list: bool) -> dict[str, Any]:
    output = (
        {"type": "array", "items": {"type": "string", "format": "uri"}}
        if output_list
        else {
            "type": "string",
            "format": "uri",
        }
    )
    schemas = {"Input": {"type": "object", "title": "Input", "required": ["prompt"], "properties": props}}
    return {**schemas, **enums, "Output": {**output, "title": "Output"}}


def _flux_11_pro() -> dict[str, Any]:
    ratio, ratio_enum = _enum("aspect_ratio", ["custom", *RATIOS_9], 2, "1:1")
    fmt, fmt_enum = _enum("output_format", ["webp", "jpg", "png"], 8, "webp")
    props = {
        "prompt": _p("string", 0),
        "image_prompt": _p("string", 1, format="uri"),
        "aspect_ratio": ratio,
        "width": _p("integer", 3, minimum=256, maximum=1440, description="Must be a multiple of 32"),
        "height": _p("integer", 4, minimum=256, maximum=1440, description="Must be a multiple of 32"),
        "safety_tolerance": _p("integer", 5, minimum=1, maximum=6, default=2),
        "seed": _p("integer", 6),
        "prompt_upsampling": _p("boolean", 7, default=False),
        "output_format": fmt,
        "output_quality": _p("integer", 9, minimum=0, maximum=100, default=80),
    }
    return _model(props, {**ratio_enum, **fmt_enum}, output_list=False)


def _flux_schnell() -> dict[str, Any]:
    ratios = ["1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21"]
    ratio, ratio_enum = _enum("aspect_ratio", ratios, 1, "1:1")
    fmt, fmt_enum = _enum("output_format", ["webp", "jpg", "png"], 4, "webp")
    mp, mp_enum = _enum("megapixels", ["1", "0.25"], 6, "1")
    props = {
        "prompt": _p("string", 0),
        "aspect_ratio": ratio,
        "num_outputs": _p("integer", 2, minimum=1, maximum=4, default=1),
        "seed": _p("integer", 3),
        "output_format": fmt,
        "output_quality": _p("integer", 5, minimum=0, maximum=100, default=80),
        "megapixels": mp,
        "go_fast": _p("boolean", 7, default=True),
        "num_inference_steps": _p("integer", 8, minimum=1, maximum=4, default=4),
        "disable_safety_checker": _p("boolean", 9, default=False),
    }
    return _model(props, {**ratio_enum, **fmt_enum, **mp_enum}, output_list=True)


def _kontext() -> dict[str, Any]:
    ratios = ["match_input_image", "1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4"]
    ratio, ratio_enum = _enum("aspect_ratio", [*ratios, "21:9", "9:21", "2:1", "1:2"], 2, "match_input_image")
    fmt, fmt_enum = _enum("output_format", ["jpg", "png"], 3, "png")
    props = {
        "prompt": _p("string", 0),
        "input_image": _p("string", 1, format="uri"),
        "aspect_ratio": ratio,
        "output_format": fmt,
        "seed": _p("integer", 4),
        "safety_tolerance": _p("integer", 5, minimum=0, maximum=6, default=2),
        "prompt_upsampling": _p("boolean", 6, default=False),
    }
    return _model(props, {**ratio_enum, **fmt_enum}, output_list=False)


def _seedream_4() -> dict[str, Any]:
    size, size_enum = _enum("size", ["1K", "2K", "4K", "custom"], 2, "2K")
    ratios = ["match_input_image", "1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "21:9"]
    ratio, ratio_enum = _enum("aspect_ratio", ratios, 3, "match_input_image")
    seq, seq_enum = _enum("sequential_image_generation", ["disabled", "auto"], 6, "disabled")
    items = {"type": "string", "format": "uri"}
    props = {
        "prompt": _p("string", 0),
        "image_input": _p("array", 1, items=items, default=[], description="List of 1-10 images"),
        "size": size,
        "aspect_ratio": ratio,
        "width": _p("integer", 4, minimum=1024, maximum=4096, default=2048),
        "height": _p("integer", 5, minimum=1024, maximum=4096, default=2048),
        "sequential_image_generation": seq,
        "max_images": _p("integer", 7, minimum=1, maximum=15, default=1),
        "enhance_prompt": _p("boolean", 8, default=True),
    }
    return _model(props, {**size_enum, **ratio_enum, **seq_enum}, output_list=True)


def _nano_banana(pro: bool) -> dict[str, Any]:
    ratios = ["match_input_image", "1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"]
    ratio, ratio_enum = _enum("aspect_ratio", ratios, 2, "match_input_image")
    fmt, fmt_enum = _enum("output_format", ["jpg", "png"], 4, "jpg")
    items = {"type": "string", "format": "uri"}
    props = {
        "prompt": _p("string", 0),
        "image_input": _p("array", 1, items=items, default=[], description="up to 14 images" if pro else ""),
        "aspect_ratio": ratio,
        "output_format": fmt,
    }
    enums = {**ratio_enum, **fmt_enum}
    if pro:
        props["resolution"], res_enum = _enum("resolution", ["1K", "2K", "4K"], 3, "2K")
        enums |= res_enum
    return _model(props, enums, output_list=False)


def _sdxl() -> dict[str, Any]:
    """stability-ai/sdxl as replicate-python's recorded models-get cassette shows it (trimmed)."""
    refine, refine_enum = _enum(
        "refine", ["no_refiner", "expert_ensemble_refiner", "base_image_refiner"], 12, "no_refiner"
    )
    props = {
        "prompt": _p("string", 0, default="An astronaut riding a rainbow unicorn"),
        "negative_prompt": _p("string", 1, default=""),
        "image": _p("string", 2, format="uri"),
        "mask": _p("string", 3, format="uri"),
        "width": _p("integer", 4, default=1024),
        "height": _p("integer", 5, default=1024),
        "num_outputs": _p("integer", 6, minimum=1, maximum=4, default=1),
        "guidance_scale": _p("number", 9, minimum=1, maximum=50, default=7.5),
        "seed": _p("integer", 11),
        "refine": refine,
        "apply_watermark": _p("boolean", 15, default=True),
    }
    schemas = _model(props, refine_enum, output_list=True)
    schemas["Input"]["required"] = []
    return schemas


def _recraft_v3() -> dict[str, Any]:
    """recraft-ai/recraft-v3:9507e61d: size (default 1024x1024, ignored when aspect_ratio is set),
    aspect_ratio, style (default any). The version page shows no enum values: Recraft's V3 sizes and style
    families here."""
    sizes = ["1024x1024", "1365x1024", "1024x1365", "1536x1024", "1024x1536", "1820x1024", "1024x1820"]
    sizes += ["1024x2048", "2048x1024", "1434x1024", "1024x1434", "1024x1280", "1280x1024", "1024x1707"]
    size, size_enum = _enum("size", [*sizes, "1707x1024"], 2, "1024x1024")
    families = ["any", "realistic_image", "digital_illustration", "vector_illustration"]
    style, style_enum = _enum("style", families, 3, "any")
    ratio = _p("string", 1)  # an enum whose values the page does not show: any string passes here
    props = {"prompt": _p("string", 0), "aspect_ratio": ratio, "size": size, "style": style}
    return _model(props, {**size_enum, **style_enum}, output_list=False)


IDEOGRAM_RESOLUTIONS = (
    "512x1536 576x1408 576x1472 576x1536 640x1344 640x1408 640x1472 640x1536 704x1152 704x1216 704x1280 "
    "704x1344 704x1408 704x1472 736x1312 768x1088 768x1216 768x1280 768x1344 800x1280 832x960 832x1024 "
    "832x1088 832x1152 832x1216 832x1248 864x1152 896x960 896x1024 896x1088 896x1120 896x1152 960x832 "
    "960x896 960x1024 960x1088 1024x832 1024x896 1024x960 1024x1024 1088x768 1088x832 1088x896 1088x960 "
    "1120x896 1152x704 1152x832 1152x864 1152x896 1216x704 1216x768 1216x832 1248x832 1280x704 1280x768 "
    "1280x800 1312x736 1344x640 1344x704 1344x768 1408x576 1408x640 1408x704 1472x576 1472x640 1472x704 "
    "1536x512 1536x576 1536x640"
).split()


def _ideogram_v3() -> dict[str, Any]:
    """ideogram-ai/ideogram-v3-balanced:e78d8251 (the -quality page lists the enums): resolution overrides
    aspect_ratio; image + mask inpaint; seed <= 2147483647."""
    ratios = ["1:3", "3:1", "1:2", "2:1", "9:16", "16:9", "10:16", "16:10", "2:3", "3:2", "3:4", "4:3"]
    ratio, ratio_enum = _enum("aspect_ratio", [*ratios, "4:5", "5:4", "1:1"], 1, "1:1")
    resolution, res_enum = _enum("resolution", ["None", *IDEOGRAM_RESOLUTIONS], 2, "None")
    magic, magic_enum = _enum("magic_prompt_option", ["Auto", "On", "Off"], 3, "Auto")
    style, style_enum = _enum("style_type", ["None", "Auto", "General", "Realistic", "Design"], 6, "None")
    items = {"type": "string", "format": "uri"}
    props = {
        "prompt": _p("string", 0),
        "aspect_ratio": ratio,
        "resolution": resolution,
        "magic_prompt_option": magic,
        "image": _p("string", 4, format="uri"),
        "mask": _p("string", 5, format="uri"),
        "style_type": style,
        "style_reference_images": _p("array", 7, items=items),
        "seed": _p("integer", 8, maximum=2147483647),
    }
    return _model(props, {**ratio_enum, **res_enum, **magic_enum, **style_enum}, output_list=False)


@dataclass(frozen=True)
class Model:
    official: bool
    schemas: dict[str, Any]
    version: str = field(default_factory=lambda: uuid.uuid4().hex + uuid.uuid4().hex)


MODELS: dict[str, Model] = {
    "black-forest-labs/flux-1.1-pro": Model(True, _flux_11_pro()),
    "black-forest-labs/flux-schnell": Model(True, _flux_schnell()),
    "black-forest-labs/flux-kontext-pro": Model(True, _kontext()),
    "bytedance/seedream-4": Model(True, _seedream_4()),
    "google/nano-banana": Model(True, _nano_banana(False)),
    "google/nano-banana-pro": Model(True, _nano_banana(True)),
    "recraft-ai/recraft-v3": Model(True, _recraft_v3()),
    "ideogram-ai/ideogram-v3-balanced": Model(True, _ideogram_v3()),
    "stability-ai/sdxl": Model(False, _sdxl()),
}
VERSIONS = {model.version: name for name, model in MODELS.items()}


@dataclass
class Prediction:
    id: str
    model: str
    input: dict[str, Any]
    outcome: str
    error: str | None
    polls_left: int
    created: float
    urls: list[str] | None = None
    status: str = "starting"
    logs: str = ""  # what the model printed so far: a line per `processing` poll


class Predictions:
    """The predictions of one emulator app, forgotten when the control API resets the state."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self._clear()

    def _clear(self) -> None:
        self._log = self.state.log
        self.items: dict[str, Prediction] = {}
        self.processing_polls = 0
        self.outcomes: list[tuple[str, str | None]] = []

    def fresh(self) -> Predictions:
        if self.state.log is not self._log:
            self._clear()
        return self


def routes(provider: Provider) -> list[BaseRoute]:
    book = Predictions(provider.state)
    return [
        endpoint(
            provider,
            f"{BASE_PATH}/models/{{owner}}/{{name}}/predictions",
            "predictions",
            partial(_create, book),
            DIALECT,
        ),
        endpoint(
            provider, f"{BASE_PATH}/predictions", "predictions_version", partial(_create, book), DIALECT
        ),
        endpoint(provider, f"{BASE_PATH}/predictions/{{id}}", "get", partial(_get, book), DIALECT, ("GET",)),
        endpoint(
            provider, f"{BASE_PATH}/predictions/{{id}}/cancel", "cancel", partial(_cancel, book), DIALECT
        ),
        endpoint(
            provider, f"{BASE_PATH}/models/{{owner}}/{{name}}", "model", _model_object, DIALECT, ("GET",)
        ),
        endpoint(provider, f"{BASE_PATH}/account", "account", _account, DIALECT, ("GET",)),
        Route("/_emulator/predictions", partial(_configure, book), methods=["POST"]),
    ]


# ---- input checking against the model's schema


def _invalid(problems: list[tuple[str, str]]) -> ApiError:
    error = ApiError(422, "; ".join(f"input.{f}: {d}" for f, d in problems), type="Input validation failed")
    error.param = "|".join(f"{f}\t{d}" for f, d in problems)
    return error


def _check(value: Any, node: dict[str, Any], schemas: dict[str, Any]) -> str | None:
    if "allOf" in node:
        node = {**schemas[node["allOf"][0]["$ref"].rsplit("/", 1)[-1]], **node}
    kind = node.get("type")
    types = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list}
    if kind in types and (
        not isinstance(value, types[kind]) or (kind != "boolean" and isinstance(value, bool))
    ):
        return f"Invalid type. Expected: {kind}"
    if node.get("enum") and value not in node["enum"]:
        return f"must be one of the following: {', '.join(map(repr, node['enum']))}"
    if (low := node.get("minimum")) is not None and value < low:
        return f"Must be greater than or equal to {low}"
    if (high := node.get("maximum")) is not None and value > high:
        return f"Must be less than or equal to {high}"
    uris = value if kind == "array" else [value] if node.get("format") == "uri" else []
    if any(not (isinstance(u, str) and u.startswith(("http://", "https://", "data:"))) for u in uris):
        return "Does not match format 'uri'"
    return None


def _checked(model: Model, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _invalid([("(root)", "Invalid type. Expected: object")])
    schemas = model.schemas
    props = schemas["Input"]["properties"]
    problems = [(n, "Additional property is not allowed") for n in data if n not in props]
    problems += [(n, "is required") for n in schemas["Input"]["required"] if n not in data]
    problems += [(n, why) for n, v in data.items() if n in props and (why := _check(v, props[n], schemas))]
    if problems:
        raise _invalid(problems)
    return data


# ---- predictions


def _resolve(call: Call) -> Model:
    body = call.json or {}
    if "version" in call.request.path_params or call.endpoint == "predictions_version":
        version = str(body.get("version", "")).rpartition(":")[2]
        name = VERSIONS.get(version) or (version if version in MODELS else None)
        if name is None:
            raise ApiError(422, "Invalid version or not permitted", type="Invalid version")
        return MODELS[name]
    name = f"{call.request.path_params['owner']}/{call.request.path_params['name']}"
    model = MODELS.get(name)
    if model is None:
        raise ApiError(404, "The requested resource could not be found.", type="Not found")
    if not model.official:
        raise ApiError(
            404, "This model is not an official model; create predictions with a version.", type="Not found"
        )
    return model


def _own(call: Call) -> tuple[str, str]:
    url = call.request.url
    return f"{url.scheme}://{url.netloc}", url.path.split(BASE_PATH + "/", 1)[0]


async def _create(book: Predictions, call: Call) -> Response:
    model = _resolve(call)
    data = _checked(model, (call.json or {}).get("input"))
    book.fresh()
    outcome, error = book.outcomes.pop(0) if book.outcomes else ("succeeded", None)
    name = next(n for n, m in MODELS.items() if m is model)
    prediction = Prediction(
        uuid.uuid4().hex[:26], name, data, outcome, error, book.processing_polls, time.time()
    )
    book.items[prediction.id] = prediction
    call.record["prefer"] = call.request.headers.get("prefer")
    call.record["cancel_after"] = call.request.headers.get("cancel-after")
    if prediction.polls_left == 0 and call.request.headers.get("prefer", "").startswith("wait"):
        _finish(call, prediction)
    return JSONResponse(_object(call, prediction), status_code=201)


async def _get(book: Predictions, call: Call) -> Response:
    prediction = book.fresh().items.get(call.request.path_params["id"])
    if prediction is None:
        raise ApiError(404, "The requested resource could not be found.", type="Not found")
    if prediction.status in ("starting", "processing"):
        if prediction.polls_left > 0:
            prediction.polls_left -= 1
            prediction.status = "processing"
            done = book.processing_polls - prediction.polls_left
            prediction.logs += (
                f"{100 * done // max(1, book.processing_polls)}%| step {done}/{book.processing_polls}\n"
            )
        else:
            _finish(call, prediction)
    return JSONResponse(_object(call, prediction))


async def _cancel(book: Predictions, call: Call) -> Response:
    prediction = book.fresh().items.get(call.request.path_params["id"])
    if prediction is None:
        raise ApiError(404, "The requested resource could not be found.", type="Not found")
    if prediction.status in ("starting", "processing"):
        prediction.status = "canceled"
    return JSONResponse(_object(call, prediction))


def _size(model: Model, data: dict[str, Any]) -> tuple[int, int]:
    if "width" in data and "height" in data:
        return data["width"], data["height"]
    for name in ("resolution", "size"):  # one "WxH" field (Ideogram, Recraft): rendered as asked
        w, x, h = str(data.get(name, "")).partition("x")
        if x and w.isdigit() and h.isdigit():
            return int(w), int(h)
    ratio = str(data.get("aspect_ratio", "1:1"))
    w, _, h = ratio.partition(":") if ":" in ratio else ("1", "", "1")
    tier = {"1K": 1, "2K": 4, "4K": 16}.get(str(data.get("resolution", data.get("size", "1K"))), 1)
    area = 1024 * 1024 * tier / 16  # rendered at 1/16 of the area: real bytes, small files
    width = math.sqrt(area * int(w) / int(h))
    return max(16, int(width) // 16 * 16), max(16, int(width * int(h) / int(w)) // 16 * 16)


def _finish(call: Call, prediction: Prediction) -> None:
    prediction.status = prediction.outcome
    if prediction.outcome != "succeeded":
        return
    model = MODELS[prediction.model]
    props = model.schemas["Input"]["properties"]
    fmt = prediction.input.get("output_format", props.get("output_format", {}).get("default", "png"))
    count = prediction.input.get("num_outputs", 1) if "num_outputs" in props else 1
    urls = deliver_images(call, count, _size(model, prediction.input), FORMATS.get(fmt, "png"), mode="url")
    other = "localhost" if call.request.url.hostname != "localhost" else "127.0.0.1"  # replicate.delivery
    prediction.urls = [u.replace(f"//{call.request.url.hostname}:", f"//{other}:", 1) for u in urls]


def _object(call: Call, prediction: Prediction) -> dict[str, Any]:
    origin, mount = _own(call)
    api = f"{origin}{mount}{BASE_PATH}/predictions/{prediction.id}"
    output: Any = None
    if prediction.urls is not None:
        listed = MODELS[prediction.model].schemas["Output"]["type"] == "array"
        output = prediction.urls if listed else (prediction.urls[0] if prediction.urls else None)
    done = prediction.status not in ("starting", "processing")
    return {
        "id": prediction.id,
        "model": prediction.model,
        "version": MODELS[prediction.model].version,
        "input": prediction.input,
        "logs": prediction.logs,
        "output": output,
        "error": prediction.error if prediction.status == "failed" else None,
        "status": prediction.status,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(prediction.created)),
        "urls": {"get": api, "cancel": f"{api}/cancel"},
        "metrics": {"predict_time": 0.42} if done and prediction.status == "succeeded" else {},
    }


async def _model_object(call: Call) -> Response:
    name = f"{call.request.path_params['owner']}/{call.request.path_params['name']}"
    model = MODELS.get(name)
    if model is None:
        raise ApiError(404, "The requested resource could not be found.", type="Not found")
    owner, _, short = name.partition("/")
    version = {
        "id": model.version,
        "cog_version": "0.9.0",
        "openapi_schema": {"components": {"schemas": model.schemas}},
    }
    return JSONResponse(
        {"url": f"https://replicate.com/{name}", "owner": owner, "name": short, "latest_version": version}
    )


async def _account(call: Call) -> Response:
    return JSONResponse({"type": "user", "username": "emulated", "name": "Emulated User"})


async def _configure(book: Predictions, request: Request) -> JSONResponse:
    body = await request.json()
    book.fresh()
    if set(body) == {"processing_polls"} and isinstance(body["processing_polls"], int):
        book.processing_polls = body["processing_polls"]
        return JSONResponse({"processing_polls": book.processing_polls})
    if body.get("outcome") in ("failed", "canceled", "aborted") and set(body) <= {
        "outcome",
        "error",
        "count",
    }:
        book.outcomes += [(body["outcome"], body.get("error"))] * int(body.get("count", 1))
        return JSONResponse({"queued": len(book.outcomes)})
    return JSONResponse(
        {"error": 'expected {"processing_polls": n} or {"outcome": ..., "error": ..., "count": n}'}, 400
    )


# ---- errors (RFC 7807 problem details; the 401 body is replicate-python's recorded one)

CANNED = {
    401: ("Unauthenticated", "You did not pass a valid authentication token"),
    402: (
        "Payment Required",
        "You have insufficient credit to run this model; purchase credit at replicate.com/account/billing.",
    ),
    404: ("Not found", "The requested resource could not be found."),
    429: ("Request was throttled", "Request was throttled. Expected available in 1 second."),
    500: ("Internal Server Error", "Internal server error"),
    503: ("Service Unavailable", "Service temporarily unavailable"),
}


def _canned(status: int, call: Call) -> ApiError:
    title, detail = CANNED.get(status, ("Error", "Request failed"))
    return ApiError(status, detail, type=title)


def _render(error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"title": error.type, "detail": error.message, "status": error.status}
    if error.status == 422 and error.param:
        pairs = [item.split("\t", 1) for item in error.param.split("|")]
        body["invalid_fields"] = [
            {"type": "invalid", "field": f"input.{f}", "description": d} for f, d in pairs
        ]
    return body


DIALECT = Dialect(render=_render, canned=_canned)
