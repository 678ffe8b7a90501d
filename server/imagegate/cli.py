"""The `imagegate` command: serve MCP (stdio by default, or Streamable HTTP), and the
human subcommands that print the service's answers as tables. Parses arguments and
renders; the work is the service's (and doctor's and bundle's).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .catalog.spec import CAPABILITIES
from .errors import ConfigError, ImagegateError, InvalidRequest
from .listing import ModelsAnswer, SizesAnswer
from .service import Service, build_service

__all__ = ["main"]

EXIT_OK, EXIT_REFUSED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imagegate", description="Image generation MCP server and CLI.")
    parser.add_argument("--version", action="version", version=f"imagegate {__version__}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="serve MCP (default: stdio)")
    serve.add_argument("--transport", choices=["stdio", "http"], default="stdio")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="HTTP worker processes sharing the port (with IMAGEGATE_REDIS_URL they share tasks and limits)",
    )
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="HOST[:PORT]",
        help="a Host clients use (binds beyond loopback)",
    )
    models = sub.add_parser("models", help="list models and who serves them")
    models.add_argument("--provider")
    models.add_argument("--capability", choices=CAPABILITIES)
    models.add_argument("--json", action="store_true", help="print JSON for scripts")
    models.add_argument(
        "--import",
        dest="import_source",
        metavar="replicate:OWNER/NAME|fal:ENDPOINT",
        help="read the model's published input schema and add it to the config file for review",
    )
    models.add_argument("--dry-run", action="store_true", help="with --import: print, write nothing")
    models.add_argument("--schema-url", help="with --import: read the schema from this URL (a mirror)")
    sizes = sub.add_parser("sizes", help="list the sizes a model supports")
    sizes.add_argument("model")
    sizes.add_argument("--provider")
    sizes.add_argument("--resolution")
    sizes.add_argument("--json", action="store_true", help="print JSON for scripts")
    for name, text in (("generate", "generate images from a prompt"), ("edit", "edit images with a prompt")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("prompt")
        cmd.add_argument("-m", "--model", required=True)
        if name == "edit":
            cmd.add_argument(
                "-i",
                "--image",
                action="append",
                required=True,
                dest="images",
                help="input image (repeatable)",
            )
            cmd.add_argument("--mask")
        cmd.add_argument("-p", "--provider")
        cmd.add_argument("-s", "--size", help="WxH pixels, W:H ratio or auto")
        cmd.add_argument("-r", "--resolution", help="tier: 1K, 2K, 4K")
        cmd.add_argument("-n", type=int, help="how many images")
        cmd.add_argument(
            "-o",
            "--option",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="a knob such as quality=high or seed=7",
        )
        cmd.add_argument("--json", action="store_true", help="print the result metadata as JSON")
        cmd.add_argument(
            "--confirm", metavar="TOKEN", help="the token a refusal above the spend threshold gave"
        )
    usage = sub.add_parser("usage", help="what image calls cost today and this month, from the ledger")
    usage.add_argument("--since", metavar="YYYY-MM-DD", help="one report from this day on, instead")
    usage.add_argument("--json", action="store_true", help="print JSON for scripts")
    doctor = sub.add_parser("doctor", help="which providers are configured and reachable, where files go")
    doctor.add_argument("--json", action="store_true", help="print JSON for scripts")
    doctor.add_argument("--offline", action="store_true", help="skip the reachability checks")
    doctor.add_argument("--timeout", type=float, default=5.0, help="seconds per check (default 5)")
    hashing = sub.add_parser("hash-token", help="read a token, print its [users.NAME] config entry")
    hashing.add_argument("name", help="the user's name (also their output subfolder)")
    bundle = sub.add_parser("bundle", help="build the .mcpb bundle for Claude Desktop from a checkout")
    bundle.add_argument("-o", "--output", help="bundle path (default: ./NAME-VERSION.mcpb)")
    bundle.add_argument("--source", help="checkout to pack (default: the one imagegate runs from, else .)")
    bundle.add_argument("--builtin", action="store_true", help="use imagegate's zip writer, not the mcpb CLI")
    return parser


def _print(answer: ModelsAnswer | SizesAnswer, as_json: bool) -> None:
    print(answer.model_dump_json(indent=2) if as_json else answer.text())


def _models_table(answer: ModelsAnswer) -> str:
    rows = [("MODEL", "CAPABILITIES", "MAX N", "FORMATS", "PROVIDERS (* configured)")]
    for m in answer.models:
        via = ", ".join(p.text("*") for p in m.providers)
        rows.append((m.id, ",".join(m.capabilities), str(m.max_n), "/".join(m.formats), via))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
    aliases = [f"  {m.id}: {', '.join(m.aliases)}" for m in answer.models if m.aliases]
    marked = [f"  {m.id}: {', '.join(m.unconfirmed)}" for m in answer.models if m.unconfirmed]
    return "\n".join(
        lines
        + (["", "Aliases (any of them works as -m / model):", *aliases] if aliases else [])
        + (["", "UNCONFIRMED facts of the models themselves:", *marked] if marked else [])
        + answer.footer()
    )


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    """`-o quality=high -o seed=7 -o watermark=false`: JSON values where they parse, else strings."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidRequest("option", pair, "KEY=VALUE", f'option "{pair}" is not KEY=VALUE')
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def _image_arguments(args: argparse.Namespace) -> dict[str, Any]:
    arguments = {
        "model": args.model,
        "prompt": args.prompt,
        "provider": args.provider,
        "size": args.size,
        "resolution": args.resolution,
        "n": args.n,
    }
    if args.command == "edit":
        arguments |= {"images": args.images, "mask": args.mask}
    if args.confirm:
        arguments["confirm"] = args.confirm
    return arguments | _options(args.option)


