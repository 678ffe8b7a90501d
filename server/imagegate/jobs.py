"""Image calls as jobs that can outlive the request that started them.

Some hosts abandon a tool call after about 60 s (Claude Desktop, Codex by default) while a 4K
or Pro-model generation can take longer. A call waits for its job up to a budget; past it the
caller gets the job's id at once, the job goes on in a task group that lives as long as the
server, saves its images as usual, and its outcome is kept for collection. Plain Python: the
MCP layer decides budgets and renders answers.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import anyio
from anyio.abc import TaskGroup

from .errors import ImagegateError, InvalidRequest, shown
from .generation import Outcome

__all__ = ["KEEP_SECONDS", "Job", "Jobs"]

log = logging.getLogger("imagegate")
KEEP_SECONDS = 3600.0
"""How long a finished job's outcome is kept for collection."""
State = Literal["running", "done", "failed", "cancelled"]


@dataclass
class Job:
    """One image call, running or finished."""

    id: str
    tool: str
    started: float = field(default_factory=time.monotonic)
    state: State = "running"
    outcome: Outcome | None = None
    error: ImagegateError | None = None
    progress: str = "started"
    finished_at: float | None = None
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)

    @property
    def elapsed(self) -> float:
        return (self.finished_at or time.monotonic()) - self.started


class Jobs:
    """Starts calls as jobs in a long-lived task group and keeps their outcomes for an hour."""

    def __init__(self) -> None:
        self._group: TaskGroup | None = None
        self._jobs: dict[str, Job] = {}

    def attach(self, group: TaskGroup) -> None:
        """Give jobs a task group that lives as long as the server (its lifespan's)."""
        self._group = group

    def start(self, tool: str, work: Callable[[Job], Awaitable[Outcome]]) -> Job:
        """Run `work` as a job in the attached group."""
        self._forget_old()
        job = Job(id=secrets.token_hex(6), tool=tool)
        self._jobs[job.id] = job
        if self._group is not None:
            self._group.start_soon(self._run, job, work)
        return job

    async def _run(self, job: Job, work: Callable[[Job], Awaitable[Outcome]]) -> None:
        # Jobs run in the server's own task group: an exception escaping here would end the server
        # (stdio) or poison every later request (HTTP), so every failure ends as this job's error.
        with job.scope:
            try:
                job.outcome = await work(job)
                job.state = "done"
            except ImagegateError as e:
                job.error, job.state = e, "failed"
            except Exception:
                ref = uuid.uuid4().hex[:8]
                log.exception("internal error in job %s (ref %s)", job.id, ref)
                job.error = ImagegateError(
                    f"internal error (ref {ref}); the server log on stderr has details"
                )
                job.state = "failed"
        if job.state == "running":
            job.state = "cancelled"
        job.finished_at = time.monotonic()
        job.done.set()

    async def wait(self, job: Job, seconds: float | None) -> bool:
        """Wait for a job up to `seconds` (None: until it ends); True if it has ended."""
        with anyio.move_on_after(seconds):
            await job.done.wait()
        return job.done.is_set()

    def get(self, job_id: str) -> Job:
        """A job by id, or an InvalidRequest saying what ids are."""
        self._forget_old()
        job = self._jobs.get(job_id)
        if job is None:
            message = (
                f'job "{shown(job_id)}" is unknown here; '
                "jobs are kept for an hour by the server process that started them"
            )
            raise InvalidRequest("job", shown(job_id), None, message)
        return job

    def _forget_old(self) -> None:
        now = time.monotonic()
        for job_id in [
            j.id for j in self._jobs.values() if j.finished_at and now - j.finished_at > KEEP_SECONDS
        ]:
            del self._jobs[job_id]
