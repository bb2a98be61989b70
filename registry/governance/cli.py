"""``berth token``, ``berth robot`` and ``berth retention``: parse, call the library on the configured storage, print.

They open the storage the config names, as the server does, and can run next to live servers
on the same storage (tokens are shared through it; a revocation reaches every server within a
second). With ``audit.path`` set they append their own audit lines (actor ``cli``, or
``--actor``). ``berth retention`` deletes through the Registry services; delete webhooks are
sent by a server only, so run real retention inside the server (``retention.schedule`` or
``POST /admin/retention``) where webhook endpoints must hear about it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from registry.config import Config, add_config_arguments, command_config

T = TypeVar("T")


def _run(config: Config, fn: Callable[[Any, Any], Awaitable[T]]) -> T:
    """Run ``fn(driver, audit)`` on the configured storage (audit: an AuditLog or None)."""
    from registry.app import open_driver
    from registry.governance.audit import AuditLog

    async def main() -> T:
        driver = open_driver(config)
        audit = AuditLog(config.audit) if config.audit.enabled else None
        if audit is not None:
            audit.start()
        try:
            return await fn(driver, audit)
        finally:
            if audit is not None:
                audit.stop()
            await driver.close()

    return asyncio.run(main())


def _print_tokens(records: list[Any], as_json: bool) -> None:
    rows = [r.to_json() for r in records]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = [("ID", "NAME", "OWNER", "SCOPES", "CREATED", "EXPIRES", "LAST USED", "STATUS")]
    for r in rows:
        table.append((r["id"], r["name"], r["owner"], " ".join(r["scopes"]), r["created"], r["expires"] or "never",
                      r["lastUsed"] or "never", r["status"]))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())


def cmd_token_create(args: argparse.Namespace) -> int:
    """``berth token create`` / ``berth robot create``: store a token, print its secret once."""
    from auth.pat import TokenInputError, TokenStore, parse_expiry, robot_account

    config = command_config(args)
    try:
        owner = robot_account(args.robot) if getattr(args, "robot", None) else args.user
        expires = parse_expiry(args.expires)
    except TokenInputError as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 2
    name = args.name or (args.robot if getattr(args, "robot", None) else "")

    async def create(driver: Any, audit: Any) -> Any:
        record, secret = await TokenStore(driver).create(owner=owner, name=name, scopes=args.scope,
                                                         expires_in=expires, created_by=args.actor)
        if audit is not None:
            audit.record("token.create", actor=args.actor, reference=record.id,
                         detail={"name": record.name, "owner": record.owner, "scopes": record.to_json()["scopes"]})
        return record, secret

    try:
        record, secret = _run(config, create)
    except TokenInputError as exc:
        print(f"berth: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"token": record.to_json(), "secret": secret}, indent=2))
    else:
        print(f"created token {record.id} ({record.name}) for {record.owner}; "
              f"log in as {record.owner!r} with this secret, shown only now:", file=sys.stderr)
        print(secret)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    """``berth token list``: every token (or a user's), never a secret."""
    from auth.pat import TokenStore

    config = command_config(args)
    owner = args.user or (f"robot${args.robot}" if getattr(args, "robot", None) else None)
    records = _run(config, lambda driver, audit: TokenStore(driver).list(owner=owner))
    if getattr(args, "robots_only", False):
        records = [r for r in records if r.robot]
    _print_tokens(records, args.json)
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    """``berth token revoke ID``."""
    from auth.pat import TokenStore

    config = command_config(args)

    async def revoke(driver: Any, audit: Any) -> Any:
        try:
            record = await TokenStore(driver).revoke(args.id, by=args.actor)
        except KeyError:
            return None
        if audit is not None:
            audit.record("token.revoke", actor=args.actor, reference=record.id,
                         detail={"name": record.name, "owner": record.owner})
        return record

    record = _run(config, revoke)
    if record is None:
        print(f"berth: no token {args.id[:32]!r}", file=sys.stderr)
        return 1
    print(f"revoked token {record.id} ({record.name}) of {record.owner}")
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    """``berth retention [--dry-run]``: list (or delete) what the retention policies say goes, and why."""
    from registry.events import NullSink
    from registry.governance.audit import AuditingSink
    from registry.governance.retention import PolicySource, run_retention
    from registry.services import Registry

    config = command_config(args)
    if not config.retention.configured:
        print("berth retention: the config has no retention policies", file=sys.stderr)
        return 2

    async def run(driver: Any, audit: Any) -> Any:
        registry = Registry(driver, delete_enabled=True)
        policies = await PolicySource(config.retention).policies()
        sink = AuditingSink(NullSink(), audit) if audit is not None else None
        report = await run_retention(registry, policies, dry_run=args.dry_run, sink=sink)
        if audit is not None:
            audit.record("retention.run", actor=args.actor, detail={
                "dryRun": args.dry_run, "tags": sum(d.kind == "tag" for d in report.deletions),
                "manifests": sum(d.kind == "manifest" for d in report.deletions), "skipped": len(report.skipped)})
        return report

    report = _run(config, run)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for d in report.deletions:
        print(f"{verb} {d.kind} {d.repository}:{d.reference}" if d.kind == "tag" else
              f"{verb} {d.kind} {d.repository}@{d.reference}", f"({d.reason})")
    for d, why in report.skipped:
        print(f"kept {d.kind} {d.repository} {d.reference}: {why}")
    print(f"{verb} {sum(d.kind == 'tag' for d in report.deletions)} tags and "
          f"{sum(d.kind == 'manifest' for d in report.deletions)} manifests in {report.repositories} repositories"
          + ("" if args.dry_run else "; run `berth gc` to free their blobs"))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--json", action="store_true", help="print JSON")


def add_commands(sub: Any) -> None:
    """Add ``token``, ``robot`` and ``retention`` to the ``berth`` command's sub-parsers."""
    token = sub.add_parser("token", help="create, list and revoke access tokens")
    actions = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token and print its secret once")
    _common(create)
    create.add_argument("--user", "-u", required=True, help="the user the token acts for")
    create.add_argument("--name", "-n", required=True, help="what the token is for, e.g. ci-deploy")
    create.add_argument("--scope", "-s", action="append", required=True,
                        help="REPOSITORY-GLOB:ACTIONS, e.g. 'team/*:pull,push' (repeatable); 'admin' for the APIs")
    create.add_argument("--expires", "-e", help="lifetime, e.g. 90d or 12h (default: never)")
    create.add_argument("--actor", default="cli", help="who to name in the audit log")
    create.set_defaults(func=cmd_token_create)
    listing = actions.add_parser("list", help="list tokens (never their secrets)")
    _common(listing)
    listing.add_argument("--user", "-u", help="only this user's tokens")
    listing.set_defaults(func=cmd_token_list)
    revoke = actions.add_parser("revoke", help="revoke a token (every server refuses it within a second)")
    _common(revoke)
    revoke.add_argument("id", help="the token id (from `berth token list`)")
    revoke.add_argument("--actor", default="cli", help="who to name in the audit log")
    revoke.set_defaults(func=cmd_token_revoke)

    robot = sub.add_parser("robot", help="robot accounts: accounts that exist only through their tokens")
    ractions = robot.add_subparsers(dest="robot_command", required=True, metavar="ACTION")
    rcreate = ractions.add_parser("create", help="create a robot token (log in as robot$NAME) and print its secret")
    _common(rcreate)
    rcreate.add_argument("robot", metavar="NAME", help="the robot's name (lower case)")
    rcreate.add_argument("--name", "-n", help="the token's name (default: the robot's)")
    rcreate.add_argument("--scope", "-s", action="append", required=True, help="as for `berth token create`")
    rcreate.add_argument("--expires", "-e", help="lifetime, e.g. 90d (default: never)")
    rcreate.add_argument("--actor", default="cli", help="who to name in the audit log")
    rcreate.set_defaults(func=cmd_token_create, user=None)
    rlist = ractions.add_parser("list", help="list robot tokens")
    _common(rlist)
    rlist.set_defaults(func=cmd_token_list, user=None, robots_only=True)

    retention = sub.add_parser("retention", help="delete tags and manifests the retention policies do not keep")
    _common(retention)
    retention.add_argument("--dry-run", "-d", action="store_true", help="list what would go and why; delete nothing")
    retention.add_argument("--actor", default="cli", help="who to name in the audit log")
    retention.set_defaults(func=cmd_retention)
