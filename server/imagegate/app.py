"""The MCP surface: four tools on the SDK's low-level server, thin handlers over the service.

The MCP tool surface (with transports.py, the only modules that import `mcp`). It attaches
the catalog-derived schemas, dispatches calls, and is the error boundary: an ImagegateError
becomes an `isError` result with its agent text; anything else becomes "internal error (ref …)"
and is logged to stderr only.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS, is_version_at_least
from pydantic import BaseModel, Field

from . import __version__, codec, gallery
from .errors import ImagegateError, InvalidRequest, shown
from .generation import Outcome
from .jobs import KEEP_SECONDS, Render
from .listing import ModelsAnswer, SizesAnswer
from .pricing import ConfirmationNeeded
from .results import ImageResult, metadata, previews, summary
from .service import Service, build_service
from .spend import Admission
from .team.tasks import TaskRecord

__all__ = ["TOOL_DESCRIPTIONS", "create_server"]

log = logging.getLogger("imagegate")
READ_ONLY_TOOLS = ("list_models", "get_supported_sizes", "get_image_job")
ERROR_META = "io.imagegate/error"
METADATA_FRAGMENT = "#metadata"
TASKS = "io.modelcontextprotocol/tasks"
"""The tasks extension (2026-07-28, SEP-2663): a client declaring it gets image calls as tasks."""
POLL_INTERVAL_MS = 1000
USER_SCOPE = "imagegate.user"
"""The ASGI scope key the HTTP transport puts the caller's user name under (never the token)."""

TOOL_DESCRIPTIONS = {
    "generate_image": (
        "Generate images from a prompt, checked against the model's limits first; "
        "each is saved, and returned as a preview with its path."
    ),
    "edit_image": (
        "Edit or combine images with a prompt and optional mask (no prompt: variations, where offered); "
        "checks, saving and results as generate_image."
    ),
    "list_models": (
        "Image models: capabilities, max n, providers (configured or not). Use it to choose a model."
    ),
    "get_supported_sizes": (
        "Every size a model supports via a provider (pixels, ratio, tier, or its pixel rule) and the default."
    ),
    "get_image_job": "Collect an image call that was still running when it answered with a job id.",
}
TITLES = {
    "generate_image": "Generate image",
    "edit_image": "Edit image",
    "list_models": "List image models",
    "get_supported_sizes": "Supported sizes",
    "get_image_job": "Collect image job",
}
INSTRUCTIONS = (
    "imagegate generates and edits images through many models. Pick a model with list_models "
    "(or use one named in the model enum), check its sizes with get_supported_sizes, then call "
    "generate_image or edit_image; size takes pixels like 1024x1024 or a ratio like 16:9 (with "
    "resolution 1K/2K/4K where the model has tiers). Images are saved to disk; results give their paths."
)


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A pydantic model's JSON schema made client-safe and small: `$defs` inlined, no `title`s,
    defaults or `required` lists (the types say what an answer holds; answers omit None values),
    and an optional field as its plain type (a nullable `anyOf` breaks some connectors, research §2)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if "$ref" in node:
            return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
        if "anyOf" in node:
            return inline(next(v for v in node["anyOf"] if v.get("type") != "null"))
        out = {k: v for k, v in node.items() if k == "type"}
        if "items" in node:
            out["items"] = inline(node["items"])
        if "properties" in node:
            out["properties"] = {name: inline(prop) for name, prop in node["properties"].items()}
        return out

    inlined: dict[str, Any] = inline(schema)
    return inlined


