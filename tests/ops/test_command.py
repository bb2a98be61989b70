"""The real ``berth`` command's server side as a new user meets it (subprocesses): ``serve --addr --root``,
the start-up banner on a terminal and JSON logs elsewhere, ``--version``, the maintenance verbs on the
zero-config defaults, ``berth user``, and configuration errors that name the file or key."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import bcrypt
import pytest

from tests.servers import REPO_ROOT, free_port

TIMEOUT = 120


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")


def run(*argv: str, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "registry", *argv], input=stdin, text=True, capture_output=True,
                          env=env(), cwd=cwd, timeout=TIMEOUT)


def wait_for(url: str, proc: subprocess.Popen[Any], timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "berth serve exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"{url} never answered")


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    """``berth serve --addr --root`` with stderr a pipe (not a terminal)."""
    addr = f"127.0.0.1:{free_port()}"
    root = tmp_path / "images"
    proc = subprocess.Popen([sys.executable, "-m", "registry", "serve", "--addr", addr, "--root", str(root)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(), cwd=tmp_path)
    try:
        yield proc, addr, root
    finally:
        stop(proc)


def test_serve_takes_addr_and_root_and_logs_json_off_a_terminal(served: tuple[subprocess.Popen[str], str, Path]
                                                                ) -> None:
    proc, addr, root = served
    assert wait_for(f"http://{addr}/v2/", proc) == 200
    data = b"layer bytes"
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"http://{addr}/v2/first/app/blobs/uploads/?digest={digest}", data=data,
                                 method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 201
    assert (root / "docker/registry/v2/repositories/first/app").is_dir()
    stop(proc)
    err = proc.stderr.read() if proc.stderr else ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and all(json.loads(line)["msg"] for line in lines)  # JSON, one object a line
    assert "Berth " not in err  # no banner off a terminal


def test_serve_prints_a_banner_and_text_logs_on_a_terminal(tmp_path: Path) -> None:
    addr = f"127.0.0.1:{free_port()}"
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "registry", "serve", "--addr", addr, "--root", "data"],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env(), cwd=tmp_path)
    os.close(slave)
    seen = b""
    try:
        wait_for(f"http://{addr}/v2/", proc)
        deadline = time.monotonic() + 20
        while b"Ctrl-C" not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                seen += os.read(master, 65536)
    finally:
        stop(proc)
        os.close(master)
    text = seen.decode(errors="replace")
    from registry.__main__ import version

    assert f"Berth {version()}" in text
    assert f"http://{addr}" in text
    assert f"filesystem {tmp_path / 'data'}" in text
    assert "auth       none" in text
    assert not any(line.lstrip().startswith("{") for line in text.splitlines())  # text logs, not JSON


def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0 and done.stdout.startswith("berth ") and done.stdout.split()[1][0].isdigit()


def test_maintenance_verbs_run_on_the_zero_config_defaults(tmp_path: Path) -> None:
    """No --config: ./data as ``serve`` uses it, or --root."""
    import hashlib

    data = b"a blob"
    hexd = hashlib.sha256(data).hexdigest()
    v2 = tmp_path / "data/docker/registry/v2"
    blob = v2 / f"blobs/sha256/{hexd[:2]}/{hexd}/data"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    link = v2 / f"repositories/zero/app/_layers/sha256/{hexd}/link"
    link.parent.mkdir(parents=True)
    link.write_text(f"sha256:{hexd}")
    du = run("du", "--json", cwd=tmp_path)
    assert du.returncode == 0, du.stderr
    assert [r["name"] for r in json.loads(du.stdout)["repositories"]] == ["zero/app"]
    elsewhere = run("du", "--json", "--root", str(tmp_path / "elsewhere"), cwd=tmp_path)
    assert json.loads(elsewhere.stdout)["repositories"] == []
    gc = run("gc", "--dry-run", "--grace-period", "0s", "--json", cwd=tmp_path)
    assert gc.returncode == 0, gc.stderr
    report = json.loads(gc.stdout)
    assert report["dryRun"] is True and report["repositories"] == 1
    assert blob.exists()
    hooks = run("webhooks", "status", cwd=tmp_path)
    assert hooks.returncode == 0 and "no webhook endpoints" in hooks.stdout, hooks.stderr


def test_root_with_another_storage_driver_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text("version: 0.1\nstorage: {inmemory: {}}\n")
    done = run("du", "--config", str(config), "--root", "x")
    assert done.returncode == 2 and "--root" in done.stderr and "inmemory" in done.stderr


def test_user_add_passwd_remove_write_a_bcrypt_htpasswd(tmp_path: Path) -> None:
    path = tmp_path / "auth" / "htpasswd"
    added = run("user", "add", "alice", "--file", str(path), "--password-stdin", "--cost", "4", stdin="s3cret\n")
    assert added.returncode == 0, added.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    user, _, hashed = path.read_text().strip().partition(":")
    assert user == "alice" and bcrypt.checkpw(b"s3cret", hashed.encode())
    assert run("user", "add", "alice", "--file", str(path), "--password-stdin", stdin="x\n").returncode == 1
    assert run("user", "add", "bob", "--file", str(path), "--password-stdin", "--cost", "4",
               stdin="b\n").returncode == 0
    assert run("user", "passwd", "alice", "--file", str(path), "--password-stdin", "--cost", "4",
               stdin="n3w\n").returncode == 0
    entries = dict(line.split(":", 1) for line in path.read_text().splitlines())
    assert sorted(entries) == ["alice", "bob"] and bcrypt.checkpw(b"n3w", entries["alice"].encode())
    assert run("user", "remove", "alice", "--file", str(path)).returncode == 0
    assert [line.split(":")[0] for line in path.read_text().splitlines()] == ["bob"]
    assert run("user", "remove", "alice", "--file", str(path)).returncode == 1
    assert not [p for p in path.parent.iterdir() if p.name != "htpasswd"]  # no temp file left
    # The config's file is the default; a server reading it accepts the user.
    config = tmp_path / "config.yml"
    config.write_text(f"version: 0.1\nauth:\n  htpasswd:\n    realm: berth\n    path: {path}\n")
    assert run("user", "add", "carol", "--config", str(config), "--password-stdin", "--cost", "4",
               stdin="c\n").returncode == 0
    from auth.htpasswd import parse_htpasswd

    assert bcrypt.checkpw(b"c", parse_htpasswd(path.read_bytes()).hashes["carol"])
    no_file = run("user", "add", "dave", "--password-stdin", stdin="d\n", cwd=tmp_path)
    assert no_file.returncode == 2 and "--file" in no_file.stderr and "auth.htpasswd.path" in no_file.stderr
    bad = run("user", "add", "eve:x", "--file", str(path), "--password-stdin", stdin="e\n")
    assert bad.returncode == 1 and "invalid user name" in bad.stderr


def test_config_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("version: 0.1\nhttp: [\n")
    done = run("serve", "--config", str(broken))
    assert done.returncode == 2 and str(broken) in done.stderr and "line 3" in done.stderr
    assert "Traceback" not in done.stderr
    missing = tmp_path / "missing.yml"
    missing.write_text(f"version: 0.1\nhttp: {{addr: '127.0.0.1:{free_port()}'}}\n"
                       f"auth:\n  htpasswd:\n    realm: r\n    path: {tmp_path / 'nope'}\n")
    done = run("serve", "--config", str(missing))
    assert done.returncode == 2
    assert f"auth.htpasswd.path: cannot read {tmp_path / 'nope'}" in done.stderr
    assert "Traceback" not in done.stderr
