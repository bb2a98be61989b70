"""External tools for the real-client, interop and conformance suites, installed on demand.

Owns the map from a tool name to the Debian package that ships it, and guarantees that
:func:`require_tool` either returns an executable path or raises :class:`ToolUnavailable`
with the installer's output: a test that needs a tool never skips silently. On a fresh
machine (CI runs as root on Debian 12) the package is installed with ``apt-get install -y``;
``apt-get update`` runs at most once per process, and a file lock serialises installs across
parallel pytest workers and processes.
"""

from __future__ import annotations

import fcntl
import importlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

# Tool (executable name) -> Debian package that ships it.
TOOL_PACKAGES: dict[str, str] = {
    "skopeo": "skopeo",
    "podman": "podman",
    "buildah": "buildah",
    "docker": "docker.io",
    "dockerd": "docker.io",
    "containerd": "containerd",
    "runc": "runc",
    "docker-registry": "docker-registry",
    "newuidmap": "uidmap",
    "newgidmap": "uidmap",
    "htpasswd": "apache2-utils",
    "openssl": "openssl",
    "curl": "curl",
}

# Extra packages a tool needs at run time that its package does not pull in by itself.
TOOL_COMPANIONS: dict[str, tuple[str, ...]] = {
    "podman": ("uidmap", "containernetworking-plugins"),
    "buildah": ("uidmap",),
    "dockerd": ("containerd", "runc"),
}

# Where sbin tools live even when PATH (CI, non-login shells) leaves them out.
EXTRA_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

APT_LOCK_FILE = Path("/tmp/berth-tests-apt.lock")
APT_LOCK_TIMEOUT = 900.0
APT_COMMAND_TIMEOUT = 900.0

_thread_lock = threading.Lock()
_apt_updated = False


class ToolUnavailable(RuntimeError):
    """A tool the test needs is missing and could not be installed; the message says why."""


def find_tool(name: str) -> str | None:
    """The absolute path of executable ``name`` on PATH or in the usual bin/sbin folders."""
    found = shutil.which(name)
    if found:
        return found
    return shutil.which(name, path=os.pathsep.join(EXTRA_DIRS))


def require_tool(name: str) -> str:
    """Return the path of tool ``name``, installing its Debian package first if it is missing.

    Raises :class:`ToolUnavailable` (never skips) when the tool is unknown, the machine
    cannot install packages, or the install fails.
    """
    path = find_tool(name)
    if path and _companions_present(name):
        return path
    package = TOOL_PACKAGES.get(name)
    if package is None:
        raise ToolUnavailable(f"{name!r} is not installed and tests/tools.py maps it to no package")
    packages = [package, *TOOL_COMPANIONS.get(name, ())]
    install_packages(packages)
    path = find_tool(name)
    if path is None:
        raise ToolUnavailable(f"installed {' '.join(packages)} but {name!r} is still not on PATH")
    return path


def _companions_present(name: str) -> bool:
    return all(_package_installed(pkg) for pkg in TOOL_COMPANIONS.get(name, ()))


def _package_installed(package: str) -> bool:
    if shutil.which("dpkg-query") is None:
        return True  # not a Debian machine: trust the tool that was found
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode == 0 and "install ok installed" in result.stdout


def install_packages(packages: list[str]) -> None:
    """Install Debian ``packages`` with apt-get (root only), serialised across processes."""
    missing = [p for p in packages if not _package_installed(p)]
    if not missing:
        return
    if shutil.which("apt-get") is None:
        raise ToolUnavailable(f"need Debian packages {missing} but this machine has no apt-get")
    if os.geteuid() != 0:
        raise ToolUnavailable(
            f"need Debian packages {missing}; run as root or `sudo apt-get install -y {' '.join(missing)}`"
        )
    with _apt_lock():
        missing = [p for p in missing if not _package_installed(p)]
        if not missing:
            return
        _apt_update_once()
        result = _apt(["install", "-y", *missing])
        if result.returncode != 0:
            # A stale package list gives 404s or "unable to locate": refresh once and retry.
            _apt_update_once(force=True)
            result = _apt(["install", "-y", *missing])
        if result.returncode != 0:
            raise ToolUnavailable(
                f"apt-get install {' '.join(missing)} failed ({result.returncode}):\n{result.stdout[-4000:]}"
            )


def _apt_update_once(force: bool = False) -> None:
    global _apt_updated
    if _apt_updated and not force:
        return
    result = _apt(["update"])
    if result.returncode != 0:
        raise ToolUnavailable(f"apt-get update failed ({result.returncode}):\n{result.stdout[-4000:]}")
    _apt_updated = True


def _apt(args: list[str]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", NEEDRESTART_MODE="a")
    return subprocess.run(
        ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-q", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=APT_COMMAND_TIMEOUT,
        check=False,
    )


@contextmanager
def _apt_lock() -> Iterator[None]:
    with _thread_lock, open(APT_LOCK_FILE, "a+") as handle:
        deadline = time.monotonic() + APT_LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ToolUnavailable(f"timed out waiting for {APT_LOCK_FILE}") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def require_tools(names: list[str]) -> dict[str, str]:
    """Like :func:`require_tool` for several tools, installing all missing packages in one apt run."""
    needed: list[str] = []
    for name in names:
        if find_tool(name) is None or not _companions_present(name):
            if name not in TOOL_PACKAGES:
                raise ToolUnavailable(f"{name!r} is not installed and tests/tools.py maps it to no package")
            needed += [TOOL_PACKAGES[name], *TOOL_COMPANIONS.get(name, ())]
    if needed:
        install_packages(sorted(set(needed)))
    return {name: require_tool(name) for name in names}


ALL_SUITE_TOOLS = ["skopeo", "podman", "buildah", "docker", "dockerd", "docker-registry", "newuidmap"]


def require_python_package(module: str, requirement: str) -> ModuleType:
    """Import ``module``, installing ``requirement`` with this interpreter's pip if it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError:
        pass
    with _thread_lock:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", requirement],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=APT_COMMAND_TIMEOUT,
            check=False,
        )
    if result.returncode != 0:
        raise ToolUnavailable(f"pip install {requirement} failed:\n{result.stdout[-4000:]}")
    importlib.invalidate_caches()
    return importlib.import_module(module)


def require_oras() -> ModuleType:
    """The ``oras.client`` module of PyPI's ``oras`` (a Python SDK: it ships no CLI).

    Its ``OrasClient(hostname=..., insecure=True).push(..., do_chunked=True, chunk_size=N)``
    uploads each file as POST + PATCH per chunk + PUT, which is what the suite exercises.
    """
    require_python_package("oras", "oras>=0.2")
    return importlib.import_module("oras.client")


def main(argv: list[str]) -> int:
    """``python tests/tools.py [TOOL ...]``: install the tools (default: every suite tool) up front."""
    names = argv or ALL_SUITE_TOOLS
    for name, path in require_tools(names).items():
        print(f"{name}: {path}")
    require_oras()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
