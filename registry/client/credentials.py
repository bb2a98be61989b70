"""Docker's credential store: ``$DOCKER_CONFIG/config.json`` and ``docker-credential-*`` helpers.

Owns reading and writing the ``auths``, ``credsStore`` and ``credHelpers`` keys
of Docker's client config the way the docker CLI does, so ``berth login`` and
``docker login`` share credentials. Other keys of the file are preserved.
Writes are atomic (temp file + rename) and the file is created ``0600``.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.client.errors import AuthError, ClientError
from registry.reference import DOCKER_HUB, DOCKER_HUB_API

DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
TOKEN_USERNAME = "<token>"  # a helper's username meaning "Secret is an identity token"


@dataclass(frozen=True)
class Credential:
    """What the client may present to a registry: a password or an identity (refresh) token."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    @property
    def empty(self) -> bool:
        """True when there is nothing to present."""
        return not (self.username or self.password or self.identity_token)


ANONYMOUS = Credential()


def config_dir() -> Path:
    """``$DOCKER_CONFIG`` or ``~/.docker``."""
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def config_key(host: str) -> str:
    """The key docker uses for a registry host in ``auths`` and for helpers."""
    if host in (DOCKER_HUB, DOCKER_HUB_API, "index.docker.io"):
        return DOCKER_HUB_CONFIG_KEY
    return host


def _normalize_key(key: str) -> str:
    """Old configs use URLs as keys (``https://host/v1/``): reduce to ``host``."""
    if key == DOCKER_HUB_CONFIG_KEY:
        return key
    stripped = key
    for prefix in ("https://", "http://"):
        if stripped.startswith(prefix):
            stripped = stripped[len(prefix):]
    return stripped.split("/", 1)[0]


class DockerConfig:
    """A view of one ``config.json`` (``path`` defaults to :func:`config_dir`)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or config_dir() / "config.json"

    def load(self) -> dict[str, Any]:
        """The parsed file, or ``{}`` when it does not exist."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ClientError(f"cannot read {self.path}: {exc.strerror}") from None
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ClientError(f"{self.path} is not valid JSON ({exc}); fix or remove it") from None
        if not isinstance(data, dict):
            raise ClientError(f"{self.path} must hold a JSON object")
        return data

    def save(self, data: dict[str, Any]) -> None:
        """Write the file atomically with mode 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".config-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def _helper_for(self, data: dict[str, Any], key: str) -> str | None:
        helpers = data.get("credHelpers") or {}
        if isinstance(helpers, dict):
            for k, v in helpers.items():
                if _normalize_key(k) == key or k == key:
                    return str(v)
        store = data.get("credsStore")
        return str(store) if store else None

    def get(self, host: str) -> Credential:
        """The credential for a registry host, or :data:`ANONYMOUS`."""
        key = config_key(host)
        data = self.load()
        helper = self._helper_for(data, key)
        if helper:
            cred = helper_get(helper, key)
            if not cred.empty:
                return cred
        auths = data.get("auths") or {}
        if not isinstance(auths, dict):
            return ANONYMOUS
        entry = auths.get(key)
        if entry is None:
            for k, v in auths.items():
                if _normalize_key(k) == key:
                    entry = v
                    break
        if not isinstance(entry, dict):
            return ANONYMOUS
        username = str(entry.get("username") or "")
        password = str(entry.get("password") or "")
        encoded = entry.get("auth")
        if encoded:
            try:
                decoded = base64.b64decode(str(encoded)).decode()
            except (ValueError, UnicodeDecodeError):
                raise ClientError(f"invalid auth entry for {key} in {self.path}; run `berth login {host}` again") from None
            username, _, password = decoded.partition(":")
        return Credential(username, password, str(entry.get("identitytoken") or ""))

    def store(self, host: str, cred: Credential) -> None:
        """Remember a credential (in the helper if one is configured, else in ``auths``)."""
        key = config_key(host)
        data = self.load()
        helper = self._helper_for(data, key)
        auths = data.setdefault("auths", {})
        if helper:
            if cred.identity_token:
                helper_store(helper, key, TOKEN_USERNAME, cred.identity_token)
            else:
                helper_store(helper, key, cred.username, cred.password)
            auths[key] = {}
        else:
            entry: dict[str, str] = {}
            if cred.identity_token:
                entry["auth"] = base64.b64encode(f"{cred.username}:".encode()).decode() if cred.username else ""
                entry["identitytoken"] = cred.identity_token
                if not entry["auth"]:
                    del entry["auth"]
            else:
                entry["auth"] = base64.b64encode(f"{cred.username}:{cred.password}".encode()).decode()
            auths[key] = entry
        self.save(data)

    def erase(self, host: str) -> bool:
        """Forget a host's credential; False when there was none."""
        key = config_key(host)
        data = self.load()
        helper = self._helper_for(data, key)
        found = False
        if helper:
            found = helper_erase(helper, key)
        auths = data.get("auths") or {}
        for k in list(auths):
            if k == key or _normalize_key(k) == key:
                del auths[k]
                found = True
        if found or helper:
            self.save(data)
        return found


def _run_helper(helper: str, action: str, payload: str) -> subprocess.CompletedProcess[str]:
    program = f"docker-credential-{helper}"
    try:
        return subprocess.run([program, action], input=payload, capture_output=True, text=True, timeout=60, check=False)
    except FileNotFoundError:
        raise ClientError(f"credential helper {program} is not installed (configured in {config_dir() / 'config.json'})") from None
    except subprocess.TimeoutExpired:
        raise ClientError(f"credential helper {program} did not answer within 60 s") from None


def helper_get(helper: str, key: str) -> Credential:
    """Ask ``docker-credential-<helper> get`` for a server's credential."""
    proc = _run_helper(helper, "get", key)
    if proc.returncode != 0:
        message = (proc.stdout + proc.stderr).strip()
        if "credentials not found" in message.lower():
            return ANONYMOUS
        raise AuthError(f"credential helper docker-credential-{helper} failed for {key}: {message or 'exit ' + str(proc.returncode)}")
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        raise AuthError(f"credential helper docker-credential-{helper} printed invalid JSON for {key}") from None
    username = str(doc.get("Username") or "")
    secret = str(doc.get("Secret") or "")
    if username == TOKEN_USERNAME:
        return Credential(identity_token=secret)
    return Credential(username, secret)


def helper_store(helper: str, key: str, username: str, secret: str) -> None:
    """``docker-credential-<helper> store``."""
    payload = json.dumps({"ServerURL": key, "Username": username, "Secret": secret})
    proc = _run_helper(helper, "store", payload)
    if proc.returncode != 0:
        raise AuthError(f"credential helper docker-credential-{helper} could not store {key}: {(proc.stdout + proc.stderr).strip()}")


def helper_erase(helper: str, key: str) -> bool:
    """``docker-credential-<helper> erase``; False when it had nothing."""
    proc = _run_helper(helper, "erase", key)
    if proc.returncode != 0:
        if "not found" in (proc.stdout + proc.stderr).lower():
            return False
        raise AuthError(f"credential helper docker-credential-{helper} could not erase {key}: {(proc.stdout + proc.stderr).strip()}")
    return True