async def _image_command(service: Service, args: argparse.Namespace) -> int:
    from .results import metadata, summary

    show = sys.stderr.isatty()

    async def progress(message: str) -> None:
        if show:
            print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)

    try:
        outcome = await service.run_image_tool(f"{args.command}_image", _image_arguments(args), progress)
    finally:
        if show:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
        await service.aclose()
    meta = metadata(outcome)
    print(json.dumps(meta, indent=2, ensure_ascii=False) if args.json else summary(outcome))
    return EXIT_OK


async def _doctor(service: Service, args: argparse.Namespace) -> int:
    from .doctor import diagnose

    report = await diagnose(service.settings, service.catalog, offline=args.offline, timeout=args.timeout)
    print(report.model_dump_json(indent=2) if args.json else report.text())
    return EXIT_OK if report.ok else EXIT_REFUSED


FAL_OPENAPI = "https://fal.ai/api/openapi/queue/openapi.json?endpoint_id={}"
"""A fal endpoint's OpenAPI document (fal's model pages link it as "OpenAPI schema"; no key needed)."""


async def _fetch_schema(service: Service, source: str, schema_url: str | None) -> Any:
    """The published schema `source` names, fetched through the provider's own client."""
    from urllib.parse import quote

    from .errors import NotConfigured
    from .providers.http import default_error

    kind, _, ident = source.partition(":")
    creds = service.registry.credentials.get(kind)
    if kind not in ("replicate", "fal") or not ident or creds is None:
        allowed = "replicate:OWNER/NAME or fal:ENDPOINT (e.g. fal:fal-ai/flux/dev)"
        raise InvalidRequest("--import", source, allowed, f"--import {source!r} is not {allowed}")
    if kind == "replicate" and not creds.configured:
        raise NotConfigured(
            "reading a Replicate model needs REPLICATE_API_TOKEN", env_vars=["REPLICATE_API_TOKEN"]
        )
    client = service.registry.client(kind)
    if kind == "replicate":
        return await client.get_json(schema_url or f"/models/{ident.partition(':')[0]}", default_error)
    return await client.get_json(schema_url or FAL_OPENAPI.format(quote(ident, safe="")), default_error)


def _append_config(service: Service, text: str) -> Path:
    """Append `text` to the config file (created if need be) after checking the whole file still loads."""
    import tempfile

    import platformdirs

    from .catalog import load_catalog
    from .providers import protocol_rules
    from .settings import load_settings

    path = service.settings.config_path or Path(platformdirs.user_config_dir("imagegate")) / "config.toml"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    combined = old + ("\n" if old and not old.endswith("\n") else "") + ("\n" if old else "") + text
    with tempfile.TemporaryDirectory() as folder:  # the file as it would be, loaded as the server loads it
        trial = Path(folder) / "config.toml"
        trial.write_text(combined, encoding="utf-8")
        settings = load_settings({**service.settings.env, "IMAGEGATE_CONFIG": str(trial)})
        load_catalog(settings.additions, protocol_rules())
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:  # append: what was there stays as it was
        file.write(combined[len(old) :])
    return path


async def _import(service: Service, args: argparse.Namespace) -> int:
    from .importer import from_fal, from_replicate, to_toml

    try:
        body = await _fetch_schema(service, args.import_source, args.schema_url)
    finally:
        await service.aclose()
    kind, _, ident = args.import_source.partition(":")
    read = from_replicate if kind == "replicate" else from_fal
    addition = read(ident.partition(":")[0] if kind == "replicate" else ident, body, service.catalog)
    addition.check(service.catalog)
    user = service.settings.file_providers.get(addition.provider)
    if user is not None and any(o.model == addition.model_id for o in user.offerings):
        where = f"{service.settings.config_path}: providers.{addition.provider}"
        raise ConfigError(f"{where} already offers {addition.model_id}; remove that entry to import it again")
    text = to_toml(addition)
    if args.dry_run:
        print(text, end="")
        return EXIT_OK
    path = _append_config(service, text)
    print(text, end="")
    print(
        f"\nimagegate: added {addition.model_id} via {addition.provider} to {path}; review it",
        file=sys.stderr,
    )
    return EXIT_OK


