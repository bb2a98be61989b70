"""Thin wrappers over the real container tools the suite drives (skopeo, podman, buildah).

Owns how each tool is invoked: private storage roots (so tests never touch the machine's own
images), plain-HTTP access to the 127.0.0.1 test registries, credentials in a private auth
file, a bounded timeout on every call, and an error that carries the tool's output.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.tools import require_tool

TOOL_TIMEOUT = 600.0


class ToolFailed(AssertionError):
    """A tool exited non-zero; the message holds its command line and output."""


def run_tool(
    argv: list[str],
    env: dict[str, str] | None = None,
    timeout: float = TOOL_TIMEOUT,
    check: bool = True,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a timeout; raise :class:`ToolFailed` with its output if it fails."""
    started = time.monotonic()
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False, input=stdin)
    if check and result.returncode != 0:
        took = time.monotonic() - started
        raise ToolFailed(
            f"{' '.join(argv)} exited {result.returncode} after {took:.1f}s\n"
            f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
        )
    return result


def write_auth_file(path: Path, registry: str, username: str, password: str) -> Path:
    """A containers-auth.json / docker config.json granting ``username`` at ``registry``."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"auths": {}}
    doc.setdefault("auths", {})[registry] = {"auth": token}
    path.write_text(json.dumps(doc))
    return path


@dataclass
class Skopeo:
    """skopeo with plain HTTP to the test registries and a private auth file."""

    workdir: Path
    binary: str = field(default_factory=lambda: require_tool("skopeo"))
    logged_in: set[str] = field(default_factory=set)

    @property
    def auth_file(self) -> Path:
        """containers-auth.json used for every call."""
        return self.workdir / "skopeo-auth.json"

    def run(
        self, *args: str, timeout: float = TOOL_TIMEOUT, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``skopeo ARGS`` (the caller adds the TLS flags)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.auth_file.exists():
            self.auth_file.write_text(json.dumps({"auths": {}}))
        env = dict(os.environ, REGISTRY_AUTH_FILE=str(self.auth_file))
        return run_tool([self.binary, *args], env=env, timeout=timeout, check=check, stdin=stdin)

    def login(self, host: str, username: str, password: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``skopeo login`` (once per host unless it fails)."""
        if host in self.logged_in and check:
            return subprocess.CompletedProcess([], 0, "", "")
        result = self.run("login", "--tls-verify=false", "-u", username, "--password-stdin", host, stdin=password, check=check)
        if result.returncode == 0:
            self.logged_in.add(host)
        return result

    def copy(
        self, src: str, dest: str, *extra: str, all_images: bool = False, preserve_digests: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``skopeo copy`` with TLS verification off on both ends; ``--all`` for indexes.

        ``--preserve-digests`` (the default here) stops skopeo from swapping in differently
        compressed copies of a layer that its machine-wide blob-info cache knows the
        destination already holds, so the manifest that arrives is the one that was sent.
        """
        flags = ["--src-tls-verify=false", "--dest-tls-verify=false", "--retry-times=0"]
        if preserve_digests:
            flags.append("--preserve-digests")
        if all_images:
            flags.append("--all")
        return self.run("copy", *flags, *extra, src, dest)

    def inspect_raw(self, ref: str) -> bytes:
        """The manifest bytes skopeo reads for ``ref``."""
        return self.run("inspect", "--raw", "--tls-verify=false", ref).stdout.encode()

    def list_tags(self, ref: str) -> list[str]:
        """``skopeo list-tags`` of a ``docker://`` repository."""
        doc = json.loads(self.run("list-tags", "--tls-verify=false", ref).stdout)
        return list(doc.get("Tags") or [])

    def delete(self, ref: str) -> None:
        """``skopeo delete`` of a ``docker://`` reference."""
        self.run("delete", "--tls-verify=false", ref)


@dataclass
class ContainersTool:
    """podman or buildah with private storage (vfs driver) under ``workdir``."""

    name: str
    workdir: Path
    binary: str = ""
    logged_in: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.binary = self.binary or require_tool(self.name)
        (self.workdir / "root").mkdir(parents=True, exist_ok=True)
        (self.workdir / "run").mkdir(parents=True, exist_ok=True)
        (self.workdir / "tmp").mkdir(parents=True, exist_ok=True)

    @property
    def auth_file(self) -> Path:
        """containers-auth.json used for every call."""
        return self.workdir / "auth.json"

    def login(self, host: str, username: str, password: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``TOOL login`` (once per host unless it fails)."""
        if host in self.logged_in and check:
            return subprocess.CompletedProcess([], 0, "", "")
        result = self.run("login", "--tls-verify=false", "-u", username, "--password-stdin", host, stdin=password, check=check)
        if result.returncode == 0:
            self.logged_in.add(host)
        return result

    def run(
        self, *args: str, timeout: float = TOOL_TIMEOUT, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``TOOL --root ... --runroot ... --storage-driver vfs ARGS``."""
        if not self.auth_file.exists():
            self.auth_file.write_text(json.dumps({"auths": {}}))
        env = dict(os.environ, REGISTRY_AUTH_FILE=str(self.auth_file), TMPDIR=str(self.workdir / "tmp"))
        argv = [
            self.binary,
            "--root", str(self.workdir / "root"),
            "--runroot", str(self.workdir / "run"),
            "--storage-driver", "vfs",
            *args,
        ]
        return run_tool(argv, env=env, timeout=timeout, check=check, stdin=stdin)

    def image_field(self, ref: str, template: str) -> str:
        """``TOOL inspect`` of a local image, formatted with a Go template."""
        if self.name == "podman":
            return self.run("image", "inspect", "--format", template, ref).stdout.strip()
        return self.run("inspect", "--type", "image", "--format", template, ref).stdout.strip()

    def remove_all_images(self) -> None:
        """Forget every local image (keeps later pulls honest)."""
        if self.name == "podman":
            self.run("rmi", "--all", "--force")
        else:
            self.run("rmi", "--all", "--force", check=False)
