"""``berth gc`` and ``berth du``: parse arguments, run the library call on the configured storage, print.

Both commands open the storage the config names (as the server would; without
``--config``, the zero-config defaults, ``--root`` for the folder) and can run next
to live servers on the same storage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from registry.config import Config, Duration, add_config_arguments, command_config
from registry.maintenance.du import Usage, disk_usage, human
from registry.maintenance.gc import GCError, GCOptions, GCReport, collect_garbage
from storage_backends import StorageDriver, StorageError

T = TypeVar("T")


def _duration(text: str) -> float:
    try:
        return float(Duration.parse(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _with_driver(config: Config, fn: Callable[[StorageDriver], Awaitable[T]]) -> T:
    from registry.app import open_driver

    async def run() -> T:
        driver = open_driver(config)
        try:
            return await fn(driver)
        finally:
            await driver.close()

    return asyncio.run(run())


def _setup_logging(config: Config) -> None:
    from registry.observability import configure_logging

    configure_logging(config)


def print_gc_report(report: GCReport, out: Any = sys.stdout) -> None:
    """The human-readable report: every blob and manifest (to be) deleted, then a summary."""
    verb = "would delete" if report.dry_run else "deleted"
    for repo, digest in sorted(report.manifests):
        print(f"{verb} manifest {repo}@{digest}", file=out)
    for digest, size in sorted(report.blobs.items()):
        print(f"{verb} blob {digest} ({size} bytes)", file=out)
    for digest in report.rescued:
        print(f"kept blob {digest}: a push referenced it during the run", file=out)
    print(f"{'would free' if report.dry_run else 'freed'} {report.bytes_freed} bytes ({human(report.bytes_freed)}): "
          f"{len(report.blobs)} blobs, {len(report.manifests)} untagged manifests, {len(report.layer_links)} layer "
          f"links; {report.blobs_marked} of {report.blobs_scanned} blobs in use; {report.kept_young} unreferenced "
          f"blobs within the grace period", file=out)


def cmd_gc(args: argparse.Namespace) -> int:
    """``berth gc``."""
    config = command_config(args)
    _setup_logging(config)
    options = GCOptions.from_config(
        config.gc,
        dry_run=args.dry_run,
        delete_untagged=True if args.delete_untagged else None,
        grace_period=args.grace_period,
        quarantine=args.quarantine,
    )
    try:
        report = _with_driver(config, lambda d: collect_garbage(d, options))
    except (GCError, StorageError) as exc:
        print(f"berth gc: {exc}", file=sys.stderr)
        return 1
    if config.audit.enabled:
        from registry.governance.audit import AuditLog

        audit = AuditLog(config.audit)
        audit.start()
        audit.record("gc.run", actor="cli", detail={"blobs": len(report.blobs), "bytesFreed": report.bytes_freed,
                                                    "manifests": len(report.manifests), "dryRun": report.dry_run})
        audit.stop()
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print_gc_report(report)
    return 0


def print_usage(usage: Usage, out: Any = sys.stdout) -> None:
    """A table: repository, manifests, tags, blobs, bytes, exclusive bytes; then totals."""
    rows = [("REPOSITORY", "MANIFESTS", "TAGS", "BLOBS", "SIZE", "EXCLUSIVE")]
    for r in usage.repositories:
        rows.append((r.name, str(r.manifests), str(r.tags), str(r.blobs), human(r.bytes), human(r.exclusive_bytes)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))),
              file=out)
    print(f"total: {usage.blobs} blobs, {human(usage.bytes)} ({usage.bytes} bytes); unreferenced: "
          f"{usage.unreferenced_blobs} blobs, {human(usage.unreferenced_bytes)}", file=out)


def cmd_du(args: argparse.Namespace) -> int:
    """``berth du``."""
    config = command_config(args)
    _setup_logging(config)
    async def measure(driver: StorageDriver) -> tuple[Usage, list[dict[str, Any]]]:
        return await disk_usage(driver), await _quota_usage(config, driver)

    try:
        usage, quotas = _with_driver(config, measure)
    except StorageError as exc:
        print(f"berth du: {exc}", file=sys.stderr)
        return 1
    if args.json:
        doc = usage.to_json()
        if quotas:
            doc["quotas"] = quotas
        print(json.dumps(doc, indent=2))
    else:
        print_usage(usage)
        for q in quotas:
            print(f"quota {','.join(q['repositories'])}: {human(q['used'])} of {human(q['limit'])} "
                  f"({q['used']} of {q['limit']} bytes, {q['blobs']} blobs)")
    return 0


async def _quota_usage(config: Config, driver: StorageDriver) -> list[dict[str, Any]]:
    """Each ``quotas`` namespace's stored bytes, from a walk of storage (as the server's recompute)."""
    if not config.quotas:
        return []
    from registry.governance.usage import usage_by_namespace
    from registry.services import Registry

    found = await usage_by_namespace(Registry(driver), [rule.patterns for rule in config.quotas])
    return [{"repositories": list(rule.patterns), "limit": int(rule.limit), "used": u.bytes, "blobs": len(u.blobs)}
            for rule, u in zip(config.quotas, found)]


def add_commands(sub: Any) -> None:
    """Add ``gc`` and ``du`` to the ``berth`` command's sub-parsers."""
    gc = sub.add_parser("gc", help="delete blobs (and, optionally, untagged manifests) nothing references")
    add_config_arguments(gc)
    gc.add_argument("--dry-run", "-d", action="store_true", help="list what would be deleted; delete nothing")
    gc.add_argument("--delete-untagged", "-m", action="store_true",
                    help="also delete manifests no tag and no index references (default: gc.deleteuntagged)")
    gc.add_argument("--grace-period", type=_duration, default=None, metavar="DURATION",
                    help="keep anything younger than this, e.g. 1h (default: gc.graceperiod)")
    gc.add_argument("--quarantine", type=_duration, default=None, metavar="DURATION",
                    help="how long doomed blobs wait while racing pushes are detected (default: gc.quarantine)")
    gc.add_argument("--json", action="store_true", help="print the report as JSON")
    gc.set_defaults(func=cmd_gc)
    du = sub.add_parser("du", help="storage used per repository")
    add_config_arguments(du)
    du.add_argument("--json", action="store_true", help="print JSON (the same document as GET /admin/du)")
    du.set_defaults(func=cmd_du)
