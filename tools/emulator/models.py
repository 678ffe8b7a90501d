"""Model lists for the protocols whose clients ask for one (imagegate doctor's cheap authenticated check).

Owns GET /v1/models for the OpenAI-compatible providers (OpenAI's list shape `{object, data[{id, ...}]}`;
MixRoute too) and GET /v1beta/models for Gemini (`{models[{name: "models/<id>", ...}]}`), each built from
that protocol module's own model table plus the provider's `models` setting. Auth, faults and the log are
core's, so a wrong key gets the provider's 401 and a wrong base path Starlette's 404. BFL's credits and
DashScope's task lookup live in their own modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from tools.emulator import gemini, mixroute, openai_images
from tools.emulator.core import Call, Dialect, Provider, endpoint

__all__ = ["routes"]

CREATED = 1_700_000_000  # any fixed epoch: clients read only the ids


def routes(provider: Provider, protocol: str) -> list[BaseRoute]:
    """The model-list endpoint of `provider` when its protocol has one, else none."""
    if protocol == "openai_images":
        flavour = openai_images.FLAVOURS.get(provider.name, openai_images.COMPAT)
        listed = _openai_list(flavour.models)
        return [_list_route(provider, openai_images.BASE_PATH, listed, openai_images.DIALECT)]
    if protocol == "mixroute":
        listed = _openai_list(tuple(mixroute.MODELS))
        return [_list_route(provider, mixroute.BASE_PATH, listed, mixroute.DIALECT)]
    if protocol == "gemini":
        return [_list_route(provider, gemini.BASE_PATH, _gemini_list, gemini.DIALECT)]
    return []


def _list_route(
    provider: Provider, base: str, answer: Callable[[Call], Response], dialect: Dialect
) -> BaseRoute:
    async def serve(call: Call) -> Response:
        return answer(call)

    return endpoint(provider, f"{base}/models", "models", serve, dialect, ("GET",))


def _ids(call: Call, own: Iterable[str]) -> list[str]:
    """The protocol's own models, then the ones the `models` setting adds (each once)."""
    return list(dict.fromkeys([*own, *(call.provider.settings.models or ())]))


def _openai_list(own: Iterable[str]) -> Callable[[Call], Response]:
    def answer(call: Call) -> Response:
        data = [
            {"id": model, "object": "model", "created": CREATED, "owned_by": call.provider.name}
            for model in _ids(call, own)
        ]
        return JSONResponse({"object": "list", "data": data})

    return answer


def _gemini_list(call: Call) -> Response:
    def entry(model: str) -> dict[str, object]:
        method = "predict" if model in gemini.IMAGEN else "generateContent"
        return {"name": f"models/{model}", "supportedGenerationMethods": [method]}

    return JSONResponse({"models": [entry(model) for model in _ids(call, [*gemini.GEMINI, *gemini.IMAGEN])]})
