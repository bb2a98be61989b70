"""The real ``berth`` command (a subprocess) as a new user meets it: TLS on loopback, a denied push in
token mode, closed pipes and full disks behind stdout, Ctrl-D at a prompt, a platform an index lacks."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pty
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.client.conftest import Images, load_and_tag
from tests.servers import REPO_ROOT, Server, ServerError, filesystem_config, start_berth, write_htpasswd

TIMEOUT = 120


def run(*argv: str, stdin: bytes | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``python -m registry ARGV`` from this checkout, in the test's private $BERTH_HOME."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "registry", *argv], input=stdin.decode() if stdin else None,
                          text=True, env=env, timeout=TIMEOUT, **kwargs)


def one_line(err: str) -> None:
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class TLSServer(Server):
    """A Berth server on HTTPS: readiness is polled over TLS without verification."""

    def wait_ready(self, timeout: float = 60.0) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise ServerError(f"berth exited:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/v2/", timeout=2, context=context) as resp:
                    resp.read()
                return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        raise ServerError(f"berth (TLS) not ready after {timeout}s:\n{self.log()}")


@pytest.fixture(scope="module")
def tls_berth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """``berth serve`` on HTTPS with a self-signed certificate for 127.0.0.1."""
    from tests.servers import _python_env, _with_loopback_addr, berth_argv

    workdir = tmp_path_factory.mktemp("berth-tls")
    cert, key = _self_signed(workdir)
    config = _with_loopback_addr(filesystem_config(workdir / "data",
                                                   http={"tls": {"certificate": str(cert), "key": str(key)}}))
    server = TLSServer("berth", workdir / "server", config, [], _python_env(), scheme="https")
    server.argv = berth_argv(server.config_path)
    server.start()
    try:
        yield server, cert
    finally:
        server.stop()


@pytest.fixture(scope="module")
def plain_berth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("berth-plain")
    server = start_berth(filesystem_config(workdir / "data"), workdir / "server")
    try:
        yield server
    finally:
        server.stop()


def test_insecure_reaches_a_self_signed_tls_registry_on_loopback(tls_berth: tuple[Server, Path], images: Images,
                                                                 repo: str) -> None:
    server, cert = tls_berth
    ref = f"{server.addr}/{repo}:v1"
    load_and_tag(images.small.docker_archive, ref)  # type: ignore[arg-type]
    pushed = run("push", "--insecure", ref)
    assert pushed.returncode == 0, pushed.stderr
    assert run("tags", "--insecure", f"{server.addr}/{repo}").stdout.split() == ["v1"]
    # Without a flag: HTTP first (docker's loopback rule), then verified HTTPS: a clear line, not
    # "closed the connection unexpectedly".
    plain = run("tags", f"{server.addr}/{repo}")
    assert plain.returncode == 6
    one_line(plain.stderr)
    assert "not trusted" in plain.stderr and "--ca-file" in plain.stderr and "--insecure" in plain.stderr
    trusted = run("tags", "--ca-file", str(cert), f"{server.addr}/{repo}")
    assert trusted.returncode == 0 and trusted.stdout.split() == ["v1"], trusted.stderr


def test_insecure_still_reaches_a_plain_http_registry_on_loopback(plain_berth: Server, images: Images,
                                                                 repo: str) -> None:
    ref = f"{plain_berth.addr}/{repo}:v1"
    load_and_tag(images.small.docker_archive, ref)  # type: ignore[arg-type]
    assert run("push", "--insecure", ref).returncode == 0
    assert run("tags", "--insecure", f"{plain_berth.addr}/{repo}").stdout.split() == ["v1"]
    assert run("tags", f"{plain_berth.addr}/{repo}").stdout.split() == ["v1"]


POLICY = """
rules:
  - repository: "team/**"
    users: {alice: ["*"], bob: [pull]}
