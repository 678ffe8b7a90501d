"""`imagegate doctor` checks key and base URL with one cheap authenticated GET (a model list, BFL's
credits) against the emulator: the CLI's own entry point with a clean environment, once as a person
runs it (a subprocess), the rest in process (the same main, without a process start per case). Each
broken set-up says which of key, base URL or network is wrong and names the variable; the key itself
never appears in what it prints, and nothing checked never reads as "works"."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import anyio
import pytest
from tests.support import TEST_KEY_PREFIX, base_env
from tests.support.cli import run_cli
from tools.emulator import mixroute as emulated_mixroute
from tools.emulator import openai_images as emulated_openai
from tools.emulator import start_thread

from imagegate.doctor import diagnose
from imagegate.service import build_service

KEY = f"{TEST_KEY_PREFIX}doctor-checks"
WRONG_KEY = f"{TEST_KEY_PREFIX}doctor-wrong"


@pytest.fixture(scope="module")
def emulator():
    with start_thread() as emu:
        yield emu


@pytest.fixture
def emu(emulator):
    emulator.reset()
    yield emulator
    emulator.reset()


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return checked(run_cli(env, "doctor", *args))


def doctor_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "imagegate", "doctor", *args]
    return checked(subprocess.run(command, env=env, capture_output=True, text=True, timeout=60))


def checked(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    for key in (KEY, WRONG_KEY):
        assert key not in done.stdout + done.stderr
    return done


def report(done: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    return {p["id"]: p for p in json.loads(done.stdout)["providers"]}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_a_right_set_up_works_and_the_check_reached_the_model_list_with_the_key(emu, tmp_path):
    env = base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=emu.base_url("openai"))
    done = doctor_process(env, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    openai = report(done)["openai"]
    assert openai["works"] is True and openai["reachable"] is True and openai["problem"] is None
    assert openai["check"] == f"GET {emu.base_url('openai')}/models"
    [seen] = [r for r in emu.requests("openai") if r["endpoint"] == "models"]
    assert seen["auth_ok"] and seen["method"] == "GET"
    text = doctor_process(env)
    assert "every one checked works" in text.stdout and text.returncode == 0


def test_bfl_is_checked_through_its_credits_not_a_generation(emu, tmp_path):
    env = base_env(tmp_path, BFL_API_KEY=KEY, BFL_BASE_URL=emu.base_url("bfl"))
    bfl = report(doctor(env, "--json"))["bfl"]
    assert bfl["works"] is True and bfl["check"].endswith("/v1/credits")
    assert [r["endpoint"] for r in emu.requests("bfl")] == ["credits"]


def test_a_base_url_without_v1_says_base_url_names_the_variable_and_the_url_asked(emu, tmp_path):
    without_v1 = emu.base_url("openai").removesuffix("/v1")
    env = base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=without_v1)
    done = doctor(env, "--json")
    assert done.returncode == 1
    openai = report(done)["openai"]
    assert openai["works"] is False and openai["problem"] == "base_url"
    assert openai["variable"] == "OPENAI_BASE_URL"
    assert f"{without_v1}/models was not found" in openai["detail"] and "/v1" in openai["detail"]
    text = doctor(env).stdout
    assert "BASE URL WRONG" in text and "OPENAI_BASE_URL" in text and f"{without_v1}/models" in text


def test_a_wrong_key_says_key_and_names_the_variable_without_showing_the_key(emu, tmp_path):
    emu.configure("openai", keys=[KEY])
    env = base_env(tmp_path, OPENAI_API_KEY=WRONG_KEY, OPENAI_BASE_URL=emu.base_url("openai"))
    done = doctor(env, "--json")  # doctor() greps stdout and stderr for both keys
    assert done.returncode == 1
    openai = report(done)["openai"]
    assert openai["problem"] == "key" and openai["variable"] == "OPENAI_API_KEY" and "401" in openai["detail"]
    text = doctor(env)
    assert "KEY REJECTED" in text.stdout and "OPENAI_API_KEY" in text.stdout


def test_a_wrong_gemini_key_is_a_key_problem_though_google_answers_400(emu, tmp_path):
    emu.configure("gemini", keys=[KEY])
    env = base_env(tmp_path, GEMINI_API_KEY=WRONG_KEY, GEMINI_BASE_URL=emu.base_url("gemini"))
    gemini = report(doctor(env, "--json"))["gemini"]
    assert gemini["problem"] == "key" and gemini["variable"].startswith("GEMINI_API_KEY")


def test_an_unreachable_port_names_the_host(tmp_path):
    port = closed_port()
    env = base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=f"http://127.0.0.1:{port}/v1")
    done = doctor(env, "--json", "--timeout", "2")
    assert done.returncode == 1
    openai = report(done)["openai"]
    assert openai["reachable"] is False and openai["problem"] == "network"
    assert f"127.0.0.1:{port}" in openai["detail"] and "ConnectError" in openai["detail"]


@pytest.mark.slow  # waits out its one-second timeout
def test_a_slow_upstream_is_reported_as_a_timeout(emu, tmp_path):
    emu.fault("openai", "models", "slow", seconds=3)
    env = base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=emu.base_url("openai"))
    openai = report(doctor(env, "--json", "--timeout", "1"))["openai"]
    assert openai["problem"] == "timeout" and "within 1 s" in openai["detail"]


def test_nothing_configured_does_not_claim_that_everything_works(tmp_path):
    done = doctor(base_env(tmp_path))
    assert "works" not in done.stdout.split("\n\n")[-1]
    assert "No provider that uses the network is configured" in done.stdout
    assert "Not checked" in done.stdout and "not configured" in done.stdout
    found = report(doctor(base_env(tmp_path), "--json"))
    assert not any(p["works"] for p in found.values())


def test_a_provider_without_a_documented_check_is_reachability_only_and_not_counted_as_working(emu, tmp_path):
    env = base_env(tmp_path, ARK_API_KEY=KEY, ARK_BASE_URL=emu.base_url("ark"))
    done = doctor(env)
    ark = next(line for line in done.stdout.splitlines() if line.startswith("ark "))
    assert "no cheap check documented; reachability only" in ark
    assert "every one checked works" not in done.stdout and "Nothing was checked with a key" in done.stdout
    assert all("authorization" not in r["headers"] for r in emu.requests("ark"))


def test_a_gateway_list_missing_a_catalog_id_and_offering_an_extra_image_model_shows_both(
    emu, tmp_path, catalog
):
    wire_ids = sorted({r.upstream for r in catalog.routes if r.provider == "zhaotou"})
    dropped, extra = "gpt-4o-image", "qwen-image-max-2026"
    emu.configure("zhaotou", models=[i for i in wire_ids if i != dropped] + [extra, "deepseek-chat"])
    env = base_env(tmp_path, ZHAOTOU_API_KEY=KEY, ZHAOTOU_BASE_URL=emu.base_url("zhaotou"))
    done = doctor(env, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    models = report(done)["zhaotou"]["models"]
    assert models["catalog_unlisted"] == [dropped]
    assert models["gateway_extra"] == [extra]  # the chat model is not image-looking
    text = doctor(env).stdout
    assert f"catalog ids it does not list: {dropped}" in text
    assert f"image models it lists that the catalog lacks: {extra}" in text


def test_offline_checks_nothing_and_says_so(emu, tmp_path):
    env = base_env(tmp_path, OPENAI_API_KEY=KEY, OPENAI_BASE_URL=emu.base_url("openai"))
    done = doctor(env, "--offline")
    assert done.returncode == 0 and "every one checked works" not in done.stdout
    assert "openai (--offline)" in done.stdout and emu.requests("openai") == []


EMULATED_LISTS = {  # imagegate provider -> the emulator provider serving it, and the ids it lists itself
    "zhaotou": ("zhaotou", emulated_openai.FLAVOURS["zhaotou"].models),
    "modelmax": ("modelmax", emulated_openai.FLAVOURS["modelmax"].models),
    "mixroute": ("mixroute", tuple(emulated_mixroute.MODELS)),
    "local": ("compat", emulated_openai.COMPAT.models),
}
LISTED_CONFIG = """
[providers.local]
base_url = "{base_url}"
key_env = "LOCAL_API_KEY"
[[providers.local.offerings]]
model = "gpt-image-1"
upstream = "gpt-image-1"
[[providers.local.offerings]]
model = "seedream-4.0"
upstream = "my-seedream"

