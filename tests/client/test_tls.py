"""TLS: a registry serving HTTPS with a private CA (``--ca-file``), and an untrusted one."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from pathlib import Path
from typing import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.client.conftest import Images, berth, load_and_tag, ok
from tests.servers import Server, filesystem_config, start_registry

pytestmark = pytest.mark.interop


def _self_signed(workdir: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """The reference registry serving HTTPS with a self-signed certificate for 127.0.0.1."""
    workdir = tmp_path_factory.mktemp("client-tls")
    cert, key = _self_signed(workdir)
    config = filesystem_config(workdir / "data", http={"tls": {"certificate": str(cert), "key": str(key)}})
    # Readiness is polled over plain HTTP: the TLS listener answers it with a 400, which counts as up.
    server = start_registry("reference", config, workdir / "server")
    try:
        yield server, cert
    finally:
        server.stop()


def test_ca_file_trusts_a_private_registry(tls_registry: tuple[Server, Path], repo: str, images: Images) -> None:
    server, cert = tls_registry
    ref = f"{server.addr}/{repo}:v1"
    load_and_tag(images.small.docker_archive, ref)  # type: ignore[arg-type]
    digest = ok("push", "--ca-file", str(cert), ref).out.split("digest: ")[1].split()[0]
    ok("rmi", ref)
    assert f"Digest: {digest}" in ok("pull", "--ca-file", str(cert), ref).out
    assert json.loads(ok("inspect", "--insecure", "--ca-file", str(cert), ref).out)["Digest"] == digest


def test_untrusted_certificate_is_one_line(tls_registry: tuple[Server, Path], repo: str, tmp_path: Path) -> None:
    server, _ = tls_registry
    other, _ = _self_signed(tmp_path)
    result = berth("inspect", "--ca-file", str(other), f"{server.addr}/{repo}:v1")
    assert result.code == 6 and "not trusted" in result.err and "--ca-file" in result.err
