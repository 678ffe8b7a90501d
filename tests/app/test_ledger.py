"""The ledger: one row per call that matches the files, safe under concurrent calls and two servers on
one file, a day's spend that survives a restart, one-time expiring tokens, and `imagegate usage`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest
from tests.support import base_env, error_of, meta_of, provider_env, serve, text_of
from tools.emulator import EmulatorClient, start_thread

from imagegate.cli import main
from imagegate.ledger import Ledger, Planned, Settled, call_digest

pytestmark = pytest.mark.anyio

PLACEHOLDER = {"model": "placeholder", "prompt": "a lighthouse", "size": "64x64"}
LOW = {"model": "gpt-image-1", "prompt": "a red fox", "n": 2, "quality": "low", "size": "1024x1024"}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorClient]:
    with start_thread() as running:
        yield running


async def test_fifty_concurrent_calls_from_two_servers_make_fifty_rows_that_match_the_files(tmp_path):
    env = base_env(tmp_path)
    results: list[dict] = []

    async def call(client, k: int) -> None:
        results.append(meta_of(await client.call_tool("generate_image", {**PLACEHOLDER, "prompt": f"p{k}"})))

    async with serve(env) as one, serve(env) as two, anyio.create_task_group() as group:
        for k in range(50):
            group.start_soon(call, one if k % 2 else two, k)
    rows = Ledger(Path(env["IMAGEGATE_LEDGER"])).rows()
    assert len(rows) == 50 and {r["status"] for r in rows} == {"ok"}
    saved = sorted(i["path"] for m in results for i in m["images"])
    assert sorted(p for r in rows for p in r["paths"]) == saved
    assert all(Path(p).is_file() for p in saved)
    assert {(r["tool"], r["model"], r["provider"], r["n"], r["size"]) for r in rows} == {
        ("generate_image", "placeholder", "placeholder", 1, "64x64")
    }


async def test_the_days_spend_survives_a_restart(tmp_path, emulator):
    emulator.reset()
    env = provider_env(tmp_path, emulator, "openai", "test-k", IMAGEGATE_DAILY_BUDGET="0.03")
    async with serve(env) as client:
        assert not (await client.call_tool("generate_image", LOW)).is_error  # about $0.022
    async with serve(env) as restarted:  # a new service on the same ledger file
        refused = await restarted.call_tool("generate_image", LOW)
    assert error_of(refused)["kind"] == "over_budget" and "spent" in text_of(refused)
    assert len(emulator.requests("openai")) == 1
    (row,) = Ledger(Path(env["IMAGEGATE_LEDGER"])).rows()[:1]
    assert row["estimated"] == pytest.approx(0.022) and row["reported"] == pytest.approx(row["charged_usd"])


async def test_a_refused_call_is_a_row_charged_nothing(tmp_path, emulator):
    emulator.reset()
    env = provider_env(tmp_path, emulator, "openai", "test-k", IMAGEGATE_CALL_BUDGET="0.01")
    async with serve(env) as client:
        await client.call_tool("generate_image", LOW)
    (row,) = Ledger(Path(env["IMAGEGATE_LEDGER"])).rows()
    assert (row["status"], row["charged_usd"], row["paths"]) == ("refused", 0.0, [])
    assert "per-call budget" in row["note"]


def planned(estimate: float | None = 1.0) -> Planned:
    return Planned("generate_image", "m", "p", 1, "1024x1024", estimate, "USD", estimate)


def test_a_reservation_counts_against_the_budget_until_it_settles(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    row = ledger.reserve(planned(0.4), lambda spent: ("go", ""))
    assert ledger.spent_today() == pytest.approx(0.4)
    seen = []
    ledger.reserve(planned(0.4), lambda spent: (seen.append(spent), ("go", ""))[1])
    assert seen == [pytest.approx(0.4)]
    ledger.settle(row, Settled("failed"))
    assert ledger.spent_today() == pytest.approx(0.4)  # the failed call is charged nothing


def test_tokens_are_one_time_bound_to_the_call_and_expire(tmp_path):
    now = [datetime(2026, 12, 1, 12, 0).astimezone()]
    ledger = Ledger(tmp_path / "l.sqlite3", now=lambda: now[0])
    digest = call_digest("generate_image", {"model": "m", "n": 4})
    assert call_digest("generate_image", {"n": 4, "model": "m", "confirm": "x"}) == digest
    token = ledger.issue(digest)
    assert not ledger.redeem(token, call_digest("generate_image", {"model": "m", "n": 5}))
    assert ledger.redeem(token, digest) and not ledger.redeem(token, digest)
    late = ledger.issue(digest)
    now[0] += timedelta(minutes=11)
    assert not ledger.redeem(late, digest)


def test_a_user_has_a_spend_of_their_own(tmp_path):
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.append(planned(), Settled("ok", images=1, charged_usd=0.5))
    ledger.append(
        Planned("generate_image", "m", "p", 1, "", 1.0, "USD", 1.0, user="ana"),
        Settled("ok", charged_usd=2.0),
    )
    assert ledger.spent_today() == pytest.approx(0.5) and ledger.spent_today("ana") == pytest.approx(2.0)


def test_imagegate_usage_prints_today_and_this_month(tmp_path, capsys, monkeypatch):
    path = tmp_path / "l.sqlite3"
    ledger = Ledger(path)
    ledger.append(planned(), Settled("ok", images=2, charged_usd=0.25))
    for name, value in base_env(tmp_path, IMAGEGATE_LEDGER=str(path)).items():
        monkeypatch.setenv(name, value)
    assert main(["usage", "--json"]) == 0
    today, month = json.loads(capsys.readouterr().out)
    assert today["total_usd"] == 0.25 and today["by"] == [
        {"provider": "p", "model": "m", "calls": 1, "images": 2, "usd": 0.25}
    ]
    assert month["since"].endswith("-01")
    assert main(["usage"]) == 0
    assert "p            m" in capsys.readouterr().out