def _tools(service: Service, client: str | None = None) -> list[types.Tool]:
    """The tools as this client should see them: every byte here is context an agent pays for on
    every turn, so what a client cannot use is left out."""
    # Only hints that differ from the spec's defaults (readOnly false, destructive true, idempotent
    # false, openWorld true) are sent: the same meaning in fewer bytes of every agent's context.
    image = types.ToolAnnotations(destructive_hint=False)
    listing = types.ToolAnnotations(read_only_hint=True, open_world_hint=False)
    outputs = {"list_models": output_schema(ModelsAnswer), "get_supported_sizes": output_schema(SizesAnswer)}
    if (
        service.settings.structured_output
    ):  # off by default: Claude Code then drops the previews (research §3)
        outputs |= {
            name: output_schema(ImageResult) for name in ("generate_image", "edit_image", "get_image_job")
        }
    # Only a client with a wait budget is ever handed a job id to collect.
    names = [
        n
        for n in TOOL_DESCRIPTIONS
        if n != "get_image_job" or service.settings.wait_budget_for(client) is not None
    ]
    return [
        types.Tool(
            name=name,
            title=TITLES[name],
            description=TOOL_DESCRIPTIONS[name],
            input_schema=service.schemas[name],
            output_schema=outputs.get(name),
            annotations=listing if name in READ_ONLY_TOOLS else image,
        )
        for name in names
    ]


def _text(text: str, is_error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=is_error)


def _error_result(error: ImagegateError) -> types.CallToolResult:
    """The agent text, plus the error's class in `_meta` for programs (clients do not show
    `_meta` to models)."""
    detail: dict[str, Any] = {"kind": error.kind}
    if isinstance(error, InvalidRequest):
        detail["argument"] = error.argument
    if error.provider:
        detail["provider"] = error.provider
    result = _text(error.agent_text(), is_error=True)
    result.meta = {ERROR_META: detail}
    return result


def _answer(answer: ModelsAnswer | SizesAnswer) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=answer.text())],
        structured_content=answer.model_dump(mode="json", exclude_none=True),
    )


def _image_result(service: Service, outcome: Outcome, user: str | None = None) -> types.CallToolResult:
    """Text (summary + the metadata as compact JSON), one preview per image, a link per file."""
    settings = service.settings
    shown, notes = previews(outcome)
    meta = metadata(outcome, notes)
    text = summary(outcome, notes) + "\n" + json.dumps(meta, ensure_ascii=False, separators=(",", ":"))
    content: list[types.ContentBlock] = [types.TextContent(type="text", text=text)]
    content += [
        types.ImageContent(type="image", data=codec.b64encode(p.data), mime_type=p.mime) for p in shown
    ]
    if settings.resource_links:
        # imagegate:// so clients that cannot open local paths can read the file; file:// for a fallback save.
        root = service.output_root(user)
        uris = [gallery.image_uri(root, i.path) or i.path.as_uri() for i in outcome.images]
        content += [
            types.ResourceLink(
                type="resource_link", uri=uri, name=i.path.name, mime_type=i.mime, size=i.bytes
            )
            for uri, i in zip(uris, outcome.images, strict=True)
        ]
    structured = meta if settings.structured_output else None
    return types.CallToolResult(content=content, structured_content=structured)


def _resource(image: gallery.GalleryImage) -> types.Resource:
    return types.Resource(
        uri=image.uri,
        name=image.name,
        mime_type=image.mime,
        size=image.bytes,
        description=image.description(),
    )


def _resource_contents(image: gallery.GalleryImage, data: bytes) -> types.ReadResourceResult:
    """The file itself, then its sidecar as JSON under the same URI with a `#metadata` fragment."""
    sidecar = json.dumps(image.sidecar, indent=2, ensure_ascii=False)
    return types.ReadResourceResult(
        contents=[
            types.BlobResourceContents(uri=image.uri, mime_type=image.mime, blob=codec.b64encode(data)),
            types.TextResourceContents(
                uri=image.uri + METADATA_FRAGMENT, mime_type="application/json", text=sidecar
            ),
        ]
    )


def _progress(ctx: ServerRequestContext[Service]) -> Callable[[str], Awaitable[None]]:
    """Progress notifications (when the client sent a token): a counter that only goes up, and the phase."""
    step = 0

    async def report(message: str) -> None:
        nonlocal step
        step += 1
        await ctx.session.report_progress(step, None, message)

    return report


def _client(ctx: ServerRequestContext[Service]) -> str | None:
    params = ctx.session.client_params
    return params.client_info.name if params is not None else None


