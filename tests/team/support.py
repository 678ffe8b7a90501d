"""A client of the tasks extension (io.modelcontextprotocol/tasks, 2026-07-28) for the tests, as
its specification shapes the wire: a `resultType: "task"` claim on tools/call, resolved by polling
`tasks/get`; and requests for tasks/get and tasks/cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.session import ClientSession
from pydantic import ConfigDict
from tests.support.server import process_env

from imagegate.app import create_server
from imagegate.service import Service, build_service

TASKS = "io.modelcontextprotocol/tasks"
FINAL = ("completed", "failed", "cancelled")


class CreatedTask(types.Result):
    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None


class TaskState(types.Result):
    model_config = ConfigDict(extra="allow")
    task_id: str
    status: str
    status_message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class TaskIdParams(types.RequestParams):
    task_id: str


class GetTask(types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"  # Mcp-Name carries the task id, so a load balancer can route on it


class CancelTask(types.Request[TaskIdParams, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    params: TaskIdParams
    name_param = "taskId"


def _session(client: Client | ClientSession) -> ClientSession:
    return client.session if isinstance(client, Client) else client


async def get_task(client: Client | ClientSession, task_id: str) -> TaskState:
    return await _session(client).send_request(GetTask(params=TaskIdParams(task_id=task_id)), TaskState)


async def cancel_task(client: Client | ClientSession, task_id: str) -> None:
    request = CancelTask(params=TaskIdParams(task_id=task_id))
    await _session(client).send_request(request, types.EmptyResult)


async def until_final(
    client: Client | ClientSession, task_id: str, seconds: float = 30, every: float = 0.05
) -> TaskState:
    with anyio.fail_after(seconds):
        while (state := await get_task(client, task_id)).status not in FINAL:
            await anyio.sleep(every)
    return state


async def _resolve(task: CreatedTask, ctx: ClaimContext) -> types.CallToolResult:
    state = await until_final(ctx.session, task.task_id)
    return types.CallToolResult.model_validate(state.result)


class TasksExtension(ClientExtension):
    identifier = TASKS

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=_resolve)]


async def call_as_task(
    client: Client, name: str, arguments: dict[str, Any]
) -> CreatedTask | types.CallToolResult:
    """tools/call, returning the task handle rather than driving it to its end."""
    return await client.session.call_tool(name, arguments, allow_claimed=True)  # type: ignore[return-value]


@asynccontextmanager
async def worker(env: Mapping[str, str], *, tasks: bool = True, mode: str = "auto") -> AsyncIterator[Client]:
    """One in-memory server (as one worker of a deployment) and a client of it that declares the tasks
    extension (or not)."""

    def service() -> Service:
        with process_env(env):
            return build_service(env)

    extensions = [TasksExtension()] if tasks else []
    async with Client(create_server(service), mode=mode, extensions=extensions) as client:  # type: ignore[arg-type]
        yield client
