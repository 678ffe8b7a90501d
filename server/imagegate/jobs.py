"""Image calls as jobs that can outlive the request that started them: MCP tasks, and the job ids of
get_image_job.

Some hosts abandon a tool call after about 60 s (Claude Desktop, Codex by default) while a 4K or
Pro-model generation can take longer; a client that speaks the tasks extension is handed a task at
once. Either way the work runs in a task group that lives as long as the server, saves its images
as usual, and its outcome, rendered as the tool result it would have been, is kept in a task store
(team/tasks.py) for an hour: this process's own, or Redis, which every worker of a deployment reads,
so a task started on one worker is read, awaited and cancelled from any other. While it runs, this
process renews its lease, records its progress and the files it saves, and listens for cancellations.
Plain Python: the MCP layer decides budgets and renders answers (it hands a `Render` to `attach`).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from .errors import ImagegateError, InvalidRequest, shown
from .generation import Outcome
from .storage import ON_SAVED
from .team.tasks import KEEP_SECONDS, MemoryTasks, Status, TaskRecord, TaskStore

__all__ = ["KEEP_SECONDS", "Job", "Jobs", "Render"]

log = logging.getLogger("imagegate")


@dataclass(frozen=True)
class Render:
    """How a job's end becomes the tool result kept for whoever collects it (app.py's renderers)."""

    outcome: Callable[[Outcome, str | None], dict[str, Any]]
    """The result, given the outcome and the user whose folder its images are in."""
    error: Callable[[ImagegateError, str | None], dict[str, Any]]


@dataclass
class Job:
    """One image call run by this process, running or finished."""

    id: str
    tool: str
    user: str | None = None
    started: float = field(default_factory=time.monotonic)
    created: float = field(default_factory=time.time)
    progress: str = "started"
    outcome: Outcome | None = None
    error: ImagegateError | None = None
    record: TaskRecord | None = None
    """Its final record, once it has ended."""
    saved: list[Path] = field(default_factory=list)
    finished_at: float | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    stored: anyio.Event = field(default_factory=anyio.Event)
    """Set once the store holds its record: from then on every worker can find it."""
    done: anyio.Event = field(default_factory=anyio.Event)

    @property
    def elapsed(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Jobs:
    """Starts calls as jobs in a long-lived task group; their records live in the task store."""

    def __init__(self, store: TaskStore | None = None, worker: str | None = None) -> None:
        self.store: TaskStore = store or MemoryTasks()
        self.worker = worker or _worker_id()
        self._group: TaskGroup | None = None
        self._render: Render | None = None
        self._live: dict[str, Job] = {}

    def attach(self, group: TaskGroup, render: Render | None = None) -> None:
        """Give jobs a task group that lives as long as the server (its lifespan's), and how to render
        their results; with a shared store, also this worker's heartbeat and cancel listener."""
        self._group = group
        self._render = render
        if self.store.shared:
            group.start_soon(self._heartbeats)
            group.start_soon(self.store.listen, self.worker, self._cancel_local)

    def start(self, tool: str, work: Callable[[Job], Awaitable[Outcome]], user: str | None = None) -> Job:
        """Run `work` as a job in the attached group (await `job.stored` before handing out its id)."""
        job = Job(id=secrets.token_hex(12), tool=tool, user=user)
        self._live[job.id] = job
        if self._group is not None:
            self._group.start_soon(self._run, job, work)
        return job

    async def _run(self, job: Job, work: Callable[[Job], Awaitable[Outcome]]) -> None:
        # Jobs run in the server's own task group: an exception escaping here would end the server
        # (stdio) or poison every later request (HTTP), so every failure ends as this job's error.
        try:
            await self.store.create(self._record(job))
        except Exception:
            log.exception("could not record job %s in the task store; it runs unrecorded", job.id)
        finally:
            job.stored.set()
        ON_SAVED.set(self._on_saved(job))  # this task's context: the work and the threads it starts
        with job.scope:
            try:
                job.outcome = await work(job)
            except ImagegateError as e:
                job.error = e
            except Exception:
                job.error = _internal(f"job {job.id}")
        job.finished_at = time.monotonic()
        with anyio.CancelScope(shield=True):
            job.record = self._final(job)
            try:
                await self.store.finish(job.record)
            except Exception:
                log.exception("could not record the end of job %s in the task store", job.id)
        self._live.pop(job.id, None)
        job.done.set()

    def _record(self, job: Job, status: Status = "working") -> TaskRecord:
        now = time.time()
        return TaskRecord(
            id=job.id,
            tool=job.tool,
            user=job.user,
            owner=self.worker,
            created=job.created,
            updated=now,
            status=status,
            message=job.progress,
            saved=tuple(str(p) for p in job.saved),
        )

    def _final(self, job: Job) -> TaskRecord:
        """The job's end as its record: the rendered result (an error is still a result), or cancelled."""
        record = self._record(job)
        if job.outcome is None and job.error is None:
            kept = f"; the {len(job.saved)} image(s) it had received are saved" if job.saved else ""
            return replace(record, status="cancelled", message=f"cancelled{kept}")
        try:
            if self._render is None:
                raise RuntimeError("no renderer attached")
            if job.outcome is not None:
                result = self._render.outcome(job.outcome, job.user)
            else:
                assert job.error is not None
                result = self._render.error(job.error, job.user)
        except Exception:
            result_error = _internal(f"rendering the result of job {job.id}")
            result = self._render.error(result_error, job.user) if self._render else {}
        message = "failed: " + job.error.kind if job.error is not None else "done"
        return replace(record, status="completed", message=message, result=result)

    def _on_saved(self, job: Job) -> Callable[[Path], None]:
        """Told of each image the job publishes (in a worker thread): kept with the job, and put in a
        shared store before the image is reported, so a worker that dies next leaves it listed."""

        def saved(path: Path) -> None:
            job.saved.append(path)
            if self.store.shared:
                try:
                    anyio.from_thread.run(self.store.add_saved, job.id, str(path))
                except Exception:
                    log.warning("could not record a saved image of job %s in the task store", job.id)

        return saved

    async def _heartbeats(self) -> None:
        """Renew the leases of this worker's jobs and record their progress, a few times per lease;
        cancel those whose cancellation another worker asked for."""
        while True:
            await anyio.sleep(self.store.lease / 3)
            progress = {j.id: j.progress for j in self._live.values() if j.stored.is_set()}
            try:
                for job_id in await self.store.heartbeat(progress):
                    self._cancel_local(job_id)
            except Exception:  # a Redis hiccup costs one beat; the lease outlasts a few
                log.warning("could not renew this worker's task leases", exc_info=True)

    def _cancel_local(self, job_id: str) -> None:
        job = self._live.get(job_id)
        if job is not None:
            job.scope.cancel()

    async def wait(self, job: Job, seconds: float | None) -> bool:
        """Wait for a job of this process up to `seconds` (None: until it ends); True if it has ended."""
        with anyio.move_on_after(seconds):
            await job.done.wait()
        return job.done.is_set()

    async def get(self, job_id: str, user: str | None = None) -> TaskRecord:
        """A job's record by id, from any worker, or InvalidRequest: also for another user's job, so
        an id tells nobody else that it exists."""
        record = await self.store.get(job_id) if _plausible(job_id) else None
        if record is None or record.user != user:
            message = f'job "{shown(job_id)}" is unknown here; jobs are kept for an hour after they end'
            raise InvalidRequest("job", shown(job_id), None, message)
        live = self._live.get(job_id)
        return replace(record, message=live.progress) if live is not None and not record.finished else record

    async def collect(self, job_id: str, user: str | None, seconds: float | None) -> TaskRecord:
        """A job's record once it has ended, or as it is after `seconds` (None: until it ends)."""
        record = await self.get(job_id, user)
        if record.finished:
            return record
        live = self._live.get(job_id)
        if live is not None:
            await self.wait(live, seconds)
            return live.record or await self.get(job_id, user)
        return await self.store.wait(job_id, seconds) or record

    async def cancel(self, job_id: str, user: str | None) -> None:
        """Ask for a job to be cancelled, wherever it runs (its images received so far stay saved)."""
        record = await self.get(job_id, user)
        if record.finished:
            return
        if job_id in self._live:
            self._cancel_local(job_id)
        else:
            await self.store.request_cancel(record)


def _plausible(job_id: str) -> bool:
    return 0 < len(job_id) <= 64 and job_id.isascii() and job_id.isalnum()


def _internal(what: str) -> ImagegateError:
    ref = uuid.uuid4().hex[:8]
    log.exception("internal error in %s (ref %s)", what, ref)
    return ImagegateError(f"internal error (ref {ref}); the server log on stderr has details")
