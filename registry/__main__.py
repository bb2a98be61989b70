"""The ``berth`` command: the server (``serve``), its maintenance verbs, and the image client."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from registry.config import ConfigError, load_config


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper().replace("WARN", "WARNING").replace("WARNINGING", "WARNING"), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")


def _cmd_serve(args: argparse.Namespace) -> int:
    from registry.server import serve

    config = load_config(args.config)
    _setup_logging(config.log.level)
    serve(config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="berth", description="Berth: a container image registry and client.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="run the registry server")
    serve.add_argument("--config", "-c", help="config file (Distribution's config.yml shape)")
    serve.set_defaults(func=_cmd_serve)

    from registry.maintenance.cli import add_commands as add_maintenance_commands

    add_maintenance_commands(sub)  # gc, du

    from registry.governance.cli import add_commands as add_governance_commands

    add_governance_commands(sub)  # token, robot, retention

    from registry.webhooks.cli import add_parsers as add_webhook_parsers

    hooks = sub.add_parser("webhooks", help="inspect and replay webhook deliveries")
    add_webhook_parsers(hooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION"))
    hooks.set_defaults(takes_output=True)

    from registry.client.cli import add_client_commands

    add_client_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
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
    except OSError as exc:
        print(f"berth: {exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''}", file=sys.stderr)
        return 1
    except ValueError as exc:  # unusable files named by the config (keys, htpasswd, policy)
        print(f"berth: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
