"""CLI: `python -m tools.emulator --host 127.0.0.1 --port 0`.

Prints exactly one line, `EMULATOR http://HOST:PORT`, to stdout once the socket listens; logs go to stderr.
"""

from __future__ import annotations

import argparse

from tools.emulator.runner import READY_LINE, build_server, server_url


def main(argv: list[str] | None = None) -> None:
    """Parse arguments and serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m tools.emulator", description="imagegate upstream emulator"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(argv)
    server, sock = build_server(args.host, args.port, args.log_level)
    print(READY_LINE, server_url(sock), flush=True)  # the socket already listens: clients may connect now
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after its graceful shutdown
        pass


if __name__ == "__main__":
    main()
