"""Where image calls running as jobs (MCP tasks, get_image_job) are recorded: in this process, or in
Redis so that any worker of a deployment can read, await and cancel a task another one runs.

A record holds what a caller may ask about a task: its state and last progress message, the files
saved so far, and at the end the rendered tool result (or, for a worker that died, a JSON-RPC error
naming what was saved). The worker running a task renews a lease on it (a key with an expiry) while
it works; a reader that finds a working task whose lease has lapsed marks it failed, with the files
it had saved, so no task stays "working" after its worker is gone. Cancelling a task another worker
runs sets a flag on its record and publishes its id on that worker's channel; the owner cancels it
at once, or at its next heartbeat if the message was missed.

Plain data and async I/O: no MCP here (jobs.py runs the work, app.py renders the answers). The
lease-check-then-fail step is one Lua script, so two readers never both rewrite a record.

Sources: the tasks extension, modelcontextprotocol/ext-tasks `specification/2026-07-28/tasks.md`
(SEP-2663: a task is created durably before its id is returned; `failed` carries a JSON-RPC error;
`ttlMs`, `pollIntervalMs`); the MCP Python SDK 2.x leaves the extension to servers (mcp/server/
extension.py `MethodBinding`, the runner passing a `resultType: "task"` result through unsieved).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import anyio

from .backend import Keys, as_str, redis_errors

if TYPE_CHECKING:
    from .backend import Redis

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "KEEP_SECONDS",
    "MemoryTasks",
    "RedisTasks",
    "Status",
    "TaskRecord",
    "TaskStore",
    "worker_died",
]

log = logging.getLogger("imagegate")
KEEP_SECONDS = 3600.0
"""How long a finished task's outcome is kept for collection."""
DEFAULT_LEASE_SECONDS = 15.0
"""How long a task outlives its worker's last heartbeat before a reader marks it failed."""
POLL_SECONDS = 0.25
"""How often a wait on another worker's task looks at its record."""
Status = Literal["working", "completed", "failed", "cancelled"]
TERMINAL = frozenset({"completed", "failed", "cancelled"})
INTERNAL_ERROR = -32603


@dataclass(frozen=True)
class TaskRecord:
    """One image call as every worker sees it."""

    id: str
    tool: str
    user: str | None
    owner: str
    created: float
    """Wall-clock seconds (time.time): it is compared across hosts."""
    updated: float
    status: Status = "working"
    message: str = "started"
    saved: tuple[str, ...] = ()
    """Absolute paths of the images saved so far, in the order they were saved."""
    result: dict[str, Any] | None = None
    """The rendered tool result of a completed task (an isError result is still "completed")."""
    error: dict[str, Any] | None = None
    """The JSON-RPC error of a failed task: `code`, `message`, `data`."""

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL


def worker_died(record: TaskRecord, now: float) -> TaskRecord:
    """The record of a task whose worker stopped renewing its lease: failed, with what it had saved."""
    count = len(record.saved)
    kept = f"; the {count} image(s) it had received are saved: {', '.join(record.saved)}" if count else ""
    text = f"the worker running this task stopped before it finished{kept}"
    error = {"code": INTERNAL_ERROR, "message": text, "data": {"saved": list(record.saved)}}
    return replace(record, status="failed", message=text, error=error, updated=now)


class TaskStore(Protocol):
    """What jobs.py needs of a store; MemoryTasks and RedisTasks provide it."""

    shared: bool
    """True when other processes read it (leases, heartbeats and cancel messages then matter)."""
    lease: float

    async def create(self, record: TaskRecord) -> None: ...
    async def get(self, task_id: str) -> TaskRecord | None: ...
    async def add_saved(self, task_id: str, path: str) -> None: ...
    async def finish(self, record: TaskRecord) -> None: ...
    async def request_cancel(self, record: TaskRecord) -> None: ...
    async def heartbeat(self, progress: dict[str, str]) -> set[str]: ...
    async def listen(self, worker: str, on_cancel: Callable[[str], None]) -> None: ...
    async def wait(self, task_id: str, seconds: float | None) -> TaskRecord | None: ...
    async def aclose(self) -> None: ...


@dataclass
class _Entry:
    record: TaskRecord
    done: anyio.Event = field(default_factory=anyio.Event)


