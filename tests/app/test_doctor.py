"""`imagegate doctor` as a person or a script runs it: configured providers are probed without
their key (the emulator answers: reachable; a closed port: unreachable, exit 1), the others
name the variable to set, and no key ever appears in what it prints. The CLI's own entry point runs
in process; the first test runs it as a subprocess, as a person does."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from tests.support import TEST_KEY_PREFIX, base_env
from tests.support.cli import run_cli
from tools.emulator import start_thread

KEY = f"{TEST_KEY_PREFIX}openai"


@pytest.fixture(scope="module")
def emulator():
    with start_thread() as emu:
        yield emu


def doctor(env: dict[str, str], *args: str, process: bool = False) -> subprocess.CompletedProcess[str]:
    if process:
        command = [sys.executable, "-m", "imagegate", "doctor", *args]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    else:
        done = run_cli(env, "doctor", *args)
    assert KEY not in done.stdout + done.stderr
    return done


def closed_port() -> int:
    """A port nothing listens on: bound, then released."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def refusing_server() -> Iterator[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """An HTTP server that answers 401 to everything and records what it was sent."""
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def providers(done: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    return {p["id"]: p for p in json.loads(done.stdout)["providers"]}


@pytest.mark.slow
def test_a_configured_provider_that_answers_is_reachable(emulator, tmp_path):
    env = base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=emulator.base_url("openai"))
    done = doctor(env, "--json", process=True)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    openai = providers(done)["openai"]
    assert openai["configured"] and openai["reachable"] is True and openai["detail"].startswith("HTTP ")
    assert report["output_dir"] == str(tmp_path / "out") and report["output_writable"] is True
    assert report["config_file"] is None and report["version"]


def test_a_key_the_upstream_refuses_is_named_and_sent_only_to_the_configured_host(tmp_path):
    # doctor makes one cheap authenticated GET per provider (BFL's credits, OpenAI's model list): a
    # 401 there means the host answers and the key is wrong, which fails the check.
    with refusing_server() as (url, seen):
        keys = {"BFL_API_KEY": KEY, "OPENAI_API_KEY": KEY}
        env = base_env(tmp_path, BFL_BASE_URL=f"{url}/v1", OPENAI_BASE_URL=f"{url}/v1", **keys)
        done = doctor(env, "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    bfl = providers(done)["bfl"]
    assert bfl["reachable"] is True and bfl["works"] is False and bfl["problem"] == "key"
    assert bfl["detail"].startswith("HTTP 401")
    assert sorted(path for path, _ in seen) == ["/v1/credits", "/v1/models"]
    assert KEY not in done.stdout + done.stderr


def test_unconfigured_providers_name_the_variable_to_set_and_are_not_probed(emulator, tmp_path):
    env = base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=emulator.base_url("openai"))
    found = providers(doctor(env, "--json"))
    assert found["gemini"] == found["gemini"] | {"configured": False, "reachable": None}
    assert found["gemini"]["set_variable"] == "GEMINI_API_KEY (or GOOGLE_API_KEY)"
    assert found["ark"]["set_variable"] == "ARK_API_KEY"


def test_a_closed_port_is_unreachable_and_fails(tmp_path):
    env = base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=f"http://127.0.0.1:{closed_port()}/v1")
    done = doctor(env, "--json", "--timeout", "2")
    assert done.returncode == 1
    assert providers(done)["openai"]["reachable"] is False


def test_offline_skips_the_checks(tmp_path):
    env = base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=f"http://127.0.0.1:{closed_port()}/v1")
    done = doctor(env, "--json", "--offline")
    assert done.returncode == 0
    assert providers(done)["openai"] | {"configured": True, "reachable": None} == providers(done)["openai"]


def test_the_text_report_says_what_is_set_where_files_go_and_which_config_was_read(emulator, tmp_path):
    config = tmp_path / "imagegate.toml"
    config.write_text('priority = ["openai"]\n')
    env = base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=emulator.base_url("openai"))
    env["IMAGEGATE_CONFIG"] = str(config)
    done = doctor(env)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("imagegate ")
    assert f"config file: {config}" in lines
    assert any(line.startswith(f"output dir:  {tmp_path / 'out'}") and "writable" in line for line in lines)
    assert any(line.split()[:3] == ["openai", "configured,", "reachable"] for line in lines)
    assert ["zhaotou", "not", "configured:", "set", "ZHAOTOU_API_KEY"] in [line.split() for line in lines]


def test_a_placeholder_key_is_not_configured(tmp_path):
    env = base_env(tmp_path, OPENAI_API_KEY="${user_config.openai_api_key}")
    found = providers(doctor(env, "--json", "--offline"))
    assert found["openai"]["configured"] is False


def test_an_output_dir_that_is_a_file_is_reported_and_fails(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    env = base_env(tmp_path, IMAGEGATE_OUTPUT_DIR=str(Path(blocker, "images")))
    done = doctor(env, "--json", "--offline")
    assert done.returncode == 1
    assert json.loads(done.stdout)["output_writable"] is False


def test_a_token_inside_the_base_url_is_not_shown(tmp_path):
    url = f"http://user:{KEY}@127.0.0.1:{closed_port()}/v1?token={KEY}"
    done = doctor(base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=url), "--offline")  # checks KEY
    assert done.returncode == 0 and "http://127.0.0.1:" in done.stdout