[providers.zhaotou.upstream]
"seedream-4.0" = "doubao-seedream-4-0-250828"
"""


@pytest.mark.parametrize("provider", list(EMULATED_LISTS))
def test_doctor_compares_each_openai_style_model_list_with_the_ids_the_catalog_sends(emu, tmp_path, provider):
    """In process (no subprocess): ZhaoTou, ModelMax, MixRoute and a config-defined provider answer
    GET /models on the emulator; the ids compared are the routes' wire ids, config overrides included."""
    emulated, own = EMULATED_LISTS[provider]
    extra = "flux-9-ultra"
    emu.configure(emulated, models=[extra, "doubao-seedream-4-0-250828", "my-seedream"])
    config = tmp_path / "imagegate.toml"
    config.write_text(LISTED_CONFIG.format(base_url=emu.base_url("compat")))
    name = provider.upper()
    env = base_env(
        tmp_path,
        **{f"{name}_API_KEY": KEY, f"{name}_BASE_URL": emu.base_url(emulated)},
        IMAGEGATE_CONFIG=str(config),
    )
    service = build_service(env)
    status = next(
        p for p in anyio.run(diagnose, service.settings, service.catalog).providers if p.id == provider
    )
    assert status.works is True and status.problem is None, status.detail
    wire_ids = {r.upstream for r in service.catalog.routes if r.provider == provider}
    listed = {*own, extra, "doubao-seedream-4-0-250828", "my-seedream"}
    assert status.models is not None and status.models.listed == len(listed)
    assert status.models.catalog_unlisted == sorted(wire_ids - listed)
    assert extra in status.models.gateway_extra and not wire_ids & set(status.models.gateway_extra)
    assert [r["endpoint"] for r in emu.requests(emulated)] == ["models"]
    if provider == "zhaotou":  # the overridden id is the one compared
        assert "doubao-seedream-4-0-250828" in wire_ids and "seedream-4.0" not in wire_ids