class MemoryTasks:
    """The store of one process (stdio, a single HTTP worker without Redis): records in a dict."""

    shared = False

    def __init__(self, lease: float = DEFAULT_LEASE_SECONDS, clock: Callable[[], float] = time.time):
        self.lease = lease
        self.clock = clock
        self._entries: dict[str, _Entry] = {}

    async def create(self, record: TaskRecord) -> None:
        self._forget_old()
        self._entries[record.id] = _Entry(record)

    async def get(self, task_id: str) -> TaskRecord | None:
        self._forget_old()
        entry = self._entries.get(task_id)
        return entry.record if entry else None

    async def add_saved(self, task_id: str, path: str) -> None:
        entry = self._entries.get(task_id)
        if entry is not None:
            entry.record = replace(entry.record, saved=(*entry.record.saved, path), updated=self.clock())

    async def finish(self, record: TaskRecord) -> None:
        entry = self._entries.setdefault(record.id, _Entry(record))
        entry.record = replace(record, saved=entry.record.saved or record.saved)
        entry.done.set()

    async def request_cancel(self, record: TaskRecord) -> None:
        """Nothing to send: the one process holding the task cancels it itself (jobs.py)."""

    async def heartbeat(self, progress: dict[str, str]) -> set[str]:
        return set()

    async def listen(self, worker: str, on_cancel: Callable[[str], None]) -> None:
        await anyio.sleep_forever()

    async def wait(self, task_id: str, seconds: float | None) -> TaskRecord | None:
        entry = self._entries.get(task_id)
        if entry is None:
            return None
        with anyio.move_on_after(seconds):
            await entry.done.wait()
        return entry.record

    async def aclose(self) -> None:
        pass

    def _forget_old(self) -> None:
        now = self.clock()
        old = [
            k for k, e in self._entries.items() if e.record.finished and now - e.record.updated > KEEP_SECONDS
        ]
        for task_id in old:
            del self._entries[task_id]


