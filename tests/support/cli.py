"""The CLI in this process: `imagegate ARGS` through its own entry point with a given environment,
returning what a subprocess would (exit code, stdout, stderr) without a process start."""

from __future__ import annotations

import contextlib
import io
import subprocess
from collections.abc import Mapping

from tests.support.server import process_env

from imagegate.cli import main


def run_cli(env: Mapping[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`imagegate ARGS` with `env` as its whole environment; stdout and stderr captured."""
    out, err = io.StringIO(), io.StringIO()
    with process_env(env), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args), env)
    return subprocess.CompletedProcess(["imagegate", *args], code, out.getvalue(), err.getvalue())
