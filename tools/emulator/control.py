"""The control API under /_emulator/: tests and benchmarks configure the emulator and read back what it saw.

All bodies and replies are JSON; a bad payload gets 400 {"error": "..."}.

  POST /_emulator/reset     {}  → defaults, no faults, empty request log, no files
  POST /_emulator/config    {"latency": s}  global, or {"provider": p, "keys": [...], "latency": s,
                            "models": [...]|null, "url_ttl": s}  → the resulting settings (keys counted)
                            (`models`: ids accepted on top of the protocol's own, and listed by GET /models
                            where the protocol has one: models.py)
  POST /_emulator/faults    {"provider": p, "endpoint": e|"*", "kind": k, "count": 1, ...params}
                            → {"queued": n}; each matching request consumes one use. Kinds and params:
                            status{status, retry_after?, message?, type?, code?}: the provider's error body
                            error_in_200{status?, message?, type?, code?}: that error body with HTTP 200
                            slow{seconds} · drop_connection (socket closed, no reply) · malformed_json
                            bad_base64 · truncated_base64 (valid base64 of half the image) · partial{keep?}
                            wrong_mime (labelled as asked, encoded as another format) · expired_url (404)
  GET  /_emulator/requests  → [record, ...] oldest first (header names only, never values)
  GET  /_emulator/files     → {"downloads": n, "not_found": n, "stored": n}
  POST /_emulator/prewarm   {"sizes": ["WxH", ...], "formats": ["png", ...]} → {"ok": true}
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tools.emulator import images
from tools.emulator.state import EmulatorState, Fault, SettingsError

__all__ = ["routes"]

Action = Callable[[EmulatorState, dict[str, Any]], Any]


def routes(state: EmulatorState) -> list[Route]:
    """The /_emulator/ routes bound to `state`."""
    return [
        Route("/_emulator/reset", _bind(state, _reset), methods=["POST"]),
        Route("/_emulator/config", _bind(state, _configure), methods=["POST"]),
        Route("/_emulator/faults", _bind(state, _add_fault), methods=["POST"]),
        Route("/_emulator/requests", _bind(state, lambda s, _: list(s.log)), methods=["GET"]),
        Route("/_emulator/files", _bind(state, _file_stats), methods=["GET"]),
        Route("/_emulator/prewarm", _bind(state, _prewarm), methods=["POST"]),
    ]


def _bind(state: EmulatorState, action: Action) -> Callable[[Request], Awaitable[JSONResponse]]:
    async def serve(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                raise SettingsError("the body must be a JSON object")
            return JSONResponse(action(state, body))
        except (TypeError, ValueError) as error:  # SettingsError and JSONDecodeError are ValueErrors
            return JSONResponse({"error": str(error)}, status_code=400)

    return serve


def _reset(state: EmulatorState, _: dict[str, Any]) -> dict[str, bool]:
    state.reset()
    return {"ok": True}


def _configure(state: EmulatorState, body: dict[str, Any]) -> dict[str, Any]:
    provider = body.pop("provider", None)
    return state.configure(provider, body)


def _add_fault(state: EmulatorState, body: dict[str, Any]) -> dict[str, int]:
    try:
        where = {key: body.pop(key) for key in ("provider", "endpoint", "kind")}
    except KeyError as missing:
        raise SettingsError(f"a fault needs {missing}") from None
    return {"queued": state.add_fault(Fault(**where, count=body.pop("count", 1), params=body))}


def _file_stats(state: EmulatorState, _: dict[str, Any]) -> dict[str, int]:
    return {"downloads": state.downloads, "not_found": state.not_found, "stored": len(state.files)}


def _prewarm(state: EmulatorState, body: dict[str, Any]) -> dict[str, bool]:
    images.prewarm(body.get("sizes", []), body.get("formats", ["png"]))
    return {"ok": True}
