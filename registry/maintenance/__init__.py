"""Maintenance: garbage collection (:mod:`.gc`), storage use per repository (:mod:`.du`), their
admin endpoints and schedule (:mod:`.admin`), and the ``berth gc``/``berth du`` commands (:mod:`.cli`).

Upload purging stays in :meth:`registry.services.Registry.purge_uploads`.
"""

from __future__ import annotations

from registry.maintenance.admin import setup
from registry.maintenance.du import RepositoryUsage, Usage, disk_usage
from registry.maintenance.gc import GCBusy, GCError, GCOptions, GCReport, collect_garbage, rollback

__all__ = [
    "GCBusy",
    "GCError",
    "GCOptions",
    "GCReport",
    "RepositoryUsage",
    "Usage",
    "collect_garbage",
    "disk_usage",
    "rollback",
    "setup",
]
