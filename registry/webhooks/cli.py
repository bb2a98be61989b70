"""``berth webhooks status|replay``: parse arguments, call :mod:`registry.webhooks.admin`, print.

Both work on the outbox directory named by the config (they may run while
the server runs). Exit codes: 0 done, 1 failed, 2 usage or config error.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from typing import Sequence, TextIO

from registry.config import add_config_arguments, command_config
from registry.configschema import ConfigError, Duration
from registry.webhooks.admin import offline_status, outbox_directory, replay
from registry.webhooks.delivery import EndpointStatus


def parse_time(value: str, now: float | None = None) -> float:
    """A Unix time from RFC 3339 (``2024-05-01T12:00:00Z``) or a duration ago (``90m``, ``2h``)."""
    now = time.time() if now is None else now
    text = value.strip()
    if "T" in text or "-" in text:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid time {value!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return when.timestamp()
    try:
        return now - Duration.parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid time {value!r} (RFC 3339 or a duration such as 2h)") from None


def add_parsers(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``status`` and ``replay`` to a ``webhooks`` sub-parser group (each sets ``func``)."""
    status = subparsers.add_parser("status", help="per-endpoint delivery status")
    add_config_arguments(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=_status)
    rep = subparsers.add_parser("replay", help="re-send dead-lettered events or a time range of events")
    add_config_arguments(rep)
    rep.add_argument("--endpoint", action="append", default=None, metavar="NAME",
                     help="only this endpoint (repeatable; default: every enabled endpoint)")
    rep.add_argument("--dead-letter", action="store_true", help="re-send the dead-lettered events")
    rep.add_argument("--since", type=parse_time, help="events recorded at or after TIME (RFC 3339 or e.g. 2h ago)")
    rep.add_argument("--until", type=parse_time, help="events recorded before TIME")
    rep.set_defaults(func=_replay)


def build_parser(prog: str = "berth webhooks") -> argparse.ArgumentParser:
    """The ``berth webhooks`` parser."""
    parser = argparse.ArgumentParser(prog=prog, description="Inspect and replay webhook deliveries.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """``berth webhooks <status|replay> ...``; the exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    return int(args.func(args, out or sys.stdout))


def status_main(argv: Sequence[str], out: TextIO | None = None) -> int:
    """``berth webhooks status ...`` (argv without the ``status`` word)."""
    return main(["status", *argv], out)


def replay_main(argv: Sequence[str], out: TextIO | None = None) -> int:
    """``berth webhooks replay ...`` (argv without the ``replay`` word)."""
    return main(["replay", *argv], out)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_status(statuses: list[EndpointStatus]) -> str:
    """A human-readable table, one block per endpoint."""
    if not statuses:
        return "no webhook endpoints configured\n"
    lines: list[str] = []
    for s in statuses:
        flag = " (disabled)" if s.disabled else ""
        lines.append(f"{s.name}{flag}  {s.url}  [{s.format}]")
        lines.append(f"  pending {s.pending}  delivered {s.delivered}  failed attempts {s.failed}  "
                     f"dead-lettered {s.deadlettered}")
        lines.append(f"  last success {_when(s.last_success_at)}")
        if s.last_error:
            lines.append(f"  last error   {_when(s.last_error_at)}  {s.last_error}")
    return "\n".join(lines) + "\n"


def _status(args: argparse.Namespace, out: TextIO) -> int:
    try:
        config = command_config(args)
        statuses = offline_status(config)
    except ConfigError as exc:
        print(f"berth webhooks status: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"berth webhooks status: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump({"outbox": str(outbox_directory(config)),
                   "endpoints": [s.to_json() for s in statuses]}, out, indent=2)
        out.write("\n")
    else:
        out.write(format_status(statuses))
    return 0


def _replay(args: argparse.Namespace, out: TextIO) -> int:
    if not args.dead_letter and args.since is None:
        print("berth webhooks replay: give --dead-letter or --since", file=sys.stderr)
        return 2
    try:
        config = command_config(args)
        counts = replay(config, endpoints=args.endpoint, dead_letter=args.dead_letter,
                        since=args.since, until=args.until)
    except (ConfigError, KeyError) as exc:
        print(f"berth webhooks replay: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"berth webhooks replay: {exc}", file=sys.stderr)
        return 1
    for name, count in counts.items():
        out.write(f"{name}: {count} events queued for re-delivery\n")
    return 0
