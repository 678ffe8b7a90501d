"""A deployment's port is its own: `serve --workers N` refuses a port anything already listens on,
even a listener that would share it (SO_REUSEPORT), instead of silently splitting its traffic."""

from __future__ import annotations

import socket

import pytest

from imagegate.team import workers


def test_a_port_another_server_shares_with_reuseport_is_refused():
    if not workers.reuseport_available():
        pytest.skip("SO_REUSEPORT is Linux's")
    with workers.reuseport_socket("127.0.0.1", 0) as other:
        port = other.getsockname()[1]
        with pytest.raises(OSError):
            workers.claim_port("127.0.0.1", port)


def test_a_free_port_is_claimed_and_left_free_for_the_workers():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    workers.claim_port("127.0.0.1", port)
    with workers.reuseport_socket("127.0.0.1", port):
        pass
