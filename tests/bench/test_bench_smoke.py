"""The benchmark runs end to end in CI (smoke mode), so it cannot rot. Timings are for the
README's table, not for pass/fail: this test checks only that every measurement was made."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_smoke_run_measures_everything(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "tools.bench", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert {r["reply"] for r in report["latency"]} == {"b64_json", "url"}
    assert report["fan_out"]["n"] == 4 and report["fan_out"]["wall_s"] > 0
    assert (
        report["responsiveness"]["pings_during_call"] >= 1
        and report["responsiveness"]["busy_ping_max_ms"] > 0
    )
    assert report["memory"]["peak_mb"] >= report["memory"]["idle_mb"] > 0
    assert {b["case"] for b in report["body_bombs"]} == {"gzip_bomb", "endless_chunked", "deep_nesting"}
    assert all(b["peak_mb"] >= b["idle_mb"] > 0 for b in report["body_bombs"])
    assert report["startup"]["ratio"] > 0
    lists = {
        "tools_list_one_provider",
        "tools_list_one_provider_model_view",
        "tools_list_one_provider_with_jobs",
        "tools_list_all_providers",
        "tools_list_all_providers_model_view",
    }
    assert set(report["context"]) == lists | {"generate_result_1024", "generate_result_2048_n4"}
    assert "added latency" in done.stdout
