"""Platforms (``os/arch[/variant]``): parsing, this machine's default, choosing from an index (pure)."""

from __future__ import annotations

import platform as _platform
from dataclasses import dataclass
from typing import Any, Iterable

from registry.client.errors import NoSuchPlatform, UsageError
from registry.manifest import Descriptor

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm",
                 "i386": "386", "i686": "386"}


@dataclass(frozen=True)
class Platform:
    """An OCI platform; ``variant`` is optional."""

    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> "Platform":
        """``linux/amd64``, ``linux/arm64/v8``, ``linux/arm/v7``."""
        parts = [p for p in text.strip().lower().split("/")]
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {text!r}; use os/arch[/variant], e.g. linux/amd64")
        arch = _ARCH_ALIASES.get(parts[1], parts[1])
        variant = parts[2] if len(parts) == 3 else ""
        if arch == "arm64" and variant == "v8":
            variant = ""
        return cls(parts[0], arch, variant)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "Platform":
        """From a descriptor's ``platform`` object or an image config."""
        variant = str(doc.get("variant") or "")
        arch = str(doc.get("architecture") or "")
        if arch == "arm64" and variant == "v8":
            variant = ""
        return cls(str(doc.get("os") or ""), arch, variant)

    def matches(self, other: "Platform") -> bool:
        """Whether ``other`` (from an index) satisfies this (requested) platform."""
        if self.os != other.os or self.architecture != other.architecture:
            return False
        if self.variant and other.variant:
            return self.variant == other.variant
        if self.variant and not other.variant:
            return self.architecture == "arm" and self.variant == "v7" or self.architecture == "arm64"
        return True

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


def default_platform() -> Platform:
    """This machine's platform (``linux/amd64`` on x86-64)."""
    machine = _platform.machine().lower()
    arch = _ARCH_ALIASES.get(machine, machine)
    variant = ""
    if machine.startswith("armv7"):
        arch, variant = "arm", "v7"
    elif machine.startswith("armv6"):
        arch, variant = "arm", "v6"
    system = _platform.system().lower() or "linux"
    return Platform(system if system in ("linux", "windows", "darwin", "freebsd") else "linux", arch, variant)


def is_attestation(desc: Descriptor) -> bool:
    """BuildKit's attestation manifests (``unknown/unknown``) are not images to run."""
    p = desc.platform or {}
    annotations = desc.annotations or {}
    return p.get("os") == "unknown" or "vnd.docker.reference.type" in annotations


def select(manifests: Iterable[Descriptor], wanted: Platform, what: str) -> Descriptor:
    """The first child of an index matching ``wanted``; raises :class:`NoSuchPlatform` listing what exists."""
    candidates = [d for d in manifests if not is_attestation(d)]
    exact = [d for d in candidates if d.platform and Platform.from_json(d.platform) == wanted]
    if exact:
        return exact[0]
    for d in candidates:
        if d.platform and wanted.matches(Platform.from_json(d.platform)):
            return d
    available = sorted({str(Platform.from_json(d.platform)) for d in candidates if d.platform})
    listed = ", ".join(available) if available else "none"
    raise NoSuchPlatform(f"no such platform: {what} has no image for {wanted} (available: {listed}); pass --platform")