# KEYS[1] the task's hash, KEYS[2] its lease; ARGV the fields of the failed record. Fails the task only
# if it is still working and its lease has lapsed, so two readers never both rewrite it.
_FAIL_IF_LAPSED = """
if redis.call('HGET', KEYS[1], 'status') ~= 'working' then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'failed', 'message', ARGV[1], 'error', ARGV[2], 'updated', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""
# KEYS[1] the task's hash, KEYS[2] its lease; finishing is a no-op on a task already failed by a reader.
_FINISH = """
if redis.call('HGET', KEYS[1], 'status') ~= 'working' then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1
"""

# KEYS[1] the task's hash, KEYS[2] its lease; ARGV lease ms, message, time, keep seconds. The owner's
# renewal: only while the task is still working (a reader may have failed it after a stall, and then
# its record must stay as the reader left it); answers the cancel flag, or "gone".
_RENEW = """
if redis.call('HGET', KEYS[1], 'status') ~= 'working' then return 'gone' end
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
redis.call('HSET', KEYS[1], 'message', ARGV[2], 'updated', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return redis.call('HGET', KEYS[1], 'cancel') or ''
"""


class RedisTasks:
    """The store a deployment's workers share: a hash per task, a list of its saved files, a lease key
    the owner renews, and a cancel channel per worker."""

    shared = True

    def __init__(
        self,
        client: Redis,
        keys: Keys,
        lease: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ):
        self.client = client
        self.keys = keys
        self.lease = lease
        self.clock = clock
        self.sleep = sleep
        self._fail_if_lapsed = client.register_script(_FAIL_IF_LAPSED)
        self._finish = client.register_script(_FINISH)
        self._renew = client.register_script(_RENEW)
        self._live: set[str] = set()

    def _ttl(self, record: TaskRecord) -> int:
        return int(KEEP_SECONDS + (0 if record.finished else self.lease))

    async def create(self, record: TaskRecord) -> None:
        """Durable before it returns: a tasks/get on any worker finds it from then on."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(self.keys.task(record.id), mapping=cast(dict[Any, Any], _fields(record)))
        pipe.expire(self.keys.task(record.id), self._ttl(record))
        pipe.set(self.keys.lease(record.id), record.owner, px=int(self.lease * 1000))
        await pipe.execute()
        self._live.add(record.id)

    async def get(self, task_id: str) -> TaskRecord | None:
        record = await self._read(task_id)
        if record is None or record.status != "working" or task_id in self._live:
            return record
        if await self.client.exists(self.keys.lease(task_id)):
            return record
        failed = worker_died(record, self.clock())
        assert failed.error is not None
        done = await self._fail_if_lapsed(
            keys=[self.keys.task(task_id), self.keys.lease(task_id)],
            args=[failed.message, json.dumps(failed.error), failed.updated, int(KEEP_SECONDS)],
        )
        if done:
            log.warning("task %s failed: its worker %s stopped renewing its lease", task_id, record.owner)
            return failed
        return await self._read(task_id)  # its owner (or another reader) changed it meanwhile

    async def _read(self, task_id: str) -> TaskRecord | None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(self.keys.task(task_id))
        pipe.lrange(self.keys.saved(task_id), 0, -1)
        fields, saved = await pipe.execute()
        return _record(task_id, fields, saved) if fields else None

    async def add_saved(self, task_id: str, path: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(self.keys.saved(task_id), path)
        pipe.expire(self.keys.saved(task_id), int(KEEP_SECONDS + self.lease))
        await pipe.execute()

    async def finish(self, record: TaskRecord) -> None:
        self._live.discard(record.id)
        fields = [v for pair in _fields(record).items() for v in pair if pair[0] in _FINAL_FIELDS]
        await self._finish(
            keys=[self.keys.task(record.id), self.keys.lease(record.id)],
            args=[int(KEEP_SECONDS), *fields],
        )
        await self.client.expire(self.keys.saved(record.id), int(KEEP_SECONDS))

    async def request_cancel(self, record: TaskRecord) -> None:
        """Flag the record (the owner's heartbeat reads it) and tell its owner now."""
        await self.client.hset(self.keys.task(record.id), "cancel", "1")
        await self.client.publish(self.keys.cancels(record.owner), record.id)

    async def heartbeat(self, progress: dict[str, str]) -> set[str]:
        """Renew the leases of the tasks this worker runs, record their progress; the ids among them
        to stop: cancelled, or already failed by a reader after their lease lapsed (the work would only
        be thrown away; what it saved stays listed with the failed task)."""
        if not progress:
            return set()
        now, stop = self.clock(), set()
        for task_id, message in progress.items():
            answer = await self._renew(
                keys=[self.keys.task(task_id), self.keys.lease(task_id)],
                args=[int(self.lease * 1000), message, repr(now), int(KEEP_SECONDS + self.lease)],
            )
            if answer in ("1", "gone"):  # asked to stop, or failed by a reader while this worker stalled
                stop.add(task_id)
        return stop

    async def listen(self, worker: str, on_cancel: Callable[[str], None]) -> None:
        """Deliver the ids published on this worker's cancel channel until cancelled; a dropped
        connection is retried (meanwhile the heartbeat still reads the flags)."""
        while True:
            try:
                async with self.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.keys.cancels(worker))
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            on_cancel(str(message["data"]))
            except redis_errors():
                log.warning("the cancel channel of this worker dropped; listening again", exc_info=True)
                await self.sleep(1.0)

    async def wait(self, task_id: str, seconds: float | None) -> TaskRecord | None:
        """The task once it has finished, or as it is when `seconds` have passed."""
        record = await self.get(task_id)
        deadline = None if seconds is None else time.monotonic() + seconds
        while record is not None and not record.finished:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                break
            await self.sleep(POLL_SECONDS if left is None else min(POLL_SECONDS, left))
            record = await self.get(task_id)
        return record

    async def aclose(self) -> None:
        pass  # the client is the service's, closed with it


_FINAL_FIELDS = frozenset({"status", "message", "result", "error", "updated"})


def _fields(record: TaskRecord) -> dict[str, str]:
    fields = {
        "tool": record.tool,
        "user": record.user or "",
        "owner": record.owner,
        "created": repr(record.created),
        "updated": repr(record.updated),
        "status": record.status,
        "message": record.message,
    }
    if record.result is not None:
        fields["result"] = json.dumps(record.result, separators=(",", ":"), ensure_ascii=False)
    if record.error is not None:
        fields["error"] = json.dumps(record.error, separators=(",", ":"), ensure_ascii=False)
    return fields


def _record(task_id: str, fields: dict[str, Any], saved: Iterable[Any]) -> TaskRecord:
    status = as_str(fields.get("status")) or "working"
    result, error = fields.get("result"), fields.get("error")
    return TaskRecord(
        id=task_id,
        tool=as_str(fields.get("tool")) or "",
        user=as_str(fields.get("user")) or None,
        owner=as_str(fields.get("owner")) or "",
        created=float(fields.get("created") or 0),
        updated=float(fields.get("updated") or 0),
        status=status if status in TERMINAL else "working",  # type: ignore[arg-type]
        message=as_str(fields.get("message")) or "",
        saved=tuple(str(p) for p in saved),
        result=json.loads(result) if result else None,
        error=json.loads(error) if error else None,
    )
