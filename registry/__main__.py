"""The ``berth`` command: the server (``serve``), its maintenance verbs, and the image client.

Every server-side verb (``serve``, ``gc``, ``du``, ``webhooks``, ``user``) runs on
:func:`registry.config.load_command_config`: ``--config FILE`` or the zero-config defaults,
``--root`` for the filesystem folder. Whatever a verb does, the process ends with at most
one ``berth: …`` line on stderr, never a traceback: a closed pipe (``berth images | head -1``)
ends it quietly, a full disk behind stdout with one line.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from dataclasses import replace
from typing import Any, Callable, Sequence

from registry.config import Config, ConfigError, add_config_arguments, command_config

EXIT_BROKEN_PIPE = 1


def version() -> str:
    """The installed Berth version (``unknown`` when running from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("berth")
    except PackageNotFoundError:
        return "unknown"


def _formatter_configured(path: str | None) -> bool:
    """Whether ``log.formatter`` was chosen explicitly (in the file or ``REGISTRY_LOG_FORMATTER``)."""
    if os.environ.get("REGISTRY_LOG_FORMATTER"):
        return True
    if not path:
        return False
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except (OSError, ValueError, yaml.YAMLError):
        return False
    section = raw.get("log") if isinstance(raw, dict) else None
    return isinstance(section, dict) and "formatter" in section


def _storage_line(config: Config) -> str:
    storage = config.storage
    if storage.driver == "s3" and storage.s3 is not None:
        s3 = storage.s3
        where = f"s3://{s3.bucket}/{(s3.rootdirectory or '').strip('/')}".rstrip("/")
        return f"{where}" + (f" at {s3.regionendpoint}" if s3.regionendpoint else "")
    if storage.driver == "inmemory":
        return "in memory (lost when the server stops)"
    root = (storage.filesystem.rootdirectory if storage.filesystem else None) or "./data"
    return f"filesystem {os.path.abspath(root)}"


def _auth_line(config: Config) -> str:
    auth = config.auth
    policy = f", policy {auth.policy.path}" if auth.policy is not None else ""
    if auth.htpasswd is not None:
        return f"htpasswd {auth.htpasswd.path} (Basic){policy}"
    if auth.token is not None:
        kind = "built-in token service" if auth.token.builtin else f"tokens from {auth.token.realm}"
        return f"token ({kind}){policy}"
    return "none: anyone who reaches this address may push and pull"


def banner(config: Config, addresses: Sequence[str]) -> str:
    """The short start-up text printed on a terminal: version, address, storage, auth, UI."""
    main = addresses[0] if addresses else f"http://{config.http.addr}"
    lines = [f"Berth {version()}: container image registry",
             f"  listening  {', '.join(addresses) or main}",
             f"  storage    {_storage_line(config)}",
             f"  auth       {_auth_line(config)}"]
    ui = getattr(config, "ui", None)
    if ui is not None and getattr(ui, "enabled", True):
        lines.append(f"  web UI     {main.rstrip('/')}/{str(getattr(ui, 'path', '/ui/')).strip('/')}/")
    host = main.split("://", 1)[-1].rstrip("/")
    lines.append(f"  try        docker push {host}/NAME:TAG   (berth user add NAME to require logins)")
    lines.append("Logs follow; Ctrl-C stops the server.")
    return "\n".join(lines)


def _cmd_serve(args: argparse.Namespace) -> int:
    from registry.server import serve

    config = command_config(args)
    on_terminal = sys.stderr.isatty()
    if on_terminal and not _formatter_configured(args.config):
        config = replace(config, log=replace(config.log, formatter="text"))

    def started(server: Any) -> None:
        if on_terminal:
            sys.stderr.write(banner(config, server.addresses) + "\n")
            sys.stderr.flush()

    serve(config, started=started)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The whole ``berth`` command line."""
    parser = argparse.ArgumentParser(prog="berth", description="Berth: a container image registry and client.")
    parser.add_argument("--version", action="version", version=f"berth {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the registry server")
    add_config_arguments(serve)
    serve.add_argument("--addr", metavar="HOST:PORT", help="listen address (http.addr; default 127.0.0.1:5000)")
    serve.set_defaults(func=_cmd_serve)

    from registry.maintenance.cli import add_commands as add_maintenance_commands

    add_maintenance_commands(sub)  # gc, du

    from registry.governance.cli import add_commands as add_governance_commands

    add_governance_commands(sub)  # token, robot, retention

    from registry.webhooks.cli import add_parsers as add_webhook_parsers

    hooks = sub.add_parser("webhooks", help="inspect and replay webhook deliveries")
    add_webhook_parsers(hooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION"))
    hooks.set_defaults(takes_output=True)

    from auth.usercli import add_commands as add_user_commands

    add_user_commands(sub)  # user add|passwd|remove

    from registry.client.cli import add_client_commands

    add_client_commands(sub)
    return parser


def discard_stdout() -> None:
    """Point stdout at /dev/null so nothing buffered fails again when the interpreter exits."""
    from registry.client.cli import discard_stdout as discard

    discard()


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    client_func = getattr(args, "client_func", None)
    if client_func is not None:
        return int(client_func(args))
    if getattr(args, "takes_output", False):
        return int(args.func(args, sys.stdout))
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return func(args)
    except ConfigError as exc:
        print(f"berth: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EIO) and exc.filename is None:
            raise
        print(f"berth: {exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}", file=sys.stderr)
        return 1
    except ValueError as exc:  # unusable files named by the config (keys, htpasswd, policy)
        print(f"berth: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``berth …``; the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = _dispatch(parser, args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly
        discard_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as exc:  # stdout itself failed (a full disk, /dev/full)
        discard_stdout()
        print(f"berth: cannot write output: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    logging.captureWarnings(True)
    sys.exit(main())