def _job_answer(service: Service, record: TaskRecord, budget: float | None) -> types.CallToolResult:
    """The job's result once it has ended; until then, its id and how to collect it."""
    folder = service.output_root(record.user)
    if record.status == "working":
        waited = f" after {budget:g} s" if budget else ""
        pending = _text(
            f"Still working{waited} ({record.message}). Nothing is lost: the call goes on and saves "
            "every image "
            f'under {folder}. Collect it with get_image_job {{"job": "{record.id}"}}.'
        )
        if service.settings.structured_output:  # a declared output schema wants structured content
            pending.structured_content = {"job": record.id, "images": [], "warnings": [], "calls": 0}
        return pending
    if record.status == "completed" and record.result is not None:
        return types.CallToolResult.model_validate(record.result)
    if record.status == "failed" and record.error is not None:
        return _text(f"job {record.id} failed: {record.error.get('message')}", is_error=True)
    cancelled = f"job {record.id} was cancelled; images it had received are saved under {folder}"
    return _text(cancelled, is_error=True)


def _wants_task(ctx: ServerRequestContext[Service]) -> bool:
    """Whether this request may be answered with a task: a 2026-07-28 request whose own capabilities
    declare the tasks extension (the spec forbids a task to any other)."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    declared = (ctx.meta or {}).get(types.CLIENT_CAPABILITIES_META_KEY)
    extensions = declared.get("extensions") if isinstance(declared, dict) else None
    return isinstance(extensions, dict) and TASKS in extensions


def _caller(ctx: ServerRequestContext[Service]) -> str | None:
    """The user whose token the HTTP request carried (transports.py puts it in the ASGI scope); None
    over stdio, in memory and for the single shared token."""
    scope = getattr(ctx.request, "scope", None)
    user = scope.get(USER_SCOPE) if isinstance(scope, dict) else None
    return user if isinstance(user, str) else None


CONFIRM_KEY = "imagegate_confirm"
CONFIRM_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {"go_ahead": {"type": "boolean", "title": "Go ahead", "default": True}},
    "required": ["go_ahead"],
}
ANSWERED = {"accept": "declined", "decline": "declined", "cancel": "cancelled"}
"""How a confirmation that does not go ahead was answered ("accept" here: accepted with go_ahead false)."""
INPUT_REQUIRED_SINCE = "2026-07-28"
"""From this protocol version a tool asks the user through an input-required result (SEP-2322), not
a server-to-client elicitation request (mcp/server/mcpserver/resolve.py does the same)."""


USAGE_URI = "imagegate://usage/today"
USAGE_RESOURCE = types.Resource(
    uri=USAGE_URI,
    name="usage-today",
    title="Spend today",
    mime_type="application/json",
    description="Today's image calls and what they cost (USD), by provider and model, from the ledger.",
)


def _usage_listed(service: Service) -> list[types.Resource]:
    """The usage resource, listed once the ledger has anything in it."""
    ledger = service.spend.ledger
    return [USAGE_RESOURCE] if ledger is not None and ledger.path.exists() else []


async def _usage_contents(service: Service, user: str | None) -> types.ReadResourceResult:
    """Today's spend as JSON, with the budgets that apply (the same report as `imagegate usage --json`)."""
    report = await service.spend.usage(None, user)
    if report is None:
        raise MCPError(types.INVALID_PARAMS, "no ledger: IMAGEGATE_LEDGER is off")
    budgets = service.spend.budgets
    record = report.record() | {
        "budgets": {"daily": budgets.daily, "call": budgets.call, "confirm_above": budgets.confirm_above},
        "left_today": None if budgets.daily is None else round(max(0.0, budgets.daily - report.total), 6),
    }
    text = json.dumps(record, ensure_ascii=False, indent=2)
    return types.ReadResourceResult(
        contents=[types.TextResourceContents(uri=USAGE_URI, mime_type="application/json", text=text)]
    )


ReadResource = Callable[
    [ServerRequestContext[Service], types.ReadResourceRequestParams], Awaitable[types.ReadResourceResult]
]


