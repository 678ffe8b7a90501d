"""The emulator's core: app factory, provider registry, and the request path every protocol shares.

Owns auth, latency, the request log, fault injection and image delivery (b64 / served URL / data URL), so a
protocol module only validates requests and shapes replies. It knows no wire format itself.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, cast

from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from tools.emulator import control, images
from tools.emulator.state import EmulatorState, Fault, ProviderSettings

__all__ = [
    "ABORT_KEY",
    "PROVIDERS",
    "ApiError",
    "Call",
    "Delivery",
    "Dialect",
    "FilePart",
    "FormField",
    "Provider",
    "base_path",
    "create_app",
    "deliver_images",
    "endpoint",
    "error_response",
]

# Provider name → protocol module (a sibling module exposing BASE_PATH and routes(provider)).
# A new upstream is one module plus one line here.
PROVIDERS: dict[str, str] = {
    "openai": "openai_images",
    "zhaotou": "openai_images",
    "modelmax": "openai_images",
    "compat": "openai_images",
    "gemini": "gemini",
    "ark": "ark",
    "mixroute": "mixroute",
    "atalk": "atalk",
    "dashscope": "dashscope",
    "bfl": "bfl",
    "modelgate": "modelgate",
    "comfyui": "comfyui",
    "sdwebui": "sdwebui",
    "openrouter": "openrouter",
    "fal": "fal",
    "replicate": "replicate",
}
ABORT_KEY = "emulator.abort"  # scope key set by runner.py: closes this request's socket without a reply
Delivery = Literal["b64", "url", "data_url"]
SWAPPED_FORMAT = {"png": "jpeg", "jpeg": "png", "webp": "png"}  # what `wrong_mime` really sends


@dataclass
class ApiError(Exception):
    """Raised by protocol handlers; rendered in the provider's error shape by its Dialect."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)


@dataclass(frozen=True)
class FilePart:
    """One uploaded multipart file, read and probed once."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes
    image: images.ImageInfo | None  # None: does not decode as an image


FormField = str | FilePart


@dataclass(frozen=True)
class Provider:
    """A mounted provider: its name and the shared state (settings are read per request)."""

    name: str
    state: EmulatorState

    @property
    def settings(self) -> ProviderSettings:
        return self.state.settings[self.name]


@dataclass
class Call:
    """One request on its way through the core, as a protocol handler sees it."""

    provider: Provider
    endpoint: str
    request: Request
    json: dict[str, Any] | None  # the body when it is a JSON object
    form: list[tuple[str, FormField]] | None  # the body when it is multipart, in order
    record: dict[str, Any]  # this request's entry in the request log
    fault: Fault | None = None

    def faulted(self, kind: str) -> bool:
        return self.fault is not None and self.fault.kind == kind


def bearer_token(request: Request) -> str | None:
    """The key from `Authorization: Bearer <key>`."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class Dialect:
    """How one protocol spells errors and carries its key."""

    render: Callable[[ApiError], dict[str, Any]]  # error → JSON body
    canned: Callable[[int, Call], ApiError]  # the provider's usual error for an HTTP status (401, 429, ...)
    credential: Callable[[Request], str | None] = bearer_token


Handler = Callable[[Call], Awaitable[Response]]


class ProtocolModule(Protocol):
    BASE_PATH: str

    def routes(self, provider: Provider) -> list[BaseRoute]: ...


def _protocol(provider: str, providers: Mapping[str, str] = PROVIDERS) -> ProtocolModule:
    """The protocol module serving `provider`."""
    return cast(ProtocolModule, importlib.import_module(f"{__package__}.{providers[provider]}"))


def base_path(provider: str) -> str:
    """The path prefix imagegate's base URL for `provider` points at, e.g. "/openai/v1"."""
    return f"/{provider}{_protocol(provider).BASE_PATH}"


def create_app(providers: Mapping[str, str] = PROVIDERS) -> Starlette:
    """One ASGI app serving every provider under /<provider>/, plus /files/ and /_emulator/."""
    from tools.emulator import models  # here: it imports protocol modules, which import this one

    state = EmulatorState(providers)
    mounts = [
        Mount(f"/{name}", routes=[*_protocol(name, providers).routes(p), *models.routes(p, providers[name])])
        for name, p in ((name, Provider(name, state)) for name in providers)
    ]
    return Starlette(routes=[*mounts, Route("/files/{name}", _file_endpoint(state)), *control.routes(state)])


def endpoint(
    provider: Provider,
    path: str,
    name: str,
    handler: Handler,
    dialect: Dialect,
    methods: Sequence[str] = ("POST",),
) -> Route:
    """A route running `handler` behind the shared log → auth → latency → fault steps."""
    provider.state.endpoints[provider.name].add(name)

    async def serve(request: Request) -> Response:
        call = await _open_call(request, provider, name, dialect)
        response = await _answer(call, handler, dialect)
        call.record["status"] = None if call.faulted("drop_connection") else response.status_code
        response.headers["x-request-id"] = call.record["id"]
        return response

    return Route(path, serve, methods=list(methods))


def error_response(error: ApiError, dialect: Dialect, status: int | None = None) -> JSONResponse:
    """`error` in the provider's shape; `status` overrides the HTTP status (error_in_200)."""
    return JSONResponse(dialect.render(error), status_code=status or error.status, headers=error.headers)


