"""The ledger: every image-tool call, appended to a local SQLite database, and the day's spend
the budgets are judged against. The only module that imports sqlite3.

One row per call: reserved (status "running", charged at its estimate) in the same short
transaction that checks the budget, so two calls at once, or two server processes, cannot both
spend the last dollar; settled when the call ends (what the upstream reported, else the estimate
for the images made). Refused and declined calls are rows too, charged nothing. Confirmation
tokens live here as well, so a token one server process issued is honoured by another, once.

Safe for concurrent writers: WAL, a busy timeout, `BEGIN IMMEDIATE` for every write, and one
short-lived connection per operation. The async methods run the work in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import anyio

from .errors import ConfigError

__all__ = [
    "TOKEN_SECONDS",
    "Ledger",
    "Planned",
    "Refused",
    "Settled",
    "UsageLine",
    "UsageReport",
    "call_digest",
]

BUSY_TIMEOUT_MS = 15_000
TOKEN_SECONDS = 600.0
"""How long a confirmation token lets its call through."""
Status = Literal["running", "ok", "partial", "failed", "refused", "declined"]
SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    day TEXT NOT NULL,
    user TEXT,
    tool TEXT NOT NULL,
    model TEXT NOT NULL,
    provider TEXT NOT NULL,
    n INTEGER NOT NULL,
    size TEXT,
    estimated REAL,
    reported REAL,
    currency TEXT,
    charged_usd REAL NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    images INTEGER NOT NULL DEFAULT 0,
    paths TEXT NOT NULL DEFAULT '[]',
    request_ids TEXT NOT NULL DEFAULT '[]',
    note TEXT
);
CREATE INDEX IF NOT EXISTS calls_by_day ON calls (day, user);
CREATE TABLE IF NOT EXISTS confirmations (
    token TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    user TEXT,
    expires REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
"""


