"""The one module that imports the `redis` client (the `imagegate[team]` extra): a connection pool
to the deployment's Redis, and the key names every worker agrees on.

Everything a team's workers share lives under one prefix, the deployment's name
(IMAGEGATE_DEPLOYMENT, default "imagegate"), so two deployments can share one Redis.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["Keys", "Redis", "as_str", "connect", "redis_errors"]


def redis_errors() -> tuple[type[BaseException], ...]:
    """What `except` should catch for a failed Redis command: redis's own error class once a client
    exists, else nothing (no client, nothing raises it). The redis package is imported only by
    `connect`: importing it costs ~80 ms of every server's start, with or without a Redis."""
    module = sys.modules.get("redis.exceptions")
    return (module.RedisError,) if module is not None else ()


def connect(url: str) -> Redis:
    """A pooled client for `url` (nothing is opened until the first command); ConfigError names the
    extra to install when the client library is missing. The URL (it may hold a password) is never
    put in a message."""
    try:
        from redis.asyncio import Redis
    except ImportError:
        raise ConfigError(
            "IMAGEGATE_REDIS_URL is set but the redis client is not installed: pip install 'imagegate[team]'"
        ) from None
    try:
        client: Redis = Redis.from_url(url, decode_responses=True, health_check_interval=30)
    except ValueError:
        raise ConfigError(
            "IMAGEGATE_REDIS_URL is not a Redis URL (redis://host:port/db, rediss:// or unix://)"
        ) from None
    return client


@dataclass(frozen=True)
class Keys:
    """Key and channel names under the deployment's prefix."""

    prefix: str

    def task(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    def saved(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}:saved"

    def lease(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}:lease"

    def cancels(self, worker: str) -> str:
        """The channel a worker listens on for cancellations of the tasks it runs."""
        return f"{self.prefix}:cancel:{worker}"

    def slots(self, name: str) -> str:
        return f"{self.prefix}:slots:{name}"

    def starts(self, name: str) -> str:
        return f"{self.prefix}:starts:{name}"


def as_str(value: Any) -> str | None:
    """A reply field as text (the pool decodes replies; None stays None)."""
    return None if value is None else str(value)