def _usage_first(read: ReadResource) -> ReadResource:
    """resources/read that answers imagegate://usage/today itself and hands any other URI to `read`."""

    async def read_resource(
        ctx: ServerRequestContext[Service], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        if params.uri == USAGE_URI:
            return await _usage_contents(ctx.lifespan_context, _caller(ctx))
        return await read(ctx, params)

    return read_resource


def _elicits(ctx: ServerRequestContext[Service]) -> bool:
    """Whether the client declared form elicitation (a bare `elicitation: {}` counts as form)."""
    caps = ctx.session.client_capabilities
    declared = caps.elicitation if caps is not None else None
    return declared is not None and (declared.form is not None or declared.url is None)


def _input_required_era(ctx: ServerRequestContext[Service]) -> bool:
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, INPUT_REQUIRED_SINCE)


def _declined(text: str) -> types.CallToolResult:
    result = _text(text, is_error=True)
    result.meta = {ERROR_META: {"kind": "confirmation_declined"}}
    return result


async def _admit(
    ctx: ServerRequestContext[Service], name: str, arguments: dict[str, Any] | None
) -> Admission | types.CallToolResult | dict[str, Any]:
    """The spend gate, before anything is sent. A call above the confirmation threshold asks the user
    with a form where the client declared elicitation: as an input-required result (2026-07-28 on;
    the retry carries the answer and, as its request state, the call's one-time token) or as an
    elicitation request (earlier versions, waiting IMAGEGATE_CONFIRM_TIMEOUT). Declined, cancelled or
    unanswered: nothing is sent. Without elicitation, the refusal carries the token for `confirm`."""
    service, user = ctx.lifespan_context, _caller(ctx)
    raw = ctx.params or {}
    state, answers = raw.get("requestState"), raw.get("inputResponses")
    if isinstance(state, str) and isinstance(answers, dict) and CONFIRM_KEY in answers:
        answer = types.ElicitResult.model_validate(answers[CONFIRM_KEY])
        if answer.action != "accept" or not (answer.content or {}).get("go_ahead", True):
            return _declined(await service.decline(name, arguments, ANSWERED[answer.action], user))
        arguments = {**(arguments or {}), "confirm": state}
    try:
        return await service.admit(name, arguments, user)
    except ConfirmationNeeded as needed:
        if not _elicits(ctx):
            raise
        if _input_required_era(ctx):
            form = types.ElicitRequestFormParams(message=needed.question, requested_schema=CONFIRM_FORM)
            asked = types.InputRequiredResult(
                input_requests={CONFIRM_KEY: types.ElicitRequest(params=form)}, request_state=needed.token
            )
            return asked.model_dump(mode="json", by_alias=True, exclude_none=True)
        timeout = service.settings.confirm_timeout
        reply: types.ElicitResult | None = None
        with anyio.move_on_after(timeout):
            reply = await ctx.session.elicit_form(
                needed.question, CONFIRM_FORM, related_request_id=ctx.request_id
            )
        if reply is None or reply.action != "accept" or not (reply.content or {}).get("go_ahead", True):
            why = f"not answered within {timeout:g} s" if reply is None else ANSWERED[reply.action]
            return _declined(await service.decline(name, arguments, why, user))
        return await service.admit(name, {**(arguments or {}), "confirm": needed.token}, user)


async def _run_image_tool(
    ctx: ServerRequestContext[Service], name: str, arguments: dict[str, Any] | None
) -> types.CallToolResult | dict[str, Any]:
    """Validate at once; run the call as a job; hand a task to a client that takes tasks, else wait
    for it up to this client's budget."""
    service = ctx.lifespan_context
    report, live = _progress(ctx), [not _wants_task(ctx)]  # no progress notifications on tasks (spec)

    async def progress(message: str) -> None:
        if live[0]:  # a token is void once the call has answered
            await report(message)

    admitted = await _admit(ctx, name, arguments)
    if not isinstance(admitted, Admission):  # asked, declined: nothing was sent
        return admitted
    job = service.start_image_tool(name, arguments, progress, _caller(ctx), admission=admitted)
    if not live[0]:
        await job.stored.wait()  # durable before its id is handed out: any worker finds it from now on
        return _task(await service.jobs.get(job.id, job.user), "task")
    budget = service.settings.wait_budget_for(_client(ctx))
    try:
        finished = await service.jobs.wait(job, budget)
    except BaseException:  # the caller cancelled: so is the work (received images stay saved)
        job.scope.cancel()
        raise
    finally:
        live[0] = False
    if finished and job.record is not None:
        return _job_answer(service, job.record, budget)
    return _job_answer(service, await service.jobs.get(job.id, job.user), budget)