async def _usage(service: Service, args: argparse.Namespace) -> int:
    """Today's and this month's spend by provider and model (or one report since --since)."""
    from datetime import date

    ledger = service.spend.ledger
    if ledger is None:
        raise ConfigError("no ledger: IMAGEGATE_LEDGER is off")
    today = ledger.now().date()
    try:
        starts = [date.fromisoformat(args.since)] if args.since else [today, today.replace(day=1)]
    except ValueError:
        raise InvalidRequest(
            "--since", args.since, "YYYY-MM-DD", f"--since {args.since!r} is not a date like 2026-12-01"
        ) from None
    reports = [r for start in starts if (r := await service.spend.usage(start)) is not None]
    if args.json:
        print(
            json.dumps([r.record() for r in reports] if len(reports) > 1 else reports[0].record(), indent=2)
        )
    else:
        print("\n\n".join(r.text() for r in reports) + f"\n(ledger: {ledger.path})")
    return EXIT_OK


def _run(service: Service, args: argparse.Namespace) -> int:
    if args.command in ("generate", "edit", "doctor", "usage"):
        import anyio

        run = {"doctor": _doctor, "usage": _usage}.get(args.command, _image_command)
        return anyio.run(run, service, args)
    if args.command == "models" and args.import_source:
        import anyio

        return anyio.run(_import, service, args)
    if args.command == "models":
        answer = service.list_models({"provider": args.provider, "capability": args.capability})
        print(answer.model_dump_json(indent=2) if args.json else _models_table(answer))
    elif args.command == "sizes":
        _print(
            service.supported_sizes(
                {"model": args.model, "provider": args.provider, "resolution": args.resolution}
            ),
            args.json,
        )
    return EXIT_OK


def _serve(service: Service, args: argparse.Namespace) -> int:
    import anyio

    from .transports import serve_http, serve_stdio

    if getattr(args, "transport", "stdio") == "http":
        _greet(sys.stderr.isatty(), f"serving MCP over HTTP at http://{_netloc(args.host, args.port)}/mcp")
        serve_http(service, args.host, args.port, args.allow_host, workers=max(1, args.workers))
    else:
        # A person who ran it in a terminal sees why nothing happens; a client's pipe gets nothing.
        _greet(
            sys.stdin.isatty() and sys.stderr.isatty(), "MCP server on stdio, waiting for a client to connect"
        )
        anyio.run(serve_stdio, service)
    return EXIT_OK


def _greet(on_a_terminal: bool, what: str) -> None:
    if on_a_terminal:
        print(f"imagegate {__version__}: {what}; Ctrl-C to stop", file=sys.stderr, flush=True)


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _hash_token(args: argparse.Namespace) -> int:
    """Read a token (stdin, never an argument: arguments show in `ps` and shell history) and print the
    config lines that let its holder in as `name`; the token itself is not printed."""
    import getpass

    from .team.users import MIN_TOKEN_CHARS, USER_NAME, hash_token

    if not USER_NAME.fullmatch(args.name):
        print("imagegate: a user name is a letter then letters, digits, _ or - (at most 64)", file=sys.stderr)
        return EXIT_REFUSED
    token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline().strip()
    if len(token) < MIN_TOKEN_CHARS:
        print(f"imagegate: use a token of at least {MIN_TOKEN_CHARS} characters", file=sys.stderr)
        return EXIT_REFUSED
    print(f'[users.{args.name}]\ntoken = "{hash_token(token)}"')
    return EXIT_OK


def _bundle(args: argparse.Namespace) -> int:
    from .bundle import BundleError, NoCheckout, build_bundle

    try:
        output, count, packer = build_bundle(args.source, args.output, builtin=args.builtin)
    except BundleError as e:
        print(f"imagegate: {e}", file=sys.stderr)
        return EXIT_CONFIG if isinstance(e, NoCheckout) else EXIT_REFUSED
    print(f"{output} ({count} files, packed by {packer})")
    return EXIT_OK


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Entry point of the `imagegate` console script; `env` replaces the process environment as the
    settings' source (tests run a command in process)."""
    try:
        code = _main(argv, env)
        sys.stdout.flush()  # here, not at exit, where a closed pipe could only be reported as exit 120
        return code
    except BrokenPipeError:  # `imagegate models | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return EXIT_OK


def _main(argv: Sequence[str] | None, env: Mapping[str, str] | None) -> int:
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="imagegate %(levelname)s %(message)s"
    )
    args = _parser().parse_args(argv)
    if args.command == "hash-token":  # reads a token; needs no settings
        return _hash_token(args)
    if args.command == "bundle":  # packs files; needs no settings
        return _bundle(args)
    try:
        service = build_service(env)
    except ConfigError as e:
        print(f"imagegate: configuration error:\n{e.message}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        return _serve(service, args) if args.command in (None, "serve") else _run(service, args)
    except ImagegateError as e:
        print(f"imagegate: {e.agent_text()}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        print("imagegate: interrupted; images already received are saved", file=sys.stderr)
        return EXIT_INTERRUPTED
