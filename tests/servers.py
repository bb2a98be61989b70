"""Real server processes for the suites: Berth, the reference registry, dockerd.

Owns starting, waiting for, restarting and stopping the processes a suite runs. Guarantees:
every server binds 127.0.0.1 on a free port, is ready (``/v2/`` answers) before the helper
returns, and is ended only through the pid this module started it with (SIGTERM, then
SIGKILL after a bounded wait). Logs go to files in the workdir and their tail is put into
every start-up error.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from tests.tools import require_tool

REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0
START_ATTEMPTS = 3


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def filesystem_config(rootdirectory: Path | str, **extra: Any) -> dict[str, Any]:
    """A Distribution-shaped config for filesystem storage with deletes enabled."""
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "filesystem": {"rootdirectory": str(rootdirectory)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": "127.0.0.1:0"},
    }
    return deep_merge(config, extra)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively with ``extra`` (new dict; inputs untouched)."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def log_tail(path: Path, limit: int = 4000) -> str:
    """The last ``limit`` characters of a log file ('' if there is none)."""
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-limit:].decode("utf-8", "replace")


class ServerError(RuntimeError):
    """A server process did not start or did not stop as expected."""


@dataclass
class Server:
    """A registry process started by this module: its config, address and lifecycle."""

    kind: str
    workdir: Path
    config: dict[str, Any]
    argv: list[str]
    env: dict[str, str]
    ready_path: str = "/v2/"
    scheme: str = "http"
    credentials: tuple[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)
    config_path: Path = field(init=False)
    _log_handles: list[Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.kind}.log"
        self.config_path = self.workdir / "config.yml"

    @property
    def addr(self) -> str:
        """``127.0.0.1:PORT``: the registry host as clients spell it in image references."""
        return str(self.config["http"]["addr"])

    @property
    def host(self) -> str:
        """Alias of :attr:`addr`."""
        return self.addr

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self.addr.rpartition(":")[2])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:5000``."""
        return f"{self.scheme}://{self.addr}"

    @property
    def pid(self) -> int:
        """The process id (the server must be running)."""
        if self.proc is None:
            raise ServerError(f"{self.kind} is not running")
        return self.proc.pid

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def backend(self) -> str:
        """The storage driver the config selects (``filesystem``, ``s3``, ``inmemory``)."""
        storage = self.config.get("storage", {})
        for name in ("s3", "filesystem", "inmemory"):
            if name in storage:
                return name
        return "filesystem"

    @property
    def label(self) -> str:
        """``kind-backend``, e.g. ``reference-s3``."""
        return f"{self.kind}-{self.backend}"

    @property
    def rootdirectory(self) -> Path | None:
        """The filesystem storage root, when the config uses filesystem storage."""
        fs = self.config.get("storage", {}).get("filesystem")
        return Path(fs["rootdirectory"]) if fs else None

    def start(self) -> Server:
        """Start on the configured port, or on a fresh free port if it is taken; wait until ready."""
        last_error: Exception | None = None
        keep_port = self.port != 0
        for _ in range(START_ATTEMPTS):
            if not keep_port:
                self.config["http"]["addr"] = f"127.0.0.1:{free_port()}"
            self.config_path.write_text(yaml.safe_dump(self.config, sort_keys=False))
            try:
                self._spawn()
                self.wait_ready()
                return self
            except ServerError as exc:
                last_error = exc
                self._terminate(signal.SIGKILL)
                if keep_port and "address already in use" not in str(exc).lower():
                    break
                keep_port = False
        raise ServerError(f"{self.kind} did not start: {last_error}")

    def _spawn(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes to it until stop() closes it
        self._log_handles.append(log)
        log.write(f"\n--- start {' '.join(self.argv)} on {self.addr}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Poll ``/v2/`` until any HTTP answer (200 or 401) comes back; fail if the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise ServerError(f"{self.kind} exited with {code}:\n{log_tail(self.log_path)}")
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as resp:
                    resp.read()
                return
            except urllib.error.HTTPError:
                return  # it answered: auth-protected or otherwise, the server is up
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.05)
        raise ServerError(f"{self.kind} not ready after {timeout}s:\n{log_tail(self.log_path)}")

    def _terminate(self, sig: signal.Signals) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        for handle in self._log_handles:
            handle.close()
        self._log_handles.clear()
        return proc.returncode

    def stop(self) -> int | None:
        """SIGTERM the process and wait for it (SIGKILL after a bounded wait); its exit code."""
        return self._terminate(signal.SIGTERM)

    def kill(self) -> int | None:
        """SIGKILL the process and reap it."""
        return self._terminate(signal.SIGKILL)

    def restart(self) -> Server:
        """Stop and start again on the same port and storage."""
        self.stop()
        return self.start()

    def log(self) -> str:
        """Everything the server logged so far."""
        return log_tail(self.log_path, limit=1 << 30)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def berth_argv(config_path: Path) -> list[str]:
    """The command line that runs Berth's server on a config file."""
    return [sys.executable, "-m", "registry", "serve", "--config", str(config_path)]


def _python_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def start_berth(config: dict[str, Any], workdir: Path | str) -> Server:
    """Write ``config`` to ``workdir/config.yml``, run Berth on it, and wait until it serves.

    ``http.addr`` is replaced by a free 127.0.0.1 port unless it names a non-zero one.
    """
    workdir = Path(workdir)
    config = _with_loopback_addr(config)
    server = Server("berth", workdir, config, [], _python_env())
    server.argv = berth_argv(server.config_path)
    return server.start()


def start_reference_registry(config: dict[str, Any], workdir: Path | str) -> Server:
    """Run the Debian ``docker-registry`` (CNCF Distribution 2.8) on ``config``; wait until it serves.

    ``AWS_CA_BUNDLE`` is removed from this process's environment only: its S3 driver fails
    to start with it set.
    """
    binary = require_tool("docker-registry")
    workdir = Path(workdir)
    config = _with_loopback_addr(config)
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE" and not k.startswith("REGISTRY_")}
    server = Server("reference", workdir, config, [], env)
    server.argv = [binary, "serve", str(server.config_path)]
    return server.start()


def start_registry(kind: str, config: dict[str, Any], workdir: Path | str) -> Server:
    """Start ``kind`` ("berth" or "reference") on ``config``."""
    starters: dict[str, Callable[[dict[str, Any], Path | str], Server]] = {
        "berth": start_berth,
        "reference": start_reference_registry,
    }
    return starters[kind](config, workdir)


def _with_loopback_addr(config: dict[str, Any]) -> dict[str, Any]:
    config = copy.deepcopy(config)
    http = config.setdefault("http", {})
    host, _, port = str(http.get("addr", "")).rpartition(":")
    if host not in ("127.0.0.1", "localhost") or not port.isdigit():
        http["addr"] = "127.0.0.1:0"
    return config


def berth_available() -> bool:
    """Whether ``python -m registry serve --help`` works (the server has been written)."""
    result = subprocess.run(
        [*berth_argv(Path("x"))[:4], "--help"],
        env=_python_env(),
        capture_output=True,
        timeout=60,
        check=False,
    )
    return result.returncode == 0


@dataclass
class Dockerd:
    """A private dockerd (vfs storage, no iptables/bridge) and the env its ``docker`` CLI needs."""

    workdir: Path
    runtime_dir: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    log_path: Path
    logged_in: set[str] = field(default_factory=set)

    @property
    def pid(self) -> int:
        """The dockerd process id."""
        return self.proc.pid

    @property
    def socket(self) -> Path:
        """The daemon's unix socket."""
        return self.runtime_dir / "docker.sock"

    def docker(
        self, *args: str, timeout: float = 300, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker CLI against this daemon; raise with its output if it fails and ``check``."""
        docker = require_tool("docker")
        result = subprocess.run(
            [docker, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=stdin,
        )
        if check and result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, result.args, result.stdout, f"{result.stderr}\n--- dockerd log:\n{log_tail(self.log_path, 2000)}"
            )
        return result

    def login(self, host: str, username: str, password: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker login`` to ``host`` (once per host unless it fails); the CLI keeps it in DOCKER_CONFIG."""
        if host in self.logged_in and check:
            return subprocess.CompletedProcess([], 0, "", "")
        result = self.docker("login", "-u", username, "--password-stdin", host, stdin=password, check=check)
        if result.returncode == 0:
            self.logged_in.add(host)
        return result

    def stop(self) -> None:
        """SIGTERM dockerd (it stops its containerd), wait; SIGKILL both by pid if needed."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=STOP_TIMEOUT)
        self._stop_managed_containerd()

    def _stop_managed_containerd(self) -> None:
        pidfile = self.runtime_dir / "exec" / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        cmdline = Path(f"/proc/{pid}/cmdline")
        try:
            if str(self.runtime_dir).encode() not in cmdline.read_bytes():
                return  # not the containerd this daemon started
            os.kill(pid, signal.SIGTERM)
        except (OSError, ProcessLookupError):
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
        if Path(f"/proc/{pid}").exists():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_dockerd(workdir: Path | str, timeout: float = 60.0) -> Dockerd:
    """Start a private dockerd whose state lives under ``workdir`` (socket under a short /tmp dir).

    Docker treats registries on 127.0.0.0/8 as insecure (plain HTTP) by default, so no
    daemon configuration is needed to push to the test registries.
    """
    dockerd = require_tool("dockerd")
    require_tool("docker")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    runtime_dir = Path(tempfile.mkdtemp(prefix="bd", dir="/tmp"))  # unix socket paths must stay short
    (runtime_dir / "exec").mkdir()
    config_dir = workdir / "docker-config"
    config_dir.mkdir(exist_ok=True)
    (config_dir / "config.json").write_text(json.dumps({"auths": {}}))
    daemon_json = workdir / "daemon.json"
    daemon_json.write_text(json.dumps({"features": {"buildkit": False}}))
    log_path = workdir / "dockerd.log"
    argv = [
        dockerd,
        "--config-file", str(daemon_json),
        "--storage-driver=vfs",
        "--iptables=false",
        "--ip6tables=false",
        "--bridge=none",
        "--ip-masq=false",
        "--data-root", str(workdir / "data"),
        "--exec-root", str(runtime_dir / "exec"),
        "--pidfile", str(runtime_dir / "docker.pid"),
        "-H", f"unix://{runtime_dir / 'docker.sock'}",
    ]
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child, closed right after the spawn
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    client_env = dict(env, DOCKER_HOST=f"unix://{runtime_dir / 'docker.sock'}", DOCKER_CONFIG=str(config_dir))
    daemon = Dockerd(workdir, runtime_dir, proc, client_env, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"dockerd exited with {proc.returncode}:\n{log_tail(log_path)}")
        if daemon.socket.exists():
            result = daemon.docker("version", "--format", "{{.Server.Version}}", timeout=10, check=False)
            if result.returncode == 0:
                return daemon
        time.sleep(0.2)
    daemon.stop()
    raise ServerError(f"dockerd not ready after {timeout}s:\n{log_tail(log_path)}")


# Which registries and storage backends the parametrized suites run against ---------------

# BERTH_TEST_SERVERS / BERTH_TEST_BACKENDS override these (comma lists).
DEFAULT_SERVER_KINDS: tuple[str, ...] = ("berth", "reference")
DEFAULT_BACKENDS: tuple[str, ...] = ("filesystem", "s3")


def enabled_kinds() -> list[str]:
    """Server kinds to parametrize over: ``$BERTH_TEST_SERVERS`` (comma list) or the default."""
    raw = os.environ.get("BERTH_TEST_SERVERS", "")
    kinds = [k.strip() for k in raw.split(",") if k.strip()] or list(DEFAULT_SERVER_KINDS)
    unknown = set(kinds) - {"berth", "reference"}
    if unknown:
        raise ValueError(f"BERTH_TEST_SERVERS names unknown server kinds {sorted(unknown)}")
    return kinds


def enabled_backends() -> list[str]:
    """Storage backends to parametrize over: ``$BERTH_TEST_BACKENDS`` (comma list) or the default."""
    raw = os.environ.get("BERTH_TEST_BACKENDS", "")
    backends = [b.strip() for b in raw.split(",") if b.strip()] or list(DEFAULT_BACKENDS)
    unknown = set(backends) - {"filesystem", "s3"}
    if unknown:
        raise ValueError(f"BERTH_TEST_BACKENDS names unknown backends {sorted(unknown)}")
    return backends


def berth_has_backend(backend: str) -> bool:
    """Whether Berth ships a storage driver for ``backend`` (``storage_backends/<name>.py``)."""
    return (REPO_ROOT / "storage_backends" / f"{backend}.py").is_file()


def server_matrix() -> list[tuple[str, str]]:
    """Every (kind, backend) pair to run: enabled kinds x enabled backends that the kind has.

    Berth joins a backend's runs once its driver module exists; the reference registry has them all.
    """
    return [
        (kind, backend)
        for kind in enabled_kinds()
        for backend in enabled_backends()
        if kind == "reference" or berth_has_backend(backend)
    ]


def s3_config(s3: Any, prefix: str, **extra: Any) -> dict[str, Any]:
    """A full registry config for the S3 server ``s3`` (a ``tests.s3server.SeaweedFS``) under ``/prefix``."""
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "text"},
        "storage": {
            "s3": s3.driver_params(rootdirectory=f"/{prefix.strip('/')}"),
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        "http": {"addr": "127.0.0.1:0"},
    }
    return deep_merge(config, extra)


def storage_config(backend: str, workdir: Path, s3: Any = None, **extra: Any) -> dict[str, Any]:
    """A full registry config for ``backend`` with its data under ``workdir`` (or a prefix named after it)."""
    if backend == "filesystem":
        return filesystem_config(Path(workdir) / "data", **extra)
    if backend == "s3":
        if s3 is None:
            raise ValueError("the s3 backend needs a running tests.s3server.SeaweedFS")
        return s3_config(s3, f"{Path(workdir).name}-{os.getpid()}", **extra)
    raise ValueError(f"unknown storage backend {backend!r}")


# Authentication modes ------------------------------------------------------------------------

AUTH_USER = "berth-tester"
AUTH_PASSWORD = "correct horse battery staple"
AUTH_MODES = ("none", "htpasswd", "token")


def enabled_auth_modes() -> list[str]:
    """Auth modes to parametrize the real-client suite over: ``$BERTH_TEST_AUTH`` or all."""
    raw = os.environ.get("BERTH_TEST_AUTH", "")
    modes = [m.strip() for m in raw.split(",") if m.strip()] or list(AUTH_MODES)
    unknown = set(modes) - set(AUTH_MODES)
    if unknown:
        raise ValueError(f"BERTH_TEST_AUTH names unknown auth modes {sorted(unknown)}")
    return modes


def auth_matrix() -> list[tuple[str, str, str]]:
    """(kind, backend, auth) runs: every server pair without auth; htpasswd on both kinds and
    Berth's own token service, on the filesystem backend (auth is independent of storage)."""
    runs = [(kind, backend, "none") for kind, backend in server_matrix()] if "none" in enabled_auth_modes() else []
    for mode in enabled_auth_modes():
        if mode == "none":
            continue
        for kind in enabled_kinds():
            if mode == "token" and kind == "reference":
                continue  # Distribution needs an external token issuer; Berth's own service is tested
            if "filesystem" in enabled_backends():
                runs.append((kind, "filesystem", mode))
    return runs


def write_htpasswd(path: Path, users: dict[str, str], cost: int = 5) -> Path:
    """A bcrypt htpasswd file both registries read (low cost: every Basic request verifies it)."""
    import bcrypt

    lines = []
    for user, password in users.items():
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()
        lines.append(f"{user}:{hashed}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def auth_config(mode: str, kind: str, workdir: Path) -> tuple[dict[str, Any], tuple[str, str] | None]:
    """(config overlay, credentials) for ``mode`` on a ``kind`` server; files go under ``workdir``."""
    if mode == "none":
        return {}, None
    workdir.mkdir(parents=True, exist_ok=True)
    htpasswd = write_htpasswd(workdir / "htpasswd", {AUTH_USER: AUTH_PASSWORD, "other-user": "other-password"})
    creds = (AUTH_USER, AUTH_PASSWORD)
    if mode == "htpasswd":
        auth: dict[str, Any] = {"htpasswd": {"realm": "berth-tests", "path": str(htpasswd)}}
        if kind == "berth":
            auth["loginlimit"] = {"failures": 0}  # negative tests must not lock the suite out
        return {"auth": auth}, creds
    if mode == "token":
        if kind != "berth":
            raise ValueError("token mode needs Berth's built-in token service")
        key = workdir / "token-signing-key.pem"
        auth = {"token": {"signingkey": str(key), "htpasswd": str(htpasswd)}, "loginlimit": {"failures": 0}}
        return {"auth": auth}, creds
    raise ValueError(f"unknown auth mode {mode!r}")