async def _collect_job(
    ctx: ServerRequestContext[Service], arguments: dict[str, Any] | None
) -> types.CallToolResult:
    service = ctx.lifespan_context
    job_id, wait = service.job_arguments(arguments)
    budget = service.settings.wait_budget_for(_client(ctx))
    limit = min(x for x in (wait, budget) if x is not None) if (wait, budget) != (None, None) else None
    return _job_answer(service, await service.jobs.collect(job_id, _caller(ctx), limit), limit)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _task(record: TaskRecord, result_type: str = "complete") -> dict[str, Any]:
    """A task as the tasks extension shows it: a `CreateTaskResult` (resultType "task"), or a
    `tasks/get` answer with the result or error of a task that has ended."""
    task: dict[str, Any] = {
        "resultType": result_type,
        "taskId": record.id,
        "status": record.status,
        "statusMessage": record.message,
        "createdAt": _iso(record.created),
        "lastUpdatedAt": _iso(record.updated),
        "ttlMs": int(KEEP_SECONDS * 1000),
        "pollIntervalMs": POLL_INTERVAL_MS,
    }
    if result_type == "task":
        return task
    if record.status == "completed" and record.result is not None:
        task["result"] = record.result
    elif record.status == "failed" and record.error is not None:
        task["error"] = record.error
    return task


class TaskParams(types.RequestParams):
    """`tasks/get` and `tasks/cancel` params: the task's id."""

    task_id: str = Field(alias="taskId")


class UpdateTaskParams(TaskParams):
    """`tasks/update` params; imagegate never asks for input, so the responses are acknowledged only."""

    input_responses: dict[str, Any] = Field(default_factory=dict, alias="inputResponses")


def _require_tasks(ctx: ServerRequestContext[Service]) -> None:
    if not _wants_task(ctx):
        data = types.MissingRequiredClientCapabilityErrorData(
            required_capabilities=types.ClientCapabilities(extensions={TASKS: {}})
        )
        raise MCPError(
            types.MISSING_REQUIRED_CLIENT_CAPABILITY,
            f"declare the {TASKS} extension in this request's client capabilities",
            data.model_dump(by_alias=True, mode="json", exclude_none=True),
        )


async def _found(ctx: ServerRequestContext[Service], task_id: str) -> TaskRecord:
    _require_tasks(ctx)
    try:
        return await ctx.lifespan_context.jobs.get(task_id, _caller(ctx))
    except ImagegateError:
        raise MCPError(types.INVALID_PARAMS, "Failed to retrieve task: Task not found") from None


async def get_task(ctx: ServerRequestContext[Service], params: TaskParams) -> dict[str, Any]:
    return _task(await _found(ctx, params.task_id))


async def update_task(ctx: ServerRequestContext[Service], params: UpdateTaskParams) -> dict[str, Any]:
    await _found(ctx, params.task_id)
    return {}


async def cancel_task(ctx: ServerRequestContext[Service], params: TaskParams) -> dict[str, Any]:
    record = await _found(ctx, params.task_id)
    await ctx.lifespan_context.jobs.cancel(record.id, record.user)
    return {}


async def _dispatch(
    ctx: ServerRequestContext[Service], name: str, arguments: dict[str, Any] | None
) -> types.CallToolResult | dict[str, Any]:
    service = ctx.lifespan_context
    if name == "list_models":
        return _answer(service.list_models(arguments))
    if name == "get_supported_sizes":
        return _answer(service.supported_sizes(arguments))
    if name == "get_image_job":
        return await _collect_job(ctx, arguments)
    return await _run_image_tool(ctx, name, arguments)


def _icon() -> types.Icon:
    """The server's icon (64 px PNG shipped in the package), inline so no client has to fetch it."""
    from importlib import resources

    data = resources.files("imagegate").joinpath("icon.png").read_bytes()
    return types.Icon(
        src="data:image/png;base64," + codec.b64encode(data), mime_type="image/png", sizes=["64x64"]
    )


