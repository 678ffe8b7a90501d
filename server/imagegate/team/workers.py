"""A small supervisor for N HTTP worker processes: each binds the port itself with SO_REUSEPORT, so
the kernel spreads new connections evenly over the workers (one shared socket would let whichever
worker wakes first accept a whole burst), and a worker that dies is replaced at once.

Worker processes are started with multiprocessing's "spawn" (a fresh interpreter: no state of the
parent's leaks in) and run `target(index)`, a picklable callable (transports.py's worker entry).
A worker that dies within STARTUP_SECONDS of starting, CRASH_LIMIT times in a row, means the
configuration or the port is broken: the supervisor stops rather than restart it for ever. SIGTERM
or SIGINT stops every worker and then the supervisor.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.context import SpawnProcess
from types import FrameType

__all__ = ["claim_port", "exit_with_parent", "reuseport_available", "reuseport_socket", "supervise"]

log = logging.getLogger("imagegate")
CHECK_SECONDS = 0.2
STARTUP_SECONDS = 5.0
CRASH_LIMIT = 5
STOP_SECONDS = 10.0


def reuseport_available() -> bool:
    """Where the kernel balances connections over sockets sharing a port (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def reuseport_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening socket on host:port that other workers of this user may bind too."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(backlog)
    sock.set_inheritable(False)
    return sock


def claim_port(host: str, port: int) -> None:
    """Raise OSError (address in use) when anything already listens on host:port, a server of ours
    included: a plain bind, without SO_REUSEPORT, conflicts with every listener, where a reuseport bind
    would silently join another deployment and split its traffic."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of a previous run is fine
        sock.bind(address)


def exit_with_parent(parent: int) -> None:
    """In a worker: end this process when the supervisor `parent` is gone (killed with -9, it cannot
    stop its workers), so no orphan keeps listening on the shared port."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="imagegate-parent-watch", daemon=True).start()


def supervise(target: Callable[[int], None], workers: int) -> int:
    """Run `workers` processes of `target` until a signal stops them; 0, or 1 when workers keep
    failing at start."""
    context = multiprocessing.get_context("spawn")
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    running: list[tuple[SpawnProcess, float]] = []
    crashes = 0
    try:
        for index in range(workers):
            running.append(_start(context, target, index))
        while not stop.wait(CHECK_SECONDS):
            for index, (process, started) in enumerate(running):
                if process.is_alive():
                    continue
                crashes = crashes + 1 if time.monotonic() - started < STARTUP_SECONDS else 0
                if crashes >= CRASH_LIMIT:
                    log.error("workers keep failing as they start; stopping (see the errors above)")
                    return 1
                log.warning("worker %s ended (exit code %s); starting another", process.pid, process.exitcode)
                running[index] = _start(context, target, index)
        return 0
    finally:
        _stop_all([p for p, _ in running])
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _start(
    context: multiprocessing.context.SpawnContext, target: Callable[[int], None], index: int
) -> tuple[SpawnProcess, float]:
    process = context.Process(target=target, args=(index,), name=f"imagegate-worker-{index}", daemon=False)
    process.start()
    return process, time.monotonic()


def _stop_all(processes: list[SpawnProcess]) -> None:
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