"""


def test_a_pull_only_users_push_in_token_mode_says_denied(tmp_path_factory: pytest.TempPathFactory,
                                                          images: Images) -> None:
    workdir = tmp_path_factory.mktemp("berth-token")
    htpasswd = write_htpasswd(workdir / "htpasswd", {"alice": "wonderland", "bob": "builder"})
    (workdir / "policy.yml").write_text(POLICY)
    config = filesystem_config(workdir / "data", auth={
        "token": {"signingkey": str(workdir / "key.pem"), "htpasswd": str(htpasswd)},
        "policy": {"path": str(workdir / "policy.yml")}})
    server = start_berth(config, workdir / "server")
    try:
        ref = f"{server.addr}/team/app:v1"
        load_and_tag(images.small.docker_archive, ref)  # type: ignore[arg-type]
        assert run("login", server.addr, "-u", "bob", "--password-stdin", stdin=b"builder\n").returncode == 0
        pushed = run("push", ref)
        assert pushed.returncode == 3
        one_line(pushed.stderr)
        assert "denied" in pushed.stderr and "bob" in pushed.stderr
        assert "log in" not in pushed.stderr and "login" not in pushed.stderr
        assert run("login", server.addr, "-u", "alice", "--password-stdin", stdin=b"wonderland\n").returncode == 0
        assert run("push", ref).returncode == 0
    finally:
        server.stop()


def test_a_closed_pipe_ends_quietly(images: Images, repo: str) -> None:
    load_and_tag(images.small.docker_archive, f"127.0.0.1:5000/{repo}:v1")  # type: ignore[arg-type]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before berth writes (``| head -1`` after its line)
    try:
        done = run("images", stdout=write)
    finally:
        os.close(write)
    assert done.returncode == 1
    assert done.stderr == ""


@pytest.mark.parametrize("argv", [["images"], ["du", "--root", "data"], ["--version"]])
def test_a_full_stdout_is_one_line(argv: list[str], tmp_path: Path) -> None:
    with open("/dev/full", "w") as full:
        done = run(*argv, stdout=full, cwd=tmp_path)
    if argv == ["--version"]:  # argparse's own exit: no traceback either
        assert "Traceback" not in done.stderr
        return
    assert done.returncode == 1
    one_line(done.stderr)
    assert "cannot write output: No space left on device" in done.stderr


def test_ctrl_d_at_the_login_prompt_is_a_clean_exit(plain_berth: Server) -> None:
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "registry", "login", plain_berth.addr], stdin=slave,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    os.close(slave)
    try:
        time.sleep(0.5)
        os.write(master, b"\x04")
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        os.close(master)
    assert proc.returncode == 130
    assert "Traceback" not in err and "cancelled" in err
    assert "Login Succeeded" not in out


def test_a_platform_the_index_lacks_is_an_error(plain_berth: Server, images: Images, repo: str) -> None:
    ref = f"{plain_berth.addr}/{repo}:multi"
    load_and_tag(images.multi_oci_tar, ref)
    assert run("push", ref).returncode == 0
    missing = run("pull", "--platform", "linux/s390x", ref)
    assert missing.returncode == 7
    one_line(missing.stderr)
    assert "linux/s390x" in missing.stderr and "linux/arm64" in missing.stderr
    both = run("pull", "--platform", "linux/arm64", "--all-platforms", ref)
    assert both.returncode == 2 and "--all-platforms" in both.stderr
    inspect = run("inspect", "--platform", "windows/amd64", ref)
    assert inspect.returncode == 7


def test_a_platform_a_single_image_is_not_for_is_an_error(plain_berth: Server, images: Images, repo: str) -> None:
    ref = f"{plain_berth.addr}/{repo}:single"
    load_and_tag(images.small.docker_archive, ref)  # type: ignore[arg-type]  # linux/amd64
    assert run("push", ref).returncode == 0
    assert run("rmi", ref).returncode == 0
    wrong = run("pull", "--platform", "linux/arm64", ref)
    assert wrong.returncode == 7 and "linux/amd64" in wrong.stderr
    one_line(wrong.stderr)
    assert run("inspect", "--platform", "linux/arm64", ref).returncode == 7
    assert run("copy", "--platform", "linux/arm64", ref, f"{plain_berth.addr}/{repo}:copied").returncode == 7
    right = run("pull", "--platform", "linux/amd64", ref)
    assert right.returncode == 0, right.stderr