def call_digest(tool: str, arguments: Mapping[str, Any]) -> str:
    """A call's identity for a confirmation token: the tool and its arguments (without the token)."""
    args = {k: v for k, v in arguments.items() if k != "confirm" and v is not None}
    text = json.dumps([tool, args], sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Planned:
    """A call about to be sent (or refused): what the ledger records before anything else."""

    tool: str
    model: str
    provider: str
    n: int
    size: str
    estimated: float | None
    currency: str | None
    estimated_usd: float | None
    user: str | None = None


@dataclass(frozen=True)
class Settled:
    """How a call ended."""

    status: Status
    images: int = 0
    reported: float | None = None
    charged_usd: float = 0.0
    paths: Sequence[str] = ()
    request_ids: Sequence[str] = ()
    note: str | None = None


@dataclass(frozen=True)
class UsageLine:
    provider: str
    model: str
    calls: int
    images: int
    usd: float


@dataclass(frozen=True)
class UsageReport:
    """Spend since a day (inclusive), by provider and model, in USD as charged against budgets."""

    since: str
    until: str
    user: str | None
    lines: tuple[UsageLine, ...]
    unpriced_calls: int

    @property
    def total(self) -> float:
        return sum(line.usd for line in self.lines)

    def record(self) -> dict[str, Any]:
        return {
            "since": self.since,
            "until": self.until,
            **({"user": self.user} if self.user else {}),
            "total_usd": round(self.total, 6),
            "calls": sum(line.calls for line in self.lines),
            "images": sum(line.images for line in self.lines),
            "unpriced_calls": self.unpriced_calls,
            "by": [
                {
                    "provider": line.provider,
                    "model": line.model,
                    "calls": line.calls,
                    "images": line.images,
                    "usd": round(line.usd, 6),
                }
                for line in self.lines
            ],
        }

    def text(self) -> str:
        span = self.since if self.since == self.until else f"{self.since} to {self.until}"
        who = f" for {self.user}" if self.user else ""
        head = f"spend {span}{who}: ${self.total:.2f} over {sum(x.calls for x in self.lines)} calls"
        rows = [
            f"  {line.provider:<12} {line.model:<28} {line.calls:>4} calls {line.images:>5} images"
            f"  ${line.usd:.3f}"
            for line in self.lines
        ]
        unpriced = (
            [f"  ({self.unpriced_calls} calls had no known price and count $0)"]
            if self.unpriced_calls
            else []
        )
        return "\n".join([head, *rows, *unpriced])


class Ledger:
    """The SQLite ledger at `path`; created (with its folder) on first use, never at start-up."""

    def __init__(self, path: Path, now: Callable[[], datetime] = lambda: datetime.now().astimezone()):
        self.path = path
        self.now = now
        self._ready = False
        self._threads = threading.local()

    # --- Connections -------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened once and kept: opening and closing one per operation made
        every image call ~3.5 ms slower (the last close of a WAL database checkpoints it), where a kept
        connection with synchronous=NORMAL (safe against any process crash in WAL mode; only a power
        cut can take back the last commits) takes ~0.06 ms. Calls run in worker threads (in_thread),
        each with its own connection, as sqlite3 wants."""
        connection: sqlite3.Connection | None = getattr(self._threads, "connection", None)
        if connection is None:
            connection = self._connect()
            connection.execute("PRAGMA synchronous = NORMAL")
            self._threads.connection = connection
        return connection

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise ConfigError(f"cannot open the ledger {self.path}: {e}; IMAGEGATE_LEDGER moves it") from None
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not self._ready:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.executescript(SCHEMA)
            self._ready = True
        return connection

    @contextmanager
    def _write(self) -> Any:
        """One short write transaction, taken before reading (BEGIN IMMEDIATE): no other writer runs
        between this transaction's check and its insert."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    # --- Calls -------------------------------------------------------------------------------------

    def _spent(self, connection: sqlite3.Connection, day: str, user: str | None) -> float:
        row = connection.execute(
            "SELECT COALESCE(SUM(charged_usd), 0) FROM calls WHERE day = ? AND user IS ?", (day, user)
        ).fetchone()
        return float(row[0])

    def reserve(self, planned: Planned, decide: Callable[[float], tuple[str, str]]) -> int | None:
        """In one transaction: today's spend, `decide(spent)` -> ("go" | "refuse" | "confirm", text), and
        for "go" the call's row, charged at its estimate while it runs (its id is returned). A refusal
        is recorded, charged nothing, and raised as `Refused`; "confirm" records nothing (None)."""
        stamp = self.now()
        with self._write() as connection:
            action, text = decide(self._spent(connection, stamp.date().isoformat(), planned.user))
            if action == "confirm":
                return None
            status: Status = "refused" if action == "refuse" else "running"
            charge = 0.0 if action == "refuse" else (planned.estimated_usd or 0.0)
            row = self._insert(
                connection, stamp, planned, status, charge, text if action == "refuse" else None
            )
        if action == "refuse":
            raise Refused(text)
        return row

    def append(self, planned: Planned, settled: Settled) -> int:
        """A finished (or declined) call recorded in one go."""
        with self._write() as connection:
            row = self._insert(
                connection, self.now(), planned, settled.status, settled.charged_usd, settled.note
            )
        self.settle(row, settled)
        return row

    def _insert(
        self,
        connection: sqlite3.Connection,
        stamp: datetime,
        planned: Planned,
        status: Status,
        charge: float,
        note: str | None,
    ) -> int:
        cursor = connection.execute(
            "INSERT INTO calls (time, day, user, tool, model, provider, n, size, estimated, currency,"
            " charged_usd, status, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stamp.isoformat(timespec="seconds"),
                stamp.date().isoformat(),
                planned.user,
                planned.tool,
                planned.model,
                planned.provider,
                planned.n,
                planned.size,
                planned.estimated,
                planned.currency,
                charge,
                status,
                note,
            ),
        )
        return int(cursor.lastrowid or 0)

    def settle(self, row: int, settled: Settled) -> None:
        """Record how a reserved call ended: status, images, what was reported and charged, files, ids."""
        with self._write() as connection:
            connection.execute(
                "UPDATE calls SET status = ?, images = ?, reported = ?, charged_usd = ?, paths = ?,"
                " request_ids = ?, note = COALESCE(?, note) WHERE id = ?",
                (
                    settled.status,
                    settled.images,
                    settled.reported,
                    settled.charged_usd,
                    json.dumps(list(settled.paths), ensure_ascii=False),
                    json.dumps(list(settled.request_ids)),
                    settled.note,
                    row,
                ),
            )

    def spent_today(self, user: str | None = None) -> float:
        connection = self._connection()
        return self._spent(connection, self.now().date().isoformat(), user)

    def rows(self, since: date | None = None, user: str | None = None) -> list[dict[str, Any]]:
        """Every call since a day (default: all), oldest first, as plain records."""
        cursor = self._connection().cursor()
        cursor.row_factory = sqlite3.Row  # this query's rows only: the connection is kept and shared
        found = cursor.execute(
            "SELECT * FROM calls WHERE day >= ? AND user IS ? ORDER BY id",
            ((since or date.min).isoformat(), user),
        ).fetchall()
        return [
            {**dict(r), "paths": json.loads(r["paths"]), "request_ids": json.loads(r["request_ids"])}
            for r in found
        ]

    def usage(self, since: date, user: str | None = None) -> UsageReport:
        """Spend since `since` (inclusive) by provider and model."""
        connection = self._connection()
        found = connection.execute(
            "SELECT provider, model, COUNT(*), COALESCE(SUM(images), 0), COALESCE(SUM(charged_usd), 0)"
            " FROM calls WHERE day >= ? AND user IS ? AND status NOT IN ('refused', 'declined')"
            " GROUP BY provider, model ORDER BY 5 DESC, 1, 2",
            (since.isoformat(), user),
        ).fetchall()
        unpriced = connection.execute(
            "SELECT COUNT(*) FROM calls WHERE day >= ? AND user IS ? AND estimated IS NULL"
            " AND reported IS NULL AND status NOT IN ('refused', 'declined')",
            (since.isoformat(), user),
        ).fetchone()[0]
        lines = tuple(UsageLine(p, m, int(c), int(i), float(u)) for p, m, c, i, u in found)
        return UsageReport(since.isoformat(), self.now().date().isoformat(), user, lines, int(unpriced))

    # --- Confirmation tokens -------------------------------------------------------------------------

    def issue(self, digest: str, user: str | None = None, seconds: float = TOKEN_SECONDS) -> str:
        """A one-time token for the call `digest` names, valid for `seconds`."""
        token = "ok-" + secrets.token_urlsafe(9)
        expires = self.now().timestamp() + seconds
        with self._write() as connection:
            connection.execute("DELETE FROM confirmations WHERE expires < ?", (self.now().timestamp(),))
            connection.execute(
                "INSERT INTO confirmations (token, digest, user, expires) VALUES (?, ?, ?, ?)",
                (token, digest, user, expires),
            )
        return token

    def redeem(self, token: str, digest: str, user: str | None = None) -> bool:
        """Use a token up: True once, for the same call, before it expires; False otherwise."""
        with self._write() as connection:
            cursor = connection.execute(
                "UPDATE confirmations SET used = 1 WHERE token = ? AND digest = ? AND user IS ?"
                " AND used = 0 AND expires >= ?",
                (token, digest, user, self.now().timestamp()),
            )
            return bool(cursor.rowcount == 1)

    # --- Off the event loop --------------------------------------------------------------------------

    async def in_thread(self, work: Callable[[], Any]) -> Any:
        """Run a ledger operation in a worker thread (SQLite may wait on another writer's lock)."""
        return await anyio.to_thread.run_sync(work)


class Refused(Exception):
    """Raised by `Ledger.reserve` when the decision refused the call (its text is the reason)."""