def create_server(service_factory: Callable[[], Service] = build_service) -> Server[Service]:
    """The MCP server; the service is built once, in the lifespan, so a bad config fails at start."""

    @asynccontextmanager
    async def lifespan(_: Server[Service]) -> AsyncIterator[Service]:
        service = service_factory()
        try:
            async with anyio.create_task_group() as jobs:  # image calls can outlive their requests
                service.jobs.attach(jobs, _renderer(service))
                yield service
                jobs.cancel_scope.cancel()
        finally:
            await service.aclose()

    async def list_tools(
        ctx: ServerRequestContext[Service], _: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=_tools(ctx.lifespan_context, _client(ctx)))

    async def call_tool(
        ctx: ServerRequestContext[Service], params: types.CallToolRequestParams
    ) -> types.CallToolResult | dict[str, Any]:
        if params.name not in TOOL_DESCRIPTIONS:
            offered = ", ".join(
                t.name for t in _tools(ctx.lifespan_context, _client(ctx))
            )  # only what this client saw
            raise MCPError(types.INVALID_PARAMS, f'unknown tool "{shown(params.name)}"; tools: {offered}')
        try:
            return await _dispatch(ctx, params.name, params.arguments)
        except ImagegateError as e:
            log.info("%s refused: %s", params.name, e.kind)
            return _error_result(e)
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("internal error in %s (ref %s)", params.name, ref)
            return _text(f"internal error (ref {ref}); the server log on stderr has details", is_error=True)

    async def list_resources(
        ctx: ServerRequestContext[Service], _: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        root = ctx.lifespan_context.output_root(_caller(ctx))  # only the caller's own images
        images = await anyio.to_thread.run_sync(gallery.list_images, root)
        usage = _usage_listed(ctx.lifespan_context)
        return types.ListResourcesResult(resources=[*usage, *(_resource(i) for i in images)])

    async def list_resource_templates(
        ctx: ServerRequestContext[Service], _: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        template = types.ResourceTemplate(
            uri_template=gallery.URI_TEMPLATE,
            name="saved-image",
            title="Saved image",
            description=(
                "An image imagegate saved (date YYYY-MM-DD, file name as in a result); "
                "read it for the file and its sidecar."
            ),
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    async def read_resource(
        ctx: ServerRequestContext[Service], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        read = partial(gallery.read_image, ctx.lifespan_context.output_root(_caller(ctx)), params.uri)
        try:
            image, data = await anyio.to_thread.run_sync(read)
        except ImagegateError as e:
            raise MCPError(types.INVALID_PARAMS, e.agent_text()) from None
        except Exception:  # never echo a foreign exception's text (STYLE 9)
            ref = uuid.uuid4().hex[:8]
            log.exception("internal error reading a resource (ref %s)", ref)
            raise MCPError(
                types.INTERNAL_ERROR, f"internal error (ref {ref}); the server log on stderr has details"
            ) from None
        return _resource_contents(image, data)

    server = Server(
        "imagegate",
        version=__version__,
        title="imagegate",
        icons=[_icon()],
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_list_resources=list_resources,
        on_list_resource_templates=list_resource_templates,
        on_read_resource=_usage_first(read_resource),
    )
    # tools/call may answer with a task (a plain mapping, resultType "task"), so it is registered
    # through the generic seam; the tasks extension's three methods beside it.
    server.add_request_handler("tools/call", types.CallToolRequestParams, call_tool)
    server.add_request_handler("tasks/get", TaskParams, get_task)
    server.add_request_handler("tasks/update", UpdateTaskParams, update_task)
    server.add_request_handler("tasks/cancel", TaskParams, cancel_task)
    server.extensions[TASKS] = {}
    return server


def _renderer(service: Service) -> Render:
    """How a job's end is kept: the tool result the call would have answered with, as its wire form."""

    def dump(result: types.CallToolResult) -> dict[str, Any]:
        return result.model_dump(by_alias=True, mode="json", exclude_none=True)

    return Render(
        outcome=lambda outcome, user: dump(_image_result(service, outcome, user)),
        error=lambda error, user: dump(_error_result(error)),
    )