def deliver_images(
    call: Call,
    count: int,
    size: tuple[int, int],
    fmt: str = "png",
    *,
    transparent: bool = False,
    mode: Delivery = "b64",
) -> list[str]:
    """`count` images as base64, served URLs or data URLs, with this call's reply-side fault applied."""
    if call.fault is not None and call.fault.kind == "partial":
        count = max(0, min(count - 1, call.fault.params.get("keep", count - 1)))
    actual = SWAPPED_FORMAT[fmt] if call.faulted("wrong_mime") else fmt
    data = images.render(size[0], size[1], actual, transparent)
    if call.faulted("truncated_base64"):
        data = data[: len(data) // 2]  # still valid base64, but the image inside is cut off
    return [_embed(call, data, fmt, mode) for _ in range(count)]


def _embed(call: Call, data: bytes, fmt: str, mode: Delivery) -> str:
    mime = images.FORMATS[fmt][1]  # the asked format's label, even when `wrong_mime` sent another
    if mode == "url":
        ttl = -1.0 if call.faulted("expired_url") else call.provider.settings.url_ttl
        file_id = call.provider.state.store_file(data, mime, ttl)
        return f"{call.request.url.scheme}://{call.request.url.netloc}/files/{file_id}.{fmt}"
    text = _corrupt_base64(data) if call.faulted("bad_base64") else base64.b64encode(data).decode("ascii")
    return f"data:{mime};base64,{text}" if mode == "data_url" else text


def _corrupt_base64(data: bytes) -> str:
    # A non-alphabet character fails strict decoders; a length of 4k+1 fails lenient ones too.
    text = base64.b64encode(data).decode("ascii").rstrip("=")
    return "*" + text + "A" * ((1 - len(text)) % 4)


async def _open_call(request: Request, provider: Provider, name: str, dialect: Dialect) -> Call:
    form = await _read_form(request) if _is_multipart(request) else None
    body = None if form is not None else _json_object(await request.body())
    record = {
        "id": f"req_{uuid.uuid4().hex[:24]}",
        "time": time.time(),
        "provider": provider.name,
        "endpoint": name,
        "method": request.method,
        "path": request.url.path,
        "query": list(request.query_params.keys()),
        "content_type": request.headers.get("content-type"),
        "headers": list(request.headers.keys()),  # names only: values may carry keys
        "auth_ok": provider.settings.accepts(dialect.credential(request)),
        "json": body,
        "form": None if form is None else [_summary(field_name, value) for field_name, value in form],
        "fault": None,
        "status": None,
    }
    provider.state.log.append(record)
    return Call(provider, name, request, body, form, record)


async def _answer(call: Call, handler: Handler, dialect: Dialect) -> Response:
    try:
        if not call.record["auth_ok"]:
            raise dialect.canned(401, call)
        state = call.provider.state
        delay = state.latency + call.provider.settings.latency
        if delay > 0:
            await asyncio.sleep(delay)  # async, so concurrent requests overlap (fan-out tests rely on it)
        call.fault = state.take_fault(call.provider.name, call.endpoint)
        call.record["fault"] = call.fault.kind if call.fault else None
        early = await _fault_before(call, dialect)
        return _fault_after(call, early or await handler(call))
    except ApiError as error:
        return error_response(error, dialect)


async def _fault_before(call: Call, dialect: Dialect) -> Response | None:
    """Faults that replace or delay the whole answer."""
    fault = call.fault
    if fault is None:
        return None
    if fault.kind == "slow":
        await asyncio.sleep(fault.params["seconds"])
    elif fault.kind == "drop_connection":
        await _drop_connection(call.request)
        return Response()  # goes nowhere: the socket is closed
    elif fault.kind in ("status", "error_in_200"):
        error = _fault_error(call, fault, dialect)
        return error_response(error, dialect, 200 if fault.kind == "error_in_200" else None)
    return None


def _fault_error(call: Call, fault: Fault, dialect: Dialect) -> ApiError:
    error = dialect.canned(fault.params.get("status", 400), call)
    overrides = {key: fault.params[key] for key in ("message", "type", "code") if key in fault.params}
    headers = {"retry-after": str(fault.params["retry_after"])} if "retry_after" in fault.params else {}
    return replace(error, **overrides, headers={**error.headers, **headers})


def _fault_after(call: Call, response: Response) -> Response:
    """`malformed_json`: the reply's JSON cut in half (streamed replies pass unchanged)."""
    if not call.faulted("malformed_json") or not hasattr(response, "body"):
        return response
    body = bytes(response.body)
    return Response(body[: len(body) // 2], response.status_code, media_type="application/json")


async def _drop_connection(request: Request) -> None:
    abort = request.scope.get(ABORT_KEY)
    if abort is None:
        raise RuntimeError("drop_connection needs the emulator's own server (tools.emulator.runner)")
    abort()
    await asyncio.sleep(0)  # the server runs connection_lost first, so the reply we return is discarded


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


async def _read_form(request: Request) -> list[tuple[str, FormField]]:
    async with request.form() as form:
        return [
            (name, await _file_part(name, value) if isinstance(value, UploadFile) else value)
            for name, value in form.multi_items()
        ]


async def _file_part(name: str, upload: UploadFile) -> FilePart:
    data = await upload.read()
    return FilePart(name, upload.filename, upload.content_type, data, images.probe(data))


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _summary(name: str, value: FormField) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": name, "value": value}
    info = value.image
    return {
        "name": name,
        "filename": value.filename,
        "content_type": value.content_type,
        "bytes": len(value.data),
        "format": info and info.format,
        "width": info and info.width,
        "height": info and info.height,
    }


def _file_endpoint(state: EmulatorState) -> Callable[[Request], Awaitable[Response]]:
    async def serve_file(request: Request) -> Response:
        stored = state.fetch_file(request.path_params["name"].partition(".")[0])
        if stored is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(stored.data, media_type=stored.mime)

    return serve_file
